"""Running on a PaaS: several workers need PostgreSQL (refused on SQLite, with a message that says what to
set), and the platform files (app.json, render.yaml, fly.toml) say what the platforms need."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.cluster import VENV_BIN, procfile
from tests.harness import PYTHON, ROOT, TOKEN, base_env, free_port

GUNICORN = str(Path(PYTHON).with_name("gunicorn"))


def _start(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a server command as a platform would; it must exit by itself (a refusal), so a timeout fails."""
    environment = base_env(AUTH_TOKEN=TOKEN, PORT=str(free_port()), HOST="127.0.0.1", HOME=str(tmp_path),
                           PATH=VENV_BIN + ":/usr/bin:/bin", **env)
    environment.pop("XDG_RUNTIME_DIR", None)
    return subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


def _assert_refused(done: subprocess.CompletedProcess, workers: int) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"refusing to start {workers} gunicorn workers on SQLite" in output, output
    assert "Set WEB_CONCURRENCY=1" in output and "DATABASE_URL=postgresql://" in output, output
    assert "Booting worker" not in output, "refused before any worker starts or any port is bound"


@pytest.mark.parametrize("database_url", ["", "sqlite:///{tmp}/code-remote.db"])
def test_web_concurrency_2_on_sqlite_is_refused_with_what_to_set(tmp_path, database_url):
    done = _start([GUNICORN, "-c", "gunicorn.conf.py", "wsgi:app"], tmp_path, WEB_CONCURRENCY="2",
                  DATABASE_URL=database_url.format(tmp=tmp_path))
    _assert_refused(done, 2)
    assert ("DATABASE_URL is unset, so SQLite is used" if not database_url else "DATABASE_URL is not PostgreSQL") in done.stderr


def test_workers_from_the_command_line_on_sqlite_are_refused_too(tmp_path):
    done = _start([GUNICORN, "-c", "gunicorn.conf.py", "-w", "3", "wsgi:app"], tmp_path,
                  DATABASE_URL=f"sqlite:///{tmp_path}/code-remote.db")
    _assert_refused(done, 3)


def test_the_procfile_web_line_with_web_concurrency_2_on_sqlite_exits_with_the_reason(tmp_path):
    """What a Procfile platform's log shows when its buildpack sets WEB_CONCURRENCY on SQLite."""
    done = _start(["/bin/sh", "-c", procfile()["web"]], tmp_path, WEB_CONCURRENCY="2",
                  DATABASE_URL=f"sqlite:///{tmp_path}/code-remote.db")
    _assert_refused(done, 2)
    assert "migrations: applied" in done.stdout + done.stderr, "the web line migrated before gunicorn refused"
