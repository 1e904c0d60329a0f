"""The whole stack through the official mcp client over SSE: all five tools, real processes."""

from __future__ import annotations

import json

import anyio

from tests.mcp_client import open_session


def test_all_five_tools_work_over_sse(live_server, live_agent):
    url = live_server.url + "/sse"

    async def scenario():
        async with open_session("sse", url, live_server.token) as s:
            assert {"run_shell_command", "read_file", "write_file", "list_directory", "check_agent_status"} <= set(
                await s.tool_names()
            )
            status = json.loads((await s.call_tool("check_agent_status", {}))["text"])
            assert status["machines"][0]["name"] == "box" and status["machines"][0]["online"]
            shell = await s.call_tool("run_shell_command", {"command": "echo hi; exit 3"})
            assert not shell["is_error"] and shell["text"].startswith("hi") and "[exit code 3]" in shell["text"]
            target = str(live_agent.home / "notes.txt")
            written = await s.call_tool("write_file", {"path": target, "content": "héllo\n"})
            assert not written["is_error"], written["text"]
            assert (await s.call_tool("read_file", {"path": target}))["text"] == "héllo\n"
            listing = await s.call_tool("list_directory", {"path": str(live_agent.home)})
            assert "notes.txt" in listing["text"]

    anyio.run(scenario)
    audit = live_server.audit()
    assert {row["tool"] for row in audit} >= {"run_shell_command", "read_file", "write_file", "list_directory", "check_agent_status"}
    write_row = next(r for r in audit if r["tool"] == "write_file")
    assert write_row["arguments"]["content"]["bytes"] == len("héllo\n".encode())
    assert "héllo" not in json.dumps(audit)
