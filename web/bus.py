"""The bus: how one server process tells the others that something changed.

A server process acts on its own changes at once (web/relay/wakeup.py wakes its waiters, its caches are
updated in place) and then `publish`es the change, by kind and key, for every *other* process:

    kind        key            what a receiving process does
    machine     machine name   wake the machine's held polls: a command was queued, or it registered
    command     command id     wake the tool calls waiting on the command: output, outcome, cancel
    session     session id     wake the holder of the session's stream: a message was queued for it
    stream      stream id      wake the followers of a resumable answer stream: it has a new message
    registration machine name  the machine registered again or was revoked: forget its cached
                               token generation and the machine list, end its held polls
    resync      ""             (delivered locally only) the bus may have missed messages: every
                               waiter re-reads the database now

Only ids travel; what changed is read from the database, which stays the source of truth. A lost
message costs time, not correctness: a held poll or a waiting tool call also re-reads the database
at least once a second, and a stream at each keep-alive.

`LocalBus` serves one server process (SQLite): there is nobody to tell. `PostgresBus`
(web/bus_postgres.py) sends each message with `NOTIFY` and listens on one connection per process.
`open_bus` picks by the database URL.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

KINDS = frozenset({"machine", "command", "session", "stream", "registration", "resync"})
Handler = Callable[[str], None]


class Signals:
    """Events by key (a command, session or stream id), set by this process or by the bus."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def event(self, key: str) -> threading.Event:
        with self._lock:
            event = self._events.get(key)
            if event is None:
                event = self._events[key] = threading.Event()
            return event

    def waiting(self, key: str) -> bool:
        """Whether anyone here holds the key's event."""
        return key in self._events

    def set(self, key: str) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()

    def set_all(self, _: str = "") -> None:
        with self._lock:
            events = list(self._events.values())
        for event in events:
            event.set()

    def drop(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def __len__(self) -> int:
        return len(self._events)


class Bus:
    """The interface, and the in-process implementation: one server process, nothing to tell."""

    #: Whether other server processes may exist (and state must be shared through the database).
    shared = False

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {kind: [] for kind in KINDS}
        #: This process's name on the bus, recorded where another process may need to know whether
        #: the one that started something is still alive.
        self.origin = secrets.token_hex(8)

    def alive(self, origin: str) -> bool:
        """Whether the server process named `origin` is still running (here: only this one is)."""
        return origin == self.origin

    def subscribe(self, kind: str, handler: Handler) -> None:
        """Call `handler(key)` in this process when another process publishes `kind`."""
        self._handlers[kind].append(handler)

    def publish(self, kind: str, key: str = "") -> None:
        """Tell every other server process that `kind` `key` changed; this process already acted."""

    def deliver(self, kind: str, key: str) -> None:
        """Run this process's handlers for a message (from another process, or a local resync)."""
        for handler in self._handlers.get(kind, ()):
            try:
                handler(key)
            except Exception:  # one broken handler must not stop the others, nor the listener
                log.exception("bus handler for %s failed", kind)

    def start(self) -> None:
        """Begin receiving other processes' messages."""

    def close(self) -> None:
        """Stop receiving; publishing after this is a no-op."""


LocalBus = Bus


def open_bus(database_url: str) -> Bus:
    """The bus for this database: PostgreSQL's NOTIFY where several processes can share it."""
    if database_url.startswith(("postgresql://", "postgres://")):
        from web.bus_postgres import PostgresBus

        return PostgresBus(database_url)
    return LocalBus()
