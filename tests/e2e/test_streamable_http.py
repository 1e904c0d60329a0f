"""Streamable HTTP at /mcp, on the wire: sessions, versions, Accept, Origin, batches, notifications,
the stateless 2026-07-28 revision, disconnects mid-call and isolation between clients.

Most tests speak raw HTTP to the real gunicorn server and agent with `requests`; a few use the
in-process app where they need a short session lifetime.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import replace_config
from tests.harness import TOKEN, serve_page, wait_for
from web.mcp import streamable

ACCEPT_BOTH = "application/json, text/event-stream"
META_2026 = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-http-test", "version": "0"},
}


def rpc(method: str, params: dict | None = None, request_id: int | str | None = 1) -> dict:
    message: dict = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if request_id is not None:
        message["id"] = request_id
    return message


def post(server, body, *, session: str | None = None, version: str | None = None, headers: dict | None = None, **kwargs) -> requests.Response:
    sent = {"Authorization": f"Bearer {server.token}", "Accept": ACCEPT_BOTH, "Content-Type": "application/json"}
    if session:
        sent["Mcp-Session-Id"] = session
    if version:
        sent["MCP-Protocol-Version"] = version
    sent.update(headers or {})
    kwargs.setdefault("timeout", 30)
    return requests.post(server.url + "/mcp", data=json.dumps(body), headers=sent, **kwargs)


def initialize(server, revision: str = "2025-11-25") -> str:
    params = {"protocolVersion": revision, "capabilities": {}, "clientInfo": {"name": "raw-http-test", "version": "0"}}
    response = post(server, rpc("initialize", params, 0))
    assert response.status_code == 200, response.text
    assert response.json()["result"]["protocolVersion"] == revision
    session = response.headers["Mcp-Session-Id"]
    assert post(server, rpc("notifications/initialized", request_id=None), session=session, version=revision).status_code == 202
    return session


def sse_messages(text: str) -> list[dict]:
    """The JSON-RPC messages of an SSE body, in order (comments, blank lines and the data-less priming
    event skipped, as an SSE client does)."""
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]


def stateless(server, method: str, params: dict | None = None, *, headers: dict | None = None, **kwargs) -> requests.Response:
    params = {"_meta": META_2026, **(params or {})}
    sent = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
    if method == "tools/call":
        sent["Mcp-Name"] = params["name"]
    return post(server, rpc(method, params, 7), headers=sent | (headers or {}), **kwargs)


# --- sessions ----------------------------------------------------------------------------------


def test_initialize_returns_a_session_id_that_later_requests_must_carry(live_server, live_agent):
    session = initialize(live_server)
    listed = post(live_server, rpc("tools/list", request_id=2), session=session, version="2025-11-25")
    assert listed.status_code == 200 and {"run_shell_command", "check_agent_status"} <= {t["name"] for t in listed.json()["result"]["tools"]}
    missing = post(live_server, rpc("tools/list", request_id=3))
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == -32600 and "Mcp-Session-Id" in missing.json()["error"]["message"]


def test_unknown_and_deleted_sessions_are_404(live_server, live_agent):
    assert post(live_server, rpc("ping"), session="0" * 32).status_code == 404
    session = initialize(live_server)
    deleted = requests.delete(live_server.url + "/mcp", headers=live_server.headers() | {"Mcp-Session-Id": session}, timeout=10)
    assert deleted.status_code == 204
    gone = post(live_server, rpc("ping"), session=session)
    assert gone.status_code == 404 and "unknown or expired session" in gone.json()["error"]["message"]


def test_an_sse_session_id_is_foreign_to_streamable_http(live_server, live_agent):
    with requests.get(live_server.url + "/sse", headers=live_server.headers(), stream=True, timeout=10) as stream:
        endpoint = next(line for line in stream.iter_lines(decode_unicode=True) if line.startswith("data:"))
        sse_session = endpoint.split("session_id=")[1]
        assert post(live_server, rpc("ping"), session=sse_session).status_code == 404


def test_a_session_opened_with_another_credential_is_404(client, app):
    other = app.extensions["code_remote"].sessions.open("another-credential", "http")
    response = client.post("/mcp", json=rpc("ping"), headers={"Authorization": f"Bearer {TOKEN}", "Accept": ACCEPT_BOTH, "Mcp-Session-Id": other.id})
    assert response.status_code == 404


@pytest.fixture
def config(config):
    return replace_config(config, session_idle_seconds=0.3)


def test_idle_sessions_expire_on_their_own(client):
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": ACCEPT_BOTH}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    session = client.post("/mcp", json=rpc("initialize", params), headers=headers).headers["Mcp-Session-Id"]
    assert client.post("/mcp", json=rpc("ping"), headers=headers | {"Mcp-Session-Id": session}).status_code == 200
    wait_for(
        lambda: client.post("/mcp", json=rpc("ping"), headers=headers | {"Mcp-Session-Id": session}).status_code == 404,
        timeout=5,
        interval=0.5,  # each look is a use: look less often than the idle limit
        what="the idle session to expire",
    )


def test_get_opens_one_session_stream_and_delete_ends_it(live_server, live_agent):
    session = initialize(live_server)
    headers = live_server.headers() | {"Mcp-Session-Id": session, "Accept": "text/event-stream"}
    with requests.get(live_server.url + "/mcp", headers=headers, stream=True, timeout=10) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        lines = stream.iter_lines(decode_unicode=True)
        assert next(lines).startswith(":")
        second = requests.get(live_server.url + "/mcp", headers=headers, timeout=10)
        assert second.status_code == 409
        assert requests.delete(live_server.url + "/mcp", headers=headers, timeout=10).status_code == 204
        assert [line for line in lines if line.startswith("data:")] == []  # ends, with nothing of anyone else's


def test_mcp_needs_the_bearer_token_and_caps_the_body_size(live_server, live_agent):
    anonymous = requests.post(live_server.url + "/mcp", json=rpc("ping"), headers={"Accept": ACCEPT_BOTH}, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = requests.post(live_server.url + "/mcp", json=rpc("ping"), headers={"Authorization": "Bearer nope", "Accept": ACCEPT_BOTH}, timeout=10)
    assert wrong.status_code == 401
    session = initialize(live_server)
    huge = rpc("tools/call", {"name": "write_file", "arguments": {"path": str(live_agent.scratch / "huge.txt"), "content": "x" * (1024 * 1024 + 1)}})
    refused = post(live_server, huge, session=session)
    assert refused.status_code == 413 and "limit" in refused.json()["error"]["message"]
    assert post(live_server, rpc("ping"), session=session).status_code == 200  # and the server keeps serving


# --- versions, Accept, Origin ------------------------------------------------------------------


def test_protocol_version_header_is_checked_and_defaults_to_2025_03_26(live_server, live_agent):
    session = initialize(live_server, "2025-06-18")
    assert post(live_server, rpc("ping"), session=session).status_code == 200  # absent: assumed 2025-03-26
    wrong = post(live_server, rpc("ping"), session=session, version="1999-01-01")
    assert wrong.status_code == 400 and "1999-01-01" in wrong.json()["error"]["message"]


@pytest.mark.parametrize("accept", ["text/html", "image/png, text/plain"])
def test_an_accept_without_json_or_sse_is_406_with_a_clear_message(live_server, live_agent, accept):
    response = post(live_server, rpc("ping"), headers={"Accept": accept})
    assert response.status_code == 406
    assert "Accept must admit application/json or text/event-stream" in response.json()["error"]["message"]


@pytest.mark.parametrize("with_session", [False, True], ids=["initialize", "in-session"])
def test_a_post_without_accept_is_406_and_star_slash_star_as_curl_sends_is_served(live_server, live_agent, with_session):
    session = initialize(live_server) if with_session else None
    body = rpc("ping") if with_session else rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl", "version": "8"}})
    headers = {"Authorization": f"Bearer {live_server.token}", "Content-Type": "application/json"}
    if session:
        headers["Mcp-Session-Id"] = session
    # requests sends Accept: */* unless told not to.
    refused = requests.post(live_server.url + "/mcp", data=json.dumps(body), headers=headers | {"Accept": None}, timeout=10)
    assert refused.status_code == 406 and "Accept" in refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == -32600
    served = requests.post(live_server.url + "/mcp", data=json.dumps(body), headers=headers | {"Accept": "*/*"}, timeout=10)
    assert served.status_code == 200 and "result" in served.json(), served.text


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "text/event-stream", "application/jsonl", "application/json-patch+json"],
    ids=["none", "text", "form", "event-stream", "jsonl", "json-patch"],
)
def test_a_post_not_declared_as_json_is_415_and_not_run(live_server, live_agent, content_type):
    session = initialize(live_server)
    mark = live_agent.scratch / f"typed-{content_type and content_type.replace('/', '-')}"
    call = rpc("tools/call", {"name": "run_shell_command", "arguments": {"command": f"touch {mark}"}})
    headers = {"Authorization": f"Bearer {live_server.token}", "Accept": ACCEPT_BOTH, "Mcp-Session-Id": session}
    if content_type:
        headers["Content-Type"] = content_type
    refused = requests.post(live_server.url + "/mcp", data=json.dumps(call), headers=headers, timeout=10)
    assert refused.status_code == 415 and refused.json()["error"]["code"] == -32600, refused.text
    assert "application/json" in refused.json()["error"]["message"]
    stateless_refused = requests.post(live_server.url + "/mcp", data=json.dumps(rpc("server/discover", {"_meta": META_2026})), headers={
        k: v for k, v in headers.items() if k != "Mcp-Session-Id"} | {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"}, timeout=10)
    assert stateless_refused.status_code == 415
    assert post(live_server, rpc("ping"), session=session, headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200
    assert not mark.exists()


def test_a_foreign_origin_is_refused_on_every_mcp_endpoint(live_server, live_agent):
    evil = {"Origin": "http://evil.example.com"}
    assert post(live_server, rpc("ping"), headers=evil).status_code == 403
    assert requests.get(live_server.url + "/sse", headers=live_server.headers() | evil, timeout=10).status_code == 403
    refused = requests.post(live_server.url + "/messages?session_id=x", json=rpc("ping"), headers=live_server.headers() | evil, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
    assert stateless(live_server, "server/discover", headers=evil).status_code == 403
    # The Inspector's UI runs on localhost: allowed.
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "inspector", "version": "0"}}
    assert post(live_server, rpc("initialize", params), headers={"Origin": "http://localhost:6274"}).status_code == 200


def test_a_page_on_an_allowed_origin_can_read_the_answers_and_a_foreign_one_cannot(live_server, live_agent):
    for path in ("/mcp", "/sse", "/messages"):
        preflight = requests.options(
            live_server.url + path, timeout=10,
            headers={"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization, content-type, mcp-session-id"},
        )
        assert preflight.status_code == 200, (path, preflight.status_code)
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:6274", path
        allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type", "mcp-session-id", "mcp-protocol-version"} <= allowed, path
        assert "Access-Control-Allow-Credentials" not in preflight.headers
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "page", "version": "0"}}
    answer = post(live_server, rpc("initialize", params), headers={"Origin": "http://localhost:6274"})
    assert answer.headers["Access-Control-Allow-Origin"] == "http://localhost:6274"
    assert "Mcp-Session-Id" in answer.headers["Access-Control-Expose-Headers"] and "Origin" in answer.headers["Vary"]
    unauthorized = requests.post(live_server.url + "/mcp", json=rpc("ping"), headers={"Origin": "http://localhost:6274"}, timeout=10)
    assert unauthorized.status_code == 401 and "WWW-Authenticate" in unauthorized.headers["Access-Control-Expose-Headers"]
    foreign = requests.options(live_server.url + "/mcp", headers={"Origin": "http://evil.example.com", "Access-Control-Request-Method": "POST"}, timeout=10)
    assert foreign.status_code == 403 and "Access-Control-Allow-Origin" not in foreign.headers


NODE_DIR = Path(__file__).resolve().parent.parent / "node"
PAGE = b"<!doctype html><title>client</title>"  # the origin a browser-based client runs on


def test_a_browser_page_on_localhost_speaks_mcp_to_the_server_and_a_foreign_page_is_refused(live_server, live_agent):
    """In a real Chromium: a page at localhost (another origin than the server's 127.0.0.1) opens a
    session, lists the tools and ends the session; the same code from a page at 127.0.0.2, an origin
    the server does not know, is stopped."""
    if not Path("/usr/bin/chromium").exists() or not (NODE_DIR / "node_modules" / "playwright-core").exists():
        pytest.fail("needs Debian's chromium (.ci/apt-packages) and playwright-core (scripts/bootstrap --node)")

    def run(page_url: str) -> dict:
        done = subprocess.run(["node", str(NODE_DIR / "browser_fetch.mjs"), page_url, live_server.url, live_server.token],
                              cwd=NODE_DIR, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    with serve_page(PAGE, "127.0.0.1") as port:
        local = run(f"http://localhost:{port}/")
    assert local.get("error") is None, local
    assert local["initialize"] == "2025-11-25" and len(local["sessionId"]) >= 16 and local["deleted"] == 204
    assert {"run_shell_command", "read_file", "write_file", "list_directory", "check_agent_status"} <= set(local["tools"])
    with serve_page(PAGE, "127.0.0.2") as port:
        foreign = run(f"http://127.0.0.2:{port}/")
    assert "Failed to fetch" in foreign.get("error", ""), foreign
    assert f"refused OPTIONS /mcp from origin 'http://127.0.0.2:{port}'" in live_server.process.log()  # by the server, not the network


# --- messages ----------------------------------------------------------------------------------


def test_batch_arrays_are_answered_at_2025_03_26_and_refused_from_2025_06_18(live_server, live_agent):
    old = initialize(live_server, "2025-03-26")
    batch = [rpc("ping", request_id="a"), rpc("notifications/initialized", request_id=None), rpc("tools/list", request_id="b")]
    answered = post(live_server, batch, session=old, version="2025-03-26")
    assert answered.status_code == 200
    assert sorted(r["id"] for r in answered.json()) == ["a", "b"]
    newer = initialize(live_server, "2025-06-18")
    refused = post(live_server, batch, session=newer, version="2025-06-18")
    assert refused.status_code == 400 and "batches are not part of MCP 2025-06-18" in refused.json()["error"]["message"]
    assert post(live_server, [rpc("initialize", {}, 1)]).status_code == 400


def test_notifications_and_client_responses_are_accepted_with_202(live_server, live_agent):
    session = initialize(live_server)
    cancelled = rpc("notifications/cancelled", {"requestId": 99, "reason": "test"}, request_id=None)
    assert post(live_server, cancelled, session=session).status_code == 202
    assert post(live_server, {"jsonrpc": "2.0", "id": 5, "result": {}}, session=session).status_code == 202
    invalid = post(live_server, {"jsonrpc": "1.0", "method": "x"}, session=session)
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == -32600


def test_a_slow_call_is_streamed_as_sse_and_a_json_only_client_gets_json(live_server, live_agent):
    session = initialize(live_server)
    call = rpc("tools/call", {"name": "run_shell_command", "arguments": {"command": "sleep 1.5; echo slow"}}, 11)
    streamed = post(live_server, call, session=session)
    assert streamed.headers["Content-Type"].startswith("text/event-stream")
    assert sse_messages(streamed.text)[-1]["result"]["content"][0]["text"].startswith("slow")
    plain = post(live_server, call, session=session, headers={"Accept": "application/json"})
    assert plain.headers["Content-Type"].startswith("application/json")
    assert plain.json()["result"]["content"][0]["text"].startswith("slow")


def resume(server, session: str, last_event_id: str, version: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {server.token}", "Accept": "text/event-stream", "Mcp-Session-Id": session,
               "MCP-Protocol-Version": version, "Last-Event-ID": last_event_id}
    return requests.get(server.url + "/mcp", headers=headers, timeout=30)


@pytest.mark.parametrize("revision", ["2025-06-18", "2025-11-25"])
def test_an_answer_stream_cut_mid_call_is_resumed_with_last_event_id(live_server, live_agent, revision):
    """The first stream is dropped before the answer; a GET with the last event id seen gets it."""
    session = initialize(live_server, revision)
    call = rpc("tools/call", {"name": "run_shell_command", "arguments": {"command": "sleep 1.5; echo resumed"}}, 21)
    with post(live_server, call, session=session, version=revision, stream=True) as first:
        assert first.headers["Content-Type"].startswith("text/event-stream")
        opening = next(first.iter_lines(decode_unicode=True))
    if revision == "2025-11-25":  # primed: an id before any message, so a quiet call can be resumed too
        assert opening.startswith("id: ") and opening.endswith("/0")
        resumed = resume(live_server, session, opening[4:], revision)
        assert resumed.status_code == 200 and resumed.text.startswith(": answer on its way")
        (answer,) = sse_messages(resumed.text)
        assert answer["id"] == 21 and answer["result"]["content"][0]["text"].startswith("resumed")
        # Event ids name the stream and grow within it (1, 2, ... in one process; row ids where the
        # answers are shared by several processes).
        (last_id,) = re.findall(rf"^id: ({re.escape(opening[4:-2])}/[1-9][0-9]*)$", resumed.text, re.M)
        again = resume(live_server, session, last_id, revision)  # nothing after the last one
        assert again.status_code == 200 and sse_messages(again.text) == []
    else:  # older clients cannot read a data-less event: no priming, the first event is the answer
        assert opening.startswith(": ")
    unknown = resume(live_server, session, "0123456789abcdef/0", revision)
    assert unknown.status_code == 404 and "no answer stream to resume" in unknown.json()["error"]["message"]


def test_a_client_that_disconnects_mid_call_leaves_the_command_to_complete_and_be_audited(live_server, live_agent):
    session = initialize(live_server)
    marker = live_agent.scratch / "after-disconnect.txt"
    command = f"sleep 2; echo done > {marker}"
    call = rpc("tools/call", {"name": "run_shell_command", "arguments": {"command": command}}, 12)
    # The client gives up after 0.5 s: waiting for the headers, or (the answer streamed once its
    # command is queued) for the body, which requests reports as a connection error.
    with pytest.raises((requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)):
        post(live_server, call, session=session, timeout=(5, 0.5))
    wait_for(marker.exists, timeout=20, what="the command to finish after its client left")

    def finished_row():
        rows = [r for r in live_server.audit() if r["arguments"].get("command") == command]
        return rows and rows[0]["finished_at"] and rows[0]

    row = wait_for(finished_row, timeout=20, what="the audit row of the abandoned call")
    assert row["transport"] == "http" and row["exit_code"] == 0 and not row["is_error"]


def test_two_clients_sessions_never_see_each_others_messages(live_server, live_agent):
    sessions = {tag: initialize(live_server) for tag in ("alpha", "beta")}
    answers: dict[str, list] = {}

    def client(tag: str) -> None:
        call = rpc("tools/call", {"name": "run_shell_command", "arguments": {"command": f"sleep 1.2; echo {tag}"}}, 1)
        answers[tag] = [sse_messages(r.text) if r.headers["Content-Type"].startswith("text/event-stream") else [r.json()]
                        for r in (post(live_server, call, session=sessions[tag]) for _ in range(2))]

    threads = [threading.Thread(target=client, args=(tag,)) for tag in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for tag, other in (("alpha", "beta"), ("beta", "alpha")):
        texts = [m["result"]["content"][0]["text"] for messages in answers[tag] for m in messages if "result" in m]
        assert len(texts) == 2 and all(t.startswith(tag) and other not in t for t in texts), answers


def test_well_known_paths_we_do_not_implement_answer_404_json(live_server):
    response = requests.get(live_server.url + "/.well-known/no-such-document", timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


# --- 2026-07-28, stateless ---------------------------------------------------------------------


def test_stateless_requests_need_no_session_and_carry_result_type(live_server, live_agent):
    discovered = stateless(live_server, "server/discover")
    assert discovered.status_code == 200 and "Mcp-Session-Id" not in discovered.headers
    result = discovered.json()["result"]
    assert "2026-07-28" in result["supportedVersions"] and result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "code-remote"
    called = stateless(live_server, "tools/call", {"name": "run_shell_command", "arguments": {"command": "echo stateless"}})
    body = called.json() if called.headers["Content-Type"].startswith("application/json") else sse_messages(called.text)[-1]
    assert body["result"]["resultType"] == "complete" and body["result"]["content"][0]["text"].startswith("stateless")
    rows = [r for r in live_server.audit() if r["arguments"].get("command") == "echo stateless"]
    assert rows and rows[0]["transport"] == "http"


def test_stateless_header_mismatch_and_unsupported_version_get_their_own_codes(live_server, live_agent):
    mismatch = stateless(live_server, "tools/call", {"name": "check_agent_status", "arguments": {}}, headers={"Mcp-Name": "read_file"})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
    wrong_method = stateless(live_server, "tools/list", headers={"Mcp-Method": "tools/call"})
    assert wrong_method.status_code == 400 and wrong_method.json()["error"]["code"] == -32020
    future = {**META_2026, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    unsupported = post(live_server, rpc("tools/list", {"_meta": future}), headers={"MCP-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"})
    error = unsupported.json()["error"]
    assert unsupported.status_code == 400 and error["code"] == -32022
    assert error["data"]["requested"] == "2099-01-01" and "2026-07-28" in error["data"]["supported"]
    no_envelope = post(live_server, rpc("tools/list", {}), headers={"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"})
    assert no_envelope.status_code == 400 and no_envelope.json()["error"]["code"] == -32602


def test_stateless_unknown_methods_are_refused_at_once_and_get_delete_are_405(live_server, live_agent):
    started = time.monotonic()
    unknown = stateless(live_server, "initialize")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == -32601
    assert time.monotonic() - started < 2
    headers = live_server.headers() | {"MCP-Protocol-Version": "2026-07-28", "Accept": "text/event-stream"}
    assert requests.get(live_server.url + "/mcp", headers=headers, timeout=10).status_code == 405
    deleted = requests.delete(live_server.url + "/mcp", headers=headers, timeout=10)
    assert deleted.status_code == 405 and deleted.headers["Allow"] == "POST"
    assert post(live_server, [rpc("tools/list", {"_meta": META_2026})], version="2026-07-28").status_code == 400


def test_notifications_emitted_before_the_answer_turn_the_response_into_an_sse_stream(app):
    def run(emit, on_submitted):
        emit({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t", "progress": 1}})
        return {"jsonrpc": "2.0", "id": 1, "result": {}}

    with app.test_request_context("/mcp"):
        streamed = streamable._answer(run, json_ok=True, sse_ok=True)
        messages = sse_messages("".join(streamed.response))
        json_only = streamable._answer(run, json_ok=True, sse_ok=False)
    assert streamed.mimetype == "text/event-stream"
    assert [m.get("method") for m in messages] == ["notifications/progress", None] and messages[1]["id"] == 1
    assert json_only.get_json() == {"jsonrpc": "2.0", "id": 1, "result": {}}  # it cannot carry notifications
