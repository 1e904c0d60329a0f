"""A command killed by a signal says so, by name and number, in its text and its typed result.

`kill -SEGV $$` used to read `[exit code 139]`. Now the shell's own death and a child's death that
the shell reports as 128+N both read "killed by SIGSEGV (signal 11)", and `structuredContent.signal`
gives the number and name (with `from_exit_status` when only the 128+N status says so). Through the
real server and agent, with the official MCP client.
"""

from __future__ import annotations

import pytest

from tests.harness import Agent, Server
from tests.mcp_client import with_session


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server")).start()
    agent = Agent(server, tmp_path_factory.mktemp("agent"), "box").start()
    yield server
    agent.stop()
    server.stop()


CASES = [
    # (command, exit code, the text's words, the typed field)
    ("kill -SEGV $$", 139, "killed by SIGSEGV (signal 11)]", {"number": 11, "name": "SIGSEGV"}),
    ("kill -KILL $$", 137, "killed by SIGKILL (signal 9)]", {"number": 9, "name": "SIGKILL"}),
    ("kill -ABRT $$", 134, "killed by SIGABRT (signal 6)]", {"number": 6, "name": "SIGABRT"}),
    ("kill -BUS $$", 135, "killed by SIGBUS (signal 7)]", {"number": 7, "name": "SIGBUS"}),
    (
        "echo before; sh -c 'kill -SEGV $$'; exit $?",
        139,
        "killed by SIGSEGV (signal 11), as the shell reports it (exit status 128+N)]",
        {"number": 11, "name": "SIGSEGV", "from_exit_status": True},
    ),
]


def test_signal_deaths_are_named_in_text_and_typed_result(stack):
    async def calls(session):
        return [await session.call_tool("run_shell_command", {"command": command}) for command, *_ in CASES]

    results = with_session("sse", stack.url + "/sse", stack.token, calls, overall_timeout=60)
    for (command, code, words, typed), result in zip(CASES, results):
        assert not result["is_error"], (command, result["text"])
        assert f"[exit code {code}: {words}" in result["text"], (command, result["text"])
        assert result["structured"]["exit_code"] == code and result["structured"]["signal"] == typed, (command, result["structured"])


def test_get_command_output_names_the_signal_too(stack):
    async def calls(session):
        first = await session.call_tool("run_shell_command", {"command": "kill -SEGV $$"})
        return await session.call_tool("get_command_output", {"command_id": first["structured"]["command_id"]})

    page = with_session("sse", stack.url + "/sse", stack.token, calls, overall_timeout=60)
    assert "exit code 139 (killed by SIGSEGV (signal 11))" in page["text"]
    assert page["structured"]["signal"] == {"number": 11, "name": "SIGSEGV"}


def test_a_plain_exit_status_names_no_signal(stack):
    async def calls(session):
        return [await session.call_tool("run_shell_command", {"command": f"exit {n}"}) for n in (1, 128, 200)]

    for n, result in zip((1, 128, 200), with_session("sse", stack.url + "/sse", stack.token, calls, overall_timeout=60)):
        assert result["text"].endswith(f"[exit code {n}]") and result["structured"]["signal"] is None, result
