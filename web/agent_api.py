"""The agent API: register, long-poll, start, result. JSON bodies, tokens only in `Authorization`.

    POST /api/agent/register               AUTH_TOKEN  -> {"token": ..., "poll_timeout_seconds": 25, ...}
    GET  /api/agent/poll?wait=25           agent token -> 200 {"commands": [...]} or 204 when none
    POST /api/agent/commands/<id>/start    agent token, {"lease": 1}   -> 200, or 409 "do not run it"
    POST /api/agent/commands/<id>/result   agent token, {"status": "succeeded", "result": {...}}

A polled command is only leased: the agent runs it after `start` answers 200, and posts its result
once, or again with the same body if it cannot tell whether the first post landed (a repeat is
acknowledged, never applied twice). docs/ARCHITECTURE.md has the whole contract.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, request

from web import errors
from web.auth import Unauthorized
from web.http import json_response, read_json, services
from web.models import Command

bp = Blueprint("agent_api", __name__, url_prefix="/api/agent")
MACHINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_POLL_BATCH = 16


def _agent() -> str:
    """The machine named by this request's agent token, checked against revocation."""
    svc = services()
    name, generation = svc.agent_tokens.verify(request.headers.get("Authorization"))
    machine = svc.relay.machine(name)
    if machine is None or machine.token_generation != generation:
        raise Unauthorized(f"agent token for {name!r} was revoked: register again", code="token_revoked")
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
    if not MACHINE_NAME.match(name):
        raise errors.BadRequest(
            "'machine' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            code="invalid_machine_name",
        )
    roots = body.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise errors.BadRequest("'roots' must be a list of strings", code="invalid_field")
    machine = svc.relay.register(
        name,
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


@bp.get("/poll")
def poll():
    machine = _agent()
    svc = services()
    limit = svc.config.poll_timeout_seconds
    raw = request.args.get("wait", str(limit))
    try:
        wait = min(max(float(raw), 0.0), limit)
    except ValueError:
        raise errors.BadRequest(f"wait must be a number of seconds, got {raw!r}", code="invalid_wait") from None
    commands = svc.relay.poll(machine, wait, MAX_POLL_BATCH)
    if not commands:
        return Response(status=204)
    return json_response({"commands": [_wire(c) for c in commands]})


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
    return json_response({"id": command.id, "state": command.state})


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
        exit_code=exit_code,
        error_code=str(error.get("code", ""))[:64] or None,
        error_message=str(error.get("message", ""))[:4096] or None,
    )
    return json_response({"id": command.id, "state": command.state, "duplicate": not applied})
