"""A busy agent reuses its connections to the server instead of opening one for most results.

With requests' default pool (10 connections kept) and 32 commands finishing together, 22 of the
connections their results went out on were thrown away ("Connection pool is full, discarding
connection"), so each later result opened a new TCP connection (and, in production, a TLS handshake).
The agent now keeps a connection for every thread that may be in a request at once.
"""

from __future__ import annotations

import anyio
import pytest

from tests.harness import Agent, Server
from tests.mcp_client import with_session

CONCURRENCY = 32


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    server = Server(tmp_path_factory.mktemp("server")).start()
    yield server
    server.stop()


def test_thirty_two_results_at_once_go_out_on_kept_connections(server, tmp_path):
    agent = Agent(server, tmp_path, "busy", env={"MAX_CONCURRENT_COMMANDS": str(CONCURRENCY)}).start()
    try:
        async def calls(session):
            answers: list[dict] = []

            async def one(n: int) -> None:
                # Started together and ended together, so that all 32 results are posted at once.
                answers.append(await session.call_tool("run_shell_command", {"command": f"sleep 1; echo call-{n}"}))

            async with anyio.create_task_group() as group:
                for n in range(CONCURRENCY):
                    group.start_soon(one, n)
            return answers

        for _ in range(2):
            answers = with_session("sse", server.url + "/sse", server.token, calls, overall_timeout=90)
            assert sorted(a["text"].split()[0] for a in answers if not a["is_error"]) == sorted(f"call-{n}" for n in range(CONCURRENCY))
        log = agent.process.log()
        assert "Connection pool is full" not in log, log[-3000:]
    finally:
        agent.stop()
