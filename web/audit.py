"""The audit trail: every MCP tool call becomes a `tool_call` row, refused calls included.

A row is written when the call arrives (status `pending`) and completed when it ends, so a call that
never returns (a crash, a lost agent) still leaves its trace. File contents are recorded as size and
SHA-256, never whole; long strings are cut to a bounded size with the cut said out loud.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any

from peewee import PeeweeException

from web import controls, errors, sql
from web.models import ToolCall, db, now

log = logging.getLogger(__name__)
# Control characters other than newline and tab (ANSI escapes, NUL, bidi overrides) are stored as
# visible escapes, so reading the audit trail in a terminal cannot be hijacked by what was recorded.
clean = controls.escape


class AuditUnavailable(errors.CodeRemoteError):
    """The audit row could not be written: the call is refused rather than run unrecorded."""

    code = "audit_unavailable"
    http_status = 503

MAX_STRING_CHARS = 2048
# File contents and the input typed into a running program (a password at a prompt) are never stored.
SECRET_ARGUMENTS = frozenset({"content", "text"})


def summarize_arguments(arguments: Any) -> Any:
    """Arguments as stored in the audit row: contents hashed, long strings shortened."""
    if not isinstance(arguments, dict):
        return {"_invalid": f"arguments of type {type(arguments).__name__}"}
    summary: dict[str, Any] = {}
    for key, value in list(arguments.items())[:32]:
        key = clean(str(key)[:64])
        if key in SECRET_ARGUMENTS and isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
            summary[key] = {"bytes": len(data)}
            if key == "content":  # a file's hash identifies it; a typed password's would let it be guessed
                summary[key]["sha256"] = hashlib.sha256(data).hexdigest()
        elif isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            summary[key] = clean(value[:MAX_STRING_CHARS]) + f"…[{len(value) - MAX_STRING_CHARS} more characters]"
        elif isinstance(value, str):
            summary[key] = clean(value)
        elif isinstance(value, float) and not math.isfinite(value):
            summary[key] = repr(value)  # "inf", "nan": kept as text, JSON has no such numbers
        elif isinstance(value, (int, float, bool)) or value is None:
            summary[key] = value
        else:
            summary[key] = f"<{type(value).__name__}>"
    return summary


class AuditEntry:
    """One tool call's row, opened on arrival and closed once with the outcome."""

    def __init__(self, *, session_id: str, transport: str, tool: str, arguments: Any) -> None:
        self._started = time.monotonic()
        try:
            with db.connection_context():
                self.row = ToolCall(
                    session_id=session_id,
                    transport=transport,
                    tool=clean(str(tool)[:64]),
                    arguments=summarize_arguments(arguments),
                )
                sql.insert(self.row)
        except PeeweeException as error:
            log.error("audit write failed (%s): refusing the %s call", type(error).__name__, clean(str(tool)[:64]))
            raise AuditUnavailable("the audit trail cannot be written right now, so the call was refused; try again later") from None

    def finish(self, *, status: str, is_error: bool, message: str = "", machine: str = "", error_code: str | None = None, exit_code: int | None = None, output_bytes: int | None = None, command_id: str | None = None) -> None:
        row = self.row
        row.finished_at = now()
        row.status = status
        row.is_error = is_error
        row.message = clean(message[:MAX_STRING_CHARS])
        row.error_code = error_code
        row.exit_code = exit_code
        row.output_bytes = output_bytes
        row.duration_ms = round((time.monotonic() - self._started) * 1000, 3)
        row.command_id = command_id
        if machine:
            row.machine = machine
        with db.connection_context():
            sql.update(row)


def record_refusal(*, transport: str, error_code: str, message: str, tool: str = "", session_id: str = "", arguments: Any = None) -> None:
    """A finished row for a call refused before it could start (bad credentials, unknown tool)."""
    with db.connection_context():
        ToolCall.create(
            session_id=session_id,
            transport=transport,
            tool=clean(str(tool)[:64]),
            arguments=summarize_arguments(arguments if arguments is not None else {}),
            status="refused",
            is_error=True,
            error_code=error_code[:64],
            message=clean(message[:MAX_STRING_CHARS]),
            finished_at=now(),
            duration_ms=0.0,
        )


def record_rejected_message(*, transport: str, error: errors.CodeRemoteError, method: str = "", session_id: str = "") -> None:
    """A row for a JSON-RPC message answered with an error before any tool ran: malformed, an unknown
    method, bad params. The method and the error are recorded, never the message itself. A failed
    write is logged: the client still gets its error answer."""
    try:
        record_refusal(
            transport=transport, error_code=error.code, session_id=clean(session_id[:64]),
            message=f"{clean(method[:100]) or 'JSON-RPC message'}: {error.message}",
        )
    except PeeweeException as failure:
        log.error("could not audit a refused JSON-RPC message (%s)", type(failure).__name__)


def recent(*, limit: int = 50, machine: str | None = None) -> list[dict[str, Any]]:
    """The newest audit rows as JSON-ready dicts."""
    with db.connection_context():
        query = ToolCall.select().order_by(ToolCall.id.desc()).limit(limit)
        if machine:
            query = query.where(ToolCall.machine == machine)
        return [_row(r) for r in query]


def _row(r: ToolCall) -> dict[str, Any]:
    return {
        "id": r.id,
        "created_at": _iso(r.created_at),
        "finished_at": _iso(r.finished_at),
        "session_id": r.session_id,
        "transport": r.transport,
        "machine": r.machine,
        "tool": r.tool,
        "arguments": _finite(r.arguments),
        "status": r.status,
        "is_error": r.is_error,
        "error_code": r.error_code,
        "message": r.message,
        "exit_code": r.exit_code,
        "output_bytes": r.output_bytes,
        "duration_ms": r.duration_ms,
        "command_id": r.command_id,
    }


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as text: rows stored before they were refused at the door
    may hold them, and the trail must stay JSON that every parser accepts."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"
