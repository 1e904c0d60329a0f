"""MCP over Streamable HTTP at `/mcp`, for every revision clients send today.

Handshake revisions (2025-03-26, 2025-06-18, 2025-11-25):

* `POST /mcp` with `initialize` opens a session; the response carries `Mcp-Session-Id`, and every
  later request must send it back (missing: 400; unknown, expired, deleted or opened with another
  credential: 404). `MCP-Protocol-Version`, when sent, must name a revision we speak (else 400);
  absent, 2025-03-26 is assumed, as the specification says.
* A body of notifications or client responses only is answered 202. A request is answered as
  `application/json`, or as an SSE stream when the client accepts one and the answer takes longer
  than `JSON_WINDOW_SECONDS` or notifications (progress) come first; the stream sends a comment
  every `heartbeat_seconds` so proxies keep it open. `Accept` missing or admitting neither form:
  406; a `Content-Type` other than `application/json`: 415. Such a
  stream is resumable: its events carry ids, and `GET /mcp` with `Last-Event-ID` continues it on a
  new connection (web/mcp/replay.py).
* `GET /mcp` opens the session's stream for server-initiated messages (one at a time, else 409);
  `DELETE /mcp` ends the session. Idle sessions expire on their own: clients rarely send DELETE.

2026-07-28 (chosen when `MCP-Protocol-Version` names it, or a session-less body carries its
`_meta` envelope): stateless, one request per POST, no session header; GET and DELETE are 405.
JSON-RPC errors found before dispatch get the HTTP status the revision assigns (400, 404).

Tool calls run in their own greenlet, so a client that goes away mid-call does not stop its
command: it completes, and its audit row is written, whoever is left to read the answer.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, request
from mcp_types import PROTOCOL_VERSION_META_KEY, jsonrpc
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from werkzeug.exceptions import MethodNotAllowed

from web import errors
from web.audit import record_rejected_message
from web.http import json_response, read_json, require_json_content_type, require_owner, services
from web.mcp import protocol as mcp_protocol
from web.mcp.origin import allow_cross_origin, check_origin
from web.mcp.replay import MAX_FINISHED, PRIMING_VERSIONS, RESUMABLE_VERSIONS, RETRY_MILLISECONDS, Replay
from web.mcp.session import Session

log = logging.getLogger(__name__)
bp = Blueprint("streamable", __name__)
bp.before_request(check_origin)
bp.after_request(allow_cross_origin)
TRANSPORT = "http"
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
# A request answered within this long gets a plain JSON response; a slower one switches to SSE.
JSON_WINDOW_SECONDS = 1.0
# HTTP status for JSON-RPC errors found before dispatch, as MCP 2026-07-28 assigns them.
STATELESS_ERROR_STATUS = {
    jsonrpc.PARSE_ERROR: 400,
    jsonrpc.INVALID_REQUEST: 400,
    jsonrpc.INVALID_PARAMS: 400,
    jsonrpc.HEADER_MISMATCH: 400,
    jsonrpc.MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
    jsonrpc.UNSUPPORTED_PROTOCOL_VERSION: 400,
    jsonrpc.METHOD_NOT_FOUND: 404,
}
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
_NOTE, _DONE, _QUEUED = "note", "done", "queued"


@bp.route("/mcp", methods=["POST", "GET", "DELETE"])
def handle_mcp():
    credential = require_owner()
    try:
        if request.method == "POST":
            _accepts()  # 406 and 415 before the body is read
            require_json_content_type()
        if _stateless():
            if request.method != "POST":
                raise MethodNotAllowed(["POST"], "MCP 2026-07-28 has no sessions: every request is a POST")
            return _post_stateless()
        if request.method == "POST":
            return _post_in_session(credential)
        session = _session(credential)
        if request.method == "GET":
            return _open_stream(session)
        services().sessions.close(session)
        log.info("http session %s deleted by its client", session.id[:8])
        return Response(status=204)
    except errors.CodeRemoteError as error:
        return _rpc_error(error)


# --- routing and checks -----------------------------------------------------------------------


def _stateless() -> bool:
    """Whether this request speaks 2026-07-28: by its version header, or by a session-less body's envelope."""
    version = request.headers.get(VERSION_HEADER)
    if version in MODERN_PROTOCOL_VERSIONS:
        return True
    if request.headers.get(SESSION_HEADER) is not None:
        return False
    if version is not None:
        return version not in HANDSHAKE_PROTOCOL_VERSIONS  # unknown: the stateless path names what we speak
    if request.method != "POST":
        return False
    body = _body()
    params = body.get("params") if isinstance(body, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta


def _body() -> Any:
    """The decoded JSON body, read once per request."""
    if "mcp_body" not in request.environ:
        request.environ["mcp_body"] = read_json(services().config.max_request_bytes)
    return request.environ["mcp_body"]


def _accepts() -> tuple[bool, bool]:
    """(JSON ok, SSE ok) from `Accept`; 406 when it admits neither. A POST must send one (`*/*`, as
    curl sends, admits both); a GET without one may have its stream."""
    accept = request.accept_mimetypes
    if not request.headers.get("Accept"):
        if request.method == "POST":
            raise errors.NotAcceptable(
                "missing Accept header: send 'Accept: application/json, text/event-stream' (as MCP clients do)"
            )
        return True, True
    json_ok, sse_ok = accept["application/json"] > 0, accept["text/event-stream"] > 0
    if not (json_ok or sse_ok):
        raise errors.NotAcceptable(
            "Accept must admit application/json or text/event-stream (MCP clients send "
            "'Accept: application/json, text/event-stream')"
        )
    return json_ok, sse_ok


def _session(credential: str) -> Session:
    session_id = request.headers.get(SESSION_HEADER)
    if not session_id:
        raise errors.BadRequest(
            f"missing {SESSION_HEADER} header: send initialize first, then the session id it returns with every request",
            code="missing_session",
        )
    session = services().sessions.get(session_id, credential, TRANSPORT)
    version = request.headers.get(VERSION_HEADER)
    if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
        raise errors.BadRequest(
            f"unsupported {VERSION_HEADER} {version[:40]!r}: this session speaks {session.protocol_version or mcp_protocol.DEFAULT_VERSION}; "
            f"supported: {', '.join(KNOWN_PROTOCOL_VERSIONS)}",
            code="unsupported_protocol_version",
        )
    return session


def _rpc_error(error: errors.CodeRemoteError, status: int | None = None) -> Response:
    """The JSON-RPC error answer to a request refused here, before dispatch, with its audit row."""
    body = _body_if_read()
    request_id = body.get("id") if isinstance(body, dict) and mcp_protocol.is_request(body) else None
    method = body.get("method") if isinstance(body, dict) and isinstance(body.get("method"), str) else ""
    session_id = (request.headers.get(SESSION_HEADER) or "")[:64]
    record_rejected_message(transport=TRANSPORT, error=error, method=f"{request.method} /mcp {method}".strip(), session_id=session_id)
    return json_response(mcp_protocol.error_response(request_id, error), status or error.http_status)


def _body_if_read() -> Any:
    return request.environ.get("mcp_body")


# --- POST -----------------------------------------------------------------------------------


def _post_in_session(credential: str) -> Response:
    svc = services()
    json_ok, sse_ok = _accepts()
    payload = _body()
    if request.headers.get(SESSION_HEADER) is None:
        if not (isinstance(payload, dict) and payload.get("method") == "initialize"):
            if isinstance(payload, list) and any(isinstance(m, dict) and m.get("method") == "initialize" for m in payload):
                raise errors.BadRequest("initialize must be sent alone, not inside a batch")
            _session(credential)  # raises the precise 400
        return _initialize(payload, credential, json_ok)
    session = _session(credential)
    if isinstance(payload, list):
        problem = mcp_protocol.batch_problem(payload, session.protocol_version or mcp_protocol.DEFAULT_VERSION)
        if problem is not None:
            raise problem
    messages = payload if isinstance(payload, list) else [payload]
    if not any(mcp_protocol.is_request(m) for m in messages):
        responses = svc.dispatcher.handle_batch(payload, session, transport=TRANSPORT)
        if responses:
            return json_response(responses if isinstance(payload, list) else responses[0], 400)
        return Response(status=202)

    def run(emit: mcp_protocol.Emit, on_submitted: mcp_protocol.Submitted) -> Any:
        responses = svc.dispatcher.handle_batch(payload, session, transport=TRANSPORT, emit=emit, on_submitted=on_submitted)
        return responses if isinstance(payload, list) else responses[0]

    return _answer(run, json_ok, sse_ok, session=session, request_id=payload.get("id") if isinstance(payload, dict) else None)


def _initialize(payload: dict, credential: str, json_ok: bool) -> Response:
    svc = services()
    session = svc.sessions.open(credential, TRANSPORT)
    response = svc.dispatcher.handle(payload, session, transport=TRANSPORT)
    if "error" in response:
        svc.sessions.close(session)
        return json_response(response, 400)
    log.info("http session %s opened at %s", session.id[:8], session.protocol_version)
    headers = {SESSION_HEADER: session.id}
    if json_ok:
        return json_response(response, headers=headers)
    return Response(_sse_message(response), mimetype="text/event-stream", headers=SSE_HEADERS | headers)


def _post_stateless() -> Response:
    svc = services()
    json_ok, sse_ok = _accepts()
    try:
        payload = _body()
    except errors.ParseError as error:
        return _rpc_error(error, 400)
    headers = {k.lower(): v for k, v in request.headers.items()}
    if isinstance(payload, dict) and not mcp_protocol.is_request(payload) and "id" not in payload:
        response = svc.dispatcher.handle_stateless(payload, headers, transport=TRANSPORT)
        return Response(status=202) if response is None else json_response(response, 400)
    return _answer(
        lambda emit, _: svc.dispatcher.handle_stateless(payload, headers, transport=TRANSPORT, emit=emit),
        json_ok,
        sse_ok,
        error_status=STATELESS_ERROR_STATUS,
    )


def _answer(
    run: Callable[[mcp_protocol.Emit, mcp_protocol.Submitted], Any],
    json_ok: bool,
    sse_ok: bool,
    *,
    session: Session | None = None,
    request_id: Any = None,
    error_status: dict[int, int] | None = None,
) -> Response:
    """Run the dispatch in its own greenlet; answer in JSON if it is quick and quiet, else as SSE.

    A resumable answer records what another process needs to finish it if this one dies: the
    request's id, the session's revision and, once queued, the command the tool call waits on."""
    outbox: queue.Queue = queue.Queue()
    version = session.protocol_version if session is not None else None
    request = {"id": request_id, "version": version}
    kept: list = []  # the answer's replay, once it has one
    # Once a tool call has queued a command, a client that can resume gets its stream at once, primed
    # with an event id: if this process dies before the answer, it resumes on another, which finishes
    # the answer. A JSON answer still pending then would be lost.
    switch_when_queued = sse_ok and session is not None and version in PRIMING_VERSIONS and request_id is not None

    def submitted(_: Any, command_id: str) -> None:
        request["command_id"] = command_id
        if kept:
            kept[0].record(request)
        if switch_when_queued:
            outbox.put((_QUEUED, command_id))

    def work() -> None:
        try:
            answer = run(lambda note: outbox.put((_NOTE, note)), submitted)
        except Exception:  # the dispatcher answers its own errors; this is a last resort
            log.exception("dispatch failed")
            answer = mcp_protocol.error_response(None, errors.CodeRemoteError("internal error; see the server log"))
        outbox.put((_DONE, answer))

    threading.Thread(target=work, daemon=True, name="mcp-http-dispatch").start()
    first = None
    if json_ok:
        try:
            first = outbox.get(timeout=JSON_WINDOW_SECONDS if sse_ok else None)
        except queue.Empty:
            pass
        while not sse_ok and first[0] == _NOTE:  # a JSON-only client cannot receive notifications
            first = outbox.get()
        if first is not None and first[0] == _QUEUED:
            first = None
        if first is not None and first[0] == _DONE:
            answer = first[1]
            status = 200
            if error_status and isinstance(answer, dict) and "error" in answer:
                status = error_status.get(answer["error"]["code"], 200)
            return json_response(answer, status)
    # Kept in the session, with event ids, where the revision lets a client resume it.
    resumable = session is not None and version in RESUMABLE_VERSIONS
    replay = session.replays.open(request if request_id is not None else None) if resumable else Replay()
    if resumable and request_id is not None:
        kept.append(replay)
    threading.Thread(target=_keep, args=(first, outbox, replay), daemon=True, name="mcp-http-replay").start()
    stream = _stream_replay(
        replay, 0, services().config.heartbeat_seconds, session, ids=resumable, priming=version in PRIMING_VERSIONS
    )
    return Response(stream, mimetype="text/event-stream", headers=SSE_HEADERS)


def _keep(first: tuple | None, outbox: queue.Queue, replay: Replay) -> None:
    """Move a call's messages into its replay as they come, whether or not anyone still listens."""
    item = first
    while True:
        kind, message = item if item is not None else outbox.get()
        if kind == _QUEUED:
            item = None
            continue
        replay.add(message if isinstance(message, list) else [message], last=kind == _DONE)
        if kind == _DONE:
            return
        item = None


def _stream_replay(
    replay: Replay, after: int, heartbeat: float, session: Session | None, *, ids: bool = True, priming: bool = False
) -> Iterator[str]:
    """An answer stream from message `after` on; with `ids`, every message carries its event id."""
    if ids and priming:
        yield f"id: {replay.event_id(0)}\nretry: {RETRY_MILLISECONDS}\ndata: \n\n"
    else:
        yield ": answer on its way\n\n"  # headers go out with the first chunk: send them now
    for item in replay.follow(after, heartbeat):
        if item is None:
            if session is not None:
                session.touch()  # a call in progress keeps its session alive
            yield ": keep-alive\n\n"
            continue
        number, message = item
        yield (f"id: {replay.event_id(number)}\n" if ids else "") + _sse_message(message)


def _sse_message(message: dict[str, Any]) -> str:
    return f"event: message\ndata: {json.dumps(message, separators=(',', ':'), ensure_ascii=False)}\n\n"


# --- GET: the session's own stream, or a resumed answer ------------------------------------------


def _resume(session: Session, last_event_id: str) -> Response:
    """The rest of an answer stream the client lost, from the event after `last_event_id`."""
    found = session.replays.find(last_event_id)
    if found is None:
        raise errors.NotFound(
            f"no answer stream to resume from Last-Event-ID {last_event_id[:80]!r} in this session "
            f"(only the latest {MAX_FINISHED} finished answers are kept)",
            code="unknown_event_id",
        )
    replay, after = found
    log.info("http session %s resumes answer stream %s after event %d", session.id[:8], replay.id, after)
    stream = _stream_replay(replay, after, services().config.heartbeat_seconds, session)
    return Response(stream, mimetype="text/event-stream", headers=SSE_HEADERS)


def _open_stream(session: Session) -> Response:
    svc = services()
    if not _accepts()[1]:
        raise errors.NotAcceptable("GET /mcp opens an SSE stream: send 'Accept: text/event-stream'")
    last_event_id = request.headers.get("Last-Event-ID")
    if last_event_id is not None:
        return _resume(session, last_event_id)
    if not session.hold_stream():
        raise errors.Conflict("this session already has a GET stream open", code="stream_open")
    heartbeat = svc.config.heartbeat_seconds

    def stream() -> Iterator[str]:
        try:
            yield ": stream open\n\n"
            for message in session.messages(heartbeat):
                yield ": keep-alive\n\n" if message is None else _sse_message(message)
        finally:
            session.release_stream()

    return Response(stream(), mimetype="text/event-stream", headers=SSE_HEADERS)
