"""Sessions every server process knows: records and outgoing messages in the database, wake-ups
through the bus (web/bus.py). Chosen with PostgreSQL, where a load balancer without affinity sends a
session's requests to any process (web/mcp/session.py has the interface and the in-memory store).

* A session is a `mcp_session` row. `get` reads it (one SELECT by key per request); use is written
  back at most every TOUCH_SECONDS, which is plenty against an idle limit of an hour.
* A message for a session's stream is a `mcp_message` row whose `stream_id` is the session id.
  The sender inserts it and publishes `session`; the process holding the stream (GET /sse, GET
  /mcp) is woken, reads what is new in one statement, sends it, and deletes what it sent.
* The one GET stream a Streamable HTTP session may have is claimed in the row (`stream_held_at`,
  refreshed at every keep-alive, and `stream_holder`, the holding process): a claim older than two
  keep-alives, or whose holder is no longer alive (web/bus.py), is taken over.
* Resumable answers are rows too (web/mcp/shared_replay.py), so `Last-Event-ID` works anywhere.

Closed and expired sessions are swept, with their messages and answers, at most once a minute.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

from web import sql
from web.bus import Bus, Signals
from web.mcp.session import Session, SessionStore, unknown_session
from web.mcp.shared_replay import SharedReplays, append
from web.models import McpMessage, McpSession, McpStream, atomic_write, db

# A session's use is written at most this often (it expires after SESSION_IDLE_SECONDS unused).
TOUCH_SECONDS = 60.0
EXPIRE_EVERY_SECONDS = 60.0
# Closed sessions are deleted, with their messages and answers, this long after they closed.
KEEP_CLOSED_SECONDS = 600.0
# A stream's holder sends at most this many messages per read, and deletes what it sent at least
# after this many (and at every keep-alive).
READ_BATCH = 100
FORGET_EVERY = 64

PENDING = (
    "SELECT s.closed_at, m.id, m.body FROM mcp_session s "
    "LEFT JOIN mcp_message m ON m.stream_id = s.id AND m.id > ? WHERE s.id = ? ORDER BY m.id LIMIT ?"
)
HOLD = (
    "UPDATE mcp_session SET stream_held_at = ?, stream_holder = ? WHERE id = ? AND closed_at IS NULL "
    "AND (stream_held_at IS NULL OR stream_held_at < ?)"
)
# The same, from a holder found dead (of two processes trying, one wins).
TAKE_OVER = "UPDATE mcp_session SET stream_held_at = ?, stream_holder = ? WHERE id = ? AND closed_at IS NULL AND stream_holder = ?"


class SharedSession(Session):
    store: SharedSessions

    def send(self, message: dict[str, Any]) -> None:
        self.store.post(self.id, message)

    def close(self) -> None:
        self.closed = True

    def save(self) -> None:
        with db.connection_context():
            McpSession.update(
                protocol_version=self.protocol_version,
                client_info=self.client_info,
                initialized=self.initialized,
                log_level=self.log_level,
            ).where(McpSession.id == self.id).execute()

    def touch(self) -> None:
        t = time.time()
        if t - self.last_active >= TOUCH_SECONDS:
            self.last_active = t
            with db.connection_context():
                McpSession.update(last_active_at=t).where(McpSession.id == self.id).execute()

    def hold_stream(self) -> bool:
        """Claim the session's one GET stream: free, stale (two keep-alives old), or held by a process
        that is gone (its claim would otherwise refuse the client for up to two keep-alives)."""
        t, bus = time.time(), self.store.bus
        stale = t - 2 * self.store.heartbeat_seconds
        with db.connection_context():
            self.listening = sql.execute(McpSession, HOLD, (t, bus.origin, self.id, stale)).rowcount == 1
            if not self.listening:
                rows = sql.execute(McpSession, "SELECT stream_holder FROM mcp_session WHERE id = ?", (self.id,)).fetchall()
                holder = rows[0][0] if rows else None
                if holder and holder != bus.origin and not bus.alive(holder):
                    self.listening = sql.execute(McpSession, TAKE_OVER, (t, bus.origin, self.id, holder)).rowcount == 1
        return self.listening

    def release_stream(self) -> None:
        self.listening = False
        with db.connection_context():
            # Only its own claim: one taken over by another process meanwhile stays that process's.
            McpSession.update(stream_held_at=None, stream_holder=None).where(
                (McpSession.id == self.id) & (McpSession.stream_holder == self.store.bus.origin)
            ).execute()

    def messages(self, heartbeat_seconds: float) -> Iterator[dict[str, Any] | None]:
        store, last, unforgotten = self.store, 0, 0
        woken = store.signals.event(self.id)
        try:
            while True:
                woken.clear()
                with db.connection_context():
                    rows = sql.execute(McpSession, PENDING, (last, self.id, READ_BATCH)).fetchall()
                if not rows:
                    return  # the session is gone
                closed = rows[0][0] is not None
                for _, key, body in rows:
                    if key is not None:
                        last, unforgotten = key, unforgotten + 1
                        yield json.loads(body)
                if unforgotten >= FORGET_EVERY:
                    store.forget(self.id, last)
                    unforgotten = 0
                if len(rows) == READ_BATCH:
                    continue  # there may be more; a shorter read had everything (a later message sets `woken`)
                if closed or store.draining:
                    return
                if not woken.wait(heartbeat_seconds):
                    if unforgotten:
                        store.forget(self.id, last)
                        unforgotten = 0
                    self.touch()
                    if self.listening:  # renew the claim on the session's one GET stream
                        with db.connection_context():
                            McpSession.update(stream_held_at=time.time()).where(McpSession.id == self.id).execute()
                    yield None
        finally:
            store.signals.drop(self.id)
            if unforgotten:
                store.forget(self.id, last)


class SharedSessions(SessionStore):
    shared = True

    def __init__(self, bus: Bus, idle_seconds: float, max_per_credential: int = 64, *, heartbeat_seconds: float = 15.0) -> None:
        super().__init__(idle_seconds, max_per_credential)
        self.bus = bus
        self.heartbeat_seconds = heartbeat_seconds
        self.signals = Signals()
        self.draining = False
        self._expired_at = 0.0
        bus.subscribe("session", self.signals.set)
        bus.subscribe("stream", self.signals.set)
        bus.subscribe("resync", self.signals.set_all)

    def open(self, credential: str, transport: str) -> Session:
        self.expire()
        t = time.time()
        record = McpSession(id=secrets.token_hex(16), credential=credential, transport=transport, created_at=t, last_active_at=t)
        with db.connection_context():
            with atomic_write():
                sql.insert(record)
            # Past the limit, the credential's least recently used sessions make room.
            older = (
                McpSession.select(McpSession.id)
                .where((McpSession.credential == credential) & McpSession.closed_at.is_null())
                .order_by(McpSession.last_active_at.desc())
                .offset(self.max_per_credential)
            )
            evicted = [row.id for row in older]
        for session_id in evicted:
            self._close(session_id)
        return self._session(record)

    def get(self, session_id: str | None, credential: str, transport: str) -> Session:
        with db.connection_context():
            record = sql.get(McpSession, (session_id or "")[:64])
        if record is None or record.closed_at is not None or record.credential != credential or record.transport != transport:
            raise unknown_session()
        if record.last_active_at < time.time() - self.idle_seconds:
            self._close(record.id)
            raise unknown_session()
        session = self._session(record)
        session.touch()
        return session

    def close(self, session: Session) -> None:
        session.close()
        self._close(session.id)

    def _close(self, session_id: str) -> None:
        with db.connection_context():
            McpSession.update(closed_at=time.time()).where((McpSession.id == session_id) & McpSession.closed_at.is_null()).execute()
        self.signals.set(session_id)
        self.bus.publish("session", session_id)

    def post(self, session_id: str, message: dict[str, Any]) -> None:
        """Queue a message for the session's stream, wherever it is held."""
        with db.connection_context():
            append(session_id, [json.dumps(message, separators=(",", ":"), ensure_ascii=False)], time.time())
        self.signals.set(session_id)
        self.bus.publish("session", session_id)

    def forget(self, stream_id: str, up_to: int) -> None:
        """Delete a stream's messages up to `up_to`: they were sent."""
        with db.connection_context():
            McpMessage.delete().where((McpMessage.stream_id == stream_id) & (McpMessage.id <= up_to)).execute()

    def expire(self) -> None:
        """Close sessions idle past the limit; delete closed ones, with their messages and answers."""
        t = time.time()
        if t - self._expired_at < EXPIRE_EVERY_SECONDS:
            return
        self._expired_at = t
        with db.connection_context():
            McpSession.update(closed_at=t).where(McpSession.closed_at.is_null() & (McpSession.last_active_at < t - self.idle_seconds)).execute()
            gone = McpSession.select(McpSession.id).where(McpSession.closed_at < t - KEEP_CLOSED_SECONDS)
            streams = McpStream.select(McpStream.id).where(McpStream.session_id.in_(gone))
            McpMessage.delete().where(McpMessage.stream_id.in_(streams) | McpMessage.stream_id.in_(gone)).execute()
            McpStream.delete().where(McpStream.session_id.in_(gone)).execute()
            McpSession.delete().where(McpSession.closed_at < t - KEEP_CLOSED_SECONDS).execute()

    def drain(self) -> None:
        self.draining = True
        self.signals.set_all()

    def __len__(self) -> int:
        with db.connection_context():
            return McpSession.select().where(McpSession.closed_at.is_null()).count()

    def _session(self, record: McpSession) -> SharedSession:
        session = SharedSession(
            id=record.id,
            credential=record.credential,
            transport=record.transport,
            protocol_version=record.protocol_version,
            client_info=record.client_info,
            initialized=record.initialized,
            log_level=record.log_level,
            created_at=record.created_at,
            last_active=record.last_active_at,
        )
        session.store = self
        session.replays = SharedReplays(self, record.id)
        return session
