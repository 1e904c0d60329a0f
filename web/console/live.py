"""The live view: commands as MCP clients submit them, their state changes and their output, pushed
to the browser over Server-Sent Events.

The stream reads everything from the database, so it shows commands relayed by any server process:
each tick it asks for the `command_event` rows and `command_output` chunks past the last ids it sent
(both primary keys, so each read is an index range however large the tables). It ticks every
TICK_SECONDS; nothing is added to the relay's path, and a view costs two small reads per tick.

The page carries the ids it was rendered at (`since`), and every event's SSE id is "<event id>.<output
id>", so a reconnecting EventSource (Last-Event-ID) resumes where it stopped, and a reader never
misses a change made between the render and the stream's start. A stream ends after MAX_STREAM_SECONDS
(the browser reconnects at once), so a sign-in that expired is noticed.
"""

from __future__ import annotations

import json
import time

from flask import Response, render_template, request, stream_with_context
from peewee import fn

from web.console import queries
from web.console.queries import high_water, parse_mark
from web.console.views import bp
from web.models import Command, CommandEvent, CommandOutput, db
from web.relay import output

TICK_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
MAX_STREAM_SECONDS = 600.0
MAX_ROWS_PER_TICK = 200
# Of a chunk, at most this much is sent (the page keeps a tail; the command's page has all of it).
MAX_CHUNK_BYTES = 16 * 1024
TAIL_BYTES = 8 * 1024


def tail(command: Command) -> tuple[str, dict[str, int]]:
    """The end of a command's stdout and stderr, and how many bytes of each the text covers."""
    from web.http import services

    store = services().relay.output
    parts, offsets = [], {}
    for stream in output.STREAMS:
        size = output.stored(command, stream)
        offsets[stream] = output.received(command, stream)
        if size:
            start = max(0, size - TAIL_BYTES)
            text = output.decode(store.read(command, stream, start, size))
            parts.append(("[…]\n" if start else "") + ("[stderr]\n" if stream == "stderr" else "") + text)
    return "".join(parts), offsets


@bp.get("/live")
def live():
    since = high_water()  # before reading the rows: a change in between is sent twice, never lost
    commands = queries.active()
    return render_template("console/live.html", commands=[(c, *tail(c)) for c in commands], since=since, page="live")


@bp.get("/events")
def events():
    mark = parse_mark(request.headers.get("Last-Event-ID")) or parse_mark(request.args.get("since"))
    only = request.args.get("command", "")[:32] or None
    if mark is None:
        mark = parse_mark(high_water())
    return Response(
        stream_with_context(_stream(mark, only)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _stream(mark: tuple[int, int], only: str | None):
    event_id, output_id = mark
    yield "retry: 1000\n\n"
    started = last_sent = time.monotonic()
    while time.monotonic() - started < MAX_STREAM_SECONDS:
        messages, event_id, output_id = _changes(event_id, output_id, only)
        for name, data in messages:
            yield f"id: {event_id}.{output_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
            last_sent = time.monotonic()
        if time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        time.sleep(TICK_SECONDS)


def _changes(event_id: int, output_id: int, only: str | None) -> tuple[list[tuple[str, dict]], int, int]:
    messages: list[tuple[str, dict]] = []
    with db.connection_context():
        query = CommandEvent.select().where(CommandEvent.id > event_id)
        if only:
            query = query.where(CommandEvent.command_id == only)
        rows = list(query.order_by(CommandEvent.id).limit(MAX_ROWS_PER_TICK))
        new_ids = [r.command_id for r in rows if not r.from_state]
        fresh = {c.id: c for c in Command.select().where(Command.id.in_(new_ids))} if new_ids else {}
        chunks_query = CommandOutput.select(CommandOutput.id, CommandOutput.command_id, CommandOutput.stream, CommandOutput.offset,
                                            fn.SUBSTR(CommandOutput.data, 1, MAX_CHUNK_BYTES).alias("head"))
        chunks_query = chunks_query.where(CommandOutput.id > output_id)
        if only:
            chunks_query = chunks_query.where(CommandOutput.command_id == only)
        chunks = list(chunks_query.order_by(CommandOutput.id).limit(MAX_ROWS_PER_TICK))
    for row in rows:
        data = {"command": row.command_id, "from": row.from_state, "to": row.to_state, "at": row.at, "actor": row.actor, "detail": row.detail}
        command = fresh.get(row.command_id)
        if command is not None:
            from web.console.views import summary, when

            data |= {"machine": command.machine, "tool": command.tool, "summary": summary(command), "when": when(command.created_at)}
        messages.append(("state", data))
        event_id = row.id
    for chunk in chunks:
        head = bytes(chunk.head or b"")
        messages.append(("output", {"command": chunk.command_id, "stream": chunk.stream, "offset": chunk.offset, "text": output.decode(head)}))
        output_id = chunk.id
    return messages, event_id, output_id
