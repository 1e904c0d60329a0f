"""Refusals over MCP/SSE against the real server and agent: authentication, sessions, malformed
JSON-RPC, bad tool calls and refused paths. Every refusal is precise, immediate and audited."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import re
import socket
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests

from tests.harness import TOKEN, Server, wait_for
from tests.mcp_client import MCPError, open_session

READ_SECONDS = 10
QUERY_TOKEN = "query-token-" + "q" * 20
# An itsdangerous token: payload.timestamp.signature, all URL-safe base64.
SIGNED_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}")
FIVE_TOOLS = {"run_shell_command", "read_file", "write_file", "list_directory", "check_agent_status"}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    # Many deliberate wrong-token requests come from one address: keep the failure throttle out of the way.
    server = Server(tmp_path_factory.mktemp("server"), env={"AUTH_FAILURES_PER_MINUTE": "10000", "HEARTBEAT_SECONDS": "1"}).start()
    yield server
    server.stop()


class RawSse:
    """A hand-driven SSE session, to send what no well-behaved client would."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.connection.request("GET", "/sse", headers=server.headers())
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("Content-Type").startswith("text/event-stream")
        self.events: queue.Queue = queue.Queue()
        self.comments = 0
        threading.Thread(target=self._read, daemon=True).start()
        kind, data = self.events.get(timeout=READ_SECONDS)
        assert kind == "endpoint" and data.startswith("/messages?session_id=")
        self.endpoint = server.url + data

    def _read(self) -> None:
        kind, data = "message", []
        try:
            while line := self.response.readline():
                line = line.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif line == "" and data:
                    self.events.put((kind, "\n".join(data)))
                    kind, data = "message", []
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by close(), possibly mid-read (http.client then trips over its own None)

    def post(self, body: Any, *, raw: bytes | None = None, headers: dict[str, str] | None = None) -> requests.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        return requests.post(
            self.endpoint, data=data, headers={"Content-Type": "application/json", **self.server.headers(), **(headers or {})}, timeout=10
        )

    def initialize(self, version: str = "2024-11-05") -> RawSse:
        params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
        assert self.post({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": params}).status_code == 202
        reply = self.next_message()
        assert reply["id"] == "init" and reply["result"]["protocolVersion"] == version, reply
        assert self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
        return self

    def next_message(self, timeout: float = READ_SECONDS) -> dict[str, Any]:
        kind, data = self.events.get(timeout=timeout)
        assert kind == "message"
        return json.loads(data)

    def no_message(self) -> bool:
        """True if nothing is waiting on the stream (checked after a later reply has arrived)."""
        return self.events.empty()

    def close(self) -> None:
        try:
            self.connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()


@pytest.fixture
def raw(live_server):
    """An initialized session."""
    session = RawSse(live_server).initialize()
    yield session
    session.close()


@pytest.fixture
def uninitialized(live_server):
    """A session whose client has not sent initialize."""
    session = RawSse(live_server)
    yield session
    session.close()


def error_of(message: dict[str, Any]) -> int:
    return message["error"]["code"]


# --- authentication and sessions -------------------------------------------------------------------


def assert_unauthorized(response: requests.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, "missing_token"),
        ({"Authorization": "Bearer wrong-token-0123456789abcdef"}, "invalid_token"),
        ({"Authorization": f"Basic {TOKEN}"}, "missing_token"),
    ],
    ids=["no-token", "wrong-token", "not-bearer"],
)
def test_sse_messages_and_the_audit_refuse_a_missing_or_wrong_token(live_server, raw, headers, code):
    url = live_server.url
    assert_unauthorized(requests.get(url + "/sse", headers=headers, timeout=5), code)
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert_unauthorized(requests.post(raw.endpoint, json=ping, headers=headers, timeout=5), code)
    assert_unauthorized(requests.get(url + "/api/commands", headers=headers, timeout=5), code)
    assert_unauthorized(requests.get(url + "/api/machines", headers=headers, timeout=5), code)
    assert raw.no_message()


