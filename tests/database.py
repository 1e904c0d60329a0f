"""The database each test server gets: a SQLite file by default, or a fresh PostgreSQL database.

`CODE_REMOTE_TEST_DATABASE=postgresql` runs the suite against PostgreSQL: the first server or app that
asks for a database starts a throwaway cluster (initdb + pg_ctl from Debian's packages, listening on
127.0.0.1 only, its files under a temp folder) and every caller then gets a database of its own in it.
The cluster runs as an unprivileged user, since PostgreSQL refuses to run as root: as the current user
when that is not root, else as `postgres` (or $CODE_REMOTE_TEST_PG_USER) through `runuser`.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

MODE = os.environ.get("CODE_REMOTE_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def postgres_wanted() -> bool:
    if MODE not in ("sqlite", "postgresql"):
        raise RuntimeError(f"CODE_REMOTE_TEST_DATABASE must be sqlite or postgresql, got {MODE!r}")
    return MODE == "postgresql"


def _tool(name: str) -> str:
    for folder in PG_BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1, trusting local connections."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="code-remote-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = None if os.geteuid() != 0 else os.environ.get("CODE_REMOTE_TEST_PG_USER", "postgres")
        self._names = itertools.count(1)

    def _run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120, **kwargs)

    def start(self) -> PostgresCluster:
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chmod(self.root, 0o755)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run([_tool("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=200"
        try:
            self._run([_tool("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start"])
        except subprocess.CalledProcessError as error:
            log = (self.root / "server.log").read_text(errors="replace") if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {error.stderr}\n{log[-2000:]}") from None
        return self

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg2

        name = f"test_{os.getpid()}_{next(self._names)}"
        connection = psycopg2.connect(dbname="postgres", user="postgres", host="127.0.0.1", port=self.port)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return f"{self.url}/{name}"

    def stop(self) -> None:
        try:
            self._run([_tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


_cluster: PostgresCluster | None = None


def cluster() -> PostgresCluster:
    """The session's PostgreSQL cluster, started on first use."""
    global _cluster
    if _cluster is None:
        _cluster = PostgresCluster().start()
    return _cluster


def fresh_url(workdir: Path) -> str:
    """A database URL no other server uses: SQLite under `workdir`, or a new PostgreSQL database."""
    if postgres_wanted():
        return cluster().create_database()
    return f"sqlite:///{workdir / 'code-remote.db'}"


def shutdown() -> None:
    global _cluster
    if _cluster is not None:
        _cluster.stop()
        _cluster = None
