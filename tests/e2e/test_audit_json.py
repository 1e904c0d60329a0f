"""The audit trail is always strict JSON, and what it stores from a request is bounded.

`/api/commands` is read by `jq` and by scripts: numbers no JSON parser accepts (NaN, Infinity) must
never come out of it, whatever a client sent or an older server stored, and a client's free text
(method and tool names, session ids) is kept to a bounded size.
"""

from __future__ import annotations

import json
import os

import pytest
import requests

from tests.harness import Agent, Server
from tests.e2e.test_streamable_http import ACCEPT_BOTH

HUGE = 64 * 1024
# Longest stored free text (as JSON), with room for its key and the "…[N more characters]" note.
MAX_STORED_TEXT = 2048 + 100


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    server = Server(tmp_path_factory.mktemp("audit-json")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(server, tmp_path_factory) -> Agent:
    agent = Agent(server, tmp_path_factory.mktemp("audit-json-agent"), "box").start()
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def session(server) -> str:
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "audit", "version": "0"}}}
    response = post(server, json.dumps(body))
    assert response.status_code == 200, response.text
    return response.headers["Mcp-Session-Id"]


def post(server: Server, body: str, session: str | None = None) -> requests.Response:
    headers = server.headers() | {"Accept": ACCEPT_BOTH, "Content-Type": "application/json"}
    if session:
        headers["Mcp-Session-Id"] = session
    return requests.post(server.url + "/mcp", data=body.encode(), headers=headers, timeout=30)


def strict_json(text: str):
    """json.loads as strict parsers (jq, JavaScript's JSON.parse) read it: no NaN or Infinity."""

    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def audit_text(server: Server, limit: int = 200) -> str:
    response = requests.get(server.url + "/api/commands", params={"limit": limit}, headers=server.headers(), timeout=10)
    assert response.status_code == 200, response.text
    return response.text


OVERFLOWING = [
    ("argument", '{"name":"run_shell_command","arguments":{"command":"true","timeout":1e999}}'),
    ("negative", '{"name":"run_shell_command","arguments":{"command":"true","timeout":-1e999}}'),
    ("nested", '{"name":"check_agent_status","arguments":{"x":[[1e400]]}}'),
    ("unknown-argument", '{"name":"read_file","arguments":{"path":"/tmp/x","offset":123e456}}'),
    ("meta", '{"name":"check_agent_status","arguments":{},"_meta":{"progressToken":1E309}}'),
]


@pytest.mark.parametrize("case, params", OVERFLOWING, ids=[c[0] for c in OVERFLOWING])
def test_a_number_past_a_double_is_refused_and_the_trail_stays_strict_json(server, agent, session, case, params):
    body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + params + "}"
    response = post(server, body, session)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32700, response.text
    assert "out of range" in response.json()["error"]["message"]
    rows = strict_json(audit_text(server))["tool_calls"]
    assert rows[0]["status"] == "refused" and rows[0]["error_code"] == "parse_error"


def test_an_id_past_a_double_is_refused(server, session):
    response = post(server, '{"jsonrpc":"2.0","id":1e999,"method":"ping"}', session)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32700


def test_large_but_finite_numbers_are_kept_as_numbers(server, agent, session):
    body = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "check_agent_status", "arguments": {"big": 1.7e308, "int": 10**30, "tiny": 5e-324}}})
    response = post(server, body, session)
    assert response.status_code == 200 and "result" in response.json(), response.text
    row = strict_json(audit_text(server))["tool_calls"][0]
    assert row["arguments"] == {"big": 1.7e308, "int": 10**30, "tiny": 5e-324}


def test_rows_an_older_server_stored_with_nan_and_infinity_come_out_as_text(server):
    """Before numbers were checked at the door, `1e999` was stored: it reads back as infinity."""
    marker = os.urandom(4).hex()
    stored = '{"timeout": Infinity, "low": -Infinity, "ratio": NaN, "list": [NaN, 1.5], "marker": "' + marker + '"}'
    insert = ("INSERT INTO tool_call (created_at, session_id, transport, machine, tool, arguments, status, is_error, message) "
              "VALUES (1, '', 'sse', 'box', 'run_shell_command', %s, 'succeeded', %s, '')")
    if server.database_url.startswith("sqlite:///"):
        import sqlite3

        db = sqlite3.connect(server.database_url[len("sqlite:///"):], timeout=10)
        db.execute(insert.replace("%s", "?"), (stored, False))
    else:
        import psycopg2

        db = psycopg2.connect(server.database_url)
        db.cursor().execute(insert, (stored, False))
    db.commit()
    db.close()
    rows = strict_json(audit_text(server, limit=1000))["tool_calls"]
    (row,) = [r for r in rows if r["arguments"].get("marker") == marker]
    assert row["arguments"] == {"timeout": "inf", "low": "-inf", "ratio": "nan", "list": ["nan", 1.5], "marker": marker}


@pytest.mark.parametrize(
    "case, body",
    [
        ("method", lambda big: {"jsonrpc": "2.0", "id": 3, "method": big}),
        ("tool-name", lambda big: {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": big, "arguments": {}}}),
        ("argument", lambda big: {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": big}}}),
        ("argument-name", lambda big: {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "read_file", "arguments": {big: 1}}}),
    ],
)
def test_huge_free_text_is_stored_and_echoed_bounded(server, agent, session, case, body):
    marker = os.urandom(4).hex()
    big = marker + "m" * HUGE
    response = post(server, json.dumps(body(big)), session)
    assert response.status_code in (200, 404), response.text
    assert len(response.text) < HUGE / 4, "the answer does not echo 64 KiB back"
    rows = strict_json(audit_text(server))["tool_calls"]
    (row,) = [r for r in rows if marker in json.dumps(r)]
    sizes = {k: len(json.dumps(v)) for k, v in row.items()}
    assert max(sizes.values()) <= MAX_STORED_TEXT, sizes


def test_a_huge_session_id_is_stored_bounded(server):
    marker = os.urandom(4).hex()
    url = f"{server.url}/messages?session_id={marker}{'s' * HUGE}"
    response = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=server.headers(), timeout=10)
    assert response.status_code in (404, 414), response.text[:200]
    if response.status_code == 404:
        (row,) = [r for r in strict_json(audit_text(server))["tool_calls"] if r["session_id"].startswith(marker)]
        assert len(row["session_id"]) == 64
