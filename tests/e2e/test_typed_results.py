"""Typed results through the whole stack: every existing tool declares an output schema and true
annotations, and answers structuredContent that the official client validates against it, over
/mcp and /sse, error results about commands included."""

from __future__ import annotations

import json

import anyio
import pytest

from tests.mcp_client import open_session

ENDPOINTS = {"http": "/mcp", "sse": "/sse"}


@pytest.mark.parametrize("transport", ["http", "sse"])
def test_every_existing_tool_answers_structured_content_the_client_accepts(live_server, live_agent, transport):
    home = str(live_agent.home)

    async def scenario():
        # The official client validates each successful result against the tool's outputSchema and
        # refuses one without structuredContent: a wrong shape fails the call itself.
        async with open_session(transport, live_server.url + ENDPOINTS[transport], live_server.token) as s:
            tools = {t["name"]: t for t in await s.list_tools()}
            for name in ("run_shell_command", "get_command_output", "cancel_command", "list_commands",
                         "read_file", "write_file", "list_directory", "check_agent_status"):
                assert tools[name]["outputSchema"]["type"] == "object", name
                assert tools[name]["annotations"]["readOnlyHint"] is not None, name

            shell = await s.call_tool("run_shell_command", {"command": "echo hi; echo oops >&2; exit 3"})
            typed = shell["structured"]
            assert not shell["is_error"] and "[exit code 3]" in shell["text"]
            assert typed["state"] == "succeeded" and typed["exit_code"] == 3 and typed["signal"] is None
            assert typed["stdout"] == "hi" and typed["stderr"] == "oops"
            assert typed["truncated"] is False and typed["next_offset"] == 3
            command_id = typed["command_id"]

            page = (await s.call_tool("get_command_output", {"command_id": command_id}))["structured"]
            assert page["command_id"] == command_id and page["exit_code"] == 3 and page["output"] == "hi\n"
            assert page["next_offset"] == 3 and page["truncated"] is False and page["stored_bytes"] == 3
            page = (await s.call_tool("get_command_output", {"command_id": command_id, "stream": "stderr"}))["structured"]
            assert page["output"] == "oops\n"

            crashed = (await s.call_tool("run_shell_command", {"command": "kill -SEGV $$"}))["structured"]
            assert crashed["signal"] == {"number": 11, "name": "SIGSEGV"}

            long = (await s.call_tool("run_shell_command", {"command": "seq 1 40000"}))["structured"]
            assert long["truncated"] is True and long["next_offset"] == len("".join(f"{i}\n" for i in range(1, 40001)))
            head = (await s.call_tool("get_command_output", {"command_id": long["command_id"]}))["structured"]
            assert head["truncated"] is True and 0 < head["next_offset"] < long["next_offset"]

            slow = await s.call_tool("run_shell_command", {"command": "echo started; sleep 30", "timeout": 1})
            assert slow["is_error"] and slow["structured"]["state"] == "timed_out"
            assert slow["structured"]["stdout"] == "started"

            cancelled = (await s.call_tool("cancel_command", {"command_id": command_id}))["structured"]
            assert cancelled == {"command_id": command_id, "state": "succeeded", "message": cancelled["message"]}
            listed = (await s.call_tool("list_commands", {"machine": "box"}))["structured"]["commands"]
            assert command_id in {c["command_id"] for c in listed}
            assert {"machine", "tool", "state", "created_at"} <= set(listed[0])

            target = f"{home}/typed-{transport}.txt"
            written = (await s.call_tool("write_file", {"path": target, "content": "one\ntwo\n"}))["structured"]
            assert written["state"] == "succeeded" and written["bytes_written"] == 8 and written["path"] == target
            read = (await s.call_tool("read_file", {"path": target}))["structured"]
            assert read["content"] == "one\ntwo\n" and read["state"] == "succeeded"
            paged = (await s.call_tool("read_file", {"path": target, "limit": 1}))["structured"]
            assert paged["content"] == "one\n" and paged["next_offset"] == 2
            entries = (await s.call_tool("list_directory", {"path": home}))["structured"]["entries"]
            mine = next(e for e in entries if e["name"] == f"typed-{transport}.txt")
            assert mine == {"name": f"typed-{transport}.txt", "type": "file", "size": 8}
            assert any(e["type"] == "directory" for e in entries)

            status = await s.call_tool("check_agent_status", {})
            (box,) = [m for m in status["structured"]["machines"] if m["name"] == "box"]
            assert box["online"] and json.loads(status["text"])["machines"]  # the text stays for text-only clients

            # Errors: one the agent refused has the command's state; one refused before any command
            # exists has text only (the client does not validate error results).
            outside = await s.call_tool("read_file", {"path": "/etc/hostname"})
            assert outside["is_error"] and outside["structured"]["state"] == "failed"
            assert "outside" in outside["structured"]["message"]
            unknown = await s.call_tool("get_command_output", {"command_id": "0" * 32})
            assert unknown["is_error"] and unknown["structured"] is None and "list_commands" in unknown["text"]

    anyio.run(scenario)
