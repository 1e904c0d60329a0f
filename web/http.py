"""HTTP helpers shared by the blueprints: the services, JSON bodies and the one error shape."""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from web import errors
from web.security.auth import Unauthorized

log = logging.getLogger(__name__)


def services():
    return current_app.extensions["code_remote"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Pretty JSON ending in a newline, as curl users like it. Strict JSON: a NaN or an infinity
    raises (an answer with them is no JSON any parser accepts) rather than going out."""
    text = json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return Response(text, status=status, headers=headers, mimetype="application/json")


def compact_json_response(body: Any, status: int = 200) -> Response:
    """JSON without indentation, for the agent's machine-to-machine endpoints (three answers per
    relayed call): an `indent` makes the json module fall back from its C encoder to pure Python."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"
    return Response(text, status=status, mimetype="application/json")


def error_response(error: errors.CodeRemoteError) -> Response:
    headers = {}
    if isinstance(error, errors.Unauthorized):
        # RFC 9728: every 401 points at the protected-resource metadata, where OAuth clients start.
        challenge = f'Bearer realm="code-remote", resource_metadata="{public_origin()}/.well-known/oauth-protected-resource"'
        if error.code != "missing_token":
            description = "".join(c for c in error.message if c.isprintable() and c not in '"\\')
            challenge += f', error="invalid_token", error_description="{description}"'
        headers["WWW-Authenticate"] = challenge
    if isinstance(error, errors.TooManyRequests):
        headers["Retry-After"] = str(error.retry_after_seconds)
    return json_response(error.body(), error.http_status, headers)


def public_origin() -> str:
    """This server's origin as clients reach it: PUBLIC_URL, else the request's scheme and host."""
    return services().config.public_url or request.host_url.rstrip("/")


def require_owner() -> str:
    """Check the MCP client credential (AUTH_TOKEN or an OAuth access token); return its name."""
    return services().credentials.owner(
        request.headers.get("Authorization"), resource=public_origin() + "/", address=request.remote_addr
    )


# Query numbers in ASCII digits only: str.isdigit() and float() also take '²', '٣' or '1_0', and int('²')
# raised a ValueError that became a 500.
ASCII_WHOLE = re.compile(r"[0-9]{1,18}")
ASCII_DECIMAL = re.compile(r"[0-9]{1,18}(?:\.[0-9]{0,9})?")


def query_int(name: str, default: int, *, minimum: int, maximum: int | None = None, code: str) -> int:
    """A whole-number query parameter in ASCII digits, within bounds (clamped to `maximum` when
    `code` is not strict about it), or a precise 400."""
    raw = request.args.get(name)
    if raw is None:
        return default
    bounds = f"from {minimum}" + (f" to {maximum}" if maximum is not None else "")
    if not ASCII_WHOLE.fullmatch(raw) or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        raise errors.BadRequest(f"{name} must be a whole number {bounds} in ASCII digits, got {raw[:40]!r}", code=code)
    return int(raw)


def query_seconds(name: str, default: float, *, maximum: float, code: str) -> float:
    """A duration query parameter in ASCII digits (e.g. `25` or `0.5`), capped at `maximum`."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not ASCII_DECIMAL.fullmatch(raw):
        raise errors.BadRequest(f"{name} must be a number of seconds in ASCII digits (e.g. 25 or 0.5), got {raw[:40]!r}", code=code)
    return min(float(raw), maximum)


def read_json(max_bytes: int) -> Any:
    """The request body as JSON, within a size limit, or a precise 4xx."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise errors.PayloadTooLarge(f"request body of {length} bytes is over the {max_bytes}-byte limit")
    try:
        data = request.get_data(cache=False)
    except Exception as error:  # the WSGI server's own errors: a broken chunked encoding, a dropped connection
        if getattr(error, "code", None) == 408:  # the body did not arrive in time (gunicorn_worker.SlowClient)
            raise errors.RequestTimeout(str(getattr(error, "description", "") or "the request body did not arrive in time")) from None
        raise errors.BadRequest(f"request body could not be read: {type(error).__name__}", code="unreadable_body") from None
    if len(data) > max_bytes:
        raise errors.PayloadTooLarge(f"request body is over the {max_bytes}-byte limit")
    if length is not None and len(data) < length:
        # The client went away mid-upload: never act on the part that arrived.
        raise errors.BadRequest(f"request body ended after {len(data)} of {length} bytes", code="incomplete_body")
    try:
        value = json.loads(
            data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
        )
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
        raise errors.ParseError(f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise errors.ParseError("body is not valid JSON: nested too deeply") from None
    except _DuplicateKey as duplicate:
        raise errors.BadRequest(
            f"an object in the body has the key {duplicate.key[:100]!r} twice: send each key once", code="duplicate_key"
        ) from None
    _refuse_lone_surrogates(value)
    return value


def require_json_content_type() -> None:
    """415 unless the body is declared as JSON (`application/json`, parameters allowed)."""
    if request.mimetype != "application/json":
        sent = (request.content_type or "none")[:80]
        raise errors.UnsupportedMediaType(f"Content-Type must be application/json, got {sent!r}")


def require_host() -> None:
    """400 for a request without a Host header. HTTP/1.1 requires one (RFC 9112); HTTP/1.0 does not,
    but this server names its own URLs (OAuth metadata, the SSE endpoint) from it."""
    if not request.environ.get("HTTP_HOST"):
        raise errors.BadRequest("a Host header is required (HTTP/1.0 requests too)", code="missing_host")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all distinct. Parsers disagree on which of two equal keys wins (ours
    keeps the last, others the first): a body read differently by a proxy and by us is refused."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    """A JSON number as a float, refused when it overflows to infinity (1e999): stored, it would come
    back out as `Infinity`, which no JSON parser accepts."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range (over about 1.8e308)")
    return value


def _refuse_lone_surrogates(value: Any) -> None:
    """JSON may escape a lone UTF-16 surrogate (\\udcff); no text store can keep one, so refuse it here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise errors.ParseError("body is not valid JSON text: it contains a lone UTF-16 surrogate escape") from None


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.CodeRemoteError)
    def handle_code_remote_error(error: errors.CodeRemoteError):
        return error_response(error)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        response = json_response({"error": {"code": code, "message": error.description}}, error.code or 500)
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(errors.CodeRemoteError("internal error; see the server log"))


__all__ = [
    "Unauthorized", "compact_json_response", "error_response", "json_response", "public_origin", "query_int",
    "query_seconds", "read_json", "require_host", "require_json_content_type", "require_owner", "services",
]
