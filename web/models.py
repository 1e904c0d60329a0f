"""Peewee models: machines, relayed commands and the audit trail.

The database is chosen by `DATABASE_URL` (`sqlite:///data/code-remote.db` by default,
`postgresql://user:pass@host/db` for PostgreSQL); the same models serve both. Times are UTC epoch
seconds in `*_at` fields, which sort and compare the same way on every backend.

Connections are opened per unit of work with `db.connection_context()` rather than per HTTP request:
a long-poll or an SSE stream may be held for minutes and must not pin a connection while it waits.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from peewee import (
    BigAutoField,
    BlobField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DoubleField,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
)
from playhouse.db_url import connect, parse
from playhouse.pool import PooledDatabase, PooledPostgresqlDatabase

from web import sql

db = DatabaseProxy()

SQLITE_PRAGMAS = {
    # WAL with synchronous=NORMAL costs ~0.1 ms a write; the default journal costs ~1 ms of fsync.
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": 5000,
    "foreign_keys": 1,
}
# Units of work do not yield to other greenlets, so a few connections serve a whole worker.
SQLITE_POOL_CONNECTIONS = 32
SQLITE_POOL_WAIT_SECONDS = 30
# Per server process; PostgreSQL allows 100 connections by default.
POSTGRES_POOL_CONNECTIONS = 20
POSTGRES_POOL_WAIT_SECONDS = 30
POSTGRES_STALE_SECONDS = 300
# A pooled connection back in use within this long is taken as alive without a round trip.
POSTGRES_TRUSTED_IDLE_SECONDS = 5.0

# Command states. The server is the only writer; see docs/ARCHITECTURE.md for the transitions.
QUEUED, LEASED, RUNNING = "queued", "leased", "running"
SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, EXPIRED, LOST = (
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "expired",
    "lost",
)
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, EXPIRED, LOST})
STATES = frozenset({QUEUED, LEASED, RUNNING}) | TERMINAL_STATES


class PostgresPool(PooledPostgresqlDatabase):
    """peewee's PostgreSQL pool, minus a `SELECT 1` on every check-out for a connection that was in
    use a moment ago: that round trip was a sixth of a server process's time per relayed call
    (scripts/bench.py --profile). A connection idle longer is still checked, so one the database
    dropped (a restart, a failover) is replaced rather than handed out."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._returned_at: dict[int, float] = {}

    def _is_closed(self, conn) -> bool:
        if conn.closed:
            return True
        returned = self._returned_at.get(self.conn_key(conn))
        if returned is not None and time.monotonic() - returned < POSTGRES_TRUSTED_IDLE_SECONDS:
            return self._adapter.txn_status(conn) == self._adapter.txn_unknown
        return super()._is_closed(conn)

    def _close(self, conn, close_conn=False):
        key = self.conn_key(conn)
        if close_conn:
            self._returned_at.pop(key, None)
        else:
            self._returned_at[key] = time.monotonic()
        return super()._close(conn, close_conn)


