"""Small REST surface: health for load balancers, the audit trail for curl."""

from __future__ import annotations

from flask import Blueprint, request

from web import audit, errors
from web.http import json_response, require_owner, services
from web.mcp_protocol import SERVER_VERSION

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
