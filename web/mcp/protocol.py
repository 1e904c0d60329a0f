"""JSON-RPC dispatch for MCP, on the `mcp_types` models. No Flask in here: transports hand in decoded
JSON (and, for the stateless revision, the request's headers) and get back the JSON-RPC responses.

Two eras of the protocol are served:

* Handshake revisions (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25): `initialize` opens a
  session that fixes the revision; `Dispatcher.handle` / `handle_batch` answer within it. JSON-RPC
  batch arrays exist only in 2024-11-05 and 2025-03-26.
* 2026-07-28, stateless: no `initialize`, no session. Every request carries its revision and the
  client's capabilities in `params._meta`, and over HTTP repeats the revision, method and tool
  name in the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers. `handle_stateless`
  checks those (-32602 for a missing envelope, -32020 when headers and body disagree, -32022 with
  the supported list for an unknown revision), answers `server/discover`, and tags each result
  with `resultType` and the server's identity.

Errors become JSON-RPC error responses in exactly one place, `Dispatcher._answer`. Every request gets
an answer at once, never silence: a client that waits on an unanswered method stalls for seconds.
A transport that can carry notifications before a response (an SSE stream) passes `emit`; a
`tools/call` with a `progressToken` then gets a `progress` callable in its `CallContext`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import mcp_types
import pydantic
from mcp_types import jsonrpc, methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from web import errors
from web.audit import record_refusal, record_rejected_message
from web.mcp.session import Session
from web.mcp.tools import CallContext, ToolBox

log = logging.getLogger(__name__)

SERVER_NAME = "code-remote"
SERVER_VERSION = "0.1.0"
DEFAULT_VERSION = "2025-03-26"
STATELESS_VERSION = MODERN_PROTOCOL_VERSIONS[-1]
SUPPORTED_VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
# JSON-RPC batch arrays came with 2025-03-26 (2024-11-05 did not forbid them) and left with 2025-06-18.
BATCH_VERSIONS = ("2024-11-05", "2025-03-26")
# Methods whose target is repeated in the Mcp-Name header at 2026-07-28, and the body field it mirrors.
NAME_BEARING_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
INSTRUCTIONS = (
    "Code Remote runs commands and reads and writes files on the user's own machines through an agent "
    "running on each. Call check_agent_status to see which machines are online and which folders the "
    "file tools may use. When several machines are online, pass 'machine' to every other tool."
)
# A session answers only these until its initialize has succeeded (the revision is fixed then).
PRE_INITIALIZE_METHODS = ("initialize", "ping")
SERVER_INFO = mcp_types.Implementation(name=SERVER_NAME, version=SERVER_VERSION, title="Code Remote")
CAPABILITIES = mcp_types.ServerCapabilities(tools=mcp_types.ToolsCapability(list_changed=False))

Emit = Callable[[dict[str, Any]], None]
# on_submitted(JSON-RPC request id, command id): a tool call queued its command
Submitted = Callable[[Any, str], None]


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
        # Well-formed JSON-RPC (which allows an array) whose params MCP cannot take: invalid params.
        error = errors.InvalidParams(f"'params' must be an object, not {type(params).__name__}")
        return Incoming("invalid", id=reply_id, method=method, error=error)
    if "id" not in message:
        return Incoming("notification", method=method, params=params)
    if not has_valid_id:
        return Incoming("invalid", error=errors.BadRequest("'id' must be a string or an integer"))
    return Incoming("request", id=raw_id, method=method, params=params)


def is_request(message: Any) -> bool:
    """Whether a decoded message expects a response (transports answer the others with 202)."""
    return isinstance(message, dict) and "id" in message and "method" in message


def error_response(request_id: Any, error: errors.CodeRemoteError) -> dict[str, Any]:
    body = jsonrpc.JSONRPCError(
        jsonrpc="2.0",
        id=request_id,
        error=jsonrpc.ErrorData(code=error.jsonrpc_code, message=error.message, data=error.data),
    )
    return body.model_dump(exclude_none=True) | {"id": request_id}


def result_response(request_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return jsonrpc.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result).model_dump()


def unsupported_version(requested: Any) -> errors.UnsupportedProtocolVersion:
    data = mcp_types.UnsupportedProtocolVersionErrorData(supported=list(SUPPORTED_VERSIONS), requested=str(requested))
    return errors.UnsupportedProtocolVersion(
        f"MCP protocol version {str(requested)[:40]!r} is not supported; use one of: {', '.join(SUPPORTED_VERSIONS)}",
        data=data.model_dump(mode="json"),
    )


def decode_header_value(value: str | None) -> str | None:
    """An `Mcp-Name` header's value: verbatim, or the UTF-8 inside a `=?base64?…?=` wrapper."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    try:
        return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclasses.dataclass(frozen=True)
