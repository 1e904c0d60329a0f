"""The agent API: register, long-poll, start, result. JSON bodies, tokens only in `Authorization`.

    POST /api/agent/register               AUTH_TOKEN  -> {"token": ..., "poll_timeout_seconds": 25, ...}
    GET  /api/agent/poll?wait=25           agent token -> 200 {"commands": [...]} or 204 when none
    POST /api/agent/commands/<id>/start    agent token, {"lease": 1}   -> 200, or 409 "do not run it"
    POST /api/agent/commands/<id>/output   agent token, {"chunks": [{"stream": "stdout", "offset": 0,
                                           "data": <base64>}]} -> {"received": {"stdout": n, "stderr": m},
                                           "cancel": false, "state": "running"}
    GET  /api/agent/commands/<id>/input?offset=N&wait=25
                                           agent token -> 200 {"offset": N, "data": <base64>, "close":
                                           false, "state": "running"} or 204 when no input came
    POST /api/agent/commands/<id>/result   agent token, {"status": "succeeded", "result": {...}}
    POST /api/agent/reconcile              agent token, {"keep": [ids]} -> {"lost": [ids]}

A polled command is only leased: the agent runs it after `start` answers 200, and posts its result
once, or again with the same body if it cannot tell whether the first post landed (a repeat is
acknowledged, never applied twice). While a command runs, the agent posts its output to `output` in
chunks with byte offsets (a repeat is stored once; the answer says how far the server has it), at least
every few seconds even with no new output: that is the command's heartbeat, and its answer carries
`cancel: true` once the command was cancelled. A result may carry the command's (small) output
as `output` chunks of the same shape, saving the separate posts. An interactive command (stdin
"pipe") takes its input with the held `input` request, and its output posts may carry
`"idle": {"stdin": n, "closed": false}` once it has been quiet since its latest input
(web/relay/stdin.py). `poll?limit=N` leases at most N commands (the agent's
free slots). A restarted agent calls `reconcile` with the commands it still holds (running or with a
result in its outbox); the machine's other running commands become `lost`. docs/ARCHITECTURE.md has
the whole contract.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from flask import Blueprint, Response, request

from web import errors
from web.hangup import hang_up_check
from web.http import compact_json_response, json_response, query_int, query_seconds, read_json, services
from web.models import Command
from web.security.auth import Unauthorized

bp = Blueprint("agent_api", __name__, url_prefix="/api/agent")
MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_POLL_BATCH = 16
MACHINE_KEY = re.compile(r"[\x21-\x7e]{32,256}")


def _agent() -> str:
    """The machine named by this request's agent token, checked against revocation. A refused token
    counts as a failed authentication for the caller's address, as a wrong AUTH_TOKEN does: past
    AUTH_FAILURES_PER_MINUTE it is answered 429 (a valid token always passes)."""
    svc = services()
    try:
        name, generation = svc.agent_tokens.verify(request.headers.get("Authorization"))
        current = svc.relay.token_generation(name)
        if current is None or current != generation:
            raise Unauthorized(f"agent token for {name!r} was revoked: register again", code="token_revoked")
    except Unauthorized:
        svc.credentials.throttle.hit(request.remote_addr)
        raise
    return name


def _string(body: dict[str, Any], key: str, limit: int, default: str = "") -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise errors.BadRequest(f"'{key}' must be a string", code="invalid_field")
    return value[:limit]


@bp.post("/register")
def register():
    svc = services()
    svc.credentials.enrolment(request.headers.get("Authorization"), address=request.remote_addr)
    body = read_json(64 * 1024)
    if not isinstance(body, dict):
        raise errors.BadRequest("body must be a JSON object", code="invalid_body")
    name = _string(body, "machine", 200)
    if not MACHINE_NAME.fullmatch(name):  # match() with `$` let 'box\n' through
        raise errors.BadRequest(
            "'machine' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            code="invalid_machine_name",
        )
    roots = body.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise errors.BadRequest("'roots' must be a list of strings", code="invalid_field")
    machine = svc.relay.register(
        name,
        key_hash=_key_hash(body),
        hostname=_string(body, "hostname", 255),
        os_name=_string(body, "os", 255),
        version=_string(body, "version", 64),
        roots=[r[:4096] for r in roots[:64]],
    )
    return json_response(
        {
            "token": svc.agent_tokens.issue(name, machine.token_generation),
            "machine": name,
            "expires_in_seconds": svc.agent_tokens.max_age_seconds,
            "poll_timeout_seconds": svc.config.poll_timeout_seconds,
        }
    )


def _key_hash(body: dict[str, Any]) -> str | None:
    """SHA-256 of the machine key the agent sent (docs/ARCHITECTURE.md), or None when it sent none."""
    key = body.get("key")
    if key is None:
        return None
    if not isinstance(key, str) or not MACHINE_KEY.fullmatch(key):
        raise errors.BadRequest(
            "'key' must be 32-256 printable ASCII characters without spaces, e.g. $(openssl rand -hex 32)", code="invalid_machine_key"
        )
    return hashlib.sha256(key.encode()).hexdigest()


@bp.get("/poll")
def poll():
    machine = _agent()
    svc = services()
    hold = svc.config.poll_timeout_seconds
    # ASCII digits only (no NaN, inf, '²' or '1_0'): a NaN once would have held the poll forever.
    wait = query_seconds("wait", hold, maximum=hold, code="invalid_wait")
    limit = min(query_int("limit", MAX_POLL_BATCH, minimum=0, code="invalid_limit"), MAX_POLL_BATCH)
    commands = svc.relay.poll(machine, wait, limit, gone=hang_up_check(request.environ.get("gunicorn.socket")))
    if not commands:
        return Response(status=204)
    return compact_json_response({"commands": [_wire(c) for c in commands]})


def _wire(command: Command) -> dict[str, Any]:
    return {
        "id": command.id,
        "lease": command.lease_count,
        "tool": command.tool,
        "arguments": command.arguments,
        "timeout_seconds": command.timeout_seconds,
    }


@bp.post("/commands/<command_id>/start")
def start(command_id: str):
    machine = _agent()
    body = read_json(4096)
    lease = body.get("lease") if isinstance(body, dict) else None
    if not isinstance(lease, int) or isinstance(lease, bool):
        raise errors.BadRequest("body must be {\"lease\": <the lease number from the poll>}", code="invalid_lease")
    command = services().relay.start(machine, command_id, lease)
    return compact_json_response({"id": command.id, "state": command.state})


@bp.post("/commands/<command_id>/result")
def post_result(command_id: str):
    machine = _agent()
    svc = services()
    body = read_json(svc.config.max_result_bytes)
    if not isinstance(body, dict):
        raise errors.BadRequest("body must be a JSON object", code="invalid_body")
    result = body.get("result")
    if result is not None and not isinstance(result, dict):
        raise errors.BadRequest("'result' must be an object", code="invalid_field")
    exit_code = body.get("exit_code")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        raise errors.BadRequest("'exit_code' must be an integer", code="invalid_field")
    error = body.get("error") or {}
    if not isinstance(error, dict):
        raise errors.BadRequest("'error' must be an object with code and message", code="invalid_field")
    command, applied = svc.relay.complete(
        machine,
        command_id,
        _string(body, "status", 32),
        result,
        chunks=_chunks(body.get("output", [])),
        exit_code=exit_code,
        error_code=str(error.get("code", ""))[:64] or None,
        error_message=str(error.get("message", ""))[:4096] or None,
    )
    return compact_json_response({"id": command.id, "state": command.state, "duplicate": not applied})


@bp.post("/commands/<command_id>/output")
def post_output(command_id: str):
    machine = _agent()
    svc = services()
    body = read_json(svc.config.max_request_bytes * 2)
    chunks = body.get("chunks", []) if isinstance(body, dict) else None
    idle = body.get("idle") if isinstance(body, dict) else None
    if idle is not None and not (
        isinstance(idle, dict)
        and isinstance(idle.get("stdin"), int)
        and not isinstance(idle.get("stdin"), bool)
        and idle["stdin"] >= 0
        and isinstance(idle.get("closed", False), bool)
    ):
        raise errors.BadRequest("'idle' must be {\"stdin\": <bytes written>, \"closed\": <bool>}", code="invalid_idle")
    return compact_json_response(svc.relay.progress(machine, command_id, _chunks(chunks), idle))


@bp.get("/commands/<command_id>/input")
def take_input(command_id: str):
    machine = _agent()
    svc = services()
    hold = svc.config.poll_timeout_seconds
    offset = query_int("offset", 0, minimum=0, code="invalid_offset")  # input bytes already written
    taken = svc.relay.stdin.take(machine, command_id, offset, query_seconds("wait", hold, maximum=hold, code="invalid_wait"))
    if taken is None:
        return Response(status=204)
    return compact_json_response(taken)


def _chunks(chunks: Any) -> list[tuple[str, int, bytes]]:
    """Output chunks as (stream, offset, bytes), or a precise 400."""
    if not isinstance(chunks, list) or len(chunks) > 16:
        raise errors.BadRequest("body must be {\"chunks\": [...]} with at most 16 chunks", code="invalid_body")
    decoded = []
    for chunk in chunks:
        if not isinstance(chunk, dict) or chunk.get("stream") not in ("stdout", "stderr"):
            raise errors.BadRequest("each chunk needs 'stream' ('stdout' or 'stderr')", code="invalid_chunk")
        offset = chunk.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise errors.BadRequest("each chunk needs a byte 'offset' (an integer from 0)", code="invalid_chunk")
        try:
            data = base64.b64decode(chunk.get("data", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise errors.BadRequest("each chunk's 'data' must be base64", code="invalid_chunk") from None
        decoded.append((chunk["stream"], offset, data))
    return decoded


@bp.post("/reconcile")
def reconcile():
    machine = _agent()
    body = read_json(1024 * 1024)
    keep = body.get("keep") if isinstance(body, dict) else None
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise errors.BadRequest("body must be {\"keep\": [command ids]}", code="invalid_body")
    return json_response({"lost": services().relay.reconcile(machine, keep)})
