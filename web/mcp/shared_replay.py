"""Resumable answers kept in the database, so a client may resume one from any server process.

The interface is web/mcp/replay.py's (`open`, `find`; a replay's `add`, `follow`, `event_id`): an
answer stream is a `mcp_stream` row and its messages are `mcp_message` rows, whose ids are the
event numbers. The process producing an answer publishes `stream` on the bus at each message, which
wakes the followers wherever they are.

When the producing process dies mid-call (a crash, kill -9, a deploy past its grace), the command
it relayed goes on, on the agent. A client that resumes the stream elsewhere finds its producer
gone (`Bus.alive`), and the process it reached takes the answer over: it waits for the command the
call had queued (recorded in the stream's `request`) and sends its result, as the first process
would have. A call that died before it queued anything gets an error saying so.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from peewee import PostgresqlDatabase

from web import sql
from web.mcp.replay import MAX_FINISHED
from web.models import McpMessage, McpStream, db

log = logging.getLogger(__name__)

FOLLOW_BATCH = 100
FOLLOW = (
    "SELECT s.done, s.owner, s.request, m.id, m.body FROM mcp_stream s "
    f"LEFT JOIN mcp_message m ON m.stream_id = s.id AND m.id > ? WHERE s.id = ? ORDER BY m.id LIMIT {FOLLOW_BATCH}"
)
# The session's finished answers past the newest MAX_FINISHED, with their messages (PostgreSQL).
FORGET_FINISHED = (
    "old AS (SELECT id FROM mcp_stream WHERE session_id = ? AND done ORDER BY created_at DESC OFFSET ?), "
    "messages AS (DELETE FROM mcp_message WHERE stream_id IN (SELECT id FROM old)) "
    "DELETE FROM mcp_stream WHERE id IN (SELECT id FROM old)"
)
# Takes a stream over from a producer found dead; of two processes trying, one wins.
ADOPT = "UPDATE mcp_stream SET owner = ? WHERE id = ? AND owner = ? AND done = ?"
# finish(request) -> the JSON-RPC answer for a stream whose producer died
Finisher = Callable[[dict[str, Any]], dict[str, Any]]


# PostgreSQL numbers a row when it is inserted but shows it when it is committed. Of two messages
# queued for one stream at once (two tool calls of a session ending together), the later number may
# be committed first; a reader that has moved past it never sees the earlier one, and that call's
# answer is lost. Each insert first takes the stream's advisory lock, held until its transaction
# commits, so a stream's numbers are drawn, and become visible, in order. The lock is the two-key
# kind: its key space is apart from the one-key locks that mark live processes (web/bus_postgres.py).
APPEND_IN_TURN = (
    "INSERT INTO mcp_message (stream_id, body, created_at) "
    "SELECT %s, %s, %s FROM (SELECT pg_advisory_xact_lock(%s, hashtext(%s))) AS turn"
)
MESSAGE_LOCKS = 0x4D43  # the first key of a stream's lock ("MC")


def append(stream_id: str, bodies: list[str], created_at: float) -> None:
    """Queue messages on a stream (a session's own, or a resumable answer), in order, as one unit.
    Call inside a connection context."""
    if not isinstance(db.obj, PostgresqlDatabase):  # SQLite: its one writer at a time numbers and commits in order
        for body in bodies:
            sql.insert(McpMessage(stream_id=stream_id, body=body, created_at=created_at))
        return
    if len(bodies) == 1:  # one statement: a transaction of its own
        db.execute_sql(APPEND_IN_TURN, (stream_id, bodies[0], created_at, MESSAGE_LOCKS, stream_id))
        return
    with db.atomic():
        for body in bodies:
            db.execute_sql(APPEND_IN_TURN, (stream_id, body, created_at, MESSAGE_LOCKS, stream_id))


class SharedReplay:
    def __init__(self, store, stream_id: str, *, done: bool = False) -> None:
        self.store = store
        self.id = stream_id
        self.done = done

    def event_id(self, number: int) -> str:
        return f"{self.id}/{number}"

    def add(self, messages: list[dict[str, Any]], *, last: bool = False) -> None:
        t = time.time()
        bodies = [json.dumps(message, separators=(",", ":"), ensure_ascii=False) for message in messages]
        with db.connection_context():
            if last and len(bodies) == 1 and sql.writes_in_with(McpStream):  # an answer: one statement
                db.execute_sql(f"WITH answer AS ({APPEND_IN_TURN}) UPDATE mcp_stream SET done = true WHERE id = %s",
                               (self.id, bodies[0], t, MESSAGE_LOCKS, self.id, self.id))
            else:
                append(self.id, bodies, t)
                if last:
                    McpStream.update(done=True).where(McpStream.id == self.id).execute()
        self.done = self.done or last
        self.store.signals.set(self.id)
        self.store.bus.publish("stream", self.id)

    def record(self, request: dict[str, Any]) -> None:
        """Note what another process needs to finish this answer: the request id, the command."""
        with db.connection_context():
            McpStream.update(request=request).where(McpStream.id == self.id).execute()

    def follow(self, after: int, heartbeat_seconds: float) -> Iterator[tuple[int, dict[str, Any]] | None]:
        woken = self.store.signals.event(self.id)
        # At once, then at every keep-alive: is the process producing this answer still there? (In
        # that process itself the answer is yes without a question; a resume, even from the priming
        # event, may come because the producer died.)
        sent, check_producer = after, True
        while True:
            woken.clear()
            with db.connection_context():
                rows = sql.execute(McpStream, FOLLOW, (sent, self.id)).fetchall()
            if not rows:
                return
            done, owner, request = bool(rows[0][0]), rows[0][1], rows[0][2]
            for *_, key, body in rows:
                if key is not None:
                    sent = key
                    yield key, json.loads(body)
            if len(rows) == FOLLOW_BATCH:
                continue  # there may be more; a shorter read had everything (a later message sets `woken`)
            if done:
                return
            if check_producer:
                check_producer = False
                self._adopt_if_orphaned(owner, json.loads(request) if request else None)
            if not woken.wait(heartbeat_seconds):
                check_producer = True
                yield None

    def _adopt_if_orphaned(self, owner: str, request: dict[str, Any] | None) -> None:
        bus = self.store.bus
        if bus.alive(owner):
            return
        with db.connection_context():
            won = sql.execute(McpStream, ADOPT, (bus.origin, self.id, owner, False)).rowcount == 1
        if not won:
            return
        log.warning("answer stream %s: its server process is gone; this one finishes it", self.id)
        threading.Thread(target=self._finish, args=(request or {},), daemon=True, name="mcp-adopted-answer").start()

    def _finish(self, request: dict[str, Any]) -> None:
        try:
            answer = self.store.finish(request)
        except Exception:
            log.exception("could not finish the answer of stream %s", self.id)
            return
        self.add([answer], last=True)


class SharedReplays:
    """A session's resumable answers, in the database."""

    def __init__(self, store, session_id: str) -> None:
        self.store = store
        self.session_id = session_id

    def open(self, request: dict[str, Any] | None = None) -> SharedReplay:
        replay = SharedReplay(self.store, secrets.token_hex(8))
        record = McpStream(id=replay.id, session_id=self.session_id, owner=self.store.bus.origin, created_at=time.time(), request=request)
        with db.connection_context():
            if sql.writes_in_with(McpStream):  # one statement, not an insert, a look and two deletes
                text, params = sql.insert_text(record)
                sql.execute(McpStream, f"WITH opened AS ({text}), {FORGET_FINISHED}", (*params, self.session_id, MAX_FINISHED))
                return replay
            sql.insert(record)
            finished = (
                McpStream.select(McpStream.id)
                .where((McpStream.session_id == self.session_id) & (McpStream.done == True))  # noqa: E712
                .order_by(McpStream.created_at.desc())
                .offset(MAX_FINISHED)
            )
            old = [row.id for row in finished]
            if old:
                McpMessage.delete().where(McpMessage.stream_id.in_(old)).execute()
                McpStream.delete().where(McpStream.id.in_(old)).execute()
        return replay

    def find(self, last_event_id: str) -> tuple[SharedReplay, int] | None:
        stream, _, number = last_event_id.strip().partition("/")
        if not number.isascii() or not number.isdigit():
            return None
        with db.connection_context():
            record = McpStream.get_or_none((McpStream.id == stream[:32]) & (McpStream.session_id == self.session_id))
        if record is None:
            return None
        return SharedReplay(self.store, record.id, done=record.done), int(number)
