"""Processes that escape a command (setsid, nohup, a double fork, a `set -m` job) do not outlive it.

Each command here starts five such `sleep 300`s and writes its cookie (CODE_REMOTE_COMMAND_COOKIE,
which the agent puts in every command's environment) to a scratch file. After the command ends, times
out or is cancelled, /proc is scanned for that cookie: nothing may be left but what the call asked to
keep, and the answer names what was ended or kept by pid and name.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.harness import Agent, Server, wait_for
from tests.mcp_client import call_tool

TOOL_WAIT = 3
ESCAPES = (
    "setsid sleep 300 >/dev/null 2>&1 &",  # a new session
    "setsid sleep 300 &",  # a new session holding the output pipes
    "nohup sleep 300 >/dev/null 2>&1 &",  # the same group, outliving a shell that exits normally
    "( ( sleep 300 >/dev/null 2>&1 & ) & )",  # a double fork: reparented away from the shell
    "bash -c 'set -m; sleep 300 >/dev/null 2>&1 &' 2>/dev/null",  # a job with a process group of its own
)
# Those that leave the command's process group: the timeout and cancel end the group, these are found.
OUTSIDE_THE_GROUP = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    server = Server(tmp_path_factory.mktemp("server"), env={"TOOL_WAIT_SECONDS": str(TOOL_WAIT)}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(server, tmp_path_factory) -> Agent:
    agent = Agent(server, tmp_path_factory.mktemp("agent"), "box", env={"PROGRESS_SECONDS": "0.3", "KILL_GRACE_SECONDS": "1"}).start()
    yield agent
    agent.stop()


def carrying(cookie: str) -> dict[int, str]:
    """{pid: name} of the live processes whose environment holds this cookie (a test-side scan)."""
    found = {}
    entry = f"CODE_REMOTE_COMMAND_COOKIE={cookie}".encode()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if entry not in handle.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/comm") as handle:
                found[int(pid)] = handle.read().strip()
        except OSError:
            continue
    return found


@pytest.fixture
def cookie_file(agent, request):
    """Where the command writes its cookie; whatever carries it is killed after the test, pass or fail."""
    path = agent.scratch / f"cookie-{request.node.name}".replace("[", "-").replace("]", "")
    yield path
    if path.exists() and path.read_text().strip():
        for pid in carrying(path.read_text().strip()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def spawning(cookie_file, tail: str) -> str:
    return f"echo \"$CODE_REMOTE_COMMAND_COOKIE\" > {cookie_file}\n" + "\n".join(ESCAPES) + f"\n{tail}"


def tool(server: Server, name: str, arguments: dict) -> dict:
    return call_tool("sse", server.url + "/sse", server.token, name, {**arguments, "machine": "box"} if name == "run_shell_command" else arguments)


def listed_pids(text: str, verb: str) -> set[int]:
    line = next(line for line in text.splitlines() if f"outlived it and were {verb}" in line)
    return {int(pid) for pid in re.findall(r"pid (\d+) \(", line)}


def test_at_a_normal_end_every_escaped_process_is_ended_and_named(server, agent, cookie_file):
    result = tool(server, "run_shell_command", {"command": spawning(cookie_file, "sleep 0.3; echo done")})
    assert not result["is_error"] and "done" in result["text"], result["text"]
    cookie = cookie_file.read_text().strip()
    assert len(cookie) == 32
    assert carrying(cookie) == {}, "processes of the command outlived it"
    ended = listed_pids(result["text"], "ended")
    assert len(ended) >= len(ESCAPES), result["text"]
    assert all(p["name"] == "sleep" for p in result["structured"]["background_ended"] if p["pid"] in ended), result["structured"]
    assert "(sleep)" in result["text"]


def test_at_the_timeout_every_escaped_process_is_ended(server, agent, cookie_file):
    result = tool(server, "run_shell_command", {"command": spawning(cookie_file, "sleep 300"), "timeout": 1.5})
    assert result["is_error"] and "timed out" in result["text"], result["text"]
    assert carrying(cookie_file.read_text().strip()) == {}
    assert len(listed_pids(result["text"], "ended")) >= OUTSIDE_THE_GROUP, result["text"]


def test_on_cancel_every_escaped_process_is_ended(server, agent, cookie_file):
    result = tool(server, "run_shell_command", {"command": spawning(cookie_file, "sleep 300"), "timeout": 600})
    command_id = re.search(r"command ([0-9a-f]{32})", result["text"]).group(1)
    cookie = wait_for(lambda: cookie_file.exists() and cookie_file.read_text().strip(), timeout=10, what="the cookie file")
    wait_for(lambda: len(carrying(cookie)) >= len(ESCAPES) + 1, timeout=10, what="the escaped sleeps to run")
    tool(server, "cancel_command", {"command_id": command_id})

    def final() -> str | None:
        text = tool(server, "get_command_output", {"command_id": command_id})["text"]
        return text if f"on 'box': cancelled" in text else None

    text = wait_for(final, timeout=20, what="the command to end cancelled")
    assert carrying(cookie) == {}, "processes of the cancelled command outlived it"
    assert len(listed_pids(text, "ended")) >= OUTSIDE_THE_GROUP, text


def test_keep_background_leaves_them_running_and_lists_them(server, agent, cookie_file):
    result = tool(server, "run_shell_command", {"command": spawning(cookie_file, "sleep 0.3; echo started"), "keep_background": True})
    assert not result["is_error"], result["text"]
    alive = carrying(cookie_file.read_text().strip())
    kept = listed_pids(result["text"], "left running, as asked")
    assert len(kept) >= len(ESCAPES) and set(alive) == kept, (alive, result["text"])
    assert set(alive.values()) == {"sleep"}
    assert {p["pid"] for p in result["structured"]["background"]} == kept
    # (the fixture ends them)


def test_a_command_that_leaves_nothing_behind_says_nothing_about_it(server, agent):
    result = tool(server, "run_shell_command", {"command": "echo alone"})
    assert "outlived it" not in result["text"] and "background_ended" not in result["structured"]


def test_a_restarted_agent_ends_what_escaped_a_command_of_its_killed_predecessor(server, tmp_path):
    """The agent itself is killed (SIGKILL) mid-command: at its restart it ends the command's process
    group and, by the cookie it recorded, what had left that group."""
    second = Agent(server, tmp_path, "box2").start()
    cookie_file = second.scratch / "cookie"
    try:
        command = f'echo "$CODE_REMOTE_COMMAND_COOKIE" > {cookie_file}\nsetsid sleep 300 >/dev/null 2>&1 &\nsleep 300'
        result = call_tool("sse", server.url + "/sse", server.token, "run_shell_command", {"command": command, "timeout": 600, "machine": "box2"})
        assert "still running" in result["text"], result["text"]
        cookie = wait_for(lambda: cookie_file.exists() and cookie_file.read_text().strip(), timeout=10, what="the cookie file")
        wait_for(lambda: len(carrying(cookie)) >= 3, timeout=10, what="shell, sleep and the escaped sleep")
        os.kill(second.process.proc.pid, signal.SIGKILL)
        second.process.stop()
        assert len(carrying(cookie)) >= 3  # orphans, until the agent comes back
        second.start()
        wait_for(lambda: carrying(cookie) == {}, timeout=20, what="the restarted agent to end every process of the command")
        logged = wait_for(lambda: [line for line in second.process.log().splitlines() if "left running: " in line], timeout=10, what="the reaper's log line")
        assert "(sleep)" in logged[0], logged
    finally:
        second.stop()
        if cookie_file.exists():
            for pid in carrying(cookie_file.read_text().strip()):
                os.kill(pid, signal.SIGKILL)
