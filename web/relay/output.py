"""Command output: stored as the agent streams it, shown to a model within a budget.

The agent sends each stream (stdout, stderr) as chunks with byte offsets. The server appends only the
bytes past what it already has, so a chunk sent twice is stored once, and keeps up to a cap per
command (both streams together); past the cap it still counts what arrived. `Command.output` holds,
per stream, `received` (the next offset expected) and `stored` (bytes kept, always a prefix).

A tool result shows the head and the tail of each stream within a byte budget, with explicit markers
for what was left out and how to page to it with `get_command_output`; nothing is ever cut silently.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from web import sql
from web.models import Command, CommandOutput, db

STREAMS = ("stdout", "stderr")
# Whole small outputs this process just stored, kept to answer the waiting call without reading
# them back; stored output never changes, so a copy cannot go stale.
RECENT_OUTPUTS = 128


def _meta(command: Command) -> dict:
    output = dict(command.output or {})
    for stream in STREAMS:
        output[stream] = dict(output.get(stream) or {"received": 0, "stored": 0})
    return output


def received(command: Command, stream: str) -> int:
    return _meta(command)[stream]["received"]


def stored(command: Command, stream: str) -> int:
    return _meta(command)[stream]["stored"]


class OutputStore:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._recent: collections.OrderedDict[str, dict[str, bytes]] = collections.OrderedDict()

    def remember(self, command: Command, chunks: list[tuple[str, int, bytes]]) -> None:
        """Keep a copy of a command's whole output, stored (committed) in one go from offset 0."""
        whole = {stream: data for stream, offset, data in chunks if offset == 0}
        if len(whole) != len(chunks) or any(stored(command, s) != len(whole.get(s, b"")) for s in STREAMS):
            return  # not the whole output, or cut by the cap: read it from the database
        self._recent[command.id] = whole
        while len(self._recent) > RECENT_OUTPUTS:
            self._recent.popitem(last=False)

    def append(self, command: Command, chunks: list[tuple[str, int, bytes]]) -> bool:
        """Store the new part of each (stream, offset, data) chunk; call in a transaction, then save
        `command`. Returns whether anything new arrived."""
        rows = self.new_rows(command, chunks)
        for row in rows:
            sql.insert(row)
        return bool(rows)

    def new_rows(self, command: Command, chunks: list[tuple[str, int, bytes]]) -> list[CommandOutput]:
        """The rows that store the new part of each (stream, offset, data) chunk, not yet written;
        `command`'s output record is updated for them (save both in one transaction)."""
        meta = _meta(command)
        rows = []
        for stream, offset, data in chunks:
            state = meta[stream]
            have = state["received"]
            if offset > have or offset + len(data) <= have:
                continue  # a gap (the agent realigns on our answer) or a repeat
            data = data[have - offset :]
            room = self.max_bytes - sum(meta[s]["stored"] for s in STREAMS)
            # Keep bytes only while this stream's stored part is still a whole prefix.
            kept = data[: max(room, 0)] if state["stored"] == have else b""
            rows.append(CommandOutput(command_id=command.id, stream=stream, offset=have, length=len(data), data=kept))
            state["received"] = have + len(data)
            state["stored"] += len(kept)
        if rows:
            command.output = meta
        return rows

    def read(self, command: Command, stream: str, start: int, end: int) -> bytes:
        """Stored bytes [start, end) of one stream."""
        recent = self._recent.get(command.id)
        if recent is not None:
            return recent.get(stream, b"")[start:end]
        if db.is_closed():
            with db.connection_context():
                return self._read(command, stream, start, end)
        return self._read(command, stream, start, end)

    def _read(self, command: Command, stream: str, start: int, end: int) -> bytes:
        end = min(end, stored(command, stream))
        if start >= end:
            return b""
        rows = (
            CommandOutput.select()
            .where(
                (CommandOutput.command_id == command.id)
                & (CommandOutput.stream == stream)
                & (CommandOutput.offset < end)
                & (CommandOutput.offset + CommandOutput.length > start)
            )
            .order_by(CommandOutput.offset)
        )
        parts = []
        for row in rows:
            data = bytes(row.data)
            parts.append(data[max(0, start - row.offset) : max(0, end - row.offset)])
        return b"".join(parts)


