"""Interactive processes through the whole stack: run_shell_command with stdin='pipe' answers once
the program waits at a prompt, and send_input feeds it and answers with what the input produced.
Real gunicorn server, real agent, the official client over /mcp and /sse."""

from __future__ import annotations

import time

import anyio
import pytest

from tests import database
from tests.harness import Agent, Server
from tests.mcp_client import open_session

ENDPOINTS = {"http": "/mcp", "sse": "/sse"}
PROMPTS = 'printf "name? "; read name; echo "hello $name"; printf "age? "; read age; echo "$name is $age"'


def session(server: Server, transport: str = "http", **kwargs):
    return open_session(transport, server.url + ENDPOINTS[transport], server.token, **kwargs)


@pytest.mark.parametrize("transport", ["http", "sse"])
def test_a_python_repl_answers_print_6_times_7_and_ends_succeeded_at_end_of_file(live_server, live_agent, transport):
    async def scenario():
        async with session(live_server, transport) as s:
            started = time.monotonic()
            repl = await s.call_tool("run_shell_command", {"command": "python3 -i", "stdin": "pipe", "timeout": 120})
            # Answered at the prompt, long before the 25 s the call may wait.
            assert time.monotonic() - started < 10
            typed = repl["structured"]
            assert not repl["is_error"] and typed["state"] == "running" and ">>>" in typed["stderr"], repl
            assert "waiting for input" in repl["text"] and typed["exit_code"] is None
            command_id = typed["command_id"]

            answer = await s.call_tool("send_input", {"command_id": command_id, "text": "print(6*7)\n"})
            assert not answer["is_error"] and answer["structured"]["stdout"] == "42\n"
            assert answer["structured"]["state"] == "running" and answer["text"].startswith("42")

            ended = await s.call_tool("send_input", {"command_id": command_id, "close": True})
            assert ended["structured"]["state"] == "succeeded" and ended["structured"]["exit_code"] == 0
            assert "ended succeeded" in ended["text"]
            page = await s.call_tool("get_command_output", {"command_id": command_id})
            assert page["structured"]["state"] == "succeeded" and page["structured"]["output"] == "42\n"

    anyio.run(scenario)
    rows = [r for r in live_server.audit() if r["tool"] == "send_input" and r["arguments"].get("text")]
    assert rows and all(r["arguments"]["text"] == {"bytes": len("print(6*7)\n")} for r in rows)  # what was typed is not kept


def test_a_program_that_prompts_gets_each_answer_in_turn(live_server, live_agent):
    async def scenario():
        async with session(live_server, "sse") as s:
            first = (await s.call_tool("run_shell_command", {"command": PROMPTS, "stdin": "pipe"}))["structured"]
            assert first["stdout"] == "name? " and first["state"] == "running"
            second = (await s.call_tool("send_input", {"command_id": first["command_id"], "text": "Ada\n"}))["structured"]
            assert second["stdout"] == "hello Ada\nage? " and second["state"] == "running"
            last = (await s.call_tool("send_input", {"command_id": first["command_id"], "text": "36\n"}))["structured"]
            assert last["stdout"] == "Ada is 36\n" and last["state"] == "succeeded" and last["exit_code"] == 0

    anyio.run(scenario)


def test_cat_echoes_each_line_and_ends_at_close(live_server, live_agent):
    async def scenario():
        async with session(live_server) as s:
            cat = (await s.call_tool("run_shell_command", {"command": "cat", "stdin": "pipe"}))["structured"]
            assert cat["state"] == "running" and cat["stdout"] == ""
            command_id = cat["command_id"]
            one = (await s.call_tool("send_input", {"command_id": command_id, "text": "one\n"}))["structured"]
            assert one["stdout"] == "one\n" and one["next_offset"] == 4
            text = "déjà vu\n" * 3
            two = (await s.call_tool("send_input", {"command_id": command_id, "text": text, "close": True}))["structured"]
            assert two["stdout"] == text and two["state"] == "succeeded"
            closed = await s.call_tool("send_input", {"command_id": command_id, "text": "late\n"})
            assert closed["is_error"] and "already ended" in closed["text"]

    anyio.run(scenario)


