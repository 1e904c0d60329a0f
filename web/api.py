"""Small REST surface: health for load balancers, the audit trail for curl."""

from __future__ import annotations

import logging
import re

from flask import Blueprint, g, request
from peewee import PeeweeException

from web import audit, errors
from web.http import json_response, query_int, read_json, require_owner, services
from web.mcp.protocol import SERVER_VERSION

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)


@bp.get("/health")
def get_health():
    """Liveness and a count of online machines; no names or secrets without auth."""
    svc = services()
    machines = svc.relay.machines()
    return json_response(
        {
            "status": "ok",
            "version": SERVER_VERSION,
            "machines_online": sum(1 for m in machines if svc.relay.is_online(m)),
            "sessions": len(svc.sessions),
        }
    )


def _transport(path: str) -> str:
    if path in ("/sse", "/messages"):
        return "sse"
    if path.startswith("/mcp"):
        return "http"
    if path.startswith(OAUTH_PATHS):
        return "oauth"
    return "agent" if path.startswith("/api/agent/") else "rest"


KEY_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
OAUTH_PATHS = ("/authorize", "/token", "/register", "/revoke")
# Refused for who or where the caller is, wherever it happens: always audited.
REFUSED_CALLER = frozenset({401, 403, 429})
# Normal answers of a working protocol, not refusals: an unknown URL, a lease another poll took.
NOT_REFUSALS = frozenset({404, 409})


def _is_refusal(path: str, status: int) -> bool:
    if status in REFUSED_CALLER:
        return True
    if not 400 <= status < 500 or status in NOT_REFUSALS:
        return False
    # The MCP transports write their own row for every message they refuse (web/mcp/).
    return _transport(path) not in ("sse", "http")


@bp.after_app_request
def audit_refusals(response):
    """Every refused request leaves one audit row: refused credentials, a forbidden or throttled
    caller, bad input on the REST, agent and OAuth endpoints, and an OAuth refusal sent back as a
    redirect (a view names it in `g.refusal`). Never the credential or the body itself."""
    refusal = g.pop("refusal", None)
    if refusal is None and not _is_refusal(request.path, response.status_code):
        return response
    if refusal is not None:
        code, message = refusal
    else:
        body = response.get_json(silent=True) or {}
        error = body.get("error") or {}
        if not isinstance(error, dict):  # OAuth's own shape (RFC 6749): {"error": "invalid_client", ...}
            error = {"code": error, "message": body.get("error_description", "")}
        code, message = str(error.get("code") or f"http_{response.status_code}"), str(error.get("message", "refused"))
    try:
        audit.record_refusal(
            transport=_transport(request.path),
            error_code=code,
            # The path without its query string: a token wrongly put in the URL stays out of the row.
            message=f"{request.method} {request.path[:200]}: {message}",
        )
    except PeeweeException as failure:
        log.error("could not audit a refused request (%s)", type(failure).__name__)
    return response


@bp.get("/api/commands")
def list_commands():
    """The newest audit rows: `?limit=50&machine=laptop`."""
    require_owner()
    limit = query_int("limit", 50, minimum=1, maximum=1000, code="invalid_limit")
    machine = request.args.get("machine") or None
    return json_response({"tool_calls": audit.recent(limit=limit, machine=machine)})


@bp.post("/api/machines/<name>/revoke")
def revoke_machine(name: str):
    """Revoke a machine's agent tokens at once; its agent must enrol again with the enrolment secret."""
    require_owner()
    machine = services().relay.revoke(name)
    return json_response({"machine": machine.name, "token_generation": machine.token_generation, "revoked": True})


@bp.post("/api/machines/<name>/approve")
def approve_machine(name: str):
    """Hand a machine name to another agent's key (a reinstalled machine, a lost state folder): body
    {"key_sha256": "<hex>"}, as the refused agent's log and error name it. The agent holding the name
    now is out at once (its tokens are revoked, and its key no longer registers)."""
    require_owner()
    body = read_json(4096)
    key_hash = body.get("key_sha256") if isinstance(body, dict) else None
    if not isinstance(key_hash, str) or not KEY_SHA256.fullmatch(key_hash):
        raise errors.BadRequest(
            'body must be {"key_sha256": "<64 hex digits>"}, the SHA-256 the refused agent logged', code="invalid_key_sha256"
        )
    machine = services().relay.approve(name, key_hash.lower())
    log.info("owner approved a new key for machine %r", name)
    return json_response({"machine": machine.name, "token_generation": machine.token_generation, "key_sha256": machine.key_hash})


@bp.get("/api/machines")
def list_machines():
    """Every known machine: online or not, last seen, host, OS, agent version, allowed roots."""
    require_owner()
    return json_response({"machines": services().relay.status()})
