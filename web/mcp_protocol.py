"""JSON-RPC dispatch for MCP, on the `mcp_types` models. No Flask in here: transports hand in decoded
JSON and a session, and get back the JSON-RPC responses to send.

Errors become JSON-RPC error responses in exactly one place, `Dispatcher.handle`. Every request gets
an answer at once, never silence: a client that waits on an unanswered method stalls for seconds.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import mcp_types
import pydantic
from mcp_types import jsonrpc, methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

from web import errors
from web.session import Session
from web.tools import CallContext, ToolBox

log = logging.getLogger(__name__)

SERVER_NAME = "code-remote"
SERVER_VERSION = "0.1.0"
DEFAULT_VERSION = "2025-03-26"
INSTRUCTIONS = (
    "Code Remote runs commands and reads and writes files on the user's own machines through an agent "
    "running on each. Call check_agent_status to see which machines are online and which folders the "
    "file tools may use. When several machines are online, pass 'machine' to every other tool."
)


@dataclasses.dataclass
class Incoming:
    """One decoded JSON-RPC message, classified."""

    kind: str  # "request", "notification", "response" or "invalid"
    id: Any = None
    method: str = ""
    params: dict[str, Any] | None = None
    error: errors.CodeRemoteError | None = None


def classify(message: Any) -> Incoming:
    """Tell a request from a notification from a client's response, or say why it is none of them."""
    if not isinstance(message, dict):
        return Incoming("invalid", error=errors.BadRequest("a JSON-RPC message must be an object"))
    raw_id = message.get("id")
    has_valid_id = "id" in message and (isinstance(raw_id, str) or (isinstance(raw_id, int) and not isinstance(raw_id, bool)))
    reply_id = raw_id if has_valid_id else None
    if message.get("jsonrpc") != "2.0":
        return Incoming("invalid", id=reply_id, error=errors.BadRequest("'jsonrpc' must be \"2.0\""))
    if "method" not in message:
        if "result" in message or "error" in message:
            return Incoming("response", id=reply_id)
        return Incoming("invalid", id=reply_id, error=errors.BadRequest("a request needs a 'method'"))
    method, params = message["method"], message.get("params")
    if not isinstance(method, str):
        return Incoming("invalid", id=reply_id, error=errors.BadRequest("'method' must be a string"))
    if params is not None and not isinstance(params, dict):
        return Incoming("invalid", id=reply_id, error=errors.BadRequest("'params' must be an object"))
    if "id" not in message:
        return Incoming("notification", method=method, params=params)
    if not has_valid_id:
        return Incoming("invalid", error=errors.BadRequest("'id' must be a string or an integer"))
    return Incoming("request", id=raw_id, method=method, params=params)


def error_response(request_id: Any, error: errors.CodeRemoteError) -> dict[str, Any]:
    body = jsonrpc.JSONRPCError(
        jsonrpc="2.0",
        id=request_id,
        error=jsonrpc.ErrorData(code=error.jsonrpc_code, message=error.message, data=error.data),
    )
    return body.model_dump(exclude_none=True) | {"id": request_id}


def result_response(request_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return jsonrpc.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result).model_dump()


class Dispatcher:
    """Answers MCP requests for one server: lifecycle, ping, tools."""

    def __init__(self, toolbox: ToolBox) -> None:
        self.toolbox = toolbox

    def handle(self, message: Any, session: Session, *, transport: str) -> dict[str, Any] | None:
        """Answer one decoded message; None for notifications and client responses."""
        incoming = classify(message)
        if incoming.kind == "invalid":
            return error_response(incoming.id, incoming.error)
        if incoming.kind == "response":
            return None
        if incoming.kind == "notification":
            self._notify(incoming, session)
            return None
        try:
            result = self._request(incoming, session, transport)
        except errors.CodeRemoteError as error:
            return error_response(incoming.id, error)
        except Exception:
            log.exception("unexpected error answering %s", incoming.method)
            return error_response(incoming.id, errors.CodeRemoteError("internal error; see the server log"))
        return result_response(incoming.id, result)

    def handle_batch(self, payload: Any, session: Session, *, transport: str) -> list[dict[str, Any]]:
        """Answer a decoded body: one message or a batch array. Returns the responses to send."""
        if isinstance(payload, list):
            if not payload:
                return [error_response(None, errors.BadRequest("an empty batch is not a valid request"))]
            responses = [self.handle(m, session, transport=transport) for m in payload]
            return [r for r in responses if r is not None]
        response = self.handle(payload, session, transport=transport)
        return [] if response is None else [response]

    # --- methods ------------------------------------------------------------------------------

    def _version(self, session: Session) -> str:
        return session.protocol_version or DEFAULT_VERSION

    def _parse(self, incoming: Incoming, version: str) -> Any:
        try:
            return methods.parse_client_request(incoming.method, version, incoming.params)
        except KeyError:
            raise errors.MethodNotFound(f"Method not found: {incoming.method}") from None
        except pydantic.ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in error.errors()[:5]
            )
            raise errors.InvalidParams(f"invalid params for {incoming.method}: {problems}") from None

    def _request(self, incoming: Incoming, session: Session, transport: str) -> dict[str, Any]:
        version = self._version(session)
        if incoming.method == "initialize":
            request = self._parse(incoming, LATEST_HANDSHAKE_VERSION)
            return self._initialize(request.params, session)
        request = self._parse(incoming, version)
        if incoming.method == "ping":
            return {}
        if incoming.method == "tools/list":
            result = mcp_types.ListToolsResult(tools=self.toolbox.definitions())
        elif incoming.method == "tools/call":
            context = CallContext(session_id=session.id, transport=transport)
            result = self.toolbox.call(request.params.name, request.params.arguments, context)
        else:
            raise errors.MethodNotFound(f"Method not found: {incoming.method}")
        return methods.serialize_server_result(
            incoming.method, version, result.model_dump(by_alias=True, exclude_none=True)
        )

    def _initialize(self, params: mcp_types.InitializeRequestParams, session: Session) -> dict[str, Any]:
        requested = params.protocol_version
        version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        session.protocol_version = version
        session.client_info = params.client_info.model_dump(exclude_none=True)
        result = mcp_types.InitializeResult(
            protocol_version=version,
            capabilities=mcp_types.ServerCapabilities(tools=mcp_types.ToolsCapability(list_changed=False)),
            server_info=mcp_types.Implementation(name=SERVER_NAME, version=SERVER_VERSION, title="Code Remote"),
            instructions=INSTRUCTIONS,
        )
        return methods.serialize_server_result(
            "initialize", version, result.model_dump(by_alias=True, exclude_none=True)
        )

    def _notify(self, incoming: Incoming, session: Session) -> None:
        if incoming.method == "notifications/initialized":
            session.initialized = True
        elif incoming.method == "notifications/cancelled":
            log.info("client cancelled a request in session %s", session.id[:8])
        else:
            log.debug("ignoring notification %s", incoming.method)
