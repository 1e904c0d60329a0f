"""Drive an MCP server with the OFFICIAL Python SDK client (``mcp==2.3.0``) from tests.

Transports (``transport=``):

* ``"sse"``   - 2024-11-05 style HTTP+SSE: ``GET <url>`` (e.g. ``.../sse``) opens the event
  stream, the server's ``endpoint`` event names the ``POST`` URL (e.g. ``/messages?...``).
* ``"http"``  - Streamable HTTP (``.../mcp``).
* ``"stdio"`` - spawn ``argv`` (e.g. ``["npx", "mcp-remote", url, ...]``) and talk over its stdin/stdout.

Negotiation (``mode=``), as implemented by ``mcp.Client``:

* ``"auto"``       - send ``server/discover`` at 2026-07-28 first; any JSON-RPC error (e.g. -32601),
  HTTP 4xx, or a discover result without a modern version falls back to ``initialize``.
* ``"legacy"``     - ``initialize`` handshake only (the SDK offers 2025-11-25 unless
  ``handshake_version=`` pins another revision, e.g. "2024-11-05"/"2025-03-26"/"2025-06-18").
* ``"2026-07-28"`` - adopt the stateless 2026 protocol directly, no probe, no handshake.

``handshake_version`` also applies to the ``initialize`` fallback of ``mode="auto"``.
Default ``mode`` is ``"legacy"`` for ``sse`` and ``"auto"`` for ``http``/``stdio``.

Async use (several calls in one session)::

    async with open_session("http", url, token) as s:
        print(s.protocol_version)
        names = await s.tool_names()
        r = await s.call_tool("echo", {"text": "hi"})   # -> {"is_error", "text", "structured", "raw", ...}

Sync use::

    r = call_tool("sse", url, token, "echo", {"text": "hi"})
    out = with_session("http", url, token, lambda s: s.call_tool("echo", {"text": "x"}), mode="legacy")

Protocol-level errors (unknown tool, bad params, HTTP 4xx on streamable HTTP, request timeout)
raise ``MCPError`` (``.code``, ``.message``, ``.data``); tool failures come back as
``is_error=True``. Timeouts: ``timeout`` (HTTP connect/write/pool), ``sse_read_timeout`` (HTTP read,
i.e. max silence on an SSE stream), ``read_timeout`` (session default per-request wait; expiry raises
``MCPError(code=-32001)`` and sends ``notifications/cancelled`` - or, at 2026-07-28 over streamable
HTTP, just aborts that POST), ``call_tool(timeout=)`` per request, and ``overall_timeout`` on the sync
wrappers (``anyio.fail_after`` -> ``TimeoutError``). A 401 on the SSE ``GET`` raises
``httpx2.HTTPStatusError``; a non-JSON-RPC 4xx/5xx on streamable HTTP becomes ``MCPError(-32603)``
(404 before a session exists -> -32601). Single-exception task-group wrappers are unwrapped.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from functools import partial
from typing import Any, Literal, TextIO, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

__all__ = [
    "MCPError",
    "McpSession",
    "REQUEST_TIMEOUT",
    "call_tool",
    "list_tools",
    "open_session",
    "protocol_version",
    "with_session",
]

TransportName = Literal["sse", "http", "stdio"]
REQUEST_TIMEOUT = types.REQUEST_TIMEOUT  # -32001, raised by per-request timeouts
_T = TypeVar("_T")

CLIENT_INFO = types.Implementation(name="code-remote-tests", version="0.0.0")


async def _initialize_at(session: ClientSession, version: str) -> types.InitializeResult:
    """``ClientSession.initialize`` with a caller-chosen ``protocolVersion`` (the SDK hard-codes 2025-11-25)."""
    if session.initialize_result is not None:
        return session.initialize_result
    result = await session.send_request(
        types.InitializeRequest(
            params=types.InitializeRequestParams(
                protocol_version=version,
                capabilities=session._build_capabilities(version),  # pyright: ignore[reportPrivateUsage]
                client_info=session._client_info,  # pyright: ignore[reportPrivateUsage]
            )
        ),
        types.InitializeResult,
    )
    if result.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
        raise RuntimeError(f"Unsupported protocol version from the server: {result.protocol_version}")
    session.adopt(result)
    await session.send_notification(types.InitializedNotification())
    return result


class _Client(Client):
    """``mcp.Client`` whose ``initialize`` can offer a pinned handshake revision."""

    _handshake_version: str | None = None

    async def _build_session(self, exit_stack: AsyncExitStack) -> ClientSession:
        session = await super()._build_session(exit_stack)
        if self._handshake_version is not None:
            session.initialize = partial(_initialize_at, session, self._handshake_version)  # type: ignore[method-assign]
        return session


def _result_dict(result: types.CallToolResult, progress: list[tuple[float, float | None, str | None]] | None) -> dict[str, Any]:
    text = "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))
    out: dict[str, Any] = {
        "is_error": bool(result.is_error),
        "text": text,
        "structured": result.structured_content,
        "raw": result,
    }
    if progress is not None:
        out["progress"] = progress
    return out


class McpSession:
    """A connected session. Thin wrapper around ``mcp.Client`` (available as ``.client``)."""

    def __init__(self, client: Client, transport: TransportName, mode: str) -> None:
        self.client = client
        self.transport = transport
        self.mode = mode
        self.notifications: list[types.ServerNotification] = []  # every server notification seen (progress, logs, ...)
        self.transport_errors: list[Exception] = []

    # -- negotiated state -------------------------------------------------
    @property
    def protocol_version(self) -> str:
        return self.client.protocol_version

    @property
    def era(self) -> str:
        """``"modern"`` (2026-07-28, per-request envelope) or ``"handshake"`` (initialize)."""
        return "modern" if self.protocol_version in MODERN_PROTOCOL_VERSIONS else "handshake"

    @property
    def server_info(self) -> types.Implementation | None:
        return self.client.server_info

    def info(self) -> dict[str, Any]:
        si = self.server_info
        return {
            "protocol_version": self.protocol_version,
            "era": self.era,
            "server_info": si.model_dump(by_alias=True, exclude_none=True) if si else None,
            "capabilities": self.client.server_capabilities.model_dump(by_alias=True, exclude_none=True),
            "instructions": self.client.instructions,
        }

    # -- tools ------------------------------------------------------------
    async def list_tools(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """All tools (follows ``nextCursor``) as plain dicts (``name``, ``description``, ``inputSchema``...)."""
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        with anyio.fail_after(timeout) if timeout else nullcontext():
            for _ in range(100):
                page = await self.client.list_tools(cursor=cursor)
                tools += [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    break
        return tools

    async def tool_names(self) -> list[str]:
        return [t["name"] for t in await self.list_tools()]

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        progress: bool = False,
        on_progress: Callable[[float, float | None, str | None], Awaitable[None]] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call a tool; returns ``{"is_error", "text", "structured", "raw"[, "progress"]}``.

        ``timeout``: per-request read timeout -> ``MCPError(code=-32001)`` + ``notifications/cancelled``.
        ``progress=True``: send ``_meta.progressToken`` (= the JSON-RPC request id) and collect
        ``notifications/progress`` as ``(progress, total, message)`` tuples under ``"progress"``.
        """
        collected: list[tuple[float, float | None, str | None]] | None = [] if (progress or on_progress) else None

        async def _cb(p: float, total: float | None, message: str | None) -> None:
            assert collected is not None
            collected.append((p, total, message))
            if on_progress is not None:
                await on_progress(p, total, message)

        result = await self.client.call_tool(
            name,
            arguments or {},
            read_timeout_seconds=timeout,
            progress_callback=_cb if collected is not None else None,
            meta=meta,  # type: ignore[arg-type]
        )
        return _result_dict(result, collected)

    async def call_tool_cancelled(self, name: str, arguments: dict[str, Any] | None = None, *, after: float) -> bool:
        """Start a call and abandon it after ``after`` seconds; True if it was cancelled before completing.

        On SSE/stdio and handshake-era streamable HTTP the SDK then sends
        ``notifications/cancelled {"requestId": <id>, "reason": "caller cancelled"}``; at 2026-07-28 over
        streamable HTTP it instead aborts the request's POST (closes the connection) and sends nothing.
        """
        with anyio.move_on_after(after) as scope:
            await self.client.call_tool(name, arguments or {})
        return scope.cancelled_caught


