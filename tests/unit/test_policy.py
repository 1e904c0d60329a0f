"""The agent's own policy: tool switches, read-only mode, the command allow-list, the secrets
deny-list and path checks made on the opened file. Real files in tmp_path; nothing else touched."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from agent import files, operations, policy
from agent.config import AgentConfig, ConfigError
from agent.errors import OperationError


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text("[default]\n")
    (home / ".docker").mkdir()
    (home / ".docker" / "config.json").write_text("{}\n")
    (home / ".docker" / "other.json").write_text("{}\n")
    (home / "project").mkdir()
    (home / "project" / "notes.txt").write_text("hello\n")
    return home


@pytest.fixture
def config(home: Path, tmp_path: Path) -> AgentConfig:
    env_file = tmp_path / "agent.env"
    env_file.write_text("AUTH_TOKEN=secret-in-the-env-file\n")
    return AgentConfig.from_env({
        "RELAY_URL": "http://127.0.0.1:9", "AUTH_TOKEN": "t" * 20, "HOME": str(home),
        "ALLOWED_ROOTS": f"{home}:{tmp_path}", "CODE_REMOTE_ENV_FILE": str(env_file), "MACHINE_NAME": "unit",
    })


@pytest.fixture
def paths(config: AgentConfig) -> files.PathPolicy:
    return files.PathPolicy(config.roots, config.home, policy.deny_paths(config.home, config.deny_paths, config.env_file))


def _outcome(tool, arguments, config, paths):
    return operations.outcome(tool, arguments, 5.0, config, paths)


@pytest.mark.parametrize(
    "relative",
    [".ssh/id_ed25519", ".ssh", ".aws/credentials", ".docker/config.json", "~/.ssh/../.ssh/id_ed25519"],
)
def test_secrets_are_denied_to_every_file_tool(home, config, paths, relative):
    path = relative if relative.startswith("~") else str(home / relative)
    for tool, arguments in (("read_file", {"path": path}), ("list_directory", {"path": path}), ("write_file", {"path": path, "content": "x"})):
        result = _outcome(tool, arguments, config, paths)
        assert result["status"] == "failed" and result["error"]["code"] == "path_denied", (tool, result)


def test_the_agents_own_env_file_is_denied(config, paths):
    result = _outcome("read_file", {"path": config.env_file}, config, paths)
    assert result["error"]["code"] == "path_denied"


def test_a_symlink_to_a_secret_is_denied(home, config, paths):
    (home / "project" / "innocent").symlink_to(home / ".ssh" / "id_ed25519")
    result = _outcome("read_file", {"path": str(home / "project" / "innocent")}, config, paths)
    assert result["error"]["code"] == "path_denied"


def test_neighbours_of_denied_paths_are_allowed(home, config, paths):
    result = _outcome("read_file", {"path": str(home / ".docker" / "other.json")}, config, paths)
    assert result["status"] == "succeeded"


def test_extra_deny_paths_add_to_the_defaults(home, config):
    narrowed = files.PathPolicy(config.roots, config.home, policy.deny_paths(config.home, (str(home / "project"),)))
    result = _outcome("read_file", {"path": str(home / "project" / "notes.txt")}, config, narrowed)
    assert result["error"]["code"] == "path_denied"


def test_read_only_mode_allows_reading_only(home, config, paths):
    read_only = dataclasses.replace(config, read_only=True)
    assert _outcome("read_file", {"path": str(home / "project" / "notes.txt")}, read_only, paths)["status"] == "succeeded"
    assert _outcome("list_directory", {"path": str(home)}, read_only, paths)["status"] == "succeeded"
    for tool, arguments in (("write_file", {"path": str(home / "x"), "content": "x"}), ("run_shell_command", {"command": "true"})):
        result = _outcome(tool, arguments, read_only, paths)
        assert result["error"]["code"] == "read_only", result
    assert not (home / "x").exists()


def test_disabled_tools_are_refused(config, paths):
    disabled = dataclasses.replace(config, disabled_tools=frozenset({"run_shell_command"}))
    result = _outcome("run_shell_command", {"command": "echo hi"}, disabled, paths)
    assert result["error"]["code"] == "tool_disabled"


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        ("git status", True),
        ("git status --short", True),
        ("ls", True),
        ("ls -la", True),
        ("lsblk", False),
        ("git statusx", False),
        ("git status; rm -rf ~", False),
        ("git status && curl x", False),
        ("ls | sh", False),
        ("ls $(rm -rf ~)", False),
        ("ls `id`", False),
        ("ls > /tmp/x", False),
        ("ls\nrm -rf ~", False),
        ("rm -rf ~", False),
    ],
)
def test_command_allow_list(config, paths, command, allowed):
    limited = dataclasses.replace(config, command_prefixes=("git status", "ls"))
    result = _outcome("run_shell_command", {"command": command, "working_dir": config.home}, limited, paths)
    if allowed:
        assert result["status"] == "succeeded", result
    else:
        assert result["error"]["code"] == "command_not_allowed", result


def test_policy_settings_come_from_the_environment(tmp_path):
    base = {"RELAY_URL": "http://127.0.0.1:9", "AUTH_TOKEN": "t" * 20, "HOME": str(tmp_path), "CODE_REMOTE_ENV_FILE": str(tmp_path / "none")}
    config = AgentConfig.from_env(base | {"READ_ONLY": "1", "DISABLED_TOOLS": "write_file", "ALLOWED_COMMANDS": "git log, ls"})
    assert config.read_only and config.disabled_tools == {"write_file"} and config.command_prefixes == ("git log", "ls")
    with pytest.raises(ConfigError, match="unknown tool 'rm'"):
        AgentConfig.from_env(base | {"DISABLED_TOOLS": "rm"})
    with pytest.raises(ConfigError, match="READ_ONLY must be 1 or 0"):
        AgentConfig.from_env(base | {"READ_ONLY": "maybe"})


# --- checks on the opened file ----------------------------------------------------------------


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(home, tmp_path, paths):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("outside\n")
    real = paths.resolve(str(home / "project" / "notes.txt"))
    # Between the check and the open, the folder becomes a link to somewhere else.
    os.rename(home / "project", home / "project.old")
    (home / "project").symlink_to(outside)
    with pytest.raises(OperationError) as caught:
        paths.open(real, os.O_RDONLY)
    assert caught.value.code == "path_changed"


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused(home, paths):
    target = home / "project" / "notes.txt"
    real = paths.resolve(str(target))
    target.unlink()
    target.symlink_to(home / ".ssh" / "id_ed25519")
    with pytest.raises(OperationError) as caught:
        paths.open(real, os.O_RDONLY)
    assert caught.value.code == "path_changed"


def test_open_verified_reports_the_kernels_path(home):
    fd, opened = policy.open_verified(str(home / "project" / "notes.txt"), os.O_RDONLY)
    os.close(fd)
    assert opened == str(home / "project" / "notes.txt")


@pytest.mark.parametrize("bad", ["relative/path", "/a/../b", "/a/./b"])
def test_open_verified_wants_a_resolved_absolute_path(bad):
    with pytest.raises(OperationError) as caught:
        policy.open_verified(bad, os.O_RDONLY)
    assert caught.value.code == "invalid_path"


def test_proc_self_root_does_not_lead_out_of_the_roots(config, paths):
    result = _outcome("read_file", {"path": "/proc/self/root/etc/hostname"}, config, paths)
    assert result["error"]["code"] == "path_outside_roots"


def test_fifos_and_devices_are_not_read(home, config, paths):
    fifo = home / "project" / "pipe"
    os.mkfifo(fifo)
    result = _outcome("read_file", {"path": str(fifo)}, config, paths)
    assert result["error"]["code"] == "not_a_file"
    wide = files.PathPolicy(("/dev",), config.home)
    result = _outcome("read_file", {"path": "/dev/zero"}, config, wide)
    assert result["error"]["code"] == "not_a_file"


def _agent_policy(config: AgentConfig, **changes) -> files.PathPolicy:
    return files.PathPolicy.for_config(dataclasses.replace(config, **changes))


def test_a_hard_link_to_a_key_is_judged_by_identity_and_a_refused_write_truncates_nothing(home, config, tmp_path):
    gate = _agent_policy(config)
    os.link(home / ".ssh" / "id_ed25519", tmp_path / "harmless.txt")
    real = gate.resolve(str(tmp_path / "harmless.txt"))  # the path alone says nothing
    with pytest.raises(OperationError, match="same file as .*id_ed25519") as caught:
        gate.resolve(str(tmp_path / "harmless.txt"), write=True)
    assert caught.value.code == "path_denied"
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_TRUNC):
        with pytest.raises(OperationError, match="same file as .*id_ed25519") as caught:
            gate.open(real, flags, write=flags != os.O_RDONLY)
        assert caught.value.code == "path_denied"
    assert (home / ".ssh" / "id_ed25519").read_text() == "PRIVATE KEY\n"


@pytest.mark.parametrize("name", ["vault.kdbx", "old.keychain-db", "secring.gpg"])
def test_vault_files_are_refused_by_name_in_any_root(config, tmp_path, name):
    (tmp_path / name).write_text("vault\n")
    with pytest.raises(OperationError, match="deny-list"):
        _agent_policy(config).resolve(str(tmp_path / name))


def test_persistence_is_refused_for_writes_only_and_the_setting_lifts_it(home, config):
    gate = _agent_policy(config)
    assert gate.resolve("~/.bashrc") == str(home / ".bashrc")
    with pytest.raises(OperationError, match="ALLOW_PERSISTENCE_WRITES=1") as caught:
        gate.resolve("~/.config/systemd/user/x.service", write=True)
    assert caught.value.code == "persistence_denied"
    allowed = AgentConfig.from_env({"RELAY_URL": "http://127.0.0.1:9", "AUTH_TOKEN": "t" * 20, "HOME": str(home),
                                    "ALLOW_PERSISTENCE_WRITES": "1", "CODE_REMOTE_ENV_FILE": "/nonexistent"})
    assert files.PathPolicy.for_config(allowed).resolve("~/.bashrc", write=True) == str(home / ".bashrc")


def test_the_state_folder_is_refused(config, tmp_path):
    state = tmp_path / "state"
    (state / "outbox").mkdir(parents=True)
    gate = _agent_policy(config, state_dir=str(state))
    with pytest.raises(OperationError, match="deny-list"):
        gate.resolve(str(state / "outbox"))


def test_send_input_is_a_changing_tool_refused_in_read_only_mode_and_by_name():
    with pytest.raises(OperationError) as refused:
        policy.check_call("send_input", {}, disabled=frozenset(), read_only=True, command_prefixes=())
    assert refused.value.code == "read_only"
    with pytest.raises(OperationError) as refused:
        policy.check_call("send_input", {}, disabled=frozenset({"send_input"}), read_only=False, command_prefixes=())
    assert refused.value.code == "tool_disabled"


def test_a_piped_stdin_is_refused_where_send_input_is_disabled_or_commands_are_allow_listed(config, paths):
    disabled = dataclasses.replace(config, disabled_tools=frozenset({"send_input"}))
    result = _outcome("run_shell_command", {"command": "cat", "stdin": "pipe"}, disabled, paths)
    assert result["error"]["code"] == "tool_disabled" and "send_input" in result["error"]["message"]
    assert _outcome("run_shell_command", {"command": "echo hi"}, disabled, paths)["status"] == "succeeded"
    listed = dataclasses.replace(config, command_prefixes=("cat",))
    result = _outcome("run_shell_command", {"command": "cat", "stdin": "pipe"}, listed, paths)
    assert result["error"]["code"] == "command_not_allowed" and "ALLOWED_COMMANDS" in result["error"]["message"]


def test_disabled_tools_may_name_send_input(home, tmp_path):
    config = AgentConfig.from_env({
        "RELAY_URL": "http://127.0.0.1:9", "AUTH_TOKEN": "t" * 20, "HOME": str(home), "MACHINE_NAME": "unit",
        "DISABLED_TOOLS": "send_input", "CODE_REMOTE_ENV_FILE": str(tmp_path / "none.env"),
    })
    assert config.disabled_tools == frozenset({"send_input"})