def decode(data: bytes) -> str:
    """Bytes as text; bytes that are not UTF-8 survive as \\xNN escapes."""
    return data.decode("utf-8", errors="backslashreplace")


def char_boundary(data: bytes, at: int) -> int:
    """`at` moved back (at most 3 bytes) so it does not split a UTF-8 character."""
    at = min(at, len(data))
    for back in range(4):
        if at - back <= 0 or at - back >= len(data) or (data[at - back] & 0xC0) != 0x80:
            return at - back
    return at


def page(store: OutputStore, command: Command, stream: str, offset: int, limit: int) -> tuple[str, int]:
    """Up to `limit` bytes of a stream from `offset`, cut on a character boundary; returns the text
    and the offset to read next."""
    data = store.read(command, stream, offset, offset + limit + 3)
    cut = len(data) if len(data) <= limit else char_boundary(data, limit)
    return decode(data[:cut]), offset + cut


def _shares(command: Command, budget: int) -> dict[str, int]:
    sizes = {s: stored(command, s) for s in STREAMS}
    shares = {"stdout": budget, "stderr": 0}
    if sizes["stderr"]:
        shares["stderr"] = min(sizes["stderr"], max(budget // 4, budget - sizes["stdout"]))
        shares["stdout"] = budget - shares["stderr"]
    return shares


def _bracket(words: str) -> str:
    return f"[{words}]"


def render(store: OutputStore, command: Command, budget: int, mark: Callable[[str], str] = _bracket) -> str:
    """Both streams within `budget` bytes: all of it if it fits, else head and tail with markers.
    `mark` writes Code Remote's own words between the output's (the MCP answers pass
    web/controls.frame, which printed output cannot imitate)."""
    texts = render_streams(store, command, budget, mark)
    return "\n".join(text if stream == "stdout" else mark("stderr") + "\n" + text for stream, text in texts.items())


def render_streams(store: OutputStore, command: Command, budget: int, mark: Callable[[str], str] = _bracket) -> dict[str, str]:
    """Each stream that received anything, as `render` shows it."""
    shares = _shares(command, budget)
    return {stream: _render_stream(store, command, stream, shares[stream], mark) for stream in STREAMS if received(command, stream)}


def cut(command: Command, budget: int) -> bool:
    """Whether `render` leaves part of the output out (a middle omitted, or bytes over the cap)."""
    shares = _shares(command, budget)
    return any(stored(command, s) > shares[s] or received(command, s) > stored(command, s) for s in STREAMS)


def _render_stream(store: OutputStore, command: Command, stream: str, share: int, mark: Callable[[str], str]) -> str:
    size, total = stored(command, stream), received(command, stream)
    if size <= share:
        text = decode(store.read(command, stream, 0, size)).rstrip("\n")
    else:
        half = max(share // 2, 1)
        head_bytes = store.read(command, stream, 0, half + 3)
        head_end = char_boundary(head_bytes, half)
        tail_start = size - half
        tail_bytes = store.read(command, stream, tail_start, size)
        skip = 0
        while skip < min(3, len(tail_bytes)) and (tail_bytes[skip] & 0xC0) == 0x80:
            skip += 1
        tail_start += skip
        text = (
            decode(head_bytes[:head_end])
            + "\n"
            + mark(
                f"… {tail_start - head_end} bytes of {stream} omitted (bytes {head_end}-{tail_start} of {size}); "
                f"read them with get_command_output(command_id='{command.id}', stream='{stream}', offset={head_end}) …"
            )
            + "\n"
            + decode(tail_bytes[skip:]).rstrip("\n")
        )
    if total > size:
        text += "\n" + mark(f"… {total - size} more bytes of {stream} were not kept: over the server's output cap …")
    return text
