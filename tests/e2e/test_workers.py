"""Several server processes on one host (`WEB_CONCURRENCY=2`, as a PaaS sets it), on PostgreSQL.

The kernel hands each new connection to whichever worker accepts it first, so a session's requests,
its stream, the agent's polls and its results land on either worker: every call must still be
answered. tests/e2e/test_scale_out.py does the same across hosts behind a load balancer.
"""

from __future__ import annotations

import signal
import time

import anyio
import pytest
import requests

from tests import database
from tests.harness import Agent, Server
from tests.mcp_client import open_session

needs_postgres = pytest.mark.skipif(not database.postgres_wanted(), reason="several server processes need PostgreSQL")
SESSIONS = 16


@pytest.fixture
def two_workers(tmp_path):
    server = Server(tmp_path / "server", env={"WEB_CONCURRENCY": "2"}).start()
    agent = Agent(server, tmp_path, "box").start()
    yield server, agent
    agent.stop()
    server.stop()


def _burst(server: Server, transport: str, url: str, **kwargs) -> list[str]:
    """SESSIONS sessions at once, two calls each; the text of every answer."""
    answers: list[str] = []

    async def one(n: int) -> None:
        async with open_session(transport, url, server.token, **kwargs) as session:
            for k in range(2):
                result = await session.call_tool("run_shell_command", {"command": f"echo s{n}-{k}"})
                assert not result["is_error"], result["text"]
                answers.append(result["text"].split("\n", 1)[0])

    async def main() -> None:
        with anyio.fail_after(90):
            async with anyio.create_task_group() as group:
                for n in range(SESSIONS):
                    group.start_soon(one, n)

    anyio.run(main)
    return answers


@needs_postgres
@pytest.mark.parametrize(
    "transport,path,kwargs",
    [
        ("sse", "/sse", {}),
        ("http", "/mcp", {"mode": "legacy", "handshake_version": "2025-11-25"}),
        ("http", "/mcp", {}),
    ],
    ids=["sse", "mcp-2025-11-25", "mcp-default"],
)
def test_every_call_of_16_concurrent_sessions_is_answered_by_two_workers(two_workers, transport, path, kwargs):
    server, _ = two_workers
    answers = _burst(server, transport, server.url + path, **kwargs)
    assert sorted(answers) == sorted(f"s{n}-{k}" for n in range(SESSIONS) for k in range(2))


@needs_postgres
def test_a_poll_held_by_one_worker_is_woken_by_a_command_submitted_on_the_other(two_workers):
    """Calls answer far sooner than the once-a-second database re-check would allow."""
    server, _ = two_workers
    durations = []

    async def main() -> None:
        async with open_session("http", server.url + "/mcp", server.token) as session:
            for n in range(12):
                started = time.monotonic()
                result = await session.call_tool("run_shell_command", {"command": f"echo {n}"})
                durations.append(time.monotonic() - started)
                assert result["text"].startswith(f"{n}\n")

    anyio.run(main)
    durations.sort()
    assert durations[len(durations) // 2] < 0.5, durations


def test_sigterm_ends_held_polls_and_streams_at_once_and_the_agent_carries_on(tmp_path):
    """A deploy stops a server with SIGTERM: it must not sit out a 25 s poll or an endless stream."""
    first = Server(tmp_path / "first", env={"WEB_CONCURRENCY": "1", "POLL_TIMEOUT_SECONDS": "25"}).start()
    agent = Agent(first, tmp_path, "box").start()
    stream = requests.get(first.url + "/sse", headers=first.headers(), stream=True, timeout=30)
    assert stream.status_code == 200
    try:
        started = time.monotonic()
        first.process.proc.send_signal(signal.SIGTERM)
        for _ in stream.iter_lines():  # the stream ends, it is not cut by the process's exit
            pass
        code = first.process.proc.wait(timeout=20)
        assert code == 0 and time.monotonic() - started < 10, first.process.log()[-2000:]
    finally:
        stream.close()
        agent.stop()
