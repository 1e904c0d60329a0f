"""One error hierarchy for the whole server.

Every error has a stable machine-readable `code`, an HTTP status for the REST and agent surfaces and a
JSON-RPC code for MCP. HTTP errors all share one body shape:

    {"error": {"code": "agent_offline", "message": "machine 'laptop' has not polled for 93 s"}}
"""

from __future__ import annotations

from typing import Any

from mcp_types import jsonrpc


class CodeRemoteError(Exception):
    code = "internal_error"
    http_status = 500
    jsonrpc_code = jsonrpc.INTERNAL_ERROR

    def __init__(self, message: str, *, code: str | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.data = data

    def body(self) -> dict[str, Any]:
        """The JSON body of an HTTP error response."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"error": error}


class BadRequest(CodeRemoteError):
    code = "bad_request"
    http_status = 400
    jsonrpc_code = jsonrpc.INVALID_REQUEST


class ParseError(BadRequest):
    code = "parse_error"
    jsonrpc_code = jsonrpc.PARSE_ERROR


class InvalidParams(BadRequest):
    code = "invalid_params"
    jsonrpc_code = jsonrpc.INVALID_PARAMS


class MethodNotFound(BadRequest):
    code = "method_not_found"
    http_status = 404
    jsonrpc_code = jsonrpc.METHOD_NOT_FOUND


class HeaderMismatch(BadRequest):
    """MCP 2026-07-28: the HTTP routing headers disagree with the request body."""

    code = "header_mismatch"
    jsonrpc_code = jsonrpc.HEADER_MISMATCH


class UnsupportedProtocolVersion(BadRequest):
    """An MCP protocol revision this server does not speak; `data` names the ones it does."""

    code = "unsupported_protocol_version"
    jsonrpc_code = jsonrpc.UNSUPPORTED_PROTOCOL_VERSION


class NotAcceptable(CodeRemoteError):
    code = "not_acceptable"
    http_status = 406
    jsonrpc_code = jsonrpc.INVALID_REQUEST


class UnsupportedMediaType(CodeRemoteError):
    code = "unsupported_media_type"
    http_status = 415
    jsonrpc_code = jsonrpc.INVALID_REQUEST


class Unauthorized(CodeRemoteError):
    code = "unauthorized"
    http_status = 401
    jsonrpc_code = jsonrpc.INVALID_REQUEST


class Forbidden(CodeRemoteError):
    code = "forbidden"
    http_status = 403
    jsonrpc_code = jsonrpc.INVALID_REQUEST


class NotFound(CodeRemoteError):
    code = "not_found"
    http_status = 404
    jsonrpc_code = jsonrpc.INVALID_REQUEST


class Conflict(CodeRemoteError):
    code = "conflict"
    http_status = 409
    jsonrpc_code = jsonrpc.INVALID_REQUEST


class RequestTimeout(CodeRemoteError):
    code = "body_timeout"
    http_status = 408
    jsonrpc_code = jsonrpc.INVALID_REQUEST


class PayloadTooLarge(CodeRemoteError):
    code = "payload_too_large"
    http_status = 413
    jsonrpc_code = jsonrpc.INVALID_REQUEST


class ToolError(CodeRemoteError):
    """A tool call that cannot be carried out: shown to the model as an `isError` result, not a
    protocol error, so it can read the reason and correct itself."""

    code = "tool_error"
    http_status = 400
    jsonrpc_code = jsonrpc.INTERNAL_ERROR


class TooManyRequests(CodeRemoteError):
    """Too many failed attempts from one address: answered 429 with `Retry-After`."""

    code = "too_many_requests"
    http_status = 429
    jsonrpc_code = jsonrpc.INVALID_REQUEST

    def __init__(self, message: str, *, retry_after_seconds: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_seconds = retry_after_seconds
