"""Malformed and malicious input against the real server and agent: JSON-RPC, HTTP, the agent API
and paths. Every request gets a precise error; at the end the server still serves, the agent is
still online, and every tool call sent left its audit row (nothing lost).

Paths aim only at the agent's throwaway HOME and scratch folders (and at system paths the agent
must refuse without touching them)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

import pytest
import requests
from itsdangerous import URLSafeTimedSerializer

from tests.harness import Agent, Server, wait_for

SIGNING_KEY = "hostile-suite-signing-key-0123456789"
ACCEPT_JSON = {"Accept": "application/json"}
SENT_TOOL_CALLS: list[str] = []  # every tools/call that reached the dispatcher, to find in the audit


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    server = Server(
        tmp_path_factory.mktemp("hostile"),
        env={"AUTH_FAILURES_PER_MINUTE": "100000", "CLIENT_REGISTRATIONS_PER_HOUR": "100000", "SIGNING_KEYS": SIGNING_KEY, "POLL_TIMEOUT_SECONDS": "5"},
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(server, tmp_path_factory) -> Agent:
    workdir = tmp_path_factory.mktemp("hostile-agent")
    agent = Agent(server, workdir, "box").start()
    home, scratch = agent.home, agent.scratch
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("not a real key\n")
    (home / "notes.txt").write_text("notes\n")
    (home / "to-etc").symlink_to("/etc")
    (scratch / "loop-a").symlink_to(scratch / "loop-b")
    (scratch / "loop-b").symlink_to(scratch / "loop-a")
    (scratch / "to-zero").symlink_to("/dev/zero")
    os.mkfifo(scratch / "fifo")
    (scratch / "dir").mkdir()
    with open(os.path.join(os.fsencode(scratch), b"latin-\xff.txt"), "wb") as f:
        f.write(b"bytes name\n")
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def mcp_session(server, agent) -> str:
    """A Streamable HTTP session at 2025-03-26, the revision that still has batches."""
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "0"}}}
    response = requests.post(server.url + "/mcp", json=body, headers=server.headers() | ACCEPT_JSON, timeout=10)
    assert response.status_code == 200, response.text
    session = response.headers["Mcp-Session-Id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    requests.post(server.url + "/mcp", json=note, headers=server.headers() | ACCEPT_JSON | {"Mcp-Session-Id": session}, timeout=10)
    return session


def _mcp(server, session, body: bytes | str, **headers) -> requests.Response:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    all_headers = server.headers() | ACCEPT_JSON | {"Mcp-Session-Id": session, "Content-Type": "application/json"} | headers
    return requests.post(server.url + "/mcp", data=data, headers=all_headers, timeout=30)


def _rpc_error_code(response: requests.Response) -> int | None:
    body = response.json()
    if isinstance(body, list):
        return body[0]["error"]["code"]
    return body.get("error", {}).get("code") if isinstance(body.get("error"), dict) else None


def _nested(depth: int) -> str:
    return '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":' + "[" * depth + "]" * depth + "}}"


# --- JSON-RPC ---------------------------------------------------------------------------------
# (case id, raw body, expected HTTP status, expected JSON-RPC error code)
RPC_CASES = [
    ("empty-body", "", 400, -32700),
    ("only-space", "   ", 400, -32700),
    ("open-brace", "{", 400, -32700),
    ("open-bracket", "[", 400, -32700),
    ("truncated-key", '{"jsonrpc":', 400, -32700),
    ("two-objects", '{"a":1}{"b":2}', 400, -32700),
    ("single-quotes", "{'jsonrpc':'2.0'}", 400, -32700),
    ("trailing-comma", '{"jsonrpc":"2.0","id":1,"method":"ping",}', 400, -32700),
    ("bare-word", "nul", 400, -32700),
    ("nan-literal", '{"jsonrpc":"2.0","id":NaN,"method":"ping"}', 400, -32700),
    ("infinity-literal", '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":-Infinity}}', 400, -32700),
    ("lone-surrogate", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/tmp/\\udcff"}}}', 400, -32700),
    ("lone-surrogate-key", '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"\\ud800":1}}', 400, -32700),
    ("nul-byte-body", "\x00", 400, -32700),
    ("bom-then-json", "\ufeff" + '{"jsonrpc":"2.0","id":1,"method":"ping"}', 400, -32700),
    ("deep-nesting-100k", _nested(100_000), 400, -32700),
    ("deep-nesting-5k", _nested(5_000), 400, -32700),
    ("jsonrpc-1.0", '{"jsonrpc":"1.0","id":1,"method":"ping"}', 200, -32600),
    ("jsonrpc-missing", '{"id":1,"method":"ping"}', 200, -32600),
    ("jsonrpc-number", '{"jsonrpc":2.0,"id":1,"method":"ping"}', 200, -32600),
    ("id-object", '{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', 200, -32600),
    ("id-array", '{"jsonrpc":"2.0","id":[1],"method":"ping"}', 200, -32600),
    ("id-float", '{"jsonrpc":"2.0","id":1.5,"method":"ping"}', 200, -32600),
    ("id-bool", '{"jsonrpc":"2.0","id":true,"method":"ping"}', 200, -32600),
    ("method-number", '{"jsonrpc":"2.0","id":1,"method":7}', 200, -32600),
    ("method-null", '{"jsonrpc":"2.0","id":1,"method":null}', 200, -32600),
    ("method-missing", '{"jsonrpc":"2.0","id":1}', 400, -32600),
    ("params-array", '{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}', 200, -32602),
    ("params-string", '{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}', 200, -32602),
    ("params-number", '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":3}', 200, -32602),
    ("params-array-call", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["read_file",{}]}', 200, -32602),
    ("duplicate-key", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"run_shell_command","arguments":{}}}', 400, -32600),
    ("duplicate-key-nested", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/tmp/a","path":"/etc/passwd"}}}', 400, -32600),
    ("duplicate-key-top", '{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}', 400, -32600),
    ("duplicate-key-escaped", '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":1,"\\u0061":2}}', 400, -32600),
    ("message-is-string", '"ping"', 400, -32600),
    ("message-is-number", "42", 400, -32600),
    ("message-is-null", "null", 400, -32600),
    ("method-empty", '{"jsonrpc":"2.0","id":1,"method":""}', 200, -32601),
    ("method-unknown", '{"jsonrpc":"2.0","id":1,"method":"admin/shutdown"}', 200, -32601),
    ("method-with-nul", '{"jsonrpc":"2.0","id":1,"method":"ping\\u0000"}', 200, -32601),
    ("method-huge", '{"jsonrpc":"2.0","id":1,"method":"' + "m" * 100_000 + '"}', 200, -32601),
    ("call-without-params", '{"jsonrpc":"2.0","id":1,"method":"tools/call"}', 200, -32602),
    ("call-name-number", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}', 200, -32602),
    ("call-arguments-string", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":"x"}}', 200, -32602),
    ("call-unknown-tool", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm_rf","arguments":{}}}', 200, -32602),
    ("call-tool-name-nul", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file\\u0000","arguments":{}}}', 200, -32602),
    ("list-cursor-object", '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":{"a":1}}}', 200, -32602),
    ("empty-batch", "[]", 400, -32600),
    ("batch-with-initialize", '[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}]', 400, -32600),
    ("batch-of-numbers", "[1,2,3]", 400, -32600),
    ("batch-of-garbage", '[{"x":1},"y",null]', 400, -32600),
    ("ten-mebibyte-argument", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"x","content":"' + "A" * (10 * 1024 * 1024) + '"}}}', 413, None),
    ("two-mebibyte-body", '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + "x" * (2 * 1024 * 1024) + '"}}', 413, None),
]


@pytest.mark.parametrize(("case", "body", "status", "rpc_code"), RPC_CASES, ids=[c[0] for c in RPC_CASES])
def test_malformed_json_rpc_gets_a_precise_error_and_an_audit_row(server, mcp_session, case, body, status, rpc_code):
    newest = max((row["id"] for row in server.audit(limit=1)), default=0)
    response = _mcp(server, mcp_session, body)
    assert response.status_code == status, (case, response.status_code, response.text[:300])
    if rpc_code is not None:
        assert _rpc_error_code(response) == rpc_code, (case, response.text[:300])
    else:
        assert "limit" in response.json()["error"]["message"], response.text[:300]
    answers = response.json()
    rows = [row for row in server.audit(limit=10) if row["id"] > newest]
    # One row per refused message: a batch gets one per message in it.
    assert [(row["status"], row["transport"]) for row in rows] == [("refused", "http")] * (len(answers) if isinstance(answers, list) else 1), (case, rows)


def test_invalid_utf8_bodies_are_parse_errors(server, mcp_session):
    for raw in (b"\xff\xfe{}", b'{"jsonrpc":"2.0","id":1,"method":"ping\xc3"}', b'{"a":"\xc0\xaf"}', b'{"a":"\xed\xa0\x80"}'):
        response = _mcp(server, mcp_session, raw)
        assert response.status_code == 400 and _rpc_error_code(response) == -32700, (raw, response.text[:200])


@pytest.mark.parametrize(
    "request_id",
    [10**30, -(10**30), "x" * 10_000, "", "\u202e\u0000"],
    ids=["huge-int", "huge-negative", "long-string", "empty-string", "control-string"],
)
def test_unusual_but_valid_ids_are_echoed(server, mcp_session, request_id):
    response = _mcp(server, mcp_session, json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "ping"}))
    assert response.status_code == 200 and response.json() == {"jsonrpc": "2.0", "id": request_id, "result": {}}


# tools/call whose arguments the tool refuses: an isError result the model can read.
TOOL_CASES = [
    ("missing-command", "run_shell_command", {}, "missing required argument 'command'"),
    ("command-number", "run_shell_command", {"command": 5}, "must be a string"),
    ("command-empty", "run_shell_command", {"command": ""}, "must not be empty"),
    ("command-too-long", "run_shell_command", {"command": "x" * 65537}, "too long"),
    ("timeout-negative", "run_shell_command", {"command": "true", "timeout": -1}, "must be above 0"),
    ("timeout-huge", "run_shell_command", {"command": "true", "timeout": 1e308}, "at most 3600"),
    ("timeout-string", "run_shell_command", {"command": "true", "timeout": "5"}, "must be a number"),
    ("timeout-bool", "run_shell_command", {"command": "true", "timeout": True}, "must be a number"),
    ("extra-argument", "read_file", {"path": "x", "sudo": True}, "unknown argument 'sudo'"),
    ("path-object", "read_file", {"path": {"a": 1}}, "must be a string"),
    ("path-array", "list_directory", {"path": ["/"]}, "must be a string"),
    ("content-number", "write_file", {"path": "x", "content": 1}, "must be a string"),
    ("machine-unknown", "read_file", {"path": "x", "machine": "nope"}, "unknown machine 'nope'"),
    ("machine-too-long", "read_file", {"path": "x", "machine": "m" * 65}, "too long"),
    ("machine-number", "read_file", {"path": "x", "machine": 1}, "must be a string"),
]


@pytest.mark.parametrize(("case", "tool", "arguments", "message"), TOOL_CASES, ids=[c[0] for c in TOOL_CASES])
def test_bad_tool_arguments_are_error_results(server, mcp_session, case, tool, arguments, message):
    body = {"jsonrpc": "2.0", "id": case, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    SENT_TOOL_CALLS.append(case)
    response = _mcp(server, mcp_session, json.dumps(body))
    assert response.status_code == 200, response.text[:300]
    result = response.json()["result"]
    assert result["isError"] is True and message in result["content"][0]["text"], result


# --- HTTP ------------------------------------------------------------------------------------

MCP_PATHS = [("GET", "/sse"), ("POST", "/mcp"), ("POST", "/messages?session_id=x"), ("GET", "/api/machines"), ("GET", "/api/commands")]
BAD_AUTHORIZATION = [
    (None, "missing_token"),
    ("", "missing_token"),
    ("Bearer", "missing_token"),
    ("Bearer    ", "missing_token"),
    ("Basic dGVzdDp0ZXN0", "missing_token"),
    ("Token abc", "missing_token"),
    ("Bearer wrong-token", "invalid_token"),
    ("bearer wrong-token", "invalid_token"),
    ("Bearer " + "A" * 4000, "invalid_token"),
    ("Bearer cra_" + "x" * 43, "invalid_token"),
    ("Bearer a b c", "invalid_token"),
    ("Bearer test-owner-token-0123456789abcdeF", "invalid_token"),
]


@pytest.mark.parametrize(("method", "path"), MCP_PATHS)
@pytest.mark.parametrize(("authorization", "code"), BAD_AUTHORIZATION, ids=[f"auth{i}" for i in range(len(BAD_AUTHORIZATION))])
def test_missing_or_garbled_credentials_are_refused(server, method, path, authorization, code):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.request(method, server.url + path, headers=headers, timeout=10)
    assert response.status_code == 401, response.text[:200]
    assert response.json()["error"]["code"] == code
    assert "resource_metadata=" in response.headers["WWW-Authenticate"]


def test_a_token_in_the_url_is_not_accepted(server):
    for param in ("token", "access_token", "auth"):
        response = requests.get(server.url + "/api/machines", params={param: server.token}, timeout=5)
        assert response.status_code == 401 and response.json()["error"]["code"] == "missing_token"


HTTP_CASES = [
    ("put-mcp", "PUT", "/mcp", {}, b"", 405),
    ("patch-sse", "PATCH", "/sse", {}, b"", 405),
    ("get-messages", "GET", "/messages", {}, b"", 405),
    ("delete-machines", "DELETE", "/api/machines", {}, b"", 405),
    ("get-token", "GET", "/token", {}, b"", 405),
    ("get-register", "GET", "/register", {}, b"", 405),
    ("get-revoke", "GET", "/revoke", {}, b"", 405),
    ("unknown-path", "GET", "/admin", {}, b"", 404),
    ("unknown-api", "GET", "/api/secrets", {}, b"", 404),
    ("token-as-json", "POST", "/token", {"Content-Type": "application/json"}, b'{"grant_type":"refresh_token"}', 400),
    ("revoke-as-json", "POST", "/revoke", {"Content-Type": "application/json"}, b'{"token":"x"}', 400),
    ("token-huge-form", "POST", "/token", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=" + b"x" * 20000, 413),
    ("register-as-form", "POST", "/register", {"Content-Type": "application/x-www-form-urlencoded"}, b"redirect_uris=x", 400),
    ("register-huge", "POST", "/register", {"Content-Type": "application/json"}, b'{"x":"' + b"x" * 70000 + b'"}', 413),
    ("register-array", "POST", "/register", {"Content-Type": "application/json"}, b"[]", 400),
    ("register-no-uris", "POST", "/register", {"Content-Type": "application/json"}, b'{"client_name":"x"}', 400),
    ("register-many-uris", "POST", "/register", {"Content-Type": "application/json"}, json.dumps({"redirect_uris": [f"https://a.example/{i}" for i in range(9)]}).encode(), 400),
    ("register-bad-auth-method", "POST", "/register", {"Content-Type": "application/json"}, b'{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}', 400),
    ("register-grant-client-credentials", "POST", "/register", {"Content-Type": "application/json"}, b'{"redirect_uris":["https://a.example/cb"],"grant_types":["client_credentials"]}', 400),
    ("authorize-no-client", "GET", "/authorize?response_type=code", {}, b"", 400),
    ("authorize-unknown-client", "GET", "/authorize?client_id=nope&redirect_uri=https://evil.example/", {}, b"", 400),
    ("authorize-huge-form", "POST", "/authorize", {"Content-Type": "application/x-www-form-urlencoded"}, b"client_id=" + b"x" * 20000, 413),
    ("token-unknown-grant", "POST", "/token", {"Content-Type": "application/x-www-form-urlencoded"}, b"grant_type=password&client_id=x", 401),
    ("token-bad-basic", "POST", "/token", {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic !!!"}, b"grant_type=refresh_token", 401),
]


@pytest.mark.parametrize(("case", "method", "path", "headers", "body", "status"), HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_wrong_methods_paths_and_content_types_get_precise_errors(server, case, method, path, headers, body, status):
    response = requests.request(method, server.url + path, headers=server.headers() | headers, data=body, timeout=10, allow_redirects=False)
    assert response.status_code == status, (case, response.status_code, response.text[:300])
    if response.headers.get("Content-Type", "").startswith("application/json"):
        payload = response.json()
        assert payload.get("error"), payload


def _raw(server, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes; the reply, or b"" when the server closed or reset the connection without one."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


RAW_CASES = [
    ("huge-header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", (b" 400 ", b" 431 ")),
    ("too-many-headers", b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n", (b" 400 ", b" 431 ")),
    ("huge-request-line", b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (b" 400 ", b" 414 ", b"")),
    ("bad-chunked", b"POST /api/agent/register HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-owner-token-0123456789abcdef\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", (b" 400 ", b"")),
    ("garbage-request-line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", (b" 400 ",)),
    ("nul-in-header", b"GET /api/machines HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\x00b\r\n\r\n", (b" 400 ", b" 401 ")),
    ("http-0.9", b"GET /health\r\n\r\n", (b" 400 ", b"")),
]


@pytest.mark.parametrize(
    "request_line, path",
    [
        ("HTTP/1.0", "/health"),
        ("HTTP/1.0", "/mcp"),
        ("HTTP/1.0", "/sse"),
        ("HTTP/1.0", "/.well-known/oauth-protected-resource"),
        ("HTTP/1.1", "/health"),
        ("HTTP/1.1", "/api/agent/poll"),
    ],
)
def test_a_request_without_host_is_400(server, request_line, path):
    auth = b"Authorization: Bearer " + server.token.encode() + b"\r\n"
    reply = _raw(server, f"GET {path} {request_line}\r\n".encode() + auth + b"Connection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n", 1)[0], reply[:300]
    assert json.loads(body)["error"]["code"] == "missing_host"
    empty = _raw(server, f"GET {path} {request_line}\r\nHost:\r\n".encode() + auth + b"Connection: close\r\n\r\n")
    assert b" 400 " in empty.split(b"\r\n", 1)[0], empty[:300]
    named = _raw(server, f"GET /health {request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    assert b" 200 " in named.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(("case", "data", "statuses"), RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_broken_http_is_refused_at_the_door(server, case, data, statuses):
    reply = _raw(server, data)
    first_line = reply.split(b"\r\n", 1)[0]
    assert any(s in first_line if s else reply == b"" for s in statuses), (case, reply[:200])
    assert requests.get(server.url + "/health", timeout=5).status_code == 200


def test_a_slow_body_does_not_hold_up_anyone_else(server, mcp_session):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + server.token.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\":"
        )
        started = time.monotonic()
        for _ in range(5):  # meanwhile, others are served at once
            assert _mcp(server, mcp_session, '{"jsonrpc":"2.0","id":1,"method":"ping"}').status_code == 200
        assert time.monotonic() - started < 5
    # The slow client gave up mid-body; the server carries on.
    assert requests.get(server.url + "/health", timeout=5).status_code == 200


def test_a_body_shorter_than_its_content_length_is_not_dispatched(server):
    reply = _raw(
        server,
        b"POST /api/agent/register HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + server.token.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 50\r\nConnection: close\r\n\r\n{\"machine\":\"x\"}",
        timeout=3,
    )
    assert reply == b"" or b" 400 " in reply.split(b"\r\n", 1)[0]
    assert "x" not in server.machines()


# --- the agent API ---------------------------------------------------------------------------


def _signed(claims, *, key: str = SIGNING_KEY, age_seconds: float = 0) -> str:
    serializer = URLSafeTimedSerializer(key, salt="code-remote.access-token")
    if age_seconds:
        serializer.signer_kwargs = {}
        signer = serializer.make_signer()
        signer.get_timestamp = lambda: int(time.time() - age_seconds)
        payload = serializer.dump_payload(claims)
        return signer.sign(payload).decode()
    return serializer.dumps(claims)


@pytest.fixture(scope="module")
def agent_token(server, agent) -> str:
    response = requests.post(server.url + "/api/agent/register", json={"machine": "hand"}, headers=server.headers(), timeout=5)
    return response.json()["token"]


def _tampered(token: str) -> str:
    payload, _, rest = token.partition(".")
    return payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + rest


FORGED_TOKENS = [
    ("random", lambda t: "not-a-token", "token_invalid"),
    ("dots", lambda t: "a.b.c", "token_invalid"),
    ("other-key", lambda t: _signed({"aud": "agent", "m": "box", "g": 0}, key="some-other-key"), "token_invalid"),
    ("tampered-payload", _tampered, "token_invalid"),
    # A whole character of the signature (its last one carries bits base64 decoding drops).
    ("tampered-signature", lambda t: t[:-3] + ("b" if t[-3] != "b" else "c") + t[-2:], "token_invalid"),
    ("truncated", lambda t: t[: len(t) // 2], "token_invalid"),
    ("expired", lambda t: _signed({"aud": "agent", "m": "hand", "g": 0}, age_seconds=7200), "token_expired"),
    ("wrong-audience", lambda t: _signed({"aud": "mcp", "m": "hand", "g": 0}), "token_wrong_audience"),
    ("no-audience", lambda t: _signed({"m": "hand", "g": 0}), "token_wrong_audience"),
    ("claims-list", lambda t: _signed(["agent", "hand"]), "token_wrong_audience"),
    ("machine-number", lambda t: _signed({"aud": "agent", "m": 5, "g": 0}), "token_invalid"),
    ("generation-string", lambda t: _signed({"aud": "agent", "m": "hand", "g": "0"}), "token_invalid"),
    ("unknown-machine", lambda t: _signed({"aud": "agent", "m": "ghost", "g": 0}), "token_revoked"),
    ("old-generation", lambda t: _signed({"aud": "agent", "m": "hand", "g": -1}), "token_revoked"),
    ("owner-token", lambda t: "test-owner-token-0123456789abcdef", "token_invalid"),
]


@pytest.mark.parametrize(("case", "make", "code"), FORGED_TOKENS, ids=[c[0] for c in FORGED_TOKENS])
def test_forged_expired_tampered_and_foreign_agent_tokens_are_refused(server, agent_token, case, make, code):
    token = make(agent_token)
    for method, path in (("GET", "/api/agent/poll?wait=0"), ("POST", "/api/agent/commands/abc/start")):
        response = requests.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"}, json={"lease": 1}, timeout=10)
        assert response.status_code == 401, (case, response.text)
        assert response.json()["error"]["code"] == code, (case, response.text)


AGENT_BODY_CASES = [
    ("register-name-traversal", "POST", "/api/agent/register", "owner", {"machine": "../x"}, 400, "invalid_machine_name"),
    ("register-name-empty", "POST", "/api/agent/register", "owner", {"machine": ""}, 400, "invalid_machine_name"),
    ("register-name-long", "POST", "/api/agent/register", "owner", {"machine": "m" * 65}, 400, "invalid_machine_name"),
    ("register-name-unicode", "POST", "/api/agent/register", "owner", {"machine": "mäschine"}, 400, "invalid_machine_name"),
    ("register-name-nul", "POST", "/api/agent/register", "owner", {"machine": "a\u0000b"}, 400, "invalid_machine_name"),
    ("register-name-number", "POST", "/api/agent/register", "owner", {"machine": 7}, 400, "invalid_field"),
    ("register-roots-string", "POST", "/api/agent/register", "owner", {"machine": "ok", "roots": "/"}, 400, "invalid_field"),
    ("register-body-array", "POST", "/api/agent/register", "owner", [], 400, "invalid_body"),
    ("start-unknown-command", "POST", "/api/agent/commands/0123456789abcdef/start", "agent", {"lease": 1}, 404, "unknown_command"),
    ("start-traversal-id", "POST", "/api/agent/commands/..%2F..%2Fetc/start", "agent", {"lease": 1}, 404, None),
    ("start-lease-string", "POST", "/api/agent/commands/abc/start", "agent", {"lease": "1"}, 400, "invalid_lease"),
    ("start-lease-bool", "POST", "/api/agent/commands/abc/start", "agent", {"lease": True}, 400, "invalid_lease"),
    ("start-body-array", "POST", "/api/agent/commands/abc/start", "agent", [1], 400, "invalid_lease"),
    ("result-unknown-command", "POST", "/api/agent/commands/0123456789abcdef/result", "agent", {"status": "succeeded"}, 404, "unknown_command"),
    ("result-body-string", "POST", "/api/agent/commands/abc/result", "agent", "x", 400, "invalid_body"),
    ("result-result-list", "POST", "/api/agent/commands/abc/result", "agent", {"status": "succeeded", "result": []}, 400, "invalid_field"),
    ("result-exit-bool", "POST", "/api/agent/commands/abc/result", "agent", {"status": "succeeded", "exit_code": True}, 400, "invalid_field"),
    ("result-error-string", "POST", "/api/agent/commands/abc/result", "agent", {"status": "failed", "error": "x"}, 400, "invalid_field"),
    ("poll-wait-word", "GET", "/api/agent/poll?wait=soon", "agent", None, 400, "invalid_wait"),
    ("poll-wait-nan", "GET", "/api/agent/poll?wait=nan", "agent", None, 400, "invalid_wait"),
]


@pytest.mark.parametrize(("case", "method", "path", "who", "body", "status", "code"), AGENT_BODY_CASES, ids=[c[0] for c in AGENT_BODY_CASES])
def test_bad_agent_api_requests_get_precise_errors(server, agent_token, case, method, path, who, body, status, code):
    token = server.token if who == "owner" else agent_token
    response = requests.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"}, json=body, timeout=15)
    assert response.status_code == status, (case, response.status_code, response.text[:300])
    if code:
        assert response.json()["error"]["code"] == code, (case, response.text[:300])


def test_results_for_foreign_unstarted_finished_and_oversized_commands(server, mcp_session, agent_token):
    """A command queued for a machine that is not polling: only its owner may touch it, once."""
    headers = {"Authorization": f"Bearer {agent_token}"}
    # 'hand' is registered but polls only when this test says so.
    other = requests.post(server.url + "/api/agent/register", json={"machine": "other"}, headers=server.headers(), timeout=5).json()["token"]
    call = {"jsonrpc": "2.0", "id": "hand-call", "method": "tools/call",
            "params": {"name": "run_shell_command", "arguments": {"command": "echo hi", "machine": "hand", "timeout": 20}}}
    SENT_TOOL_CALLS.append("hand-call")
    import threading

    answer: dict = {}
    caller = threading.Thread(target=lambda: answer.update(r=_mcp(server, mcp_session, json.dumps(call))))
    caller.start()
    commands = wait_for(lambda: requests.get(server.url + "/api/agent/poll?wait=1", headers=headers, timeout=10).json()["commands"], what="hand's command")
    command_id, lease = commands[0]["id"], commands[0]["lease"]
    base = server.url + f"/api/agent/commands/{command_id}"
    foreign = requests.post(base + "/result", json={"status": "succeeded"}, headers={"Authorization": f"Bearer {other}"}, timeout=5)
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "unknown_command"
    early = requests.post(base + "/result", json={"status": "succeeded"}, headers=headers, timeout=5)
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_started"
    wrong_lease = requests.post(base + "/start", json={"lease": lease + 7}, headers=headers, timeout=5)
    assert wrong_lease.status_code == 409 and wrong_lease.json()["error"]["code"] == "lease_lost"
    assert requests.post(base + "/start", json={"lease": lease}, headers=headers, timeout=5).status_code == 200
    huge = b'{"status":"succeeded","result":{"stdout":"' + b"x" * (5 * 1024 * 1024) + b'"}}'
    too_big = requests.post(base + "/result", data=huge, headers=headers | {"Content-Type": "application/json"}, timeout=30)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    bad_status = requests.post(base + "/result", json={"status": "pwned"}, headers=headers, timeout=5)
    assert bad_status.status_code == 400 and bad_status.json()["error"]["code"] == "invalid_status"
    body = {"status": "succeeded", "exit_code": 0, "result": {"stdout": "hi\n", "stderr": "", "exit_code": 0}}
    first = requests.post(base + "/result", json=body, headers=headers, timeout=5)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    again = requests.post(base + "/result", json=body, headers=headers, timeout=5)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    caller.join(30)
    assert answer["r"].json()["result"]["content"][0]["text"].startswith("hi")


# --- paths -----------------------------------------------------------------------------------


def _path_cases():
    return [
        ("dotdot-relative", "read_file", {"path": "../../../../etc/passwd"}, "outside the allowed roots"),
        ("dotdot-tilde", "read_file", {"path": "~/../../../etc/passwd"}, "outside the allowed roots"),
        ("absolute-etc", "read_file", {"path": "/etc/passwd"}, "outside the allowed roots"),
        ("proc-self-root", "read_file", {"path": "/proc/self/root/etc/passwd"}, "outside the allowed roots"),
        ("proc-self-environ", "read_file", {"path": "/proc/self/environ"}, "outside the allowed roots"),
        ("proc-self-fd", "list_directory", {"path": "/proc/self/fd"}, "outside the allowed roots"),
        ("symlink-to-etc", "read_file", {"path": "~/to-etc/passwd"}, "outside the allowed roots"),
        ("symlink-dir-list", "list_directory", {"path": "~/to-etc"}, "outside the allowed roots"),
        ("write-through-symlink", "write_file", {"path": "~/to-etc/evil", "content": "x"}, "outside the allowed roots"),
        ("write-outside", "write_file", {"path": "/tmp/../etc/code-remote-evil", "content": "x"}, "outside the allowed roots"),
        ("device-via-symlink", "read_file", {"path": "SCRATCH/to-zero"}, "outside the allowed roots"),
        ("dev-zero", "read_file", {"path": "/dev/zero"}, "outside the allowed roots"),
        ("fifo-read", "read_file", {"path": "SCRATCH/fifo"}, "not a regular file"),
        ("fifo-write", "write_file", {"path": "SCRATCH/fifo", "content": "x"}, "not a regular file"),
        ("fifo-list", "list_directory", {"path": "SCRATCH/fifo"}, "is not a directory"),
        ("symlink-loop", "read_file", {"path": "SCRATCH/loop-a"}, "Too many levels of symbolic links"),
        ("directory-as-file", "read_file", {"path": "SCRATCH/dir"}, "is a directory"),
        ("file-as-directory", "list_directory", {"path": "~/notes.txt"}, "is not a directory"),
        ("missing-parent", "write_file", {"path": "SCRATCH/no/such/dir/f", "content": "x"}, "does not exist"),
        ("nul-in-path", "read_file", {"path": "~/notes\u0000.txt"}, "NUL"),
        ("long-component", "read_file", {"path": "SCRATCH/" + "n" * 300}, "n" * 50),
        ("long-component-write", "write_file", {"path": "SCRATCH/" + "n" * 300, "content": "x"}, "too long"),
        ("very-long-path", "read_file", {"path": "SCRATCH/" + "a/" * 3000 + "f"}, "a/a/"),
        ("ssh-key", "read_file", {"path": "~/.ssh/id_ed25519"}, "deny-list"),
        ("ssh-dir", "list_directory", {"path": "~/.ssh"}, "deny-list"),
        ("ssh-write", "write_file", {"path": "~/.ssh/authorized_keys", "content": "ssh-ed25519 AAAA"}, "deny-list"),
        ("empty-path", "read_file", {"path": ""}, "non-empty"),
        ("bidi-name", "read_file", {"path": "SCRATCH/\u202etxt.exe"}, "no such file"),
    ]


PATH_CASES = _path_cases()


@pytest.mark.parametrize(("case", "tool", "arguments", "needle"), PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_hostile_paths_are_refused_by_the_agent(server, mcp_session, agent, case, tool, arguments, needle):
    arguments = {k: v.replace("SCRATCH", str(agent.scratch)) if isinstance(v, str) else v for k, v in arguments.items()}
    needle = needle.replace("SCRATCH", str(agent.scratch))
    body = {"jsonrpc": "2.0", "id": case, "method": "tools/call", "params": {"name": tool, "arguments": arguments | {"machine": "box"}}}
    SENT_TOOL_CALLS.append(case)
    response = _mcp(server, mcp_session, json.dumps(body, ensure_ascii=True))
    assert response.status_code == 200, response.text[:300]
    result = response.json()["result"]
    text = result["content"][0]["text"]
    assert result["isError"] is True and needle in text, (case, text[:300])
    assert not os.path.exists("/etc/code-remote-evil")
    assert not (agent.home / ".ssh" / "authorized_keys").exists()


# --- afterwards ------------------------------------------------------------------------------


def test_afterwards_the_server_serves_and_nothing_was_lost(server, mcp_session, agent):
    assert requests.get(server.url + "/health", timeout=5).json()["status"] == "ok"
    assert agent.online()
    body = {"jsonrpc": "2.0", "id": "final", "method": "tools/call", "params": {"name": "run_shell_command", "arguments": {"command": "echo still-here", "machine": "box"}}}
    SENT_TOOL_CALLS.append("final")
    response = _mcp(server, mcp_session, json.dumps(body))
    assert response.json()["result"]["content"][0]["text"].startswith("still-here")
    audit = server.audit(limit=1000)
    assert len([r for r in audit if r["transport"] == "http"]) >= len(SENT_TOOL_CALLS)
    assert all(r["status"] != "pending" for r in audit), [r for r in audit if r["status"] == "pending"][:3]
    assert server.token not in json.dumps(audit)
    assert server.process.alive()
    # The token was sent in headers hundreds of times, and in a URL on purpose: no log line has it.
    assert server.token not in server.process.log() and server.token not in agent.process.log()


@contextlib.contextmanager
def audit_table_refuses_writes(database_url: str):
    """Make every INSERT into the audit table fail, as a full disk or a lost database would."""
    if database_url.startswith("sqlite:///"):
        import sqlite3

        db = sqlite3.connect(database_url[len("sqlite:///"):], timeout=10)
        create = ["CREATE TRIGGER break_audit BEFORE INSERT ON tool_call BEGIN SELECT RAISE(ABORT, 'disk full'); END"]
        drop = ["DROP TRIGGER break_audit"]
    else:
        import psycopg2

        db = psycopg2.connect(database_url)
        create = [
            "CREATE FUNCTION break_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER break_audit BEFORE INSERT ON tool_call FOR EACH ROW EXECUTE FUNCTION break_audit()",
        ]
        drop = ["DROP TRIGGER break_audit ON tool_call", "DROP FUNCTION break_audit()"]
    for statement in create:
        db.cursor().execute(statement)
    db.commit()
    try:
        yield
    finally:
        for statement in drop:
            db.cursor().execute(statement)
        db.commit()
        db.close()


def test_a_call_that_cannot_be_audited_is_refused_and_not_run(server, mcp_session, agent):
    marker = agent.scratch / "ran-unaudited"
    with audit_table_refuses_writes(server.database_url):
        body = {"jsonrpc": "2.0", "id": "unaudited", "method": "tools/call",
                "params": {"name": "run_shell_command", "arguments": {"command": f"touch {marker}", "machine": "box"}}}
        response = _mcp(server, mcp_session, json.dumps(body))
        error = response.json()["error"]
        assert "audit trail cannot be written" in error["message"]
    assert not marker.exists()
    again = {"jsonrpc": "2.0", "id": "audited", "method": "tools/call", "params": {"name": "check_agent_status", "arguments": {}}}
    assert "result" in _mcp(server, mcp_session, json.dumps(again)).json()
