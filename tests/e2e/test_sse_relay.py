"""The whole stack through the official mcp client over SSE, with real server and agent processes:
all five tools, every handshake revision, shell behaviour, several machines, agents that stop and
come back."""

from __future__ import annotations

import json
import re
import socket
import threading
from typing import Any

import anyio
import pytest

from tests.harness import Agent, Server, process_alive, wait_for
from tests.mcp_client import call_tool, open_session

FIVE_TOOLS = {"run_shell_command", "read_file", "write_file", "list_directory", "check_agent_status"}


def call(server: Server, tool: str, arguments: dict[str, Any] | None = None, **kwargs) -> dict[str, Any]:
    return call_tool("sse", server.url + "/sse", server.token, tool, arguments or {}, overall_timeout=90, **kwargs)


def gone(pid: int) -> bool:
    return not process_alive(pid)


def test_all_five_tools_work_over_sse(live_server, live_agent):
    url = live_server.url + "/sse"

    async def scenario():
        async with open_session("sse", url, live_server.token) as s:
            assert set(await s.tool_names()) >= FIVE_TOOLS
            status = json.loads((await s.call_tool("check_agent_status", {}))["text"])
            (box,) = [m for m in status["machines"] if m["name"] == "box"]
            assert box["online"] and box["agent_version"] and str(live_agent.home) in box["allowed_roots"]
            shell = await s.call_tool("run_shell_command", {"command": "echo hi; exit 3"})
            assert not shell["is_error"] and shell["text"].startswith("hi") and "[exit code 3]" in shell["text"]
            target = str(live_agent.home / "notes.txt")
            written = await s.call_tool("write_file", {"path": target, "content": "héllo\n"})
            assert not written["is_error"], written["text"]
            assert (await s.call_tool("read_file", {"path": target}))["text"] == "héllo\n"
            listing = await s.call_tool("list_directory", {"path": str(live_agent.home)})
            assert "notes.txt" in listing["text"]

    anyio.run(scenario)
    assert (live_agent.home / "notes.txt").read_text() == "héllo\n"
    audit = live_server.audit()
    assert {row["tool"] for row in audit} >= FIVE_TOOLS
    write_row = next(r for r in audit if r["tool"] == "write_file")
    assert write_row["arguments"]["content"]["bytes"] == len("héllo\n".encode())
    assert "héllo" not in json.dumps(audit)


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_every_handshake_revision_is_negotiated_and_serves_tool_calls(live_server, live_agent, version):
    async def scenario():
        async with open_session("sse", live_server.url + "/sse", live_server.token, handshake_version=version) as s:
            assert s.protocol_version == version
            return await s.call_tool("run_shell_command", {"command": f"echo {version}"})

    result = anyio.run(scenario)
    assert not result["is_error"] and version in result["text"]


def test_a_command_past_its_timeout_is_an_error_and_its_whole_process_group_is_gone(live_server, live_agent):
    pid_file = live_agent.scratch / "grandchild.pid"
    command = f"sh -c 'sleep 120 & echo $! > {pid_file}; wait'; echo unreachable"
    result = call(live_server, "run_shell_command", {"command": command, "timeout": 1})
    assert result["is_error"] and "timed out after 1 s" in result["text"] and "unreachable" not in result["text"]
    grandchild = int(wait_for(lambda: pid_file.read_text().strip(), timeout=5, what="the grandchild's pid file"))
    wait_for(lambda: gone(grandchild), timeout=10, what=f"grandchild {grandchild} to be killed")
    row = next(r for r in live_server.audit() if r["tool"] == "run_shell_command" and "grandchild.pid" in r["arguments"]["command"])
    assert row["status"] == "timed_out" and row["is_error"]


def test_long_output_is_shown_head_and_tail_with_an_explicit_marker_and_the_rest_can_be_fetched(live_server, live_agent):
    result = call(live_server, "run_shell_command", {"command": "head -c 150000 /dev/zero | tr '\\0' a"})
    assert not result["is_error"] and "a" * 150000 not in result["text"]
    marker = re.search(r"⟦… (\d+) bytes of stdout omitted \(bytes (\d+)-(\d+) of 150000\); read them with get_command_output\(command_id='(\w+)'", result["text"])
    assert marker, result["text"][-300:]
    omitted, first, command_id = int(marker[1]), int(marker[2]), marker[4]
    assert sum(len(run) for run in re.findall("a{100,}", result["text"])) + omitted == 150000
    page = call(live_server, "get_command_output", {"command_id": command_id, "stream": "stdout", "offset": first})
    assert not page["is_error"] and "a" * 1000 in page["text"]


def test_non_utf8_output_survives_as_text(live_server, live_agent):
    result = call(live_server, "run_shell_command", {"command": "printf 'caf\\351 ok\\n'"})
    assert not result["is_error"] and "caf\\xe9 ok" in result["text"]


def test_a_long_command_does_not_hold_up_other_calls(live_server, live_agent):
    release = live_agent.scratch / "release"
    slow: dict[str, Any] = {}
    waiter = threading.Thread(
        target=lambda: slow.update(call(live_server, "run_shell_command", {"command": f"while [ ! -e {release} ]; do sleep 0.05; done; echo released"})),
        daemon=True,
    )
    waiter.start()
    wait_for(lambda: _started(live_server), timeout=20, what="the slow call to arrive")
    quick = call(live_server, "run_shell_command", {"command": "echo quick"})
    assert not quick["is_error"] and "quick" in quick["text"]
    assert waiter.is_alive(), "the slow command should still be waiting for its release file"
    release.touch()
    waiter.join(30)
    assert "released" in slow["text"]


