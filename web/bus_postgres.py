"""The bus over PostgreSQL: `NOTIFY` to publish, one `LISTEN`ing connection per server process.

A message is the text `<origin> <kind> <key>` on the channel `code_remote`; `origin` names the
sending process, which skips its own messages (it acted on the change already). Payloads carry ids
only, far below NOTIFY's 8000-byte limit. NOTIFY costs one statement on a pooled connection.

The listener is a thread (a greenlet under gunicorn's gevent worker: psycopg2 is made cooperative
in gunicorn.conf.py and `select.poll` is gevent's), waiting on the connection's socket with `poll`,
never `select` (which refuses descriptors above 1023). Every PING_SECONDS of silence it runs
`SELECT 1`, so a connection that died quietly is noticed. After any failure it reconnects with
backoff and delivers `resync` locally: messages may have been missed while it was away, so every
waiter re-reads the database.

The same connection holds a session-level advisory lock named by the process's origin for as long
as the process lives, so any process can tell whether another one is still alive (`alive`): when a
process dies, PostgreSQL ends its connection and releases the lock.
"""

from __future__ import annotations

import logging
import random
import select
import threading

from web.bus import KINDS, Bus
from web.models import db

log = logging.getLogger(__name__)

CHANNEL = "code_remote"
PING_SECONDS = 10.0
RECONNECT_MAX_SECONDS = 5.0
MAX_PAYLOAD_BYTES = 7900


def lock_key(origin: str) -> int:
    """The advisory lock (a signed 64-bit number) that a process with this origin holds while alive."""
    return int(origin[:16].ljust(16, "0"), 16) - 2**63


class PostgresBus(Bus):
    shared = True

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.url = database_url
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._connection = None
        self._thread: threading.Thread | None = None

    # --- publishing ---------------------------------------------------------------------------

    def publish(self, kind: str, key: str = "") -> None:
        payload = f"{self.origin} {kind} {key}"
        if len(payload.encode()) > MAX_PAYLOAD_BYTES or self._closed.is_set():
            return
        with db.connection_context():
            db.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    # --- liveness -----------------------------------------------------------------------------

    def alive(self, origin: str) -> bool:
        """Whether the server process with this origin is still running."""
        if origin == self.origin:
            return True
        if not origin:
            return False
        key = lock_key(origin)
        with db.connection_context():
            taken = db.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
            if taken:  # nobody holds it: that process is gone
                db.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))
        return not taken

    # --- listening ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bus-listener", daemon=True)
            self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def close(self) -> None:
        self._closed.set()
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass

    def _run(self) -> None:
        backoff, down_since_logged = 0.25, False
        while not self._closed.is_set():
            connection = None
            try:
                connection = self._connect()
                if down_since_logged:
                    log.warning("bus: listening again; every waiter re-reads the database")
                    down_since_logged = False
                backoff = 0.25
                self._connected.set()
                self.deliver("resync", "")
                self._listen(connection)
            except Exception as error:
                self._connected.clear()
                if self._closed.is_set():
                    return
                if not down_since_logged:
                    log.warning("bus: lost the listening connection (%s); reconnecting", type(error).__name__)
                    down_since_logged = True
                # Full jitter, so that every process of a fleet does not reconnect in the same instant.
                self._closed.wait(random.uniform(0, backoff))
                backoff = min(backoff * 2, RECONNECT_MAX_SECONDS)
            finally:
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        pass

    def _connect(self):
        import psycopg2

        connection = psycopg2.connect(self.url, keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
            cursor.execute("SELECT pg_advisory_lock(%s)", (lock_key(self.origin),))
        self._connection = connection
        return connection

    def _listen(self, connection) -> None:
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        while not self._closed.is_set():
            if not poller.poll(PING_SECONDS * 1000):
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            connection.poll()
            while connection.notifies:
                self._receive(connection.notifies.pop(0).payload)

    def _receive(self, payload: str) -> None:
        origin, _, rest = payload.partition(" ")
        kind, _, key = rest.partition(" ")
        if origin == self.origin or kind not in KINDS or kind == "resync":
            return
        self.deliver(kind, key)