@pytest.mark.parametrize("name", ["token", "access_token", "auth_token", "authorization"])
def test_a_token_in_the_url_query_is_not_accepted(live_server, name):
    # A look-alike of the token: the real one must not land in access logs, even refused.
    lookalike = QUERY_TOKEN
    for path in ("/sse", "/api/commands"):
        response = requests.get(f"{live_server.url}{path}?{name}={lookalike}", timeout=5)
        assert_unauthorized(response, "missing_token")


def test_an_unknown_or_missing_session_id_is_404(live_server):
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    for query in ("?session_id=0123456789abcdef0123456789abcdef", "?session_id=", ""):
        response = requests.post(live_server.url + "/messages" + query, json=ping, headers=live_server.headers(), timeout=5)
        assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_session"


def test_a_session_is_gone_once_its_stream_closes(live_server):
    session = RawSse(live_server)
    assert session.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 202
    assert session.next_message()["id"] == 1
    session.close()
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    # The server notices a closed stream at its next write (a heartbeat, or this reply).
    wait_for(lambda: session.post(ping).status_code == 404, timeout=10, interval=0.2, what="closed session to be forgotten")


def test_an_idle_stream_gets_heartbeat_comments(raw):
    wait_for(lambda: raw.comments >= 2, timeout=10, what="two heartbeat comments")
    raw.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert raw.next_message() == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_post_and_delete_on_sse_are_405(live_server):
    for method in ("POST", "DELETE"):
        response = requests.request(method, live_server.url + "/sse", headers=live_server.headers(), json={}, timeout=5)
        assert response.status_code == 405 and response.headers["Allow"] == "GET"
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_health_answers_without_auth_and_names_no_machine(live_server, live_agent):
    response = requests.get(live_server.url + "/health", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert live_agent.name not in response.text and TOKEN not in response.text


# --- malformed JSON-RPC ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"jsonrpc": "2.0", "id": 1, "method": ', b"", b"{'jsonrpc': '2.0'}", b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}', b"\xff\xfe{}"],
    ids=["truncated", "empty", "single-quotes", "nan", "not-utf8"],
)
def test_invalid_json_is_a_numeric_parse_error_in_the_answer_and_on_the_stream(raw, body):
    response = raw.post(None, raw=body)
    assert response.status_code == 400
    assert error_of(response.json()) == -32700 and response.json()["id"] is None, response.text
    reply = raw.next_message()
    assert error_of(reply) == -32700 and reply["id"] is None


@pytest.mark.parametrize("params", [[1], ["read_file", {}], "x", 3, True], ids=["array", "array-of-call", "string", "number", "boolean"])
@pytest.mark.parametrize("method", ["ping", "tools/list", "tools/call"])
def test_params_of_the_wrong_type_are_invalid_params(raw, method, params):
    assert raw.post({"jsonrpc": "2.0", "id": 12, "method": method, "params": params}).status_code == 202
    reply = raw.next_message()
    assert error_of(reply) == -32602 and reply["id"] == 12, reply


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"run_shell_command","arguments":{"command":"touch MARK"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_shell_command","arguments":{"command":"true","command":"touch MARK"}}}',
        b'{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_shell_command","arguments":{"command":"touch MARK","\\u0063ommand":"true"}}}',
        b'[{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}]',
    ],
    ids=["tool-name", "argument", "id", "escaped-equal-key", "inside-a-batch"],
)
def test_duplicate_keys_are_an_invalid_request_and_nothing_runs(live_server, live_agent, raw, body):
    mark = live_agent.scratch / f"dup-{os.urandom(4).hex()}"
    response = raw.post(None, raw=body.replace(b"MARK", str(mark).encode()))
    assert response.status_code == 400
    answer = response.json()
    assert error_of(answer) == -32600 and "twice" in answer["error"]["message"], answer
    reply = raw.next_message()
    assert error_of(reply) == -32600 and reply["id"] is None
    raw.post({"jsonrpc": "2.0", "id": "after", "method": "ping"})
    assert raw.next_message()["id"] == "after"
    assert not mark.exists()


