"""Configuration of the server and the agent: what is required, what the `.env` file may supply, and
how each refuses to start without its secrets (with a message that says what to do)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError as AgentConfigError, read_env_file
from tests.harness import PYTHON, ROOT, TOKEN, base_env, free_port
from web.config import Config, ConfigError


# --- server ---------------------------------------------------------------------------------------


def test_the_server_config_requires_auth_token_and_says_how_to_make_one():
    with pytest.raises(ConfigError) as caught:
        Config.from_env({})
    assert "AUTH_TOKEN is not set" in str(caught.value) and "secrets.token_urlsafe" in str(caught.value)


def test_a_short_auth_token_is_refused():
    with pytest.raises(ConfigError, match="too short"):
        Config.from_env({"AUTH_TOKEN": "short"})


def test_the_server_config_reads_its_numbers_and_database_url():
    config = Config.from_env(
        {"AUTH_TOKEN": TOKEN, "DATABASE_URL": "sqlite:///x.db", "OFFLINE_AFTER_SECONDS": "2.5", "POLL_TIMEOUT_SECONDS": "3"}
    )
    assert (config.database_url, config.offline_after_seconds, config.poll_timeout_seconds) == ("sqlite:///x.db", 2.5, 3.0)


@pytest.mark.parametrize("raw", ["soon", "0", "-1"])
def test_a_bad_number_names_the_variable(raw):
    with pytest.raises(ConfigError, match="POLL_TIMEOUT_SECONDS"):
        Config.from_env({"AUTH_TOKEN": TOKEN, "POLL_TIMEOUT_SECONDS": raw})


def test_gunicorn_refuses_to_start_the_server_without_auth_token(tmp_path):
    env = base_env(PORT=str(free_port()), HOST="127.0.0.1", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}")
    gunicorn = str(Path(PYTHON).with_name("gunicorn"))
    proc = subprocess.run([gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "AUTH_TOKEN is not set; make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'" in proc.stdout + proc.stderr


# --- agent ----------------------------------------------------------------------------------------


def agent_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """An agent environment that reads no .env file unless one is named."""
    return {"HOME": str(tmp_path), "CODE_REMOTE_ENV_FILE": str(tmp_path / "absent.env"), **values}


def test_the_agent_requires_relay_url(tmp_path):
    with pytest.raises(AgentConfigError, match="RELAY_URL is not set"):
        AgentConfig.from_env(agent_env(tmp_path, AUTH_TOKEN=TOKEN))


def test_the_agent_requires_auth_token(tmp_path):
    with pytest.raises(AgentConfigError, match="AUTH_TOKEN is not set"):
        AgentConfig.from_env(agent_env(tmp_path, RELAY_URL="http://127.0.0.1:9"))


def test_the_agent_refuses_a_relay_url_without_a_scheme(tmp_path):
    with pytest.raises(AgentConfigError, match="must start with http:// or https://"):
        AgentConfig.from_env(agent_env(tmp_path, RELAY_URL="relay.example.com", AUTH_TOKEN=TOKEN))


def test_the_agent_reads_its_env_file_and_the_environment_wins(tmp_path):
    env_file = tmp_path / "agent.env"
    env_file.write_text(
        "# Code Remote agent\n"
        "export RELAY_URL='http://127.0.0.1:9/'\n"
        'AUTH_TOKEN="from-the-file-0123456789"\n'
        "\n"
        "MACHINE_NAME=from-file\n"
        "ALLOWED_ROOTS=/srv/a:/srv/b\n"
        "not a setting\n"
    )
    config = AgentConfig.from_env({"HOME": str(tmp_path), "CODE_REMOTE_ENV_FILE": str(env_file), "MACHINE_NAME": "from-env"})
    assert config.relay_url == "http://127.0.0.1:9"
    assert config.auth_token == "from-the-file-0123456789"
    assert config.machine_name == "from-env"
    assert config.roots == ("/srv/a", "/srv/b")


def test_the_agent_roots_default_to_home_and_the_temp_folders(tmp_path):
    config = AgentConfig.from_env(agent_env(tmp_path, RELAY_URL="https://relay.example.com", AUTH_TOKEN=TOKEN))
    assert config.roots == (str(tmp_path), "/tmp", "/var/tmp")


def test_an_env_file_line_keeps_equals_signs_in_its_value(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("AUTH_TOKEN=abc=def==\n")
    assert read_env_file(env_file) == {"AUTH_TOKEN": "abc=def=="}


def run_agent(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "agent"], cwd=ROOT, env=base_env(**env), capture_output=True, text=True, timeout=60)


def test_the_agent_process_refuses_to_start_without_relay_url(tmp_path):
    proc = run_agent(agent_env(tmp_path, AUTH_TOKEN=TOKEN))
    assert proc.returncode == 2
    assert "agent: RELAY_URL is not set: the server's base URL" in proc.stderr


def test_the_agent_process_refuses_to_start_without_auth_token(tmp_path):
    proc = run_agent(agent_env(tmp_path, RELAY_URL="http://127.0.0.1:9"))
    assert proc.returncode == 2
    assert "agent: AUTH_TOKEN is not set: use the token the server was started with" in proc.stderr
