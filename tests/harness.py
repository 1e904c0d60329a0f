"""Start the real server (gunicorn + gevent) and real agents as processes, for end-to-end tests.

Every process gets a throwaway database, HOME and allowed roots under a temp folder, and a free
loopback port. Readiness is waited for with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from tests import database

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TOKEN = "test-owner-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessExited(RuntimeError):
    """A process a test waits on has exited: waiting longer cannot help."""


def wait_for(condition: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds.

    Errors from `condition` are retried (the thing waited for may not exist yet), except
    ProcessExited, which fails at once."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except ProcessExited:
            raise
        except Exception as error:  # the thing waited for may not exist yet
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


@contextlib.contextmanager
def serve_page(body: bytes, host: str = "127.0.0.1") -> Iterator[int]:
    """A loopback HTTP server answering every GET with the HTML `body`; yields its port. A browser
    page's origin, or a local OAuth client's redirect target."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie waiting to be reaped counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Process:
    """A child process whose output goes to a log file, killed (with its group) on stop."""

    def __init__(self, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> None:
        self.argv, self.log_path = argv, log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_running(self, name: str, log: str | None = None) -> None:
        """Raise ProcessExited, naming the exit code and the log's tail, once the process has exited."""
        code = self.proc.poll()
        if code is not None:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            tail = (self.log() if log is None else log)[-3000:]
            raise ProcessExited(f"{name} exited ({how}); log tail:\n{tail}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self._log.close()
        return self.proc.returncode


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_TOKEN", "RELAY_URL", "MACHINE_NAME", "DATABASE_URL"))}
    env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(key, None)
    env.update(extra)
    return env


class Server:
    """gunicorn with the gevent worker, as the Procfile runs it, on a throwaway database (tests/database.py)."""

    def __init__(self, workdir: Path, *, token: str = TOKEN, port: int | None = None, env: dict[str, str] | None = None,
                 root: Path = ROOT) -> None:
        self.workdir, self.root = workdir, root  # `root`: the checkout whose code runs (another commit's, in a bench)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database.fresh_url(workdir)
        # A throwaway HOME and runtime folder: whatever the server writes there stays out of the real ones.
        self.home = workdir / "home"
        self.runtime_dir = workdir / "run"
        self.home.mkdir(exist_ok=True)
        self.runtime_dir.mkdir(mode=0o700, exist_ok=True)
        defaults = {
            "AUTH_TOKEN": token,
            "DATABASE_URL": self.database_url,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "ACCESS_LOG": "1",
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
        }
        self.env = base_env(**(defaults | (env or {})))  # `env` may replace a default (e.g. ACCESS_LOG), as with Agent
        self.process: Process | None = None

    def start(self) -> Server:
        subprocess.run([PYTHON, "-m", "migrations"], cwd=self.root, env=self.env, check=True, capture_output=True, timeout=60)
        gunicorn = str(Path(PYTHON).with_name("gunicorn"))
        self.process = Process([gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"], env=self.env, log_path=self.workdir / "server.log",
                               cwd=self.root)
        wait_for(self._healthy, timeout=30, what=f"server on {self.url} (log: {self.workdir / 'server.log'})")
        return self

    def _healthy(self) -> bool:
        if self.process:
            self.process.check_running("server")
        return requests.get(self.url + "/health", timeout=2).status_code == 200

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT: gunicorn's quick shutdown (SIGTERM would let held polls run out first)."""
        if self.process:
            self.process.stop(sig)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def health(self) -> dict[str, Any]:
        return requests.get(self.url + "/health", timeout=5).json()

    def audit(self, limit: int = 100, machine: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if machine:
            params["machine"] = machine
        response = requests.get(self.url + "/api/commands", params=params, headers=self.headers(), timeout=10)
        response.raise_for_status()
        return response.json()["tool_calls"]

    def machines(self) -> dict[str, dict[str, Any]]:
        response = requests.get(self.url + "/api/machines", headers=self.headers(), timeout=10)
        response.raise_for_status()
        return {m["name"]: m for m in response.json()["machines"]}


class Agent:
    """A real agent process with a throwaway HOME and roots under `workdir`."""

    def __init__(self, server: Server, workdir: Path, name: str = "box", *, env: dict[str, str] | None = None,
                 root: Path = ROOT) -> None:
        self.server, self.name, self.root = server, name, root
        self.home = workdir / f"home-{name}"
        self.scratch = workdir / f"scratch-{name}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        defaults = {
            "RELAY_URL": server.url,
            "AUTH_TOKEN": server.token,
            "MACHINE_NAME": name,
            "HOME": str(self.home),
            "ALLOWED_ROOTS": os.pathsep.join([str(self.home), str(self.scratch)]),
            "SHELL": "/bin/sh",
            "CODE_REMOTE_ENV_FILE": str(workdir / "no-such.env"),
        }
        self.env = base_env(**(defaults | (env or {})))  # `env` may replace a default (e.g. ALLOWED_ROOTS)
        self.log_path = workdir / f"agent-{name}.log"
        self.process: Process | None = None

    def start(self, *, wait_online: bool = True) -> Agent:
        self.process = Process([PYTHON, "-m", "agent"], env=self.env, log_path=self.log_path, cwd=self.root)
        if wait_online:
            wait_for(self.online, timeout=20, what=f"agent {self.name} online (log: {self.log_path})")
        return self

    def online(self) -> bool:
        if self.process:
            self.process.check_running(f"agent {self.name}")
        machine = self.server.machines().get(self.name)
        return bool(machine and machine["online"] and f"for machine '{self.name}'" in self.process.log())

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        return self.process.stop(sig) if self.process else None
