"""Settings as the docs write them, through the real server and agent: sizes with units, and the
command timeout's default and maximum shown and enforced from the server's settings."""

from __future__ import annotations

import pytest

from tests.harness import Agent, Server
from tests.mcp_client import call_tool, list_tools


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    env = {"MAX_STORED_OUTPUT_BYTES": "1MiB", "TOOL_OUTPUT_BUDGET_BYTES": "40 kB", "COMMAND_TIMEOUT_SECONDS": "7", "MAX_COMMAND_TIMEOUT_SECONDS": "120"}
    server = Server(tmp_path_factory.mktemp("settings"), env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(server, tmp_path_factory) -> Agent:
    agent = Agent(server, tmp_path_factory.mktemp("settings-agent"), "box", env={"MAX_OUTPUT_BYTES": "10k", "MAX_READ_BYTES": "1MB"}).start()
    yield agent
    agent.stop()


def test_an_agent_with_sizes_written_with_units_caps_output_at_them(server, agent):
    result = call_tool("http", server.url + "/mcp", server.token, "run_shell_command", {"command": "head -c 20000 /dev/zero | tr '\\0' x"})
    assert not result["is_error"], result["text"]
    # 20000 bytes printed, 10k (10 240) kept.
    assert "9760 more bytes of stdout were dropped" in result["text"], result["text"][-300:]


def test_the_timeout_default_and_maximum_come_from_the_server_settings(server, agent):
    (shell,) = [t for t in list_tools("http", server.url + "/mcp", server.token) if t["name"] == "run_shell_command"]
    timeout = shell["inputSchema"]["properties"]["timeout"]
    assert timeout["maximum"] == 120 and "default 7, at most 120" in timeout["description"]
    refused = call_tool("http", server.url + "/mcp", server.token, "run_shell_command", {"command": "true", "timeout": 121})
    assert refused["is_error"] and "at most 120" in refused["text"]
    allowed = call_tool("http", server.url + "/mcp", server.token, "run_shell_command", {"command": "echo ok", "timeout": 120})
    assert not allowed["is_error"] and "ok" in allowed["text"]