@pytest.mark.parametrize(
    "method, params",
    [
        ("tools/call", {"name": "run_shell_command", "arguments": {"command": "touch MARK"}}),
        ("tools/call", {"name": "write_file", "arguments": {"path": "MARK", "content": "x"}}),
        ("tools/list", {}),
        ("logging/setLevel", {"level": "debug"}),
        ("no/such/method", {}),
    ],
    ids=["run-shell", "write-file", "tools-list", "set-level", "unknown"],
)
def test_before_initialize_only_ping_is_answered_and_nothing_runs(live_server, live_agent, uninitialized, method, params):
    mark = live_agent.scratch / f"early-{os.urandom(4).hex()}"
    params = json.loads(json.dumps(params).replace("MARK", str(mark)))
    session_id = uninitialized.endpoint.split("session_id=", 1)[1]
    uninitialized.post({"jsonrpc": "2.0", "id": 5, "method": method, "params": params})
    reply = uninitialized.next_message()
    assert error_of(reply) == -32600 and reply["id"] == 5 and "initialize first" in reply["error"]["message"], reply
    uninitialized.post({"jsonrpc": "2.0", "id": 6, "method": "ping"})
    assert uninitialized.next_message() == {"jsonrpc": "2.0", "id": 6, "result": {}}
    rows = [r for r in live_server.audit(limit=200) if r["session_id"] == session_id]
    assert [(r["status"], r["error_code"]) for r in rows] == [("refused", "not_initialized")], rows
    uninitialized.initialize()
    uninitialized.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
    assert {t["name"] for t in uninitialized.next_message()["result"]["tools"]} >= FIVE_TOOLS
    assert not mark.exists()


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx", "text/json"],
    ids=["none", "text", "form", "multipart", "jsonx", "text-json"],
)
def test_a_body_not_declared_as_json_is_415_and_not_run(live_server, live_agent, raw, content_type):
    mark = live_agent.scratch / f"typed-{os.urandom(4).hex()}"
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "run_shell_command", "arguments": {"command": f"touch {mark}"}}}
    headers = live_server.headers() | ({"Content-Type": content_type} if content_type else {})
    response = requests.post(raw.endpoint, data=json.dumps(call).encode(), headers=headers, timeout=10)
    assert response.status_code == 415, response.text
    assert error_of(response.json()) == -32600 and "application/json" in response.json()["error"]["message"]
    assert raw.post({"jsonrpc": "2.0", "id": "typed", "method": "ping"}, headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 202
    assert raw.next_message()["id"] == "typed"
    assert not mark.exists()


@pytest.mark.parametrize(
    "body, reply_id",
    [
        (42, None),
        ("ping", None),
        ({"id": 7, "method": "ping"}, 7),
        ({"jsonrpc": "1.0", "id": 8, "method": "ping"}, 8),
        ({"jsonrpc": "2.0", "id": 9}, 9),
        ({"jsonrpc": "2.0", "id": 10, "method": 5}, 10),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}, None),
        ([], None),
    ],
    ids=["number", "string", "no-jsonrpc", "jsonrpc-1.0", "no-method", "method-not-string", "id-object", "empty-batch"],
)
def test_a_message_that_is_not_a_request_is_an_invalid_request(raw, body, reply_id):
    assert raw.post(body).status_code == 202
    reply = raw.next_message()
    assert error_of(reply) == -32600 and reply["id"] == reply_id


def test_an_unknown_method_is_method_not_found(raw):
    raw.post({"jsonrpc": "2.0", "id": "a", "method": "server/discover"})
    reply = raw.next_message()
    assert error_of(reply) == -32601 and reply["id"] == "a" and "server/discover" in reply["error"]["message"]


@pytest.mark.parametrize(
    "method, params",
    [
        ("tools/call", {"name": 5}),
        ("tools/call", {}),
        ("initialize", {"protocolVersion": "2025-03-26"}),
    ],
    ids=["tool-name-not-string", "tool-name-missing", "initialize-without-client-info"],
)
def test_bad_params_are_invalid_params(raw, method, params):
    raw.post({"jsonrpc": "2.0", "id": 3, "method": method, "params": params})
    reply = raw.next_message()
    assert error_of(reply) == -32602 and reply["id"] == 3


