"""The live feed: one reader per server process for every open dashboard live view.

The live view shows what the relay writes to the database: `command_event` rows (state changes) and
`command_output` chunks, read past the last ids seen. The database is the source, so a view shows
commands relayed by any server process. One reader per process does the reading, every TICK_SECONDS
while a view is open, and turns each row into its SSE message once; every view in the process takes
the same messages. With a reader per view, five views cost the relay's process five times the reads
and the JSON, and relayed calls/s at c=32 fell to 0.73-0.86x of the same run without views
(scripts/bench.py --live-views 5); a shared reader costs the same for one view or fifty.

**Reading by id, with gaps.** Ids are handed out when a row is inserted, not when its transaction
commits: on PostgreSQL, with commands relayed concurrently, id 12 can be visible before id 11 is. A
reader that jumped past 11 would never show that state change (a card stuck at "running"). So each
table is read as a `Tail`: every row past the mark is taken once, but the mark (what a reconnecting
view resumes from) only moves over ids without a hole; a hole still open after GAP_SECONDS is taken
to be a rolled-back insert and passed over. SQLite writes one transaction at a time, so it has holes
only from rollbacks.

A view joins at the reader's mark. Since a view's page was rendered at an older mark (or the browser
reconnects with Last-Event-ID), the view first reads what lies between on its own (`catch_up`), then
follows the reader; its SSE ids are the reader's marks, so a reconnect can repeat a message (the page
applies them idempotently: state by value, output by byte offset, timeline by event id) but never
loses one.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import threading
import time

from peewee import Case, fn

from web.models import Command, CommandEvent, CommandOutput, db
from web.relay import output

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
GAP_SECONDS = 2.0
MAX_ROWS_PER_READ = 1000
# Of a chunk, at most its last this many bytes are sent (the page keeps a tail; the command's page has all).
MAX_CHUNK_BYTES = 16 * 1024
# Ticks kept for views that fell behind (a slow client); one further behind catches up on its own.
KEPT_TICKS = 240


@dataclasses.dataclass(frozen=True)
class Message:
    command_id: str
    text: str  # "event: ...\ndata: ...\n\n", without the id line


@dataclasses.dataclass(frozen=True)
class Tick:
    number: int
    mark: str  # "<event id>.<output id>": everything at or below it has been sent
    messages: list[Message]


class Tail:
    """One table read by id: each row past `mark` taken once; `mark` moves only over ids without a hole."""

    def __init__(self, mark: int) -> None:
        self.mark = mark
        self._taken: set[int] = set()
        self._hole_since: float | None = None

    def take(self, ids: list[int]) -> list[int]:
        """Of the ids just read (all past `mark`), those not taken before; then move the mark."""
        new = [i for i in ids if i not in self._taken]
        self._taken.update(new)
        self._advance(time.monotonic())
        return new

    def _advance(self, t: float) -> None:
        while True:
            while self.mark + 1 in self._taken:
                self.mark += 1
                self._taken.discard(self.mark)
            if not self._taken:
                self._hole_since = None
                return
            if self._hole_since is None:
                self._hole_since = t
            if t - self._hole_since < GAP_SECONDS:
                return
            self.mark, self._hole_since = min(self._taken) - 1, None  # a rolled-back insert: pass over it


def read(event_after: int, output_after: int, *, event_upto: int | None = None, output_upto: int | None = None,
         only: str | None = None) -> tuple[list[tuple], list[tuple]]:
    """Event rows and output chunks past the given ids (up to the bounds), oldest first, as tuples."""
    with db.connection_context():
        events = CommandEvent.select(
            CommandEvent.id, CommandEvent.command_id, CommandEvent.from_state, CommandEvent.to_state, CommandEvent.at,
            CommandEvent.actor, CommandEvent.detail,
        ).where(CommandEvent.id > event_after)
        # Of a long chunk, its end: a live view shows a command's latest output (the page marks the gap).
        size = fn.LENGTH(CommandOutput.data)
        start = Case(None, [(size > MAX_CHUNK_BYTES, size - MAX_CHUNK_BYTES + 1)], 1)
        chunks = CommandOutput.select(
            CommandOutput.id, CommandOutput.command_id, CommandOutput.stream, CommandOutput.offset + start - 1,
            fn.SUBSTR(CommandOutput.data, start, MAX_CHUNK_BYTES),
        ).where(CommandOutput.id > output_after)
        if event_upto is not None:
            events = events.where(CommandEvent.id <= event_upto)
        if output_upto is not None:
            chunks = chunks.where(CommandOutput.id <= output_upto)
        if only:
            events = events.where(CommandEvent.command_id == only)
            chunks = chunks.where(CommandOutput.command_id == only)
        return (list(events.order_by(CommandEvent.id).limit(MAX_ROWS_PER_READ).tuples()),
                list(chunks.order_by(CommandOutput.id).limit(MAX_ROWS_PER_READ).tuples()))


def messages(events: list[tuple], chunks: list[tuple]) -> list[Message]:
    """The SSE messages for these rows: `state` (with what the card needs for a new command) and `output`."""
    from web.console.views import summary, when

    new_ids = [row[1] for row in events if not row[2]]
    fresh = {}
    if new_ids:
        with db.connection_context():
            fresh = {c.id: c for c in Command.select(Command.id, Command.machine, Command.tool, Command.arguments, Command.created_at)
                     .where(Command.id.in_(new_ids))}
    out = []
    for event_id, command_id, from_state, to_state, at, actor, detail in events:
        data = {"event": event_id, "command": command_id, "from": from_state, "to": to_state, "at": at, "actor": actor, "detail": detail}
        command = fresh.get(command_id)
        if command is not None:
            data |= {"machine": command.machine, "tool": command.tool, "summary": summary(command), "when": when(command.created_at)}
        out.append(Message(command_id, _sse("state", data)))
    for _, command_id, stream, offset, head in chunks:
        raw = bytes(head or b"")
        data = {"command": command_id, "stream": stream, "offset": offset, "length": len(raw), "text": output.decode(raw)}
        out.append(Message(command_id, _sse("output", data)))
    return out


def _sse(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def catch_up(since: tuple[int, int], upto: tuple[int, int], only: str | None) -> list[Message]:
    """What lies between a view's mark and the reader's, read for that view alone."""
    found: list[Message] = []
    event_after, output_after = since
    while event_after < upto[0] or output_after < upto[1]:
        events, chunks = read(event_after, output_after, event_upto=upto[0], output_upto=upto[1], only=only)
        found += messages(events, chunks)
        event_after = events[-1][0] if len(events) == MAX_ROWS_PER_READ else upto[0]
        output_after = chunks[-1][0] if len(chunks) == MAX_ROWS_PER_READ else upto[1]
    return found


class Feed:
    """The process's reader, running while at least one view is open."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._ticks: collections.deque[Tick] = collections.deque(maxlen=KEPT_TICKS)
        self._number = 0
        self._views = 0
        self._running = False
        self._events: Tail | None = None
        self._chunks: Tail | None = None

    def join(self) -> tuple[int, tuple[int, int]]:
        """A view opens: the tick number and mark it starts from (the reader starts if it was idle)."""
        with self._changed:
            self._views += 1
            if not self._running:
                from web.console.queries import high_water, parse_mark

                event_id, output_id = parse_mark(high_water())
                self._events, self._chunks = Tail(event_id), Tail(output_id)
                self._ticks.clear()
                self._running = True
                threading.Thread(target=self._run, name="dashboard-live-feed", daemon=True).start()
            return self._number, (self._events.mark, self._chunks.mark)

    def leave(self) -> None:
        with self._changed:
            self._views -= 1

    def after(self, number: int, timeout: float) -> list[Tick] | None:
        """The ticks after `number`, waiting up to `timeout` for one; None when they are no longer kept."""
        with self._changed:
            if self._number == number:
                self._changed.wait(timeout)
            if self._number == number:
                return []
            if not self._ticks or self._ticks[0].number > number + 1:
                return None
            return [tick for tick in self._ticks if tick.number > number]

    def _run(self) -> None:
        while True:
            with self._changed:
                if self._views <= 0:
                    self._running = False
                    return
            try:
                self._tick()
            except Exception:  # a failed read (the database restarting): the views wait, the next tick retries
                log.exception("dashboard live feed: a read failed")
            time.sleep(TICK_SECONDS)

    def _tick(self) -> None:
        events, chunks = read(self._events.mark, self._chunks.mark)
        new_events = set(self._events.take([row[0] for row in events]))
        new_chunks = set(self._chunks.take([row[0] for row in chunks]))
        found = messages([r for r in events if r[0] in new_events], [r for r in chunks if r[0] in new_chunks])
        if not found:
            return
        with self._changed:
            self._number += 1
            self._ticks.append(Tick(self._number, f"{self._events.mark}.{self._chunks.mark}", found))
            self._changed.notify_all()