def open_database(url: str):
    """Open the database named by `url` and bind the models to it."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :].split("?", 1)[0]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            # Pooled, so a connection outlives its unit of work: opening one runs the pragmas, and
            # closing the last one checkpoints and deletes the WAL; per unit of work that cost more
            # server CPU than the rest of a relayed call (scripts/bench.py).
            url = "sqlite+pool:///" + url[len("sqlite:///") :]
            # A pooled connection may be handed to another thread than the one that opened it (the
            # pool lends it to one unit of work at a time), so sqlite3's same-thread check must go.
            pool = {"max_connections": SQLITE_POOL_CONNECTIONS, "timeout": SQLITE_POOL_WAIT_SECONDS, "check_same_thread": False}
        else:
            pool = {}  # every connection to :memory: is a database of its own
        database = connect(url, pragmas=SQLITE_PRAGMAS, autoconnect=True, **pool)
    elif url.startswith(("postgresql://", "postgres://")):
        # Pooled for the same reason, and more so: a new PostgreSQL connection is a TCP handshake,
        # authentication and a server process, ~100 ms per relayed call in scripts/bench.py. With
        # psycopg2 made cooperative, units of work overlap, hence a bounded pool that waits.
        database = PostgresPool(
            **parse(url),
            autoconnect=True,
            max_connections=POSTGRES_POOL_CONNECTIONS,
            timeout=POSTGRES_POOL_WAIT_SECONDS,
            stale_timeout=POSTGRES_STALE_SECONDS,
        )
    else:
        database = connect(url, autoconnect=True)
    if isinstance(db.obj, PooledDatabase):
        db.obj.close_idle()  # the proxy is rebound: nothing reaches the old pool any more
    db.initialize(database)
    return database


def atomic_write():
    """A read-then-write transaction. SQLite needs BEGIN IMMEDIATE, or concurrent writers from two
    processes fail with "database is locked" instead of waiting their turn."""
    if isinstance(db.obj, SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


def locked(query):
    """`query` with its rows locked until the transaction ends, where the database can (PostgreSQL):
    of two processes changing the same rows, the second then sees the first one's change. SQLite
    needs no lock: `atomic_write` already lets one writer in at a time."""
    return query.for_update() if db.obj.for_update else query


def now() -> float:
    return time.time()


class JSONField(TextField):
    """JSON stored as text, so it works the same on SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(Model):
    class Meta:
        database = db


class Machine(BaseModel):
    name = CharField(max_length=64, unique=True)
    hostname = CharField(max_length=255, default="")
    os = CharField(max_length=255, default="")
    agent_version = CharField(max_length=64, default="")
    roots = JSONField(default=list)
    registered_at = DoubleField(default=now)
    last_seen_at = DoubleField(default=now)
    # Bumped to revoke every token issued to this machine so far (by a revocation, an approval, and
    # every registration).
    token_generation = IntegerField(default=0)
    # SHA-256 of the key the machine's agent enrolled with (web/relay/machines.py); None: unclaimed.
    key_hash = CharField(max_length=64, null=True)

    class Meta:
        table_name = "machine"


class Command(BaseModel):
    id = CharField(max_length=32, primary_key=True)
    machine = CharField(max_length=64)
    tool = CharField(max_length=64)
    arguments = JSONField()
    state = CharField(max_length=16, default=QUEUED)
    timeout_seconds = DoubleField()
    session_id = CharField(max_length=64, default="")
    # The JSON-RPC id of the tools/call waiting on it (as JSON text), so `notifications/cancelled`
    # finds it from any server process.
    request_id = CharField(max_length=200, null=True)
    created_at = DoubleField(default=now)
    leased_at = DoubleField(null=True)
    lease_expires_at = DoubleField(null=True)
    lease_count = IntegerField(default=0)
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)
    result = JSONField(null=True)
    exit_code = IntegerField(null=True)
    error_code = CharField(max_length=64, null=True)
    error_message = TextField(null=True)
    # A queued or leased command not started by then becomes `expired`.
    start_by_at = DoubleField(null=True)
    # Last sign of life from the agent while running; a stale one makes the command `lost`.
    heartbeat_at = DoubleField(null=True)
    cancel_requested_at = DoubleField(null=True)
    # Per stream: {"stdout": {"received": bytes, "stored": bytes}, ...}; see CommandOutput.
    output = JSONField(null=True)

    class Meta:
        table_name = "command"
        # A machine's pending commands are found from this index, never by reading its history.
        # The dashboard's history pages newest first, optionally by machine or state (migration 0007).
        # `notifications/cancelled` finds its command by session and request (migration 0005).
        indexes = (
            (("machine", "state"), False),
            (("state", "created_at", "id"), False),
            (("created_at", "id"), False),
            (("machine", "created_at", "id"), False),
            (("session_id", "request_id"), False),
        )
        # A transition changes a few columns: write only those (assign a JSON field anew, never
        # mutate it in place, or the change is not seen).
        only_save_dirty = True


