"""What the dashboard reads: machines with their workload, the history with keyset paging, one
command with its events and its callers. Only reads, and all from the database, so any server process
answers the same; the relay's own objects are asked only for what lives in memory (online-ness).

The history pages by keyset, newest first on (created_at, id): a page is "the 50 commands before this
one", answered from the (created_at, id) index (or (machine, created_at, id), (state, created_at, id)
with those filters; migration 0007) however deep the page, where OFFSET would read and skip every row before it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from peewee import OP, Expression, Value, fn

from web.models import LEASED, QUEUED, RUNNING, STATES, Command, CommandEvent, CommandOutput, Machine, OAuthClient, OAuthGrant, ToolCall, db, now
from web.relay.machines import refused_key

PAGE_SIZE = 50
MAX_TEXT_CHARS = 200
REFUSED_KEY_DAYS = 7
MAX_SESSIONS = 500
MAX_REFUSALS = 500


@dataclasses.dataclass
class Filters:
    machine: str = ""
    tool: str = ""
    state: str = ""
    text: str = ""
    since: float | None = None
    until: float | None = None
    before: tuple[float, str] | None = None

    @classmethod
    def from_args(cls, args) -> Filters:
        """Filters from a query string; what does not parse is left out (and reported by `problems`)."""
        filters = cls(
            machine=args.get("machine", "").strip()[:64],
            tool=args.get("tool", "").strip()[:64],
            state=args.get("state", "").strip() if args.get("state", "").strip() in STATES else "",
            text=args.get("text", "").strip()[:MAX_TEXT_CHARS],
            since=parse_time(args.get("since", "")),
            until=parse_time(args.get("until", "")),
        )
        cursor = args.get("before", "")
        stamp, _, command_id = cursor.partition("_")
        try:
            filters.before = (float(stamp), command_id[:32]) if cursor else None
        except ValueError:
            filters.before = None
        return filters

    def query_args(self) -> dict[str, str]:
        """The filters as query-string arguments (for the next page's link)."""
        out = {"machine": self.machine, "tool": self.tool, "state": self.state, "text": self.text}
        out["since"] = format_input_time(self.since) if self.since is not None else ""
        out["until"] = format_input_time(self.until) if self.until is not None else ""
        return {k: v for k, v in out.items() if v}


def parse_time(raw: str) -> float | None:
    """A `datetime-local` field's value (YYYY-MM-DDTHH:MM[:SS], UTC) or a date, as epoch seconds."""
    raw = raw.strip()
    if not raw:
        return None
    for layout in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(raw, layout).replace(tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def format_input_time(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M")


def history(filters: Filters, limit: int = PAGE_SIZE) -> tuple[list[Command], str | None]:
    """A page of commands matching `filters`, newest first, and the cursor of the next page (or None)."""
    columns = [Command.id, Command.machine, Command.tool, Command.arguments, Command.state, Command.created_at,
               Command.finished_at, Command.exit_code, Command.session_id]
    query = Command.select(*columns).order_by(Command.created_at.desc(), Command.id.desc()).limit(limit + 1)
    if filters.machine:
        query = query.where(Command.machine == filters.machine)
    if filters.tool:
        query = query.where(Command.tool == filters.tool)
    if filters.state:
        query = query.where(Command.state == filters.state)
    if filters.text:
        # Matched in the stored JSON text, so the needle is JSON-escaped as the arguments are.
        needle = json.dumps(filters.text, ensure_ascii=False)[1:-1]
        matches = Expression(Command.arguments, OP.ILIKE, Value(f"%{needle}%", converter=False))
        query = query.where(matches | (Command.id == filters.text))
    if filters.since is not None:
        query = query.where(Command.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(Command.created_at < filters.until)
    if filters.before is not None:
        stamp, command_id = filters.before
        query = query.where((Command.created_at < stamp) | ((Command.created_at == stamp) & (Command.id < command_id)))
    with db.connection_context():
        rows = list(query)
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], f"{last.created_at!r}_{last.id}"


def history_choices() -> dict[str, list[str]]:
    """The machines and tools the filters offer."""
    with db.connection_context():
        machines = [m.name for m in Machine.select(Machine.name).order_by(Machine.name)]
    from web.mcp.tool_specs import TOOLS

    return {"machines": machines, "tools": sorted(spec.name for spec in TOOLS if spec.relayed), "states": sorted(STATES)}


def workload() -> dict[str, dict[str, int]]:
    """Per machine, how many commands are queued (or leased) and running."""
    counts: dict[str, dict[str, int]] = {}
    with db.connection_context():
        rows = (
            Command.select(Command.machine, Command.state, fn.COUNT(Command.id))
            .where(Command.state.in_([QUEUED, LEASED, RUNNING]))
            .group_by(Command.machine, Command.state)
            .tuples()
        )
        for machine, state, count in rows:
            entry = counts.setdefault(machine, {"queued": 0, "running": 0})
            entry["running" if state == RUNNING else "queued"] += int(count)
    return counts


def active(limit: int = 100) -> list[Command]:
    """Commands not finished yet, and the ones that finished in the last 10 minutes, newest first."""
    with db.connection_context():
        pending = list(Command.select().where(Command.state.in_([QUEUED, LEASED, RUNNING])).order_by(Command.created_at.desc()).limit(limit))
        recent = list(
            Command.select().where(Command.created_at >= now() - 600).order_by(Command.created_at.desc(), Command.id.desc()).limit(limit)
        )
    seen, merged = set(), []
    for command in sorted(pending + recent, key=lambda c: (c.created_at, c.id), reverse=True):
        if command.id not in seen:
            seen.add(command.id)
            merged.append(command)
    return merged[:limit]


def command(command_id: str) -> Command | None:
    with db.connection_context():
        return Command.get_or_none(Command.id == command_id[:32])


def events(command_id: str) -> list[CommandEvent]:
    with db.connection_context():
        return list(CommandEvent.select().where(CommandEvent.command_id == command_id).order_by(CommandEvent.id))


def callers(command_id: str) -> list[ToolCall]:
    """The audit rows of the tool call(s) that submitted this command."""
    with db.connection_context():
        return list(ToolCall.select().where(ToolCall.command_id == command_id).order_by(ToolCall.id))


def oauth_clients() -> list[dict[str, Any]]:
    """Every registered OAuth client with its live tokens (never their values: only counts and expiry)."""
    t = now()
    with db.connection_context():
        clients = list(OAuthClient.select().order_by(OAuthClient.created_at.desc()))
        grants = list(
            OAuthGrant.select(OAuthGrant.client_id, OAuthGrant.kind, OAuthGrant.family, OAuthGrant.created_at, OAuthGrant.expires_at)
            .where(OAuthGrant.revoked_at.is_null() & (OAuthGrant.expires_at > t) & (OAuthGrant.kind != "code") & OAuthGrant.used_at.is_null())
            .order_by(OAuthGrant.created_at.desc())
        )
    by_client: dict[str, list[OAuthGrant]] = {}
    for grant in grants:
        by_client.setdefault(grant.client_id, []).append(grant)
    return [{"client": c, "tokens": by_client.get(c.client_id, [])} for c in clients]


def oauth_client(client_id: str) -> OAuthClient | None:
    with db.connection_context():
        return OAuthClient.get_or_none(OAuthClient.client_id == client_id)


def family_client(family: str) -> str | None:
    """The OAuth client id behind a credential name "oauth:<family>"."""
    with db.connection_context():
        grant = OAuthGrant.select(OAuthGrant.client_id).where(OAuthGrant.family == family).first()
    return grant.client_id if grant else None


def all_machines() -> list[Machine]:
    with db.connection_context():
        return list(Machine.select().order_by(Machine.name))


def refused_keys() -> dict[str, list[dict[str, Any]]]:
    """Per machine, the agents' keys refused its name in the last REFUSED_KEY_DAYS, newest first, each
    with how often and when last: a reinstalled machine the owner may hand the name to. Read from the
    audit rows of those refusals (migration 0012 indexes them, so this stays cheap on a long history)."""
    since = now() - REFUSED_KEY_DAYS * 86400
    with db.connection_context():
        rows = list(
            ToolCall.select(ToolCall.created_at, ToolCall.message)
            .where((ToolCall.error_code == "machine_key_mismatch") & (ToolCall.created_at >= since))
            .order_by(ToolCall.created_at.desc())
            .limit(MAX_REFUSALS)
            .tuples()
        )
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for at, message in rows:
        parsed = refused_key(message)
        if parsed is not None:
            entry = found.setdefault(parsed[0], {}).setdefault(parsed[1], {"key": parsed[1], "last_at": at, "count": 0})
            entry["count"] += 1
    return {name: list(keys.values()) for name, keys in found.items()}


def machine(name: str) -> Machine | None:
    with db.connection_context():
        return Machine.get_or_none(Machine.name == name[:64])


def _live_sessions(svc) -> dict:
    """The open MCP sessions by id: those this process holds in memory (one process, SQLite) and,
    where sessions are shared by every server process, their `mcp_session` rows."""
    in_memory = dict(getattr(svc.sessions, "_sessions", {}) or {})
    McpSession = shared_session_table()
    if McpSession is None:
        return in_memory
    idle_since = now() - svc.config.session_idle_seconds
    with db.connection_context():
        rows = list(McpSession.select().where(McpSession.closed_at.is_null() & (McpSession.last_active_at >= idle_since))
                    .order_by(McpSession.last_active_at.desc()).limit(MAX_SESSIONS))
    sessions: dict[str, Any] = {row.id: _SharedRow(row) for row in rows}  # the database is the truth where it has them
    for session_id, session in in_memory.items():
        sessions.setdefault(session_id, session)
    return sessions


def shared_session_table():
    """The model of the table where sessions every server process knows are kept, if the server has one."""
    try:
        from web.models import McpSession
    except ImportError:
        return None
    return McpSession


@dataclasses.dataclass
class _SharedRow:
    """A shared session's row, read as the page reads an in-memory session (its clock is wall time)."""

    row: Any
    wall_clock = True

    def __getattr__(self, name: str) -> Any:
        names = {"created_at": "created_at", "last_active": "last_active_at"}
        return getattr(self.row, names.get(name, name))


def _credential(credential: str) -> dict[str, str]:
    if credential.startswith("oauth:"):
        client_id = family_client(credential[len("oauth:"):]) or ""
        return {"kind": "OAuth", "oauth_client": client_id}
    return {"kind": "owner secret", "oauth_client": ""}


def _client_name(session) -> str:
    info = getattr(session, "client_info", None) or {}
    return " ".join(str(info.get(k, "")) for k in ("name", "version") if info.get(k))[:200]


def describe_caller(svc, row: ToolCall) -> dict[str, Any]:
    """Who asked for a command: the tool call's transport and session, and, while that session is
    open, the client's name and whether it signed in with the owner secret or an OAuth client."""
    session = _live_sessions(svc).get(row.session_id) if row.session_id else None
    described = {"at": row.created_at, "transport": row.transport, "session_id": row.session_id, "tool": row.tool,
                 "status": row.status, "client": "", "kind": "", "oauth_client": "", "session_open": session is not None}
    if session is not None:
        described["client"] = _client_name(session)
        described |= _credential(getattr(session, "credential", ""))
    return described


def mcp_sessions(svc) -> list[dict[str, Any]]:
    """The open MCP sessions: transport, revision, client, credential kind, opened and last used."""
    import time as _time

    monotonic_offset = _time.time() - _time.monotonic()
    rows = []
    for session in _live_sessions(svc).values():
        offset = 0.0 if getattr(session, "wall_clock", False) else monotonic_offset
        rows.append({
            "id": session.id, "transport": session.transport, "protocol_version": session.protocol_version or "",
            "client": _client_name(session), "opened_at": session.created_at + offset,
            "active_at": session.last_active + offset, **_credential(session.credential),
        })
    return sorted(rows, key=lambda r: r["active_at"], reverse=True)


def high_water() -> str:
    """The newest event and output ids now, as "<event id>.<output id>"."""
    with db.connection_context():
        event_id = CommandEvent.select(fn.MAX(CommandEvent.id)).scalar() or 0
        output_id = CommandOutput.select(fn.MAX(CommandOutput.id)).scalar() or 0
    return f"{event_id}.{output_id}"


def parse_mark(raw: str | None) -> tuple[int, int] | None:
    event_id, _, output_id = (raw or "").partition(".")
    if event_id.isdigit() and output_id.isdigit():
        return int(event_id), int(output_id)
    return None
