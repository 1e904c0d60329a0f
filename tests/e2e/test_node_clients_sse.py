"""Third-party MCP clients over SSE against the real server and agent: the MCP Inspector CLI, and
mcp-remote (the stdio bridge Claude Desktop uses) driven by the official Python client over stdio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest

from tests import node_clients
from tests.mcp_client import open_session

FIVE_TOOLS = {"run_shell_command", "read_file", "write_file", "list_directory", "check_agent_status"}

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (node_clients.NODE_DIR / "node_modules").is_dir(),
    reason=f"node clients not installed: {node_clients.INSTALL_HINT}",
)


def test_the_inspector_cli_drives_all_five_tools_over_sse(live_server, live_agent, tmp_path):
    url = live_server.url + "/sse"
    options = {"transport": "sse", "headers": live_server.headers(), "home": tmp_path}
    assert {t["name"] for t in node_clients.inspector_list_tools(url, **options)} >= FIVE_TOOLS

    def call(name: str, arguments: dict) -> str:
        result = node_clients.inspector_call_tool(url, name, arguments, **options)
        assert not result.get("isError"), result
        return "\n".join(c["text"] for c in result["content"] if c["type"] == "text")

    target = live_agent.scratch / "inspector.txt"
    status = json.loads(call("check_agent_status", {}))
    assert [m["name"] for m in status["machines"] if m["online"]] == [live_agent.name]
    assert "from the inspector" in call("run_shell_command", {"command": "echo from the inspector; exit 2"})
    assert "wrote 6 bytes" in call("write_file", {"path": str(target), "content": "ünï\n"})
    assert call("read_file", {"path": str(target)}) == "ünï\n"
    assert "inspector.txt" in call("list_directory", {"path": str(live_agent.scratch)})
    refused = node_clients.inspector_call_tool(url, "read_file", {"path": "/etc/hostname"}, **options)
    assert refused["isError"] and "outside the allowed roots" in refused["content"][0]["text"]


def test_mcp_remote_over_sse_drives_all_five_tools(live_server, live_agent, tmp_path):
    argv = node_clients.mcp_remote_cmd(live_server.url + "/sse", transport="sse-only", headers=live_server.headers())
    target = live_agent.scratch / "remote.txt"

    async def scenario():
        with anyio.fail_after(90), open(tmp_path / "mcp-remote.log", "w") as errlog:
            env = node_clients.isolated_env(tmp_path, inherit=False)
            async with open_session("stdio", argv=argv, env=env, cwd=str(tmp_path), errlog=errlog, mode="legacy") as s:
                assert set(await s.tool_names()) >= FIVE_TOOLS
                status = json.loads((await s.call_tool("check_agent_status", {}))["text"])
                assert any(m["name"] == live_agent.name and m["online"] for m in status["machines"])
                shell = await s.call_tool("run_shell_command", {"command": "echo via mcp-remote"})
                assert not shell["is_error"] and "via mcp-remote" in shell["text"]
                written = await s.call_tool("write_file", {"path": str(target), "content": "remote\n"})
                assert not written["is_error"], written["text"]
                assert (await s.call_tool("read_file", {"path": str(target)}))["text"] == "remote\n"
                listing = await s.call_tool("list_directory", {"path": str(live_agent.scratch)})
                assert "remote.txt" in listing["text"]

    anyio.run(scenario)
    assert target.read_text() == "remote\n"
    # It reached us over SSE (POST /messages; GET /sse is logged only when its stream ends), never /mcp.
    log = live_server.process.log()
    assert '"POST /messages' in log and '"POST /mcp' not in log