def test_malformed_messages_and_unknown_methods_leave_audit_rows(live_server, raw):
    """Refused before any tool ran, each still has its row in the session, naming the method and the
    error, never the body."""
    session_id = raw.endpoint.split("session_id=", 1)[1]
    marker = os.urandom(6).hex()
    assert raw.post(None, raw=b'{"jsonrpc": "2.0", "id": 1, "method": ').status_code == 400
    raw.post({"jsonrpc": "1.0", "id": 2, "method": "ping"})
    raw.post({"jsonrpc": "2.0", "id": 3, "method": f"admin/{marker}"})
    assert [error_of(raw.next_message()) for _ in range(3)] == [-32700, -32600, -32601]
    rows = [r for r in live_server.audit(limit=200) if r["session_id"] == session_id]
    assert [(r["status"], r["error_code"]) for r in reversed(rows)] == [
        ("refused", "parse_error"), ("refused", "bad_request"), ("refused", "method_not_found"),
    ], rows
    assert all(r["transport"] == "sse" and r["is_error"] and r["finished_at"] for r in rows)
    assert "not valid JSON" in rows[2]["message"] and f"admin/{marker}: " in rows[0]["message"]


def test_a_post_to_an_unknown_session_is_audited(live_server):
    marker = os.urandom(6).hex()
    response = requests.post(f"{live_server.url}/messages?session_id={marker}", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                             headers=live_server.headers(), timeout=10)
    assert response.status_code == 404
    (row,) = [r for r in live_server.audit(limit=50) if r["session_id"] == marker]
    assert row["status"] == "refused" and row["transport"] == "sse" and row["error_code"] == response.json()["error"]["code"]


def test_a_tools_call_with_bad_params_is_audited(live_server, raw):
    marker = os.urandom(6).hex()
    raw.post({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": f"run_{marker}", "arguments": "echo hi"}})
    assert error_of(raw.next_message()) == -32602
    (row,) = [r for r in live_server.audit() if r["tool"] == f"run_{marker}"]
    assert row["status"] == "refused" and row["error_code"] == "invalid_params" and row["is_error"]
    assert "arguments" in row["message"] and row["finished_at"]


def test_a_batch_gets_one_reply_per_request_and_none_for_notifications(raw):
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "no/such/method"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
        17,
    ]
    assert raw.post(batch).status_code == 202
    replies = [raw.next_message() for _ in range(4)]
    by_id = {r["id"]: r for r in replies}
    assert by_id[1]["result"] == {} and error_of(by_id[2]) == -32601
    assert {t["name"] for t in by_id[3]["result"]["tools"]} >= FIVE_TOOLS and error_of(by_id[None]) == -32600
    raw.post({"jsonrpc": "2.0", "id": "after", "method": "ping"})
    assert raw.next_message()["id"] == "after"


def test_notifications_and_client_responses_get_no_reply(raw):
    for body in (
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "method": "notifications/no-such-thing", "params": {"x": 1}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}},
        {"jsonrpc": "2.0", "id": 99, "result": {}},
    ):
        assert raw.post(body).status_code == 202
    raw.post({"jsonrpc": "2.0", "id": "last", "method": "ping"})
    # Each POST is dispatched on its own, so a stray reply could come before or after this one.
    assert raw.next_message()["id"] == "last"
    raw.post({"jsonrpc": "2.0", "id": "later", "method": "ping"})
    assert raw.next_message()["id"] == "later" and raw.no_message()


