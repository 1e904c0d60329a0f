"""MCP over SSE, protocol revision 2024-11-05: `GET /sse` opens a stream whose first event names the
URL to POST JSON-RPC to (`/messages?session_id=…`); answers arrive on the stream as `message` events.

The stream yields at once (Flask sends headers only with the first chunk) and sends a comment every
`heartbeat_seconds`, which keeps proxies from cutting it and is how a closed client gets noticed.
"""

from __future__ import annotations

import json
import logging
import threading

from flask import Blueprint, Response, request, stream_with_context

from web import errors
from web.audit import record_rejected_message
from web.http import json_response, read_json, require_json_content_type, require_owner, services
from web.mcp.origin import allow_cross_origin, check_origin
from web.mcp.protocol import error_response as jsonrpc_error
from web.mcp.session import Session

log = logging.getLogger(__name__)
bp = Blueprint("sse", __name__)
bp.before_request(check_origin)
bp.after_request(allow_cross_origin)
TRANSPORT = "sse"


def sse_event(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


@bp.route("/sse", methods=["GET", "POST", "DELETE"])
def open_stream():
    if request.method != "GET":
        # mcp-remote and the official client try Streamable HTTP first and fall back to SSE on 405.
        return json_response(
            {"error": {"code": "method_not_allowed", "message": "this is the SSE endpoint: GET it; Streamable HTTP is at /mcp"}},
            405,
            {"Allow": "GET"},
        )
    credential = require_owner()
    svc = services()
    session = svc.sessions.open(credential, TRANSPORT)
    heartbeat = svc.config.heartbeat_seconds
    log.info("sse session %s opened", session.id[:8])

    def stream():
        try:
            yield sse_event("endpoint", f"/messages?session_id={session.id}")
            for message in session.messages(heartbeat):
                if message is None:
                    yield ": keep-alive\n\n"
                else:
                    yield sse_event("message", json.dumps(message, separators=(",", ":"), ensure_ascii=False))
        finally:
            svc.sessions.close(session)
            log.info("sse session %s closed", session.id[:8])

    return Response(
        stream_with_context(stream()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )


@bp.post("/messages")
def post_message():
    credential = require_owner()
    svc = services()
    session_id = request.args.get("session_id")
    try:
        session = svc.sessions.get(session_id, credential, TRANSPORT)
    except errors.CodeRemoteError as error:
        record_rejected_message(transport=TRANSPORT, error=error, method="POST /messages", session_id=session_id or "")
        raise
    try:
        require_json_content_type()
        payload = read_json(svc.config.max_request_bytes)
    except errors.CodeRemoteError as error:  # not JSON, or a body that could not be read whole
        record_rejected_message(transport=TRANSPORT, error=error, method="POST /messages", session_id=session.id)
        answer = jsonrpc_error(None, error)
        if isinstance(error, errors.BadRequest):  # the stream is where the client looks for answers
            session.send(answer)
        return json_response(answer, error.http_status)
    # Tool calls may wait minutes for an agent: answer the POST now, the stream carries the reply.
    threading.Thread(target=_dispatch, args=(svc, session, payload), daemon=True).start()
    return Response("Accepted\n", status=202, mimetype="text/plain")


def _dispatch(svc, session: Session, payload) -> None:
    # The stream carries notifications too (progress of a long tool call), ahead of the response.
    for response in svc.dispatcher.handle_batch(payload, session, transport=TRANSPORT, emit=session.send):
        session.send(response)