@asynccontextmanager
async def open_session(
    transport: TransportName,
    url: str | None = None,
    token: str | None = None,
    *,
    mode: str | None = None,
    handshake_version: str | None = None,
    argv: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    errlog: TextIO | int | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    sse_read_timeout: float = 60.0,
    read_timeout: float | None = 30.0,
    client_info: types.Implementation | None = None,
) -> AsyncIterator[McpSession]:
    """Connect, negotiate, yield an ``McpSession``; closes everything on exit.

    ``mode`` defaults to ``"legacy"`` for ``sse`` and ``"auto"`` otherwise. ``token`` adds
    ``Authorization: Bearer <token>`` to every HTTP request (sse/http). For ``stdio``, pass ``argv``
    (``url``/``token`` are ignored; put them in argv, e.g. mcp-remote's ``--header``); ``env`` is
    merged over the SDK's minimal default environment (HOME, PATH, ...), so pass anything else needed.
    """
    if mode is None:
        mode = "legacy" if transport == "sse" else "auto"
    if handshake_version is not None and handshake_version not in HANDSHAKE_PROTOCOL_VERSIONS:
        raise ValueError(f"handshake_version must be one of {HANDSHAKE_PROTOCOL_VERSIONS}")
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"

    try:
        async with _connect(transport, url, hdrs, mode, handshake_version, argv, env, cwd, errlog,
                            timeout, sse_read_timeout, read_timeout, client_info) as session:
            yield session
    except BaseExceptionGroup as eg:
        leaf = _single_leaf(eg)
        if leaf is eg:
            raise
        raise leaf from eg


