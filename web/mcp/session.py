"""MCP sessions: who opened them, which protocol revision they speak, and their outgoing messages.

A session is bound to the fingerprint of the credential that opened it; any other credential is told
it does not exist. An SSE session lives as long as its stream; a Streamable HTTP session until it is
deleted or sits idle too long.

Where sessions live is the store's business, behind one interface (`SessionStore`, `Session`):

* `MemorySessions`, here: in this process's memory. The embedded default (SQLite, one server
  process), and the fastest: a message for a stream is a queue put.
* `SharedSessions` (web/mcp/shared.py): in the database, so that every server process knows every
  session. A message is a row, and the bus (web/bus.py) wakes the process holding the stream; a
  resumable answer can be resumed from any process. Chosen with PostgreSQL.

The transports only call the interface: `open`, `get`, `close`; a session's `send`, `messages`,
`hold_stream`/`release_stream`, `touch`, `save` (after the handshake changed its fields), and its
`replays` (web/mcp/replay.py).
"""

from __future__ import annotations

import dataclasses
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

from web import errors
from web.mcp.replay import Replays

CLOSED = object()


def unknown_session() -> errors.NotFound:
    return errors.NotFound("unknown or expired session: open a new one", code="unknown_session")


@dataclasses.dataclass(eq=False)
class Session:
    """A session in this process's memory; `SharedSessions` hands out a subclass backed by rows."""

    id: str
    credential: str
    transport: str
    protocol_version: str | None = None
    client_info: dict[str, Any] | None = None
    initialized: bool = False
    # The level the client asked for with logging/setLevel (handshake revisions); None: not asked.
    log_level: str | None = None
    created_at: float = dataclasses.field(default_factory=time.time)
    last_active: float = dataclasses.field(default_factory=time.monotonic)
    closed: bool = False
    # A Streamable HTTP session's GET stream is open (one at a time carries its outbox).
    listening: bool = False
    outbox: queue.Queue = dataclasses.field(default_factory=queue.Queue, repr=False)
    # Answers sent as SSE streams, kept for a client that resumes one with Last-Event-ID.
    replays: Any = dataclasses.field(default_factory=Replays, repr=False)

    def send(self, message: dict[str, Any]) -> None:
        """Queue a JSON-RPC message for the session's stream."""
        if not self.closed:
            self.outbox.put(message)

    def close(self) -> None:
        self.closed = True
        self.outbox.put(CLOSED)

    def save(self) -> None:
        """Keep the handshake's changes (revision, client, initialized, log level): here, in place."""

    def touch(self) -> None:
        """Count as used now (an open stream or a call in progress keeps a session alive)."""
        self.last_active = time.monotonic()

    def hold_stream(self) -> bool:
        """Take the session's one GET stream; False if another is open."""
        if self.listening:
            return False
        self.listening = True
        return True

    def release_stream(self) -> None:
        self.listening = False

    def messages(self, heartbeat_seconds: float) -> Iterator[dict[str, Any] | None]:
        """The session's outgoing messages until it closes, with None after each `heartbeat_seconds`
        of silence (the stream sends a keep-alive comment then; an idle stream still counts as use)."""
        while True:
            try:
                message = self.outbox.get(timeout=heartbeat_seconds)
            except queue.Empty:
                self.touch()
                yield None
                continue
            if message is CLOSED:
                return
            yield message


class SessionStore:
    """The interface every store offers, and the in-memory store (`MemorySessions`)."""

    shared = False

    def __init__(self, idle_seconds: float, max_per_credential: int = 64) -> None:
        self.idle_seconds = idle_seconds
        self.max_per_credential = max_per_credential
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, credential: str, transport: str) -> Session:
        """A new session. Past `max_per_credential`, the credential's least recently used session is
        closed to make room: clients that never say goodbye (mcp-remote) must not lock themselves out."""
        self.expire()
        session = Session(id=secrets.token_hex(16), credential=credential, transport=transport)
        with self._lock:
            mine = [s for s in self._sessions.values() if s.credential == credential]
            evicted = sorted(mine, key=lambda s: s.last_active)[: max(0, len(mine) - self.max_per_credential + 1)]
            for old in evicted:
                del self._sessions[old.id]
            self._sessions[session.id] = session
        for old in evicted:
            old.close()
        return session

    def get(self, session_id: str | None, credential: str, transport: str) -> Session:
        """The open session with this id, opened by this credential over this transport, or a 404."""
        with self._lock:
            session = self._sessions.get(session_id or "")
        if session is not None and session.last_active < time.monotonic() - self.idle_seconds:
            self.close(session)
        if session is None or session.closed or session.credential != credential or session.transport != transport:
            raise unknown_session()
        session.touch()
        return session

    def close(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
        session.close()

    def expire(self) -> None:
        """Drop sessions idle for longer than the limit (clients rarely say goodbye)."""
        cutoff = time.monotonic() - self.idle_seconds
        with self._lock:
            stale = [s for s in self._sessions.values() if s.last_active < cutoff]
            for s in stale:
                del self._sessions[s.id]
        for s in stale:
            s.close()

    def drain(self) -> None:
        """The process is stopping: end every open stream, so its client reconnects elsewhere."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            if session.transport == "sse":
                self.close(session)  # an SSE session cannot outlive its stream
            else:
                session.outbox.put(CLOSED)  # ends the GET stream; the session itself stays

    def __len__(self) -> int:
        return len(self._sessions)


MemorySessions = SessionStore