class CommandOutput(BaseModel):
    """One chunk of a command's output, as the agent streamed it. `offset` and `length` are byte
    positions in the stream; `data` may be shorter than `length` (or empty) past the server's cap."""

    command_id = CharField(max_length=32)
    stream = CharField(max_length=8)
    offset = IntegerField()
    length = IntegerField()
    data = BlobField()
    created_at = DoubleField(default=now)

    class Meta:
        table_name = "command_output"
        indexes = ((("command_id", "stream", "offset"), True),)


class CommandEvent(BaseModel):
    """The transition log: one row per state change, written in the same transaction."""

    command_id = CharField(max_length=32, index=True)
    at = DoubleField(default=now)
    from_state = CharField(max_length=16, default="")
    to_state = CharField(max_length=16)
    actor = CharField(max_length=16)
    detail = TextField(default="")

    class Meta:
        table_name = "command_event"


class ToolCall(BaseModel):
    """The audit trail: one row per MCP tool call, refused calls included."""

    created_at = DoubleField(default=now, index=True)
    finished_at = DoubleField(null=True)
    session_id = CharField(max_length=64, default="")
    transport = CharField(max_length=16, default="")
    machine = CharField(max_length=64, default="", index=True)
    tool = CharField(max_length=64, default="")
    arguments = JSONField(default=dict)
    status = CharField(max_length=16, default="pending")
    is_error = BooleanField(default=False)
    error_code = CharField(max_length=64, null=True)
    message = TextField(default="")
    exit_code = IntegerField(null=True)
    output_bytes = IntegerField(null=True)
    duration_ms = DoubleField(null=True)
    command_id = CharField(max_length=32, null=True)

    class Meta:
        table_name = "tool_call"


MODELS = [Machine, Command, CommandOutput, CommandEvent, ToolCall]


def transition(command: Command, to_state: str, actor: str, detail: str = "", **fields) -> None:
    """Move `command` to `to_state` and log it; call inside the transaction that saves it."""
    from_state = command.state or ""
    command.state = to_state
    for name, value in fields.items():
        setattr(command, name, value)
    log_event(command.id, from_state, to_state, actor, detail)


def log_event(command_id: str, from_state: str, to_state: str, actor: str, detail: str = "", at: float | None = None) -> None:
    """Write a `command_event` row; call inside the transaction that makes the change it records."""
    sql.insert(event(command_id, from_state, to_state, actor, detail, at))


def event(command_id: str, from_state: str, to_state: str, actor: str, detail: str = "", at: float | None = None) -> CommandEvent:
    """A `command_event` row, not yet written."""
    row = CommandEvent(command_id=command_id, from_state=from_state, to_state=to_state, actor=actor, detail=detail[:1000])
    if at is not None:
        row.at = at
    return row


class OAuthClient(BaseModel):
    """A client registered through RFC 7591 dynamic registration (Claude.ai, Claude Code, ...), or
    known by its Client ID Metadata Document."""

    client_id = CharField(max_length=64, primary_key=True)
    client_name = CharField(max_length=200, default="")
    redirect_uris = JSONField(default=list)
    # "none" for public clients (PKCE alone); otherwise the SHA-256 of the issued client secret.
    token_endpoint_auth_method = CharField(max_length=32, default="none")
    secret_hash = CharField(max_length=64, null=True)
    created_at = DoubleField(default=now, index=True)
    # First approved consent; a client still unused a day after registering is purged.
    used_at = DoubleField(null=True)
    # A client known by a metadata document (its client_id is this URL; `client_id` above is then a
    # digest of it): when the fetched document may be used until (web/oauth/client_metadata.py).
    metadata_url = CharField(max_length=2000, null=True)
    metadata_expires_at = DoubleField(null=True)

    class Meta:
        table_name = "oauth_client"