def test_send_input_refuses_what_it_cannot_deliver_and_says_why(live_server, live_agent):
    async def scenario():
        async with session(live_server) as s:
            plain = (await s.call_tool("run_shell_command", {"command": "echo done"}))["structured"]
            refused = await s.call_tool("send_input", {"command_id": plain["command_id"], "text": "x\n"})
            assert refused["is_error"] and "stdin='pipe'" in refused["text"]
            unknown = await s.call_tool("send_input", {"command_id": "f" * 32, "text": "x\n"})
            assert unknown["is_error"] and "no command" in unknown["text"]
            cat = (await s.call_tool("run_shell_command", {"command": "cat", "stdin": "pipe"}))["structured"]
            empty = await s.call_tool("send_input", {"command_id": cat["command_id"]})
            assert empty["is_error"] and "close=true" in empty["text"]
            wrong = await s.call_tool("run_shell_command", {"command": "cat", "stdin": "tty"})
            assert wrong["is_error"] and "closed, pipe" in wrong["text"]
            await s.call_tool("send_input", {"command_id": cat["command_id"], "close": True})

    anyio.run(scenario)
    refusals = [r for r in live_server.audit() if r["tool"] == "send_input" and r["status"] == "refused"]
    assert {r["error_code"] for r in refusals} >= {"not_interactive", "unknown_command", "invalid_arguments"}


@pytest.mark.parametrize(
    ("env", "words"),
    [({"DISABLED_TOOLS": "send_input"}, ["send_input", "DISABLED_TOOLS"]), ({"READ_ONLY": "1"}, ["read-only"])],
)
def test_the_owners_policy_refuses_a_piped_stdin_when_send_input_is_not_allowed(tmp_path, env, words):
    server = Server(tmp_path / "server").start()
    agent = Agent(server, tmp_path / "agent", "locked", env=env).start()
    try:
        async def scenario():
            async with session(server) as s:
                piped = await s.call_tool("run_shell_command", {"command": "cat", "stdin": "pipe"})
                assert piped["is_error"] and piped["structured"]["state"] == "failed"
                assert all(word in piped["text"] for word in words), piped["text"]

        anyio.run(scenario)
    finally:
        agent.stop()
        server.stop()


@pytest.mark.skipif(not database.PG_BIN_DIRS, reason="needs PostgreSQL (Debian: apt-get install postgresql)")
def test_input_crosses_server_processes_through_the_database(tmp_path):
    """With four server processes, the send_input call, the agent's held input request and its output
    posts land on different ones: the input still arrives, and the answer still comes. Several
    processes need PostgreSQL (the server refuses them on SQLite), whichever database the run uses."""
    server = Server(tmp_path / "server", env={"WEB_CONCURRENCY": "4"})
    if not server.database_url.startswith("postgresql"):
        server.database_url = server.env["DATABASE_URL"] = database.cluster().create_database()
    server.start()
    agent = Agent(server, tmp_path / "agent", "box").start()
    try:
        async def scenario():
            # The stateless revision needs no session, so any process may answer each call.
            async with session(server, mode="2026-07-28") as s:
                # Each process re-reads the machine list at most every second: wait until a run of
                # calls (landing on any process) all see the new machine.
                deadline = time.monotonic() + 15
                while True:
                    seen = [await s.call_tool("check_agent_status", {}) for _ in range(8)]
                    if all(any(m["name"] == "box" and m["online"] for m in r["structured"]["machines"]) for r in seen):
                        break
                    assert time.monotonic() < deadline, "machine 'box' not seen online by every server process"
                started = await s.call_tool("run_shell_command", {"command": "cat", "stdin": "pipe"})
                cat = started["structured"]
                assert cat, started["text"]
                for n in range(6):
                    line = f"line {n}\n"
                    answer = await s.call_tool("send_input", {"command_id": cat["command_id"], "text": line})
                    echoed = answer["structured"]
                    assert echoed and echoed["stdout"] == line and echoed["state"] == "running", answer["text"]
                ended = (await s.call_tool("send_input", {"command_id": cat["command_id"], "close": True}))["structured"]
                assert ended["state"] == "succeeded"

        anyio.run(scenario)
    finally:
        agent.stop()
        server.stop()
