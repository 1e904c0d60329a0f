"""Resumable answers: a POST /mcp answer sent as SSE is kept, so a client that lost it can resume it.

At the handshake revisions (2025-03-26 to 2025-11-25; 2026-07-28 dropped resumption), a client whose
answer stream broke (a phone changing networks, a proxy cutting a long call) may `GET /mcp` with
`Last-Event-ID` and receive, on a new stream, what it missed and then the rest. Every message on such
a stream carries the event id `<stream>/<n>`. A 2025-11-25 client first gets a priming event (an id, a
`retry` hint, no data), so a call that has sent nothing yet can be resumed too; older clients cannot
read an event without data, so they get none.

A call's work never depended on its stream: the tool call runs to its end and its messages are kept
here whoever is listening, until the session ends. Of a session's finished answers only the newest
MAX_FINISHED are kept (a client resumes within seconds; a tool result may be 40 KB); an unfinished
one is never dropped.
"""

from __future__ import annotations

import collections
import secrets
import threading
from collections.abc import Iterator
from typing import Any

RESUMABLE_VERSIONS = frozenset({"2025-03-26", "2025-06-18", "2025-11-25"})
PRIMING_VERSIONS = frozenset({"2025-11-25"})
RETRY_MILLISECONDS = 1000
MAX_FINISHED = 4


class Replay:
    """The messages of one answer stream, numbered from 1, as they are produced."""

    def __init__(self) -> None:
        self.id = secrets.token_hex(8)
        self.done = False
        self._messages: list[dict[str, Any]] = []
        self._changed = threading.Condition()

    def add(self, messages: list[dict[str, Any]], *, last: bool = False) -> None:
        with self._changed:
            self._messages.extend(messages)
            self.done = self.done or last
            self._changed.notify_all()

    def follow(self, after: int, heartbeat_seconds: float) -> Iterator[tuple[int, dict[str, Any]] | None]:
        """The messages numbered above `after`, as they come, until the last one; None after each
        `heartbeat_seconds` without any."""
        sent = after
        while True:
            with self._changed:
                if sent >= len(self._messages) and not self.done:
                    self._changed.wait(heartbeat_seconds)
                batch, done = self._messages[sent:], self.done
            if not batch and not done:
                yield None
                continue
            for message in batch:
                sent += 1
                yield sent, message
            if done and sent >= len(self._messages):
                return

    def event_id(self, number: int) -> str:
        return f"{self.id}/{number}"

    def record(self, request: dict[str, Any]) -> None:
        """What another process would need to finish this answer: nothing, in one process."""


class Replays:
    """A session's resumable answers, by stream id."""

    def __init__(self) -> None:
        self._kept: collections.OrderedDict[str, Replay] = collections.OrderedDict()

    def open(self, request: dict[str, Any] | None = None) -> Replay:
        """A new answer stream; `request` is what another process would need to finish it (see
        Replay.record)."""
        replay = Replay()
        self._kept[replay.id] = replay
        finished = [key for key, kept in self._kept.items() if kept.done]
        for key in finished[: max(0, len(finished) - MAX_FINISHED)]:
            del self._kept[key]
        return replay

    def find(self, last_event_id: str) -> tuple[Replay, int] | None:
        """The stream a `Last-Event-ID` names and the number of the last message the client has."""
        stream, _, number = last_event_id.strip().partition("/")
        replay = self._kept.get(stream)
        if replay is None or not (number.isascii() and number.isdigit()):
            return None
        return replay, int(number)
