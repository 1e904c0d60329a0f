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


# --- sizes and numbers: what the docs say is accepted, anything else names the setting -------------

SIZES = [
    ("1048576", 1048576), ("10MB", 10_000_000), ("10 MB", 10_000_000), ("10mb", 10_000_000), ("10MiB", 10 * 1024**2),
    ("10mib", 10 * 1024**2), ("10M", 10 * 1024**2), ("10k", 10 * 1024), ("10kB", 10_000), ("10KiB", 10 * 1024),
    ("1.5GiB", int(1.5 * 1024**3)), ("2G", 2 * 1024**3), ("1GB", 10**9), ("512B", 512), (" 64 KiB ", 64 * 1024),
]
BAD_SIZES = ["lots", "10 parsecs", "10MBB", "-1", "0", "0MB", "10 M B", "1e6", "MB", "", "10,5MB", "inf"]


@pytest.mark.parametrize("raw, expected", SIZES)
def test_every_size_setting_of_server_and_agent_accepts_the_same_sizes(tmp_path, raw, expected):
    server = Config.from_env({"AUTH_TOKEN": TOKEN, "MAX_STORED_OUTPUT_BYTES": raw, "TOOL_OUTPUT_BUDGET_BYTES": raw})
    assert server.max_output_bytes == server.tool_output_budget_bytes == expected
    agent = AgentConfig.from_env(agent_env(tmp_path, RELAY_URL="http://x", AUTH_TOKEN=TOKEN, MAX_OUTPUT_BYTES=raw, MAX_READ_BYTES=raw))
    assert agent.max_output_bytes == agent.max_read_bytes == expected


@pytest.mark.parametrize("raw", [r for r in BAD_SIZES if r])
@pytest.mark.parametrize("name", ["MAX_STORED_OUTPUT_BYTES", "TOOL_OUTPUT_BUDGET_BYTES", "MAX_OUTPUT_BYTES", "MAX_READ_BYTES"])
def test_a_bad_size_is_refused_naming_the_setting_and_the_accepted_forms(tmp_path, name, raw):
    with pytest.raises((ConfigError, AgentConfigError)) as caught:
        if name.startswith(("MAX_STORED", "TOOL_")):
            Config.from_env({"AUTH_TOKEN": TOKEN, name: raw})
        else:
            AgentConfig.from_env(agent_env(tmp_path, RELAY_URL="http://x", AUTH_TOKEN=TOKEN, **{name: raw}))
    assert str(caught.value).startswith(f"{name} must be") and repr(raw.strip()) in str(caught.value)


@pytest.mark.parametrize(
    "name, raw",
    [("MAX_CONCURRENT_COMMANDS", "many"), ("MAX_CONCURRENT_COMMANDS", "2.5"), ("MAX_CONCURRENT_COMMANDS", "0"),
     ("BACKOFF_MAX_SECONDS", "soon"), ("KILL_GRACE_SECONDS", "-1"), ("PROGRESS_SECONDS", "nan"), ("PROGRESS_SECONDS", "inf")],
)
def test_a_bad_agent_number_names_the_setting(tmp_path, name, raw):
    with pytest.raises(AgentConfigError, match=f"^{name} must be"):
        AgentConfig.from_env(agent_env(tmp_path, RELAY_URL="http://x", AUTH_TOKEN=TOKEN, **{name: raw}))


@pytest.mark.parametrize(
    "name, raw",
    [("MAX_QUEUED_PER_MACHINE", "1.5"), ("TRUSTED_PROXY_HOPS", "one"), ("POLL_TIMEOUT_SECONDS", "nan"), ("LEASE_SECONDS", "inf"),
     ("MAX_COMMAND_TIMEOUT_SECONDS", "0")],
)
def test_a_bad_server_number_names_the_setting(name, raw):
    with pytest.raises(ConfigError, match=f"^{name} must be"):
        Config.from_env({"AUTH_TOKEN": TOKEN, name: raw})


def test_a_default_command_timeout_over_the_maximum_is_refused():
    with pytest.raises(ConfigError, match="COMMAND_TIMEOUT_SECONDS .* is over MAX_COMMAND_TIMEOUT_SECONDS"):
        Config.from_env({"AUTH_TOKEN": TOKEN, "COMMAND_TIMEOUT_SECONDS": "600", "MAX_COMMAND_TIMEOUT_SECONDS": "300"})


def test_the_agent_process_with_a_bad_size_exits_with_one_line_naming_it(tmp_path):
    proc = run_agent(agent_env(tmp_path, RELAY_URL="http://127.0.0.1:9", AUTH_TOKEN=TOKEN, MAX_OUTPUT_BYTES="10 parsecs"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "agent: MAX_OUTPUT_BYTES must be a size such as 10MiB, 10MB, 10M, 512k or 1048576 (bytes), got '10 parsecs'" in proc.stderr


def test_server_and_agent_read_sizes_by_one_grammar():
    """The agent never imports the server and the server image carries no agent/, so the size grammar
    is written twice (web/config.py, agent/config.py): this keeps the two the same."""
    from agent import config as agent_config
    from web import config as web_config

    assert agent_config.SIZE_UNITS == web_config.SIZE_UNITS
    assert agent_config.SIZE.pattern == web_config.SIZE.pattern and agent_config.SIZE.flags == web_config.SIZE.flags
    for raw in ("1048576", "10MB", "10 mb", "10MiB", "10M", "512k", "1.5GiB", "0", "10XB", "", "-1"):
        outcomes = []
        for module, error in ((web_config, ConfigError), (agent_config, AgentConfigError)):
            try:
                outcomes.append(module.parse_size("SIZE", raw))
            except error as refused:
                outcomes.append(str(refused))
        assert outcomes[0] == outcomes[1], raw
