"""A real agent keeps working while 2 000 other connections are held open to the real server.

Past about a thousand connections, one gevent worker hands out file descriptors above 1023, which
`select.select()` refuses: the held poll's hang-up check read that refusal as "the agent hung up", so
every poll ended at once without leasing anything, the agents spun on empty answers, and tool calls
waited out their whole timeout. Here 2 000 held polls of other machines come first, so that the real
agent's connection lands above that line, then the official MCP client runs commands through it.
"""

from __future__ import annotations

import re
import resource
import socket
import threading

import pytest
import requests

from tests.harness import TOKEN, Agent, Server, wait_for
from tests.mcp_client import call_tool, with_session

OTHER_CONNECTIONS = 2000
OTHER_MACHINES = 40
METRICS_TOKEN = "metrics-token-for-tests-0123456789"
HOLD_SECONDS = 90  # the other polls' hold: longer than this whole test, so none ends by itself


def raise_open_file_limit(needed: int) -> None:
    """Let this process (and the server it starts, which inherits the limit) open `needed` files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is under the {needed} files this test opens")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def agent_token(server: Server, machine: str) -> str:
    response = requests.post(server.url + "/api/agent/register", json={"machine": machine}, headers=bearer(TOKEN), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def held_poll(server: Server, token: str, wait: float = HOLD_SECONDS) -> socket.socket:
    """A raw connection holding one poll, as an agent's does; its answer is left unread."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        f"GET /api/agent/poll?wait={wait}&limit=1 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def held_polls_gauge(server: Server) -> float:
    response = requests.get(server.url + "/metrics", headers=bearer(METRICS_TOKEN), timeout=10)
    match = re.search(r"^code_remote_held_polls (\S+)$", response.text, re.M)
    return float(match.group(1)) if match else -1.0


def answered(sock: socket.socket) -> bytes:
    """What the server has sent on a held connection so far (b"" while it holds the poll)."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) or b"<closed>"
    except BlockingIOError:
        return b""
    finally:
        sock.setblocking(True)


def poll_lines(server: Server) -> list[str]:
    return [line for line in server.process.log().splitlines() if '"GET /api/agent/poll ' in line]


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """A real server holding 2 000 polls of 40 other machines, then a real agent."""
    raise_open_file_limit(OTHER_CONNECTIONS * 2 + 1024)
    workdir = tmp_path_factory.mktemp("crowded")
    server = Server(workdir / "server", env={"METRICS_TOKEN": METRICS_TOKEN, "POLL_TIMEOUT_SECONDS": str(HOLD_SECONDS)}).start()
    sockets: list[socket.socket] = []
    agent = None
    try:
        tokens = [agent_token(server, f"idle-{n:02d}") for n in range(OTHER_MACHINES)]
        for n in range(OTHER_CONNECTIONS):
            sockets.append(held_poll(server, tokens[n % OTHER_MACHINES]))
        # Every poll is read by the server: held, or (the defect) answered at once.
        early: dict[int, bytes] = {}

        def all_read() -> bool:
            early.update((n, data) for n, sock in enumerate(sockets) if n not in early and (data := answered(sock)))
            return held_polls_gauge(server) + len(early) >= OTHER_CONNECTIONS

        wait_for(all_read, timeout=60, interval=0.5, what=f"the server to read {OTHER_CONNECTIONS} polls")
        agent = Agent(server, workdir, "box").start()
        yield server, agent, sockets, early
    finally:
        if agent is not None:
            agent.stop()
        for sock in sockets:
            sock.close()
        server.stop()


def test_the_real_agent_runs_commands_while_2000_polls_are_held(crowded):
    server, agent, sockets, early = crowded
    assert not early, f"{len(early)} of {len(sockets)} held polls were answered at once, e.g. {next(iter(early.values()))[:60]!r}"
    polls_before = len(poll_lines(server))

    async def calls(session):
        results = []
        for n in range(5):
            results.append(await session.call_tool("run_shell_command", {"command": f"echo crowded-{n}", "machine": "box"}, timeout=20))
        results.append(await session.call_tool("write_file", {"path": str(agent.scratch / "note.txt"), "content": "still here\n", "machine": "box"}, timeout=20))
        results.append(await session.call_tool("read_file", {"path": str(agent.scratch / "note.txt"), "machine": "box"}, timeout=20))
        return results

    results = with_session("sse", server.url + "/sse", server.token, calls, overall_timeout=120)
    for n, result in enumerate(results[:5]):
        assert not result["is_error"], result["text"]
        assert f"crowded-{n}" in result["text"]
    assert not results[5]["is_error"], results[5]["text"]
    assert "still here" in results[6]["text"]

    # The agent's polls were held, not answered at once: seven commands take a handful of polls
    # (the broken check answered a quarter of a million in two minutes).
    agent_polls = len(poll_lines(server)) - polls_before
    assert agent_polls <= 30, f"{agent_polls} polls were answered while 7 commands ran: polls are spinning"
    assert "answered 3 polls at once" not in agent.process.log()

    # None of the 2 000 other polls was answered before its hold: the check did not end them.
    later = [n for n, sock in enumerate(sockets) if answered(sock)]
    assert not later, f"{len(later)} of {len(sockets)} held polls were answered before their hold ended"
    assert held_polls_gauge(server) >= OTHER_CONNECTIONS


def test_a_poll_whose_agent_hangs_up_above_descriptor_1023_leases_nothing(crowded):
    server = crowded[0]
    token = agent_token(server, "ghost")
    ghost = held_poll(server, token)
    wait_for(lambda: held_polls_gauge(server) >= OTHER_CONNECTIONS + 1, timeout=20, what="the ghost's poll to be held")
    ghost.close()  # the agent went away while its poll was held

    # A command for the ghost machine, queued after it hung up, must not be leased into the dead
    # connection: the next poll gets it under its first lease.
    result: dict = {}

    def call() -> None:
        result.update(call_tool("sse", server.url + "/sse", server.token, "run_shell_command", {"command": "echo hi", "machine": "ghost"}, overall_timeout=60))

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    polled = requests.get(server.url + "/api/agent/poll", params={"wait": 20}, headers=bearer(token), timeout=30)
    assert polled.status_code == 200, f"the queued command was not handed to the live poll ({polled.status_code})"
    command = polled.json()["commands"][0]
    assert command["lease"] == 1, "the command was first leased to the poll whose agent had hung up"
    started = requests.post(f"{server.url}/api/agent/commands/{command['id']}/start", json={"lease": 1}, headers=bearer(token), timeout=10)
    assert started.status_code == 200, started.text
    body = {"status": "succeeded", "exit_code": 0, "result": {"exit_code": 0, "stdout": "hi\n", "stderr": ""}}
    done = requests.post(f"{server.url}/api/agent/commands/{command['id']}/result", json=body, headers=bearer(token), timeout=10)
    assert done.status_code == 200, done.text
    caller.join(60)
    assert result and not result["is_error"], result


def test_the_server_log_names_no_select_error(crowded):
    server = crowded[0]
    log = server.process.log()
    assert "filedescriptor out of range" not in log and "Traceback" not in log
    assert "cannot tell whether a held poll's client hung up" not in log