class Envelope:
    """A 2026-07-28 request's own description of itself: `params._meta`."""

    protocol_version: str
    client_capabilities: Any
    client_info: Any = None


def read_envelope(incoming: Incoming, headers: Mapping[str, str] | None) -> Envelope:
    """Check a stateless request's `_meta` envelope and its HTTP headers (lower-case names)."""
    meta = (incoming.params or {}).get("_meta")
    version_key, capabilities_key = mcp_types.PROTOCOL_VERSION_META_KEY, mcp_types.CLIENT_CAPABILITIES_META_KEY
    if not isinstance(meta, dict) or version_key not in meta or capabilities_key not in meta:
        raise errors.InvalidParams(
            f"params._meta must carry {version_key!r} and {capabilities_key!r} (MCP {STATELESS_VERSION} "
            "requests describe themselves; older clients send initialize first)"
        )
    version = meta[version_key]
    if headers is not None:
        if headers.get("mcp-protocol-version") != version:
            raise errors.HeaderMismatch("MCP-Protocol-Version header does not match params._meta's protocol version")
        if headers.get("mcp-method") != incoming.method:
            raise errors.HeaderMismatch(f"Mcp-Method header does not match the body's method {incoming.method!r}")
        name_field = NAME_BEARING_METHODS.get(incoming.method)
        body_name = (incoming.params or {}).get(name_field) if name_field else None
        if body_name is not None and decode_header_value(headers.get("mcp-name")) != body_name:
            raise errors.HeaderMismatch(f"Mcp-Name header does not match the body's {name_field!r}")
    if not isinstance(version, str):
        raise errors.InvalidParams("params._meta's protocol version must be a string")
    if version not in MODERN_PROTOCOL_VERSIONS:
        raise unsupported_version(version)
    return Envelope(version, meta[capabilities_key], meta.get(mcp_types.CLIENT_INFO_META_KEY))


