"""Long commands, big outputs and cancellation through real MCP clients, server and agent.

The server waits at most TOOL_WAIT seconds per call, so the long commands here are followed with
get_command_output and ended with cancel_command or notifications/cancelled, which keeps each test
to seconds. Commands that leave processes behind write their pids to scratch files, and the tests
check those processes are gone.
"""

from __future__ import annotations

import os
import re
import signal

import anyio
import pytest
import requests

from tests.harness import Agent, Server, process_alive, wait_for
from tests.mcp_client import call_tool, open_session

TOOL_WAIT = 3
TEN_MB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    server = Server(tmp_path_factory.mktemp("server"), env={"TOOL_WAIT_SECONDS": str(TOOL_WAIT)}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(server, tmp_path_factory) -> Agent:
    agent = Agent(server, tmp_path_factory.mktemp("agent"), "box", env={"PROGRESS_SECONDS": "0.3", "KILL_GRACE_SECONDS": "1"})
    agent.start()
    yield agent
    agent.stop()


def tool(server: Server, name: str, arguments: dict) -> dict:
    return call_tool("sse", server.url + "/sse", server.token, name, arguments)


def command_id(text: str) -> str:
    return re.search(r"command ([0-9a-f]{32})", text).group(1)


alive = process_alive


def final_state(server: Server, cid: str) -> str:
    text = tool(server, "get_command_output", {"command_id": cid})["text"]
    return re.search(rf"command {cid} on '\w+': (\w+)", text).group(1)


def test_ten_megabytes_of_output_show_head_and_tail_and_page_exactly(server, agent):
    result = tool(server, "run_shell_command", {"command": f"yes 0123456789abcde | head -c {TEN_MB}", "timeout": 120})
    cid = command_id(result["text"]) if "still running" in result["text"] else None
    if cid:  # the upload outlasted the call's wait: follow it, then read the final view
        wait_for(lambda: final_state(server, cid) == "succeeded", timeout=60, what="10 MB command to finish")
        result = tool(server, "get_command_output", {"command_id": cid})
    else:
        text = result["text"]
        assert text.startswith("0123456789abcde\n") and text.endswith("[exit code 0]")
        assert len(text) < 64 * 1024 and "omitted" in text
        cid = re.search(r"command_id='([0-9a-f]{32})'", text).group(1)
    middle = tool(server, "get_command_output", {"command_id": cid, "offset": 5_000_000})["text"]
    assert f"[stdout bytes 5000000-" in middle and f"of {TEN_MB} (final)]" in middle
    assert "\n0123456789abcde\n0123456789abcde\n" in middle
    end = tool(server, "get_command_output", {"command_id": cid, "offset": TEN_MB - 16})["text"]
    assert end.rstrip().endswith("[end of stdout]") and "0123456789abcde" in end


@pytest.mark.parametrize("closes_output", [False, True], ids=["writing", "output-closed"])
def test_a_sleep_300_answers_with_its_id_and_state_is_followed_and_cancelled(server, agent, closes_output):
    pidfile = agent.scratch / f"sleep300-{closes_output}.pid"
    close = "exec >/dev/null 2>&1; " if closes_output else ""
    command = f"echo started; {close}sleep 300 & echo $! > {pidfile}; wait"
    result = tool(server, "run_shell_command", {"command": command, "timeout": 600})
    text = result["text"]
    assert not result["is_error"] and "still running" in text and "may still be running" in text and "started" in text
    cid = command_id(text)
    pid = int(wait_for(lambda: pidfile.read_text().strip(), what="sleep pid"))
    assert alive(pid)
    followed = tool(server, "get_command_output", {"command_id": cid})["text"]
    assert f"command {cid} on 'box': running" in followed and "started" in followed
    cancelled = tool(server, "cancel_command", {"command_id": cid})["text"]
    assert f"command {cid} ended cancelled" in cancelled
    wait_for(lambda: not alive(pid), timeout=10, what="the sleep to be killed with its group")
    assert final_state(server, cid) == "cancelled"


def test_notifications_cancelled_cancels_a_running_sleep_300(server, agent):
    pidfile = agent.scratch / "cancelled.pid"

    async def scenario():
        async with open_session("sse", server.url + "/sse", server.token) as s:
            assert await s.call_tool_cancelled(
                "run_shell_command", {"command": f": cancel-me; sleep 300 & echo $! > {pidfile}; wait", "timeout": 600}, after=1.5
            )

    anyio.run(scenario)
    pid = int(pidfile.read_text().strip())
    wait_for(lambda: not alive(pid), timeout=10, what="the cancelled sleep to be killed")
    listed = tool(server, "list_commands", {"state": "cancelled"})["text"]
    assert any(": cancel-me" in line for line in listed.splitlines())


def test_a_client_that_merely_disconnects_does_not_cancel_its_command(server, agent):
    pidfile = agent.scratch / "disconnected.pid"
    call = {"name": "run_shell_command", "arguments": {"command": f": left-behind; sleep 300 & echo $! > {pidfile}; wait", "timeout": 600}}
    headers = {**server.headers(), "Content-Type": "application/json"}
    with requests.get(server.url + "/sse", headers=server.headers(), stream=True, timeout=10) as stream:
        endpoint = next(line for line in stream.iter_lines() if line.startswith(b"data: "))[6:].decode()
        for message in (
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call},
        ):
            assert requests.post(server.url + endpoint, json=message, headers=headers, timeout=10).status_code == 202
        pid = int(wait_for(lambda: pidfile.read_text().strip(), what="the command running"))
    # The stream is gone without a notifications/cancelled: the call ends at its wait, the command runs on.
    row = wait_for(
        lambda: next((r for r in server.audit() if ": left-behind" in str(r["arguments"]) and r["status"] != "pending"), None),
        timeout=TOOL_WAIT + 10, what="the abandoned call to end",
    )
    assert row["status"] == "running" and alive(pid)
    assert f"command {row['command_id']} on 'box': running" in tool(server, "get_command_output", {"command_id": row["command_id"]})["text"]
    tool(server, "cancel_command", {"command_id": row["command_id"]})
    wait_for(lambda: not alive(pid), timeout=10, what="the sleep ended by cancel_command")