class OAuthGrant(BaseModel):
    """An authorization code or a token, stored only as the SHA-256 of its value.

    `kind` is "code", "access" or "refresh". Tokens descended from one consent share `family`, so a
    replayed code or refresh token revokes the whole family at once.
    """

    token_hash = CharField(max_length=64, primary_key=True)
    kind = CharField(max_length=16)
    family = CharField(max_length=32, index=True)
    client_id = CharField(max_length=64, index=True)
    resource = CharField(max_length=512)
    scope = CharField(max_length=200, default="")
    redirect_uri = TextField(default="")
    code_challenge = CharField(max_length=128, default="")
    created_at = DoubleField(default=now)
    expires_at = DoubleField()
    used_at = DoubleField(null=True)
    revoked_at = DoubleField(null=True)

    class Meta:
        table_name = "oauth_grant"


MODELS += [OAuthClient, OAuthGrant]


class ProcessStat(BaseModel):
    """Figures one server process keeps in memory (held polls, open streams, failures counted),
    written every few seconds so that /metrics, served by any process, sums them all
    (web/console/process_stats.py). `updated_at` tells the live processes from the gone ones."""

    process = CharField(max_length=128, primary_key=True)
    started_at = DoubleField(default=now)
    updated_at = DoubleField(default=now, index=True)
    gauges = JSONField(default=dict)
    counters = JSONField(default=dict)

    class Meta:
        table_name = "process_stat"


MODELS += [ProcessStat]


class McpSession(BaseModel):
    """An MCP session, known to every server process (web/mcp/shared.py); one server process on
    SQLite keeps its sessions in memory instead (web/mcp/session.py)."""

    id = CharField(max_length=32, primary_key=True)
    credential = CharField(max_length=64)
    transport = CharField(max_length=8)
    protocol_version = CharField(max_length=16, null=True)
    client_info = JSONField(null=True)
    initialized = BooleanField(default=False)
    log_level = CharField(max_length=16, null=True)
    created_at = DoubleField(default=now)
    last_active_at = DoubleField(default=now, index=True)
    # The session's own stream (GET /sse, GET /mcp) is held while this is recent: its holder
    # refreshes it at every keep-alive.
    stream_held_at = DoubleField(null=True)
    stream_holder = CharField(max_length=32, null=True)  # the origin (web/bus.py) of the process holding it
    closed_at = DoubleField(null=True)

    class Meta:
        table_name = "mcp_session"
        indexes = ((("credential", "last_active_at"), False),)
        only_save_dirty = True


class McpStream(BaseModel):
    """An answer sent as SSE on POST /mcp, kept so a client may resume it from any server process.

    `owner` names the process producing it; `request` holds what another process needs to finish
    it when that one died: the JSON-RPC id and the command the call waits on.
    """

    id = CharField(max_length=32, primary_key=True)
    session_id = CharField(max_length=32, index=True)
    owner = CharField(max_length=32, default="")
    request = JSONField(null=True)
    done = BooleanField(default=False)
    created_at = DoubleField(default=now)

    class Meta:
        table_name = "mcp_stream"
        only_save_dirty = True


class McpMessage(BaseModel):
    """A JSON-RPC message on its way to a client: in a session's own stream (`stream_id` is the
    session id; deleted once sent) or in a kept answer stream (event ids are the row ids)."""

    id = BigAutoField()
    stream_id = CharField(max_length=32)
    body = TextField()
    created_at = DoubleField(default=now)

    class Meta:
        table_name = "mcp_message"
        indexes = ((("stream_id", "id"), False),)


class ThrottleHit(BaseModel):
    """One counted event (a failed authentication, a client registration) per client address, so a
    limit holds across every server process."""

    scope = CharField(max_length=32)
    key = CharField(max_length=64)
    at = DoubleField(default=now)

    class Meta:
        table_name = "throttle_hit"
        indexes = ((("scope", "key", "at"), False),)


MODELS += [McpSession, McpStream, McpMessage, ThrottleHit]
