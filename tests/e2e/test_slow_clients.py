"""Slow clients cannot hold the server's connections: headers and bodies have deadlines, and each
client address has a cap on open connections, while held polls, streams and other clients go on.

Real gunicorn + gevent (gunicorn_worker.py), a real agent, raw sockets for the slow clients (bound to
other loopback addresses, 127.0.0.3 and 127.0.0.4, so that they are told apart from the well-behaved
clients on 127.0.0.1), and the official MCP client. Short deadlines (2 s) keep the tests quick; the
slow clients pace themselves by waiting for the server's answer with a selector, never by sleeping.
"""

from __future__ import annotations

import json
import selectors
import socket
import time

import pytest
import requests

from tests.harness import Agent, Server, wait_for
from tests.mcp_client import call_tool

CAP = 4
SLOW = "127.0.0.3"
LIMITS = {
    "HEADER_TIMEOUT_SECONDS": "2",
    "BODY_TIMEOUT_SECONDS": "2",
    "BODY_MIN_BYTES_PER_SECOND": "500",
    "MAX_CONNECTIONS_PER_ADDRESS": str(CAP),
    # Fewer connections than the slow client opens below: without the cap it would take them all.
    "WORKER_CONNECTIONS": "24",
    # No loopback proxy here: loopback clients are capped like any other.
    "FORWARDED_ALLOW_IPS": "127.0.0.9",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server"), env=LIMITS).start()
    agent = Agent(server, tmp_path_factory.mktemp("agent"), "box").start()
    yield server, agent
    agent.stop()
    server.stop()


def _connect(server: Server, source: str = SLOW) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), source_address=(source, 0), timeout=10)


