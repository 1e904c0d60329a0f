"""Small REST surface: health for load balancers, the audit trail for curl."""

from __future__ import annotations

import logging

from flask import Blueprint, request
from peewee import PeeweeException

from web import audit, errors
from web.http import json_response, require_owner, services
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
    return "agent" if path.startswith("/api/agent/") else "rest"


@bp.after_app_request
def audit_refused_credentials(response):
    """Every request refused for its credentials leaves an audit row (never the credential itself)."""
    if response.status_code == 401:
        body = response.get_json(silent=True) or {}
        error = body.get("error") or {}
        if not isinstance(error, dict):  # OAuth's own shape (RFC 6749): {"error": "invalid_client", ...}
            error = {"code": error, "message": body.get("error_description", "")}
        try:
            audit.record_refusal(
                transport=_transport(request.path),
                error_code=str(error.get("code", "unauthorized")),
                # The path without its query string: a token wrongly put in the URL stays out of the row.
                message=f"{request.method} {request.path[:200]}: {error.get('message', 'unauthorized')}",
            )
        except PeeweeException as failure:
            log.error("could not audit a refused request (%s)", type(failure).__name__)
    return response


@bp.get("/api/commands")
def list_commands():
    """The newest audit rows: `?limit=50&machine=laptop`."""
    require_owner()
    raw = request.args.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise errors.BadRequest(f"limit must be a whole number from 1 to 1000, got {raw!r}", code="invalid_limit")
    machine = request.args.get("machine") or None
    return json_response({"tool_calls": audit.recent(limit=int(raw), machine=machine)})


@bp.post("/api/machines/<name>/revoke")
def revoke_machine(name: str):
    """Revoke a machine's agent tokens at once; its agent must enrol again with the enrolment secret."""
    require_owner()
    machine = services().relay.revoke(name)
    return json_response({"machine": machine.name, "token_generation": machine.token_generation, "revoked": True})


@bp.get("/api/machines")
def list_machines():
    """Every known machine: online or not, last seen, host, OS, agent version, allowed roots."""
    require_owner()
    return json_response({"machines": services().relay.status()})