def _single_leaf(eg: BaseExceptionGroup) -> BaseException:
    """The lone ``Exception`` inside nested single-member task-group wrappers, else ``eg`` itself."""
    e: BaseException = eg
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e if isinstance(e, Exception) and not isinstance(e, BaseExceptionGroup) else eg


@asynccontextmanager
async def _connect(
    transport: TransportName,
    url: str | None,
    hdrs: dict[str, str],
    mode: str,
    handshake_version: str | None,
    argv: Sequence[str] | None,
    env: dict[str, str] | None,
    cwd: str | None,
    errlog: TextIO | int | None,
    timeout: float,
    sse_read_timeout: float,
    read_timeout: float | None,
    client_info: types.Implementation | None,
) -> AsyncIterator[McpSession]:
    async with AsyncExitStack() as stack:
        if transport == "sse":
            assert url, "url required"
            conn: Any = sse_client(url, headers=hdrs, timeout=timeout, sse_read_timeout=sse_read_timeout)
        elif transport == "http":
            assert url, "url required"
            http = create_mcp_http_client(headers=hdrs, timeout=httpx2.Timeout(timeout, read=sse_read_timeout))
            await stack.enter_async_context(http)
            conn = streamable_http_client(url, http_client=http)
        elif transport == "stdio":
            assert argv, "argv required for stdio"
            params = StdioServerParameters(command=argv[0], args=list(argv[1:]), env=env, cwd=cwd)
            conn = stdio_client(params, errlog=errlog if errlog is not None else sys.stderr)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown transport {transport!r}")

        holder: list[McpSession] = []

        async def _on_message(msg: Any) -> None:
            if holder:
                (holder[0].transport_errors if isinstance(msg, Exception) else holder[0].notifications).append(msg)

        client = _Client(
            conn,
            mode=mode,
            read_timeout_seconds=read_timeout,
            message_handler=_on_message,
            client_info=client_info or CLIENT_INFO,
            cache=None,  # every list_tools really hits the server
        )
        client._handshake_version = handshake_version
        session = McpSession(client, transport, mode)
        holder.append(session)
        await stack.enter_async_context(client)
        yield session


def with_session(
    transport: TransportName,
    url: str | None,
    token: str | None,
    fn: Callable[[McpSession], Awaitable[_T]],
    *,
    overall_timeout: float = 60.0,
    **kwargs: Any,
) -> _T:
    """Synchronously open a session, ``await fn(session)``, close, return fn's result."""

    async def main() -> _T:
        with anyio.fail_after(overall_timeout):
            async with open_session(transport, url, token, **kwargs) as s:
                return await fn(s)

    return anyio.run(main)


def list_tools(transport: TransportName, url: str | None, token: str | None, **kwargs: Any) -> list[dict[str, Any]]:
    return with_session(transport, url, token, lambda s: s.list_tools(), **kwargs)


def call_tool(
    transport: TransportName,
    url: str | None,
    token: str | None,
    name: str,
    arguments: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    return with_session(transport, url, token, lambda s: s.call_tool(name, arguments), **kwargs)


def protocol_version(transport: TransportName, url: str | None, token: str | None, **kwargs: Any) -> str:
    """Negotiated protocol version for a fresh session (e.g. to assert fallback behaviour)."""

    async def _pv(s: McpSession) -> str:
        return s.protocol_version

    return with_session(transport, url, token, _pv, **kwargs)
