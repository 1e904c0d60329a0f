"""The stack as a PaaS runs it, for end-to-end tests and the benchmark: N instances behind a load balancer.

    with Cluster(tmp_path, instances=3, agents=2).start() as cluster:
        call_tool("http", cluster.url + "/mcp", cluster.token, "run_shell_command", {"command": "echo hi", "machine": "box-1"})
        cluster.instances[0].kill()          # a host dies: kill -9 of its whole process group
        cluster.instances[0].start()         # ... and comes back on the same port
        cluster.instances[1].terminate()     # a deploy: SIGTERM, then wait for the instance to exit

What runs, all on 127.0.0.1 with every file under `workdir`:
- one PostgreSQL database in the throwaway cluster of tests/database.py (or SQLite, for one instance),
  migrated once by the Procfile's `release:` line before any instance starts, as a release phase does;
- N instances, each the Procfile's `web:` line run by `/bin/sh -c` as a PaaS does, with its own PORT,
  `WEB_CONCURRENCY` (default 2), `DATABASE_URL`, `AUTH_TOKEN`, a throwaway HOME and `TRUSTED_PROXY_HOPS=1`;
- nginx from Debian's package, unprivileged from a temp prefix: round robin with no session affinity,
  HTTP/1.1 keepalive to the instances, no response buffering (SSE and held polls pass at once), read
  timeouts longer than a held poll (25 s) and an SSE heartbeat (15 s), like a PaaS router;
- K real agents (`box-1`, `box-2`, ...) with throwaway HOMEs and roots, polling THROUGH nginx.

Every wait is a condition with a deadline (tests/harness.py `wait_for`); `stop()` tears everything down
even when a part failed, and runs at interpreter exit if a caller forgot.
"""

from __future__ import annotations

import atexit
import os
import shlex
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import requests

from tests import database
from tests.harness import PYTHON, ROOT, TOKEN, Agent, Process, base_env, free_port, process_alive, wait_for
from tests.proxies import NGINX

VENV_BIN = str(Path(PYTHON).parent)


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """The Procfile's process types and their commands, parsed as Procfile runners do."""
    types: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            types[name.strip()] = command.strip()
    return types


def children(pid: int) -> list[int]:
    """The direct children of `pid` (a gunicorn master's workers)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


class Instance:
    """One host of the app: the Procfile's `web:` line under `/bin/sh -c`, on its own port."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str], *, web_concurrency: int) -> None:
        self.name, self.workdir, self.web_concurrency = name, workdir, web_concurrency
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **env,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": str(web_concurrency),
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home),  # gunicorn's control socket, if on, stays in the throwaway HOME
            "PATH": VENV_BIN + os.pathsep + env.get("PATH", "/usr/bin:/bin"),
        }
        self.argv = ["/bin/sh", "-c", procfile()["web"]]
        self.log_path = workdir / "web.log"
        self.process: Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        """The gunicorn master's pid (the shell execs it once migrations are done)."""
        assert self.process, f"{self.name} was never started"
        return self.process.proc.pid

    def worker_pids(self) -> list[int]:
        return children(self.pid) if self.alive() else []

    def alive(self) -> bool:
        return bool(self.process and self.process.alive())

    def start(self, *, timeout: float = 45.0) -> Instance:
        """Start (or start again, on the same port) and wait until every worker answers /health."""
        self.process = Process(self.argv, env=self.env, log_path=self.log_path)
        self.starts += 1
        wait_for(self.ready, timeout=timeout, what=f"instance {self.name} on {self.url} (log: {self.log_path})")
        return self

    def ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"instance {self.name} exited:\n{self.log()[-3000:]}")
        workers = [pid for pid in self.worker_pids() if process_alive(pid)]
        if len(workers) < self.web_concurrency or self.log().count("Booting worker") < self.starts * self.web_concurrency:
            return False
        return requests.get(self.url + "/health", timeout=2).status_code == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """A host that dies: SIGKILL to the master and its workers at once, nothing finishes."""
        if self.process:
            pids = [self.pid, *self.worker_pids()]
            self.process.stop(signal.SIGKILL)
            wait_for(lambda: not any(process_alive(pid) for pid in pids), timeout=10, what=f"{self.name}'s processes to die")

    def terminate(self, *, timeout: float = 40.0) -> int | None:
        """A deploy's stop: SIGTERM to the master (gunicorn passes it to the workers); returns the exit status."""
        if not self.alive():
            return self.process.proc.returncode if self.process else None
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.process.proc.wait(timeout=timeout)
        finally:
            self.process.stop(signal.SIGKILL)

    def stop(self) -> None:
        """Quick shutdown for teardown (SIGINT: gunicorn does not wait for held polls)."""
        if self.process:
            self.process.stop(signal.SIGINT)