def test_a_body_over_the_size_limit_is_refused_and_the_session_keeps_working(raw):
    response = raw.post(None, raw=b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "' + b"x" * (1024 * 1024 + 10) + b'"}')
    assert response.status_code == 413 and response.json()["error"]["code"] == -32600
    assert "limit" in response.json()["error"]["message"]
    raw.post({"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert raw.next_message()["id"] == 2


# --- bad tool calls, with the official client ------------------------------------------------------


def with_session(server: Server, scenario) -> Any:
    async def main():
        with anyio.fail_after(60):
            async with open_session("sse", server.url + "/sse", server.token) as s:
                return await scenario(s)

    return anyio.run(main)


def test_an_unknown_tool_is_invalid_params(live_server, live_agent):
    async def scenario(s):
        with pytest.raises(MCPError) as caught:
            await s.call_tool("format_disk", {"machine": live_agent.name})
        return caught.value

    error = with_session(live_server, scenario)
    assert error.code == -32602 and "format_disk" in error.message and "run_shell_command" in error.message


@pytest.mark.parametrize(
    "tool, arguments, expected",
    [
        ("run_shell_command", {}, "missing required argument 'command'"),
        ("run_shell_command", {"command": 42}, "argument 'command' must be a string, got number"),
        ("run_shell_command", {"command": ""}, "argument 'command' must not be empty"),
        ("run_shell_command", {"command": "true", "timeout": "5"}, "argument 'timeout' must be a number, got string"),
        ("run_shell_command", {"command": "true", "timeout": 0}, "argument 'timeout' must be above 0"),
        ("run_shell_command", {"command": "true", "shell": "bash"}, "unknown argument 'shell'"),
        ("read_file", {"path": ["a"]}, "argument 'path' must be a string, got array"),
        ("write_file", {"path": "/tmp/x"}, "missing required argument 'content'"),
        ("write_file", {"path": "/tmp/x", "content": None}, "argument 'content' must be a string, got null"),
        ("list_directory", {"path": True}, "argument 'path' must be a string, got boolean"),
        ("check_agent_status", {"verbose": 1}, "unknown argument 'verbose'"),
    ],
)
def test_missing_or_wrong_typed_arguments_are_an_error_result(live_server, live_agent, tool, arguments, expected):
    result = with_session(live_server, lambda s: s.call_tool(tool, arguments))
    assert result["is_error"] and expected in result["text"]


def test_naming_an_unknown_machine_lists_the_known_ones(live_server, live_agent):
    result = with_session(live_server, lambda s: s.call_tool("run_shell_command", {"command": "true", "machine": "nowhere"}))
    assert result["is_error"]
    assert result["text"] == f"unknown machine 'nowhere'; known machines: {live_agent.name} (online)"


# --- refused paths and file errors on the real agent -----------------------------------------------


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A scratch folder outside the agent's roots, holding a file it must never read or write."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.txt").write_text("not for the agent\n")
    return folder


def call(server: Server, tool: str, arguments: dict) -> dict[str, Any]:
    return with_session(server, lambda s: s.call_tool(tool, arguments))


def test_dot_dot_out_of_a_root_is_refused(live_server, live_agent, outside):
    escape = os.path.relpath(outside / "secret.txt", live_agent.scratch)
    assert escape.startswith("..")
    result = call(live_server, "read_file", {"path": str(live_agent.scratch / escape)})
    assert result["is_error"] and "outside the allowed roots" in result["text"] and "not for the agent" not in result["text"]


def test_a_symlink_out_of_a_root_is_refused(live_server, live_agent, outside):
    link = live_agent.scratch / "way-out"
    link.symlink_to(outside)
    for tool, arguments in (
        ("read_file", {"path": str(link / "secret.txt")}),
        ("list_directory", {"path": str(link)}),
        ("write_file", {"path": str(link / "planted.txt"), "content": "x"}),
    ):
        result = call(live_server, tool, arguments)
        assert result["is_error"] and "outside the allowed roots" in result["text"], (tool, result["text"])
    assert not (outside / "planted.txt").exists()


def test_a_root_does_not_admit_a_sibling_sharing_its_prefix(live_server, live_agent):
    sibling = Path(str(live_agent.scratch) + "-evil")
    sibling.mkdir(exist_ok=True)
    (sibling / "secret.txt").write_text("not for the agent\n")
    result = call(live_server, "read_file", {"path": str(sibling / "secret.txt")})
    assert result["is_error"] and "outside the allowed roots" in result["text"]
    result = call(live_server, "write_file", {"path": str(sibling / "new.txt"), "content": "x"})
    assert result["is_error"] and not (sibling / "new.txt").exists()


@pytest.mark.parametrize(
    "tool, name, expected",
    [
        ("read_file", "missing.txt", "no such file"),
        ("read_file", "a-dir", "is a directory, not a file"),
        ("list_directory", "plain.txt", "is not a directory"),
        ("read_file", "big.txt", "over the 262144-byte read limit"),
        ("read_file", "blob.bin", "looks binary"),
        ("list_directory", "missing-dir", "no such directory"),
    ],
)
def test_file_errors_are_precise_error_results(live_server, live_agent, tool, name, expected):
    scratch = live_agent.scratch
    (scratch / "a-dir").mkdir(exist_ok=True)
    (scratch / "plain.txt").write_text("plain\n")
    (scratch / "big.txt").write_bytes(b"x" * (256 * 1024 + 1))  # one line past MAX_READ_BYTES' default
    (scratch / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    result = call(live_server, tool, {"path": str(scratch / name)})
    assert result["is_error"] and expected in result["text"], result["text"]
    assert str(scratch / name) in result["text"]


# --- the audit trail and the logs ------------------------------------------------------------------


def test_every_call_refused_or_not_is_audited_and_no_secret_is_logged(live_server, live_agent):
    marker = os.urandom(6).hex()
    content = f"private content {marker}\n"
    target = str(live_agent.scratch / f"audit-{marker}.txt")

    async def scenario(s):
        await s.call_tool("write_file", {"path": target, "content": content})
        await s.call_tool("read_file", {"path": target})
        await s.call_tool("run_shell_command", {"command": f"echo {marker}; exit 4"})
        await s.call_tool("run_shell_command", {"command": f"echo {marker}", "machine": f"ghost-{marker}"})
        await s.call_tool("read_file", {"path": f"/etc/{marker}"})
        await s.call_tool("run_shell_command", {"command": 7, "working_dir": marker})
        with pytest.raises(MCPError):
            await s.call_tool(f"no_such_tool_{marker}", {})

    with_session(live_server, scenario)
    requests.get(live_server.url + "/api/commands", headers={"Authorization": f"Bearer wrong-{marker}"}, timeout=5)
    rows = [r for r in live_server.audit(limit=1000) if marker in json.dumps(r)]
    by_kind = {}
    for row in rows:
        key = (row["tool"], row["status"], row["error_code"])
        by_kind[key] = row
    assert ("write_file", "succeeded", None) in by_kind
    assert ("read_file", "succeeded", None) in by_kind
    shell = by_kind[("run_shell_command", "succeeded", None)]
    assert shell["exit_code"] == 4 and not shell["is_error"] and shell["machine"] == live_agent.name
    assert by_kind[("run_shell_command", "refused", "unknown_machine")]["is_error"]
    assert by_kind[("read_file", "failed", "path_outside_roots")]["is_error"]
    assert by_kind[("run_shell_command", "refused", "invalid_arguments")]["is_error"]
    assert any(tool.startswith("no_such_tool_") for tool, _, _ in by_kind), by_kind.keys()
    for row in rows:
        assert row["finished_at"] and row["duration_ms"] is not None, row
    write = by_kind[("write_file", "succeeded", None)]
    data = content.encode()
    assert write["arguments"]["content"] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert "private content" not in json.dumps(live_server.audit(limit=1000))
    refusals = [r for r in live_server.audit(limit=50) if r["status"] == "refused" and r["error_code"] == "invalid_token"]
    assert refusals, "a refused authentication leaves an audit row"
    logs = live_server.process.log() + live_agent.process.log()
    assert TOKEN not in logs and QUERY_TOKEN not in logs and "private content" not in logs
    assert not SIGNED_TOKEN.findall(logs), "an agent access token was logged"
    assert f"wrong-{marker}" not in logs
