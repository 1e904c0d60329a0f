"""The live view: commands as MCP clients submit them, their state changes and their output, pushed
to the browser over Server-Sent Events.

What a view shows comes from the process's live feed (web/console/feed.py), which reads the database,
so a view shows commands relayed by any server process, and one reader serves every view of the
process. The page carries the mark it was rendered at (`since`); the stream first sends what changed
since (a change made between the render and the stream's start is sent, never lost), then follows the
feed. Every tick's last message carries the feed's mark as its SSE id, so a reconnecting EventSource
(Last-Event-ID) resumes where it stopped. A stream ends after MAX_STREAM_SECONDS, or when its sign-in
expires if that is sooner; the browser reconnects at once, with the cookie it has then, so a browser
signed out (or whose sign-in expired, or after AUTH_TOKEN changed) stops receiving within that time.
"""

from __future__ import annotations

import json
import time

from flask import Response, current_app, g, render_template, request, stream_with_context

from web.console import feed, queries
from web.console.queries import high_water, parse_mark
from web.console.views import bp
from web.models import TERMINAL_STATES, Command
from web.relay import output

HEARTBEAT_SECONDS = 15.0
MAX_STREAM_SECONDS = 120.0
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
    return render_template("console/live.html", commands=[(c, *tail(c)) for c in commands], since=since, page="live",
                           terminal_states=TERMINAL_STATES)


@bp.get("/events")
def events():
    mark = parse_mark(request.headers.get("Last-Event-ID")) or parse_mark(request.args.get("since"))
    only = request.args.get("command", "")[:32] or None
    return Response(
        stream_with_context(_stream(current_app.extensions["code_remote_live_feed"], mark, only, _seconds_left())),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _seconds_left() -> float:
    """How long this stream may run: MAX_STREAM_SECONDS, or less when the sign-in expires sooner."""
    signed_in_at = float(g.console.get("at", 0))
    expires_at = signed_in_at + current_app.extensions["code_remote_console"].session_seconds
    return max(0.0, min(MAX_STREAM_SECONDS, expires_at - time.time()))


def _stream(live: feed.Feed, mark: tuple[int, int] | None, only: str | None, seconds: float):
    number, joined_at = live.join()
    try:
        yield "retry: 1000\n\n"
        if mark is not None:
            yield _batch(feed.catch_up(mark, joined_at, only), f"{joined_at[0]}.{joined_at[1]}")
        started = last_sent = time.monotonic()
        while time.monotonic() - started < seconds:
            ticks = live.after(number, min(HEARTBEAT_SECONDS, max(0.0, seconds - (time.monotonic() - started))))
            if ticks is None:  # this view fell further behind than the feed keeps: read the rest alone
                number, now_at = live.join()
                live.leave()
                yield _batch(feed.catch_up(mark or joined_at, now_at, only), f"{now_at[0]}.{now_at[1]}")
                mark = now_at
                continue
            for tick in ticks:
                text = _batch([m for m in tick.messages if only is None or m.command_id == only], tick.mark)
                if text:
                    yield text
                    last_sent = time.monotonic()
                number, mark = tick.number, parse_mark(tick.mark)
            if time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
    finally:
        live.leave()


def _batch(found: list[feed.Message], mark: str) -> str:
    """The messages as one piece of the stream, the last one carrying `mark` as its SSE id."""
    if not found:
        return ""
    return "".join(m.text for m in found[:-1]) + f"id: {mark}\n" + found[-1].text