class Balancer:
    """nginx doing round robin over the instances, with no session affinity, on 127.0.0.1."""

    def __init__(self, folder: Path, upstream_ports: list[int], *, client_keepalive: bool = True) -> None:
        self.folder, self.port = folder, free_port()
        self.client_keepalive = client_keepalive
        folder.mkdir(parents=True, exist_ok=True)
        self.access_log = folder / "access.log"
        self.error_log = folder / "error.log"
        self.upstream_ports = list(upstream_ports)
        self.process: Process | None = None
        self._write_conf(set())

    def _write_conf(self, down: set[int]) -> None:
        folder = self.folder
        servers = "\n".join(
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s{' down' if port in down else ''};"
            for port in self.upstream_ports
        )
        (folder / "nginx.conf").write_text(
            f"""
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {self.error_log} notice;
events {{ worker_connections 4096; }}
http {{
    log_format upstream '$request_method $uri $status $upstream_addr $request_time';
    access_log {self.access_log} upstream;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    client_max_body_size 16m;
    upstream code_remote {{
        # Round robin (nginx's default), no ip_hash or sticky cookie: any request may reach any instance.
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        keepalive_timeout {"75s" if self.client_keepalive else "0"};
        location / {{
            proxy_pass http://code_remote;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # SSE events and poll answers must pass at once.
            proxy_buffering off;
            proxy_request_buffering off;
            # Longer than a held poll (25 s) and the SSE heartbeat (15 s); a PaaS router cuts at 55-60 s.
            proxy_read_timeout 60s;
            proxy_send_timeout 60s;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, port: int, *, on: bool) -> None:
        """Take an instance out of the rotation (or put it back), as a platform's router does before
        it stops an instance in a deploy: nginx reloads, requests in progress there go on, new ones go
        elsewhere."""
        down = set() if on else {port}
        self._write_conf(down)
        log = lambda: self.error_log.read_text(errors="replace") if self.error_log.exists() else ""  # noqa: E731
        before = log().count("gracefully shutting down")
        os.kill(self.process.proc.pid, signal.SIGHUP)
        # Done when the old worker has been told to stop: from then on no new request goes by the old table.
        wait_for(lambda: log().count("gracefully shutting down") > before, timeout=10, what="nginx to reload its configuration")

    def start(self) -> Balancer:
        argv = [NGINX, "-p", str(self.folder), "-c", str(self.folder / "nginx.conf"), "-e", str(self.error_log)]
        self.process = Process(argv, env=base_env(), log_path=self.folder / "stdout.log")
        wait_for(self._listening, timeout=15, what=f"nginx on {self.port} (log: {self.error_log})")
        return self

    def _listening(self) -> bool:
        if self.process and not self.process.alive():
            raise RuntimeError(f"nginx exited: {self.error_log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def upstreams(self) -> list[str]:
        """The instance address of every request nginx passed on so far ('a, b' when it tried two)."""
        if not self.access_log.exists():
            return []
        return [line.split()[3] for line in self.access_log.read_text().splitlines() if len(line.split()) >= 4]

    def stop(self) -> None:
        if self.process:
            self.process.stop()


class Cluster:
    """N instances on one database behind nginx, and K agents polling through it (see the module doc)."""

    def __init__(self, workdir: Path, *, instances: int = 3, agents: int = 2, web_concurrency: int = 2,
                 database_kind: str = "postgresql", token: str = TOKEN, env: dict[str, str] | None = None,
                 agent_env: dict[str, str] | None = None, client_keepalive: bool = True) -> None:
        if database_kind not in ("postgresql", "sqlite"):
            raise ValueError(f"database_kind must be postgresql or sqlite, not {database_kind!r}")
        if database_kind == "sqlite" and instances * web_concurrency > 1:
            raise ValueError("SQLite serves one process: use database_kind='postgresql' for more than one")
        self.workdir, self.token = workdir, token
        workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = (database.cluster().create_database() if database_kind == "postgresql"
                             else f"sqlite:///{workdir / 'code-remote.db'}")
        self.env = base_env(**{"AUTH_TOKEN": token, "DATABASE_URL": self.database_url, "TRUSTED_PROXY_HOPS": "1",
                               "ACCESS_LOG": "1", **(env or {})})
        self.env.pop("XDG_RUNTIME_DIR", None)
        self.instances = [Instance(f"web.{i + 1}", workdir / f"web.{i + 1}", self.env, web_concurrency=web_concurrency)
                          for i in range(instances)]
        self.balancer = Balancer(workdir / "nginx", [instance.port for instance in self.instances], client_keepalive=client_keepalive)
        self.agents = [Agent(self, workdir / "agents", f"box-{i + 1}", env=agent_env) for i in range(agents)]
        self._stopped = False

    # The parts of tests.harness.Server that Agent and the tests use: the cluster is one server to them.
    @property
    def url(self) -> str:
        return self.balancer.url

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def machines(self) -> dict[str, dict[str, Any]]:
        response = requests.get(self.url + "/api/machines", headers=self.headers(), timeout=10)
        response.raise_for_status()
        return {m["name"]: m for m in response.json()["machines"]}

    def audit(self, limit: int = 100, machine: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"machine": machine} if machine else {})}
        response = requests.get(self.url + "/api/commands", params=params, headers=self.headers(), timeout=10)
        response.raise_for_status()
        return response.json()["tool_calls"]

    def release(self) -> None:
        """The Procfile's `release:` line, once, before any instance starts (a PaaS release phase)."""
        env = {**self.env, "PATH": VENV_BIN + os.pathsep + self.env.get("PATH", "/usr/bin:/bin"),
               "HOME": str(self.workdir)}
        done = subprocess.run(["/bin/sh", "-c", procfile()["release"]], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"release failed ({shlex.join(['sh', '-c', procfile()['release']])}):\n{done.stdout}{done.stderr}")

    def start(self) -> Cluster:
        atexit.register(self.stop)
        try:
            self.release()
            for instance in self.instances:
                instance.process = Process(instance.argv, env=instance.env, log_path=instance.log_path)
                instance.starts += 1
            for instance in self.instances:  # started together, waited for together
                wait_for(instance.ready, timeout=60, what=f"instance {instance.name} (log: {instance.log_path})")
            self.balancer.start()
            for agent in self.agents:
                agent.start(wait_online=False)
            for agent in self.agents:
                wait_for(agent.online, timeout=30, what=f"agent {agent.name} online through nginx (log: {agent.log_path})")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop agents, nginx and instances; each part is stopped even if another fails to."""
        if self._stopped:
            return
        self._stopped = True
        parts = [*self.agents, self.balancer, *self.instances]
        failures = []
        for part in parts:
            try:
                part.stop()
            except Exception as error:  # keep tearing down the rest
                failures.append(f"{part}: {error}")
        atexit.unregister(self.stop)
        if failures:
            raise RuntimeError("teardown failed: " + "; ".join(failures))

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
