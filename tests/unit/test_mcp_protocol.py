"""The MCP dispatcher in process, on a real SQLite file: every revision's lifecycle, batches, the
stateless 2026-07-28 envelope and headers, and the progress hook."""

from __future__ import annotations

import base64

import mcp_types
import pytest
from mcp_types import jsonrpc

from web.mcp import protocol as mcp_protocol
from web.mcp.protocol import Dispatcher, decode_header_value
from web.mcp.session import Session
from web.mcp.tools import CallContext

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture
def dispatcher(app) -> Dispatcher:
    return app.extensions["code_remote"].dispatcher


def request(method: str, params: dict | None = None, request_id=1) -> dict:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def headers_for(method: str, name: str | None = None, version: str = "2026-07-28") -> dict[str, str]:
    headers = {"mcp-protocol-version": version, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


def initialize(dispatcher: Dispatcher, revision: str) -> Session:
    session = Session(id="s" * 32, credential="owner", transport="http")
    params = {"protocolVersion": revision, "capabilities": {}, "clientInfo": {"name": "unit", "version": "0"}}
    answer = dispatcher.handle(request("initialize", params), session, transport="http")
    assert answer["result"]["protocolVersion"] == revision
    return session


@pytest.mark.parametrize("revision", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_initialize_agrees_to_each_handshake_revision_and_declares_only_tools(dispatcher, revision):
    session = initialize(dispatcher, revision)
    assert session.protocol_version == revision
    listed = dispatcher.handle(request("tools/list"), session, transport="http")["result"]
    assert all(tool["description"] and tool["outputSchema"]["type"] == "object" for tool in listed["tools"])
    assert "resultType" not in listed


def test_initialize_counters_an_unknown_revision_with_the_latest_handshake_one(dispatcher):
    session = Session(id="x" * 32, credential="owner", transport="http")
    params = {"protocolVersion": "2030-01-01", "capabilities": {}, "clientInfo": {"name": "unit", "version": "0"}}
    answer = dispatcher.handle(request("initialize", params), session, transport="http")
    assert answer["result"]["protocolVersion"] == "2025-11-25"
    assert set(answer["result"]["capabilities"]) == {"tools"}


def test_logging_set_level_is_accepted_and_remembered_in_a_session(dispatcher):
    session = initialize(dispatcher, "2025-06-18")
    assert dispatcher.handle(request("logging/setLevel", {"level": "warning"}), session, transport="http")["result"] == {}
    assert session.log_level == "warning"


def test_server_discover_in_a_handshake_session_is_method_not_found(dispatcher):
    session = initialize(dispatcher, "2025-11-25")
    answer = dispatcher.handle(request("server/discover", {"_meta": META}), session, transport="sse")
    assert answer["error"]["code"] == jsonrpc.METHOD_NOT_FOUND


@pytest.mark.parametrize("revision,allowed", [("2024-11-05", True), ("2025-03-26", True), ("2025-06-18", False), ("2025-11-25", False)])
def test_batches_exist_only_in_the_revisions_that_had_them(dispatcher, revision, allowed):
    session = initialize(dispatcher, revision)
    answers = dispatcher.handle_batch([request("ping", request_id=1), request("ping", request_id=2)], session, transport="sse")
    if allowed:
        assert [a["id"] for a in answers] == [1, 2]
    else:
        assert len(answers) == 1 and answers[0]["id"] is None and answers[0]["error"]["code"] == jsonrpc.INVALID_REQUEST


def test_initialize_inside_a_batch_is_refused(dispatcher):
    session = Session(id="b" * 32, credential="owner", transport="sse")
    answers = dispatcher.handle_batch([request("initialize", {})], session, transport="sse")
    assert "initialize must be sent alone" in answers[0]["error"]["message"]


def test_stateless_discover_names_every_supported_revision(dispatcher):
    answer = dispatcher.handle_stateless(request("server/discover", {"_meta": META}), headers_for("server/discover"), transport="http")
    result = mcp_types.DiscoverResult.model_validate(answer["result"])
    assert set(result.supported_versions) == set(mcp_protocol.SUPPORTED_VERSIONS)
    assert answer["result"]["resultType"] == "complete" and result.capabilities.tools is not None


def test_stateless_tool_call_carries_result_type_and_server_info(dispatcher):
    params = {"name": "check_agent_status", "arguments": {}, "_meta": META}
    answer = dispatcher.handle_stateless(request("tools/call", params), headers_for("tools/call", "check_agent_status"), transport="http")
    assert answer["result"]["resultType"] == "complete" and answer["result"]["isError"] is False
    assert answer["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "code-remote"


@pytest.mark.parametrize(
    "headers,code",
    [
        (headers_for("tools/call", "read_file"), jsonrpc.HEADER_MISMATCH),
        (headers_for("tools/list", "check_agent_status"), jsonrpc.HEADER_MISMATCH),
        (headers_for("tools/call", "check_agent_status", version="2025-11-25"), jsonrpc.HEADER_MISMATCH),
        ({"mcp-method": "tools/call", "mcp-name": "check_agent_status"}, jsonrpc.HEADER_MISMATCH),
    ],
    ids=["name", "method", "version", "no-version-header"],
)
def test_stateless_headers_must_match_the_body(dispatcher, headers, code):
    params = {"name": "check_agent_status", "arguments": {}, "_meta": META}
    assert dispatcher.handle_stateless(request("tools/call", params), headers, transport="http")["error"]["code"] == code


def test_stateless_name_header_may_be_base64_wrapped(dispatcher):
    wrapped = "=?base64?" + base64.b64encode("check_agent_status".encode()).decode() + "?="
    params = {"name": "check_agent_status", "arguments": {}, "_meta": META}
    answer = dispatcher.handle_stateless(request("tools/call", params), headers_for("tools/call", wrapped), transport="http")
    assert "result" in answer
    assert decode_header_value("=?base64?not base64?=") is None


def test_stateless_unsupported_version_names_the_supported_ones(dispatcher):
    meta = {**META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    answer = dispatcher.handle_stateless(request("tools/list", {"_meta": meta}), headers_for("tools/list", version="2099-01-01"), transport="http")
    assert answer["error"]["code"] == jsonrpc.UNSUPPORTED_PROTOCOL_VERSION
    data = mcp_types.UnsupportedProtocolVersionErrorData.model_validate(answer["error"]["data"])
    assert data.requested == "2099-01-01" and "2026-07-28" in data.supported


@pytest.mark.parametrize("params", [None, {}, {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}])
def test_stateless_request_without_its_envelope_is_invalid_params(dispatcher, params):
    answer = dispatcher.handle_stateless(request("tools/list", params), headers_for("tools/list"), transport="http")
    assert answer["error"]["code"] == jsonrpc.INVALID_PARAMS and "_meta" in answer["error"]["message"]


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel", "no/such/method"])
def test_stateless_methods_that_do_not_exist_at_2026_07_28_are_method_not_found(dispatcher, method):
    answer = dispatcher.handle_stateless(request(method, {"_meta": META}), headers_for(method), transport="http")
    assert answer["error"]["code"] == jsonrpc.METHOD_NOT_FOUND


def test_stateless_batches_and_posted_responses_are_invalid_requests(dispatcher):
    batch = dispatcher.handle_stateless([request("tools/list", {"_meta": META})], headers_for("tools/list"), transport="http")
    posted = dispatcher.handle_stateless({"jsonrpc": "2.0", "id": 1, "result": {}}, headers_for("x"), transport="http")
    assert batch["error"]["code"] == posted["error"]["code"] == jsonrpc.INVALID_REQUEST


def test_stateless_notification_is_dropped_unless_its_version_is_unknown(dispatcher):
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    assert dispatcher.handle_stateless(note, headers_for("notifications/cancelled"), transport="http") is None
    refused = dispatcher.handle_stateless(note, headers_for("notifications/cancelled", version="1999-01-01"), transport="http")
    assert refused["error"]["code"] == jsonrpc.UNSUPPORTED_PROTOCOL_VERSION


def test_a_progress_token_and_an_emit_hook_give_tools_a_progress_reporter():
    sent: list[dict] = []
    params = mcp_types.CallToolRequestParams(name="x", arguments={}, _meta={"progressToken": "tok-1"})
    progress = mcp_protocol._progress(params, sent.append)
    progress(50, 100, "half way")
    note = mcp_types.ProgressNotification.model_validate({"method": sent[0]["method"], "params": sent[0]["params"]})
    assert note.params.progress_token == "tok-1" and note.params.progress == 50 and note.params.total == 100
    assert mcp_protocol._progress(params, None) is None
    no_token = mcp_types.CallToolRequestParams(name="x", arguments={})
    assert mcp_protocol._progress(no_token, sent.append) is None
    assert CallContext().progress is None


@pytest.mark.parametrize(
    "message,kind",
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, "request"),
        ({"jsonrpc": "2.0", "method": "notifications/initialized"}, "notification"),
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, "response"),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, "invalid"),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, "invalid"),
        ([], "invalid"),
    ],
)
def test_classify_tells_the_kinds_of_message_apart(message, kind):
    assert mcp_protocol.classify(message).kind == kind