def _started(server: Server) -> bool:
    """The slow call has reached the server (its audit row is written on arrival)."""
    return any(r["tool"] == "run_shell_command" and "release" in r["arguments"].get("command", "") for r in server.audit(limit=20))


# --- several machines, agents stopping and coming back ---------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A server of its own with two agents, 'ant' and 'bee'; machines go offline 1 s after their last
    poll ends. Polls are held the default 25 s: a stopped agent's poll must not outlive it."""
    workdir = tmp_path_factory.mktemp("fleet")
    server = Server(workdir / "server", env={"OFFLINE_AFTER_SECONDS": "1"}).start()
    agents = {
        "ant": Agent(server, workdir, "ant").start(),
        "bee": Agent(server, workdir, "bee", env={"MAX_OUTPUT_BYTES": "1000"}).start(),
    }
    yield server, agents
    for agent in agents.values():
        agent.stop()
    server.stop()


def online(server: Server) -> dict[str, bool]:
    status = json.loads(call(server, "check_agent_status")["text"])
    return {m["name"]: m["online"] for m in status["machines"]}


def test_with_two_machines_online_a_call_must_name_one_and_the_error_lists_them(fleet):
    server, agents = fleet
    result = call(server, "run_shell_command", {"command": "echo which"})
    assert result["is_error"]
    assert "2 machines are online (ant, bee)" in result["text"] and "pass 'machine'" in result["text"]


def test_naming_a_machine_runs_the_call_on_it(fleet):
    server, agents = fleet
    for name, agent in agents.items():
        result = call(server, "run_shell_command", {"command": "echo $HOME", "machine": name})
        assert not result["is_error"] and str(agent.home) in result["text"]
    rows = [r for r in server.audit() if r["tool"] == "run_shell_command" and r["status"] == "succeeded"]
    assert {r["machine"] for r in rows} == {"ant", "bee"}


def test_output_past_the_agents_cap_is_dropped_on_the_machine_and_said_so(fleet):
    server, _ = fleet
    result = call(server, "run_shell_command", {"command": "head -c 5000 /dev/zero | tr '\\0' b; echo done >&2", "machine": "bee"})
    assert not result["is_error"] and re.findall("b{100,}", result["text"]) == ["b" * 1000]
    assert "4000 more bytes of stdout were dropped on the machine" in result["text"]
    assert "⟦stderr⟧\ndone\n⟦end of output⟧" in result["text"]


def test_naming_an_unknown_machine_lists_the_known_ones(fleet):
    server, _ = fleet
    result = call(server, "list_directory", {"path": "~", "machine": "wasp"})
    assert result["is_error"] and "unknown machine 'wasp'; known machines: ant (online), bee (online)" in result["text"]


def test_a_stopped_agent_shows_offline_and_calls_to_it_fail_precisely(fleet):
    server, agents = fleet
    bee = agents["bee"]
    bee.stop()
    try:
        wait_for(lambda: online(server) == {"ant": True, "bee": False}, timeout=10, interval=0.5, what="bee to show offline")
        result = call(server, "run_shell_command", {"command": "echo hi", "machine": "bee"})
        assert result["is_error"] and "machine 'bee' is offline" in result["text"]
        alone = call(server, "run_shell_command", {"command": "echo $HOME"})
        assert not alone["is_error"] and str(agents["ant"].home) in alone["text"]
        rows = [r for r in server.audit() if r["error_code"] == "agent_offline"]
        assert rows and rows[0]["machine"] == "bee" and rows[0]["status"] == "refused"
    finally:
        bee.start()


def test_a_restarted_agent_serves_calls_again(fleet):
    server, agents = fleet
    ant = agents["ant"]
    ant.stop()
    ant.start()
    result = call(server, "run_shell_command", {"command": "echo back", "machine": "ant"})
    assert not result["is_error"] and "back" in result["text"]
    assert online(server) == {"ant": True, "bee": True}


def test_an_agent_restarted_while_its_poll_is_still_held_gets_the_next_call(tmp_path):
    # The default 25 s hold: the stopped agent's poll outlives it on the server.
    server = Server(tmp_path / "server").start()
    agent = Agent(server, tmp_path, "box").start()
    try:
        agent.stop()
        agent.start()
        for n in range(3):
            result = call(server, "run_shell_command", {"command": f"echo call-{n}"}, read_timeout=20)
            assert not result["is_error"] and f"call-{n}" in result["text"], result["text"]
    finally:
        agent.stop()
        server.stop()


def test_an_agent_rides_out_a_server_restart_logging_the_outage_and_the_recovery_once(tmp_path):
    server = Server(tmp_path / "server").start()
    agent = Agent(server, tmp_path, "box", env={"BACKOFF_MAX_SECONDS": "0.5"}).start()
    try:
        server.stop()
        # While the server is down, its port answers every connection by closing it: count the retries.
        attempts = []
        with socket.create_server(("127.0.0.1", server.port)) as listener:
            listener.settimeout(0.2)

            def refuse() -> int:
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    return len(attempts)
                connection.close()
                attempts.append(1)
                return len(attempts)

            wait_for(lambda: refuse() >= 4, timeout=30, interval=0, what="the agent to retry during the outage")
        server.start()
        result = call(server, "run_shell_command", {"command": "echo after the restart"})
        assert not result["is_error"] and "after the restart" in result["text"]
        # The recovery is logged when the first poll after the outage returns (here: with the command).
        wait_for(lambda: "reconnected to" in agent.process.log(), timeout=10, what="the recovery to be logged")
        log = agent.process.log()
        assert log.count("lost contact with") == 1 and log.count("reconnected to") == 1
    finally:
        assert agent.stop() == 0, "SIGTERM is a clean exit"
        server.stop()