def _readable(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Those of `socks` with something to read (an answer, or its end) within `timeout` seconds."""
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, _ in selector.select(timeout)]


def _trickle(sock: socket.socket, filler: bytes, *, give_up_after: float = 15.0) -> tuple[float, bytes]:
    """Send `filler` every quarter second until the server answers; the seconds it took and all it sent."""
    started = time.monotonic()
    while time.monotonic() - started < give_up_after:
        readable = _readable([sock], 0.25)
        if readable:
            break
        if filler:
            try:
                sock.sendall(filler)
            except OSError:
                break
    else:
        raise AssertionError(f"the server still held the slow request after {give_up_after} s")
    took = time.monotonic() - started
    return took, _read_to_close(sock)


def _read_to_close(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


def _answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


def _refusals(server: Server, code: str) -> list[dict]:
    return [r for r in server.audit(200) if r["status"] == "refused" and r["error_code"] == code]


@pytest.mark.parametrize(
    ("case", "opening", "filler"),
    [
        ("nothing-sent", b"", b""),
        ("request-line-then-a-header-byte-at-a-time", b"GET /health HTTP/1.1\r\nHost: x\r\n", b"X"),
        ("request-line-a-byte-at-a-time", b"G", b"E"),
        ("headers-one-line-at-a-time", b"GET /health HTTP/1.1\r\n", b"X-Pad: 1\r\n"),
    ],
)
def test_headers_that_never_finish_get_408_and_the_connection_closes(stack, case, opening, filler):
    server, _ = stack
    sock = _connect(server)
    sock.sendall(opening)
    took, raw = _trickle(sock, filler)
    status, body = _answer(raw)
    assert status == 408 and body["error"]["code"] == "header_timeout", (case, raw[:300])
    assert "HEADER_TIMEOUT_SECONDS" in body["error"]["message"]
    assert took < 10, took
    wait_for(lambda: _refusals(server, "header_timeout"), timeout=10, what="the header timeout's audit row")


def test_the_next_request_on_a_kept_alive_connection_gets_its_own_header_deadline(stack):
    server, _ = stack
    sock = _connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while b"\r\n\r\n" not in first or not first.rstrip().endswith(b"}"):
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    _, raw = _trickle(sock, b"X")
    assert _answer(raw)[0] == 408


def _post(path: str, headers: dict[str, str], length: int | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("case", "path", "kind", "opening", "filler", "code"),
    [
        ("agent-register-json", "/api/agent/register", "application/json", b"{", b" ", "body_timeout"),
        ("mcp-post", "/mcp", "application/json", b'{"jsonrpc": "2.0",', b" ", "body_timeout"),
        ("oauth-token-form", "/token", "application/x-www-form-urlencoded", b"grant_type=", b"a", "request_timeout"),
        ("chunked-never-ending", "/api/agent/register", "application/json", b"1\r\n{\r\n", b"1\r\n \r\n", "body_timeout"),
    ],
)
def test_a_body_that_never_completes_gets_408_and_an_audit_row(stack, case, path, kind, opening, filler, code):
    server, _ = stack
    headers = {"Content-Type": kind, "Accept": "application/json, text/event-stream", "Authorization": f"Bearer {server.token}"}
    sock = _connect(server)
    sock.sendall(_post(path, headers, None if case.startswith("chunked") else 10_000) + opening)
    took, raw = _trickle(sock, filler)
    status, body = _answer(raw)
    assert status == 408, (case, raw[:400])
    assert took < 10, took
    if path != "/mcp":  # the MCP transport answers in its own shape, and writes its own audit row
        assert body["error"]["code"] == code, (case, body)
    wait_for(lambda: [r for r in _refusals(server, code) if path in r["message"] or path == "/mcp"], timeout=10,
             what=f"an audit row for the slow body on {path}")


def test_a_large_body_sent_steadily_at_a_modest_rate_gets_through(stack):
    """3000 bytes at 1000 bytes a second take 3 s, past the 2 s deadline: the rate earns the time."""
    server, _ = stack
    payload = json.dumps({"machine": "steady", "hostname": "h"}).encode()
    payload += b" " * (3000 - len(payload))
    sock = _connect(server)
    sock.sendall(_post("/api/agent/register", {"Content-Type": "application/json", "Authorization": f"Bearer {server.token}"}, len(payload)))
    started = time.monotonic()
    for start in range(0, len(payload), 250):
        readable = _readable([sock], 0.25)
        assert not readable, "the server answered before the body was complete"
        sock.sendall(payload[start:start + 250])
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    took = time.monotonic() - started
    sock.close()
    assert took > 2.0
    assert not raw.startswith(b"HTTP/1.1 408"), raw[:300]


@pytest.fixture(scope="module")
def patient_stack(tmp_path_factory):
    """A server whose header deadline (30 s) outlasts the test, so the slow connections stay held."""
    server = Server(tmp_path_factory.mktemp("patient"), env=LIMITS | {"HEADER_TIMEOUT_SECONDS": "30"}).start()
    agent = Agent(server, tmp_path_factory.mktemp("patient-agent"), "box").start()
    yield server, agent
    agent.stop()
    server.stop()


def test_connections_past_the_cap_per_address_are_refused_while_other_clients_are_served(patient_stack):
    server, _ = patient_stack
    slow = []
    try:
        for _ in range(30):  # more than WORKER_CONNECTIONS (24): uncapped, these would take them all
            sock = _connect(server)
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # and never finish
            slow.append(sock)
        answered = set()
        deadline = time.monotonic() + 10
        while len(answered) < 30 - CAP and time.monotonic() < deadline:
            readable = _readable([s for s in slow if s not in answered], 0.5)
            answered.update(readable)
        held = [s for s in slow if s not in answered]
        assert len(held) == CAP, f"{len(held)} connections held, {len(answered)} answered"
        for sock in answered:
            status, body = _answer(_read_to_close(sock))
            assert status == 429 and body["error"]["code"] == "too_many_connections", body
            assert f"MAX_CONNECTIONS_PER_ADDRESS={CAP}" in body["error"]["message"]
        # Meanwhile: a plain client from another address, and an MCP client driving the real agent.
        assert _health_from(server, "127.0.0.2") == 200
        result = call_tool("http", server.url + "/mcp", server.token, "run_shell_command", {"command": "echo served"})
        assert not result["is_error"] and result["text"].startswith("served"), result
        assert _health_from(server, SLOW) == 429  # still refused: its four are held
    finally:
        for sock in slow:
            sock.close()
    rows = _refusals(server, "too_many_connections")
    assert rows and rows[-1]["message"].startswith(SLOW), rows[:1]
    assert len(rows) <= 3, "a flood of refusals is audited once per address every 10 s, not once each"
    # The held ones are gone: the address may connect again.
    wait_for(lambda: _health_from(server, SLOW) == 200, timeout=10, what="the slow address served again")


def test_held_polls_and_streams_outlive_the_deadlines(stack):
    """The deadlines bound what a client sends, never how long the answer takes: a 3 s command over
    SSE and over Streamable HTTP (its answer held past both 2 s deadlines) is answered in full."""
    server, agent = stack
    for transport, path in (("sse", "/sse"), ("http", "/mcp")):
        result = call_tool(transport, server.url + path, server.token, "run_shell_command", {"command": "sleep 3; echo slow-but-fine", "machine": "box"})
        assert not result["is_error"] and result["text"].startswith("slow-but-fine"), (transport, result)
    assert server.machines()["box"]["online"]


def _health_from(server: Server, source: str) -> int:
    session = requests.Session()
    session.mount("http://", _SourceAdapter(source))
    try:
        return session.get(server.url + "/health", timeout=5).status_code
    except requests.ConnectionError as error:
        raise AssertionError(f"no answer from the server for a client on {source}: {error}") from None


class _SourceAdapter(requests.adapters.HTTPAdapter):
    """requests from a chosen local address."""

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self._source, 0)
        return super().init_poolmanager(*args, **kwargs)
