"""No server answer makes a real agent spin: a stand-in server answers every poll at once.

A draining server ends its held polls at once, a broken one (or a proxy answering for it) may answer
every poll at once, and an answer may not even be ours. Any of these, answered by an agent polling again
at once, is a fleet spinning on the server. The agent waits such answers out with growing, jittered
pauses, asks for a jittered hold, and keeps running whatever the answer was.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import types
import urllib.parse

import pytest

from tests.harness import TOKEN, Agent, wait_for

HOLD = 25.0


class StandIn(http.server.ThreadingHTTPServer):
    """Registers any agent, then answers each poll at once with `answer` (status, content type, body)."""

    daemon_threads = True

    def __init__(self, answer: tuple[int, str, bytes]) -> None:
        self.answer = answer
        self.polls: list[tuple[float, float]] = []  # (monotonic time, the wait asked for)
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandIn

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/api/agent/register":
            body = {"token": "stand-in-agent-token", "machine": "box", "expires_in_seconds": 3600, "poll_timeout_seconds": HOLD}
        else:  # reconcile
            body = {"lost": []}
        self._send(200, "application/json", json.dumps(body).encode())

    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        self.server.polls.append((time.monotonic(), float(query["wait"][0])))
        self._send(*self.server.answer)

    def log_message(self, *args):
        pass


def run_agent(tmp_path, answer, polls: int) -> tuple[StandIn, Agent]:
    stand_in = StandIn(answer)
    agent = Agent(types.SimpleNamespace(url=stand_in.url, token=TOKEN), tmp_path, "box").start(wait_online=False)
    try:
        wait_for(lambda: agent.process.check_running("agent") or len(stand_in.polls) >= polls, timeout=60, what=f"{polls} polls")
        agent.process.check_running("agent")  # still running after all those answers
    finally:
        agent.stop()
        stand_in.shutdown()
        stand_in.server_close()
    return stand_in, agent


@pytest.mark.parametrize(
    "answer",
    [(204, "", b""), (200, "application/json", b'{"commands": []}')],
    ids=["204-at-once", "empty-list-at-once"],
)
def test_empty_answers_at_once_are_waited_out_with_growing_jittered_pauses(tmp_path, answer):
    stand_in, agent = run_agent(tmp_path, answer, polls=5)
    times = [t for t, _ in stand_in.polls[:5]]
    # The pauses after 1, 2, 3 and 4 such answers are at least 0.125, 0.25, 0.5 and 1 s (half of each
    # step, plus up to as much again at random): an agent polling again at once takes milliseconds.
    assert times[-1] - times[0] >= 1.8, f"5 polls in {times[-1] - times[0]:.3f} s: the agent spins on empty answers"
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[-1] > gaps[0], f"the pauses do not grow: {gaps}"
    assert "answered 3 polls at once with nothing new" in agent.process.log()
    # Each poll asks for the advertised hold less up to a fifth, at random.
    waits = [w for _, w in stand_in.polls]
    assert all(0.8 * HOLD - 0.01 <= w <= HOLD for w in waits), waits
    assert len(set(waits)) == len(waits), f"the asked holds are not jittered: {waits}"


@pytest.mark.parametrize(
    "answer",
    [
        (200, "application/json", b"[1, 2]"),
        (200, "application/json", b'{"commands": "none"}'),
        (200, "application/json", b'{"commands": [{"tool": "run_shell_command"}]}'),
        (200, "text/html", b"<html>a proxy's page</html>"),
    ],
    ids=["a-list", "commands-not-a-list", "a-command-without-id", "html"],
)
def test_an_answer_that_is_not_ours_is_retried_with_backoff_and_the_agent_keeps_running(tmp_path, answer):
    stand_in, agent = run_agent(tmp_path, answer, polls=3)
    log = agent.process.log()
    assert "Traceback" not in log, log[-2000:]
    assert "poll answer that is not" in log or "non-JSON" in log or "JSONDecodeError" in log, log[-2000:]
    assert len(stand_in.polls) >= 3