class Dispatcher:
    """Answers MCP requests for one server: lifecycle, discovery, ping, logging level, tools."""

    def __init__(self, toolbox: ToolBox) -> None:
        self.toolbox = toolbox

    # --- handshake revisions --------------------------------------------------------------------

    def handle(
        self, message: Any, session: Session, *, transport: str, emit: Emit | None = None, on_submitted: Submitted | None = None
    ) -> dict[str, Any] | None:
        """Answer one decoded message in a session; None for notifications and client responses."""
        incoming = classify(message)
        if incoming.kind == "invalid":
            return self._refuse(incoming, incoming.error, transport, session.id)
        if incoming.kind == "response":
            return None
        if incoming.kind == "notification":
            self._notify(incoming, session)
            return None
        if session.protocol_version is None and incoming.method not in PRE_INITIALIZE_METHODS:
            error = errors.BadRequest(
                f"{incoming.method[:100]!r} before initialize: send initialize first (only ping is answered before it)",
                code="not_initialized",
            )
            return self._refuse(incoming, error, transport, session.id)
        return self._answer(incoming, self._version(session), session, transport, emit, on_submitted)

    def handle_batch(
        self, payload: Any, session: Session, *, transport: str, emit: Emit | None = None, on_submitted: Submitted | None = None
    ) -> list[dict[str, Any]]:
        """Answer a decoded body: one message or, where the session's revision has them, a batch array.
        `on_submitted(request id, command id)` is told of each command a tool call queues."""
        if not isinstance(payload, list):
            response = self.handle(payload, session, transport=transport, emit=emit, on_submitted=on_submitted)
            return [] if response is None else [response]
        problem = batch_problem(payload, self._version(session))
        if problem is not None:
            return [self._refuse(Incoming("invalid"), problem, transport, session.id)]
        responses = [self.handle(m, session, transport=transport, emit=emit, on_submitted=on_submitted) for m in payload]
        return [r for r in responses if r is not None]

    # --- 2026-07-28, stateless --------------------------------------------------------------------

    def handle_stateless(
        self, message: Any, headers: Mapping[str, str] | None, *, transport: str, emit: Emit | None = None
    ) -> dict[str, Any] | None:
        """Answer one self-describing request; None for a notification (there is no session to act on)."""
        if isinstance(message, list):
            return self._refuse(Incoming("invalid"), errors.BadRequest(f"JSON-RPC batches are not part of MCP {STATELESS_VERSION}"), transport)
        incoming = classify(message)
        if incoming.kind == "invalid":
            return self._refuse(incoming, incoming.error, transport)
        if incoming.kind == "response":
            return self._refuse(Incoming("invalid"), errors.BadRequest(f"clients send no responses at MCP {STATELESS_VERSION}"), transport)
        if incoming.kind == "notification":
            requested = (headers or {}).get("mcp-protocol-version", STATELESS_VERSION)
            return None if requested in MODERN_PROTOCOL_VERSIONS else error_response(None, unsupported_version(requested))
        try:
            envelope = read_envelope(incoming, headers)
        except errors.CodeRemoteError as error:
            return self._refuse(incoming, error, transport)
        return self._answer(incoming, envelope.protocol_version, None, transport, emit)

    # --- one request ------------------------------------------------------------------------------

    def finish(self, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to a tools/call whose server process died while it waited on its command:
        `request` holds its JSON-RPC id, the session's revision and the command it had queued."""
        request_id, command_id = request.get("id"), request.get("command_id")
        if not command_id:
            error = errors.CodeRemoteError(
                "the server process answering this request stopped before it queued a command, so nothing ran; send it again"
            )
            return error_response(request_id, error)
        result = self.toolbox.finish(command_id)
        return result_response(request_id, self._serialize("tools/call", request.get("version") or DEFAULT_VERSION, result))

    def _answer(
        self, incoming: Incoming, version: str, session: Session | None, transport: str, emit: Emit | None, on_submitted: Submitted | None = None
    ) -> dict[str, Any]:
        try:
            result = self._request(incoming, version, session, transport, emit, on_submitted)
        except errors.CodeRemoteError as error:
            if incoming.method == "tools/call":  # refused tool calls have their rows already (ToolBox, _request)
                return error_response(incoming.id, error)
            return self._refuse(incoming, error, transport, session.id if session else "")
        except Exception:
            log.exception("unexpected error answering %s", incoming.method)
            return error_response(incoming.id, errors.CodeRemoteError("internal error; see the server log"))
        return result_response(incoming.id, result)

    def _refuse(self, incoming: Incoming, error: errors.CodeRemoteError, transport: str, session_id: str = "") -> dict[str, Any]:
        """The error answer to a message refused before any tool ran, with its audit row."""
        record_rejected_message(transport=transport, error=error, method=incoming.method or "", session_id=session_id)
        return error_response(incoming.id, error)

    def _version(self, session: Session) -> str:
        return session.protocol_version or DEFAULT_VERSION

    def _parse(self, incoming: Incoming, version: str) -> Any:
        try:
            return methods.parse_client_request(incoming.method, version, incoming.params)
        except KeyError:
            raise errors.MethodNotFound(f"Method not found: {incoming.method[:100]}") from None
        except pydantic.ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in error.errors()[:5]
            )
            raise errors.InvalidParams(f"invalid params for {incoming.method}: {problems}") from None

    def _request(
        self, incoming: Incoming, version: str, session: Session | None, transport: str, emit: Emit | None, on_submitted: Submitted | None = None
    ) -> dict[str, Any]:
        if incoming.method == "initialize" and session is not None:
            request = self._parse(incoming, LATEST_HANDSHAKE_VERSION)
            return self._initialize(request.params, session)
        try:
            request = self._parse(incoming, version)
        except errors.InvalidParams as error:
            if incoming.method == "tools/call":  # a refused tool call is audited like any other
                params = incoming.params or {}
                record_refusal(
                    transport=transport, tool=str(params.get("name", "")), error_code=error.code, message=error.message,
                    session_id=session.id if session else "", arguments=params.get("arguments"),
                )
            raise
        if incoming.method == "ping":
            return {}
        if incoming.method == "logging/setLevel" and session is not None:
            # Accepted and remembered; Code Remote sends no log messages, so it declares no logging capability.
            session.log_level = request.params.level
            session.save()
            return {}
        if incoming.method == "server/discover":
            result: Any = mcp_types.DiscoverResult(
                supported_versions=list(SUPPORTED_VERSIONS), capabilities=CAPABILITIES, instructions=INSTRUCTIONS
            )
        elif incoming.method == "tools/list":
            result = mcp_types.ListToolsResult(tools=self.toolbox.definitions())
        elif incoming.method == "tools/call":
            context = CallContext(
                session_id=session.id if session else "",
                transport=transport,
                request_id=incoming.id,
                progress=_progress(request.params, emit),
                on_submitted=None if on_submitted is None else functools.partial(on_submitted, incoming.id),
            )
            result = self.toolbox.call(request.params.name, request.params.arguments, context)
        else:
            raise errors.MethodNotFound(f"Method not found: {incoming.method[:100]}")
        return self._serialize(incoming.method, version, result)

    def _serialize(self, method: str, version: str, result: Any) -> dict[str, Any]:
        body = methods.serialize_server_result(method, version, result.model_dump(by_alias=True, exclude_none=True))
        if version in MODERN_PROTOCOL_VERSIONS:
            body.setdefault("resultType", "complete")
            body["_meta"] = {**body.get("_meta", {}), mcp_types.SERVER_INFO_META_KEY: SERVER_INFO.model_dump(exclude_none=True)}
        return body

    def _initialize(self, params: mcp_types.InitializeRequestParams, session: Session) -> dict[str, Any]:
        requested = params.protocol_version
        version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        session.protocol_version = version
        session.client_info = params.client_info.model_dump(exclude_none=True)
        session.save()
        result = mcp_types.InitializeResult(
            protocol_version=version, capabilities=CAPABILITIES, server_info=SERVER_INFO, instructions=INSTRUCTIONS
        )
        return self._serialize("initialize", version, result)

    def _notify(self, incoming: Incoming, session: Session) -> None:
        if incoming.method == "notifications/initialized":
            session.initialized = True
            session.save()
        elif incoming.method == "notifications/cancelled":
            # The tool call's command is cancelled too: never started, it never runs; running, its
            # agent ends it. A client that merely disconnects sends no such notification.
            params = incoming.params or {}
            log.info("client cancelled a request in session %s", session.id[:8])
            self.toolbox.cancel_request(session.id, params.get("requestId"), str(params.get("reason") or "")[:200])
        else:
            log.debug("ignoring notification %s", incoming.method)


