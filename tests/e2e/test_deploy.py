"""Deployment as users do it: the Procfile under a real Procfile runner, the agent's setup and run
scripts, the service definitions, and the container and Fly files (checked as far as this machine can:
no Docker engine runs here, so images are not built)."""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.harness import PYTHON, ROOT, Agent, Process, Server, base_env, free_port, wait_for
from tests.mcp_client import call_tool
from tests.proxies import agent_network_env

VENV_BIN = str(Path(PYTHON).parent)
HONCHO = str(Path(PYTHON).with_name("honcho"))


def _paas_env(server: Server, tmp_path: Path) -> dict[str, str]:
    """What a PaaS gives the app: its config vars and a PATH whose `python` is the app's."""
    env = dict(server.env)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    (tmp_path / "empty.env").write_text("")
    return env


def test_procfile_release_then_web_under_honcho_serves_an_mcp_call(tmp_path):
    server = Server(tmp_path / "server", port=free_port())
    env = _paas_env(server, tmp_path)
    runner = [HONCHO, "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "-e", str(tmp_path / "empty.env"), "--no-colour"]

    release = subprocess.run([*runner, "start", "release"], env=env, capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stdout + release.stderr
    assert "migrations: applied" in release.stdout

    server.process = Process([*runner, "start", "-p", str(server.port), "web"], env=env, log_path=tmp_path / "honcho.log")
    agent = None
    try:
        wait_for(server._healthy, timeout=30, what=f"the Procfile's web process (log: {tmp_path / 'honcho.log'})")
        assert "database already current" in server.process.log(), "the web line runs migrations too, for PaaS without a release phase"
        assert "Using worker: GuardedGeventWorker" in server.process.log(), "the gevent worker, with its guards (gunicorn_worker.py)"
        agent = Agent(server, tmp_path, "paas-box").start()
        result = call_tool("sse", server.url + "/sse", server.token, "run_shell_command", {"command": "echo from-procfile"})
        assert not result["is_error"] and "from-procfile" in result["text"]
    finally:
        if agent:
            agent.stop()
        server.stop()


def test_two_servers_on_one_host_write_nothing_into_their_home_or_runtime_folder(tmp_path):
    """gunicorn 27 opens a control socket under $XDG_RUNTIME_DIR or $HOME by default; two instances
    would share it, and a test run would create it in the real home."""
    servers = [Server(tmp_path / f"server-{i}") for i in (1, 2)]

    def written() -> list[str]:
        found = [p for server in servers for p in (*server.home.rglob("*"), *server.runtime_dir.rglob("*"))]
        return sorted(str(p.relative_to(tmp_path)) for p in found)

    try:
        for server in servers:
            server.start()
        for server in servers:
            assert server.health()["status"] == "ok"
        assert written() == [], "a running server wrote into its HOME or XDG_RUNTIME_DIR"
    finally:
        for server in servers:
            server.stop()
    assert written() == []
    for server in servers:
        assert "control socket" not in server.process.log().lower()


def _shell_scripts() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    scripts = [ROOT / "agent/setup.sh", ROOT / "agent/run.sh"]
    for name in tracked:
        path = ROOT / name
        if path.suffix == ".sh" or (path.is_file() and path.read_bytes()[:40].startswith((b"#!/usr/bin/env bash", b"#!/bin/sh", b"#!/bin/bash"))):
            scripts.append(path)
    return sorted(set(p for p in scripts if p.exists()))


def test_every_shell_script_passes_shellcheck():
    scripts = _shell_scripts()
    assert ROOT / "agent/setup.sh" in scripts and ROOT / ".ci/run" in scripts
    done = subprocess.run(["shellcheck", "--shell=bash", *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def installed(tmp_path) -> Path:
    """The agent folder as a user has it (a copy, so setup writes its .env there, not in this checkout)."""
    target = tmp_path / "install"
    shutil.copytree(ROOT / "agent", target / "agent", ignore=shutil.ignore_patterns(".env", ".venv", "__pycache__"))
    return target / "agent"


def _setup(installed: Path, answers: str, home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = base_env(PYTHON=PYTHON, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_STATE_HOME=str(home / ".local/state"))
    env.update(agent_network_env())
    env.update(extra)
    # A systemctl that records its arguments and fails, as with no user session: the test never
    # touches this machine's real service manager.
    stub = home / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {home / "systemctl.calls"}\nexit 1\n')
    (stub / "systemctl").chmod(0o755)
    env["PATH"] = f"{stub}:/usr/bin:/bin"
    return subprocess.run(["bash", str(installed / "setup.sh"), *args], input=answers, env=env,
                          capture_output=True, text=True, timeout=120)


def test_setup_checks_the_answers_then_writes_an_env_file_only_the_user_can_read(live_server, installed, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    wrong = _setup(installed, f"{live_server.url}\nnot-the-token-at-all\nsetup-box\n\n\n\n\n", home)
    assert wrong.returncode == 1
    assert "FAIL  token" in wrong.stderr and "nothing was saved" in wrong.stderr
    assert not (installed / ".env").exists()
    assert "not-the-token-at-all" not in wrong.stderr + wrong.stdout

    done = _setup(installed, f"{live_server.url}\n{live_server.token}\nsetup-box\n{home}\n\n\n\n", home)
    assert done.returncode == 0, done.stderr
    env_file = installed / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    lines = env_file.read_text().splitlines()
    assert f"RELAY_URL={live_server.url}" in lines and f"AUTH_TOKEN={live_server.token}" in lines
    assert "MACHINE_NAME=setup-box" in lines and f"ALLOWED_ROOTS={home}" in lines
    assert not any(line.startswith(("HTTPS_PROXY", "CA_BUNDLE")) for line in lines)
    assert live_server.token not in done.stderr + done.stdout

    # Run again keeping every answer (Enter), as an upgrade would: settings setup does not ask about stay.
    env_file.write_text(env_file.read_text() + "READ_ONLY=1\n")
    again = _setup(installed, "\n" * 7, home)
    assert again.returncode == 0, again.stderr
    assert env_file.read_text().splitlines()[1:] == lines[1:] + ["READ_ONLY=1"]


def test_setup_service_installs_a_systemd_user_unit_carrying_proxy_and_ca(live_server, installed, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    bundle = tmp_path / "corp-ca.pem"
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", bundle)
    done = _setup(installed, "", home, "--yes", "--service", RELAY_URL=live_server.url, AUTH_TOKEN=live_server.token,
                  MACHINE_NAME="svc-box", CA_BUNDLE=str(bundle), no_proxy="127.0.0.1,localhost")
    assert done.returncode == 0, done.stderr
    unit = home / ".config/systemd/user/code-remote-agent.service"
    text = unit.read_text()
    assert f"ExecStart={installed}/run.sh" in text
    assert f'"CA_BUNDLE={bundle}"' in text and '"no_proxy=127.0.0.1,localhost"' in text
    assert "HTTPS_PROXY" not in text.split("[Service]")[1], "an unset proxy is left out, not set empty"
    assert "systemctl --user daemon-reload && systemctl --user enable --now code-remote-agent" in done.stderr
    assert (home / "systemctl.calls").read_text() == "--user daemon-reload\n"
    _systemd_verify(unit, tmp_path)


def _systemd_verify(unit: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = base_env(XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path))
    done = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def _render(kind: str, **values: str) -> str:
    env = base_env(AGENT_DIR=str(ROOT / "agent"), LOG_DIR="/home/al/.local/state/code-remote/logs", **values)
    done = subprocess.run([PYTHON, str(ROOT / "agent/service/render.py"), kind], env=env, capture_output=True, text=True, check=True)
    return done.stdout


TRICKY = {"HTTPS_PROXY": "http://al:p%40ss&<w>\"rd@proxy.corp:3128", "NO_PROXY": ".corp.example,localhost", "CA_BUNDLE": "/etc/corp ca/root.pem"}


def test_launchd_plist_parses_and_carries_proxy_and_ca_exactly():
    template = plistlib.loads((ROOT / "agent/service/com.coderemote.agent.plist").read_bytes())
    assert template["Label"] == "com.coderemote.agent" and template["KeepAlive"] is True
    rendered = plistlib.loads(_render("launchd", **TRICKY).encode())
    env = rendered["EnvironmentVariables"]
    assert env["HTTPS_PROXY"] == env["https_proxy"] == TRICKY["HTTPS_PROXY"]
    assert env["NO_PROXY"] == env["no_proxy"] == TRICKY["NO_PROXY"] and env["CA_BUNDLE"] == TRICKY["CA_BUNDLE"]
    assert rendered["ProgramArguments"] == [str(ROOT / "agent/run.sh")]
    bare = plistlib.loads(_render("launchd").encode())["EnvironmentVariables"]
    assert "HTTPS_PROXY" not in bare and "CA_BUNDLE" not in bare


def test_systemd_unit_verifies_and_carries_proxy_and_ca_escaped(tmp_path):
    unit = tmp_path / "code-remote-agent.service"
    unit.write_text(_render("systemd", **TRICKY))
    _systemd_verify(unit, tmp_path)
    text = unit.read_text()
    assert '"HTTPS_PROXY=http://al:p%%40ss&<w>\\"rd@proxy.corp:3128"' in text
    assert '"CA_BUNDLE=/etc/corp ca/root.pem"' in text


def test_run_sh_runs_the_agent_with_rotated_logs(live_server, tmp_path):
    agent = Agent(live_server, tmp_path, "run-sh-box")
    logs = tmp_path / "logs"
    agent.env.update(PYTHON=PYTHON, LOG_DIR=str(logs), LOG_MAX_BYTES="400", LOG_BACKUPS="2")
    agent.process = Process(["bash", str(ROOT / "agent/run.sh")], env=agent.env, log_path=tmp_path / "run-sh.out")
    try:
        wait_for(lambda: live_server.machines().get("run-sh-box", {}).get("online"), timeout=20, what="the agent run by run.sh")
        for n in range(6):
            result = call_tool("sse", live_server.url + "/sse", live_server.token, "run_shell_command",
                               {"command": f"echo rotate-{n}", "machine": "run-sh-box"})
            assert not result["is_error"]
        wait_for(lambda: (logs / "agent.log.1").exists(), timeout=10, what="a rotated log")
    finally:
        agent.process.stop()
    assert (logs / "agent.log.2").exists() and not (logs / "agent.log.3").exists(), "LOG_BACKUPS rotated files are kept"
    assert all((logs / name).stat().st_size <= 400 + 200 for name in ("agent.log", "agent.log.1", "agent.log.2"))
    assert "agent stopped" in (logs / "agent.log").read_text()
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert (tmp_path / "run-sh.out").read_text() == "", "everything goes to the log file"


# --- container and Fly files -----------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "agent/Dockerfile"])
def test_dockerfile_copies_files_that_exist_and_runs_as_a_non_root_user(dockerfile):
    steps = _instructions(ROOT / dockerfile)
    assert steps[0][0] == "FROM" and "python:3.11" in steps[0][1]
    ignored = (ROOT / ".dockerignore").read_text().split()
    for keyword, rest in steps:
        if keyword == "COPY" and not rest.startswith("--from="):  # --from copies out of another image
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"{dockerfile}: COPY {source} does not exist"
                assert source not in ignored, f"{dockerfile}: COPY {source} is excluded by .dockerignore"
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_user = max(i for i, (keyword, _) in enumerate(steps) if keyword == "USER")
    assert steps[-1][0] == "CMD" and last_user < len(steps) - 1
    assert "--preload" not in (ROOT / dockerfile).read_text()


def test_dockerfiles_pass_hadolint():
    hadolint = str(Path(PYTHON).with_name("hadolint"))
    done = subprocess.run([hadolint, "--no-color", "Dockerfile", "agent/Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_server_image_runs_the_start_script_which_runs_the_procfile_web_line():
    steps = _instructions(ROOT / "Dockerfile")
    assert dict(steps)["CMD"] == '["scripts/start-server"]'
    assert ("COPY", "scripts/start-server ./scripts/start-server") in steps
    assert any(k == "COPY" and "Procfile" in rest.split() for k, rest in steps), "the script reads the Procfile"
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert procfile["release"] == "python -m migrations"
    assert procfile["web"] == "python -m migrations && exec gunicorn -c gunicorn.conf.py wsgi:app"


def test_agent_image_confines_the_agent_to_its_workspace():
    env = " ".join(rest for keyword, rest in _instructions(ROOT / "agent/Dockerfile") if keyword == "ENV")
    assert "ALLOWED_ROOTS=/workspace" in env and "HOME=/workspace" in env
    assert "CODE_REMOTE_ENV_FILE=/opt/code-remote/agent/.env" in env, "never read a .env from the user's project"


def test_compose_runs_the_server_and_a_sandboxed_agent_in_the_full_profile():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    server, agent = compose["services"]["server"], compose["services"]["agent"]
    for service in (server, agent):
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert "profiles" not in server and agent["profiles"] == ["full"]
    assert "AUTH_TOKEN:?" in server["environment"]["AUTH_TOKEN"]
    assert server["ports"] == ["127.0.0.1:${PORT:-8000}:8000"], "published on loopback only: TLS goes in front"
    assert "server-data:/data" in server["volumes"] and "server-data" in compose["volumes"]
    assert agent["environment"]["RELAY_URL"] == "http://server:8000"
    assert agent["depends_on"]["server"]["condition"] == "service_healthy"
    assert agent["read_only"] is True and agent["cap_drop"] == ["ALL"] and "no-new-privileges:true" in agent["security_opt"]
    assert "./workspace:/workspace" in agent["volumes"] and not agent["user"].startswith("0")
    assert server["stop_grace_period"] == "35s", "longer than a held poll"


def test_fly_config_keeps_one_machine_running_with_a_volume_and_a_health_check():
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    service = fly["http_service"]
    assert service["internal_port"] == int(fly["env"]["PORT"]) == 8000
    assert service["auto_stop_machines"] == "off" and service["min_machines_running"] >= 1
    assert service["checks"][0]["path"] == "/health"
    assert fly["env"]["DATABASE_URL"] == f"sqlite:///{fly['mounts']['destination']}/code-remote.db"
    assert service["concurrency"]["hard_limit"] < 4000, "below gunicorn's worker_connections"
    assert "release_command" not in fly.get("deploy", {}), "Fly's release machine has no volume: SQLite migrates at start"
    assert (ROOT / fly["build"]["dockerfile"]).is_file()
