"""Origin checks for the MCP endpoints (`/sse`, `/messages`, `/mcp`), against DNS rebinding.

A web page whose name an attacker points at 127.0.0.1 can make the user's browser talk to a local
server; the browser then names the page's origin in the `Origin` header. So a request that carries
an `Origin` the server does not know is refused with 403 before anything else is looked at.

Allowed: localhost origins (`http(s)://localhost`, `127.0.0.1`, `[::1]`, any port: the MCP
Inspector's UI runs there), the server's own `PUBLIC_URL`, and the origins listed in
`ALLOWED_ORIGINS` (`*` allows every origin). A request without `Origin` is not a browser page's
cross-site request: Claude.ai calls from its servers, CLIs and desktop apps send none, and all of
them still need the bearer token.

A page on an allowed origin (the Inspector's UI connecting directly, a browser-based client) may
also read the answers: they carry CORS headers naming that origin, and preflights are answered. No
cookie is involved, so credentials mode is never allowed; the bearer token is still required.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Response, request

from web import errors
from web.config import Config
from web.http import services

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# What a page on an allowed origin may send (preflight) and read, for MCP over Streamable HTTP and SSE.
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE",
    "Access-Control-Allow-Headers": (
        "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID"
    ),
    "Access-Control-Expose-Headers": "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate",
    "Access-Control-Max-Age": "600",
}


def origin_allowed(origin: str, config: Config) -> bool:
    """Whether a browser page at `origin` may call the MCP endpoints."""
    origin = origin.strip().rstrip("/").lower()
    if "*" in config.allowed_origins or origin in config.allowed_origins:
        return True
    if config.public_url and origin == config.public_url.lower():
        return True
    try:
        parts = urlsplit(origin)
        host = parts.hostname
        parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host in LOCAL_HOSTS


def check_origin() -> None:
    """Refuse (403) a request whose `Origin` header names a foreign origin; for `before_request`."""
    origin = request.headers.get("Origin")
    if origin is None or origin_allowed(origin, services().config):
        return
    log.warning("refused %s %s from origin %r", request.method, request.path, origin[:100])
    raise errors.Forbidden(
        f"origin {origin[:100]!r} is not allowed to use this server; add it to ALLOWED_ORIGINS if it should be",
        code="origin_not_allowed",
    )


def allow_cross_origin(response: Response) -> Response:
    """Let a page on an allowed origin read this answer (CORS); for `after_request`. A foreign origin
    gets no such header: check_origin has refused its request already."""
    origin = request.headers.get("Origin")
    if origin is not None and origin_allowed(origin, services().config):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.update(CORS_HEADERS)
    response.vary.add("Origin")
    return response