def test_a_command_that_daemonizes_a_child_holding_stdout_returns_promptly(server, agent):
    pidfile = agent.scratch / "daemon.pid"
    result = tool(
        server, "run_shell_command", {"command": f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' & echo parent-done", "timeout": 60}
    )
    try:
        assert not result["is_error"] and result["text"].startswith("parent-done") and "[exit code 0]" in result["text"]
    finally:
        pid = int(wait_for(lambda: pidfile.read_text().strip(), what="daemon pid"))
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("transport, path", [("http", "/mcp"), ("sse", "/sse")])
def test_progress_notifications_carry_output_as_it_arrives(server, agent, transport, path):
    async def scenario():
        async with open_session(transport, server.url + path, server.token, mode="legacy") as s:
            return await s.call_tool(
                "run_shell_command", {"command": "for i in 1 2 3; do echo tick $i; sleep 0.7; done"}, progress=True
            )

    result = anyio.run(scenario)
    assert "tick 3" in result["text"] and "[exit code 0]" in result["text"]
    messages = "".join(m or "" for _, _, m in result["progress"])
    assert "tick 1" in messages and len(result["progress"]) >= 2


def test_read_file_pages_a_large_file_by_lines_and_refuses_binary_with_size_and_type(server, agent):
    big = agent.home / "big.log"
    big.write_text("".join(f"line {i}\n" for i in range(1, 100_001)))
    page = tool(server, "read_file", {"path": str(big), "offset": 100, "limit": 3})["text"]
    assert page.startswith("line 100\nline 101\nline 102\n")
    assert "stopped at line 102" in page and "offset=103" in page
    whole = tool(server, "read_file", {"path": str(big)})["text"]
    assert whole.startswith("line 1\n") and "read on with read_file" in whole
    image = agent.home / "pic.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(1000))
    refused = tool(server, "read_file", {"path": str(image)})
    assert refused["is_error"] and "1010 bytes" in refused["text"] and "PNG image" in refused["text"]