def batch_problem(payload: list, version: str) -> errors.CodeRemoteError | None:
    """Why a batch array cannot be answered at `version`, or None if it can."""
    if version not in BATCH_VERSIONS:
        return errors.BadRequest(f"JSON-RPC batches are not part of MCP {version}; send one message per request")
    if not payload:
        return errors.BadRequest("an empty batch is not a valid request")
    if any(isinstance(m, dict) and m.get("method") == "initialize" for m in payload):
        return errors.BadRequest("initialize must be sent alone, not inside a batch")
    return None


def _progress(params: Any, emit: Emit | None) -> Callable[[float, float | None, str | None], None] | None:
    """A progress reporter for a request that asked for one (`_meta.progressToken`), if `emit` can carry it."""
    meta = params.meta or {}
    token = meta.get("progress_token", meta.get("progressToken"))
    if emit is None or token is None:
        return None

    def progress(value: float, total: float | None = None, message: str | None = None) -> None:
        note = mcp_types.ProgressNotificationParams(progress_token=token, progress=value, total=total, message=message)
        emit(
            jsonrpc.JSONRPCNotification(
                jsonrpc="2.0", method="notifications/progress", params=note.model_dump(by_alias=True, exclude_none=True)
            ).model_dump(exclude_none=True)
        )

    return progress
