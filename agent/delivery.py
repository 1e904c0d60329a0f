"""Getting a command's output and result to the server, whatever the network does.

While a shell command runs, an `OutputStreamer` sends what its spool files gained since the last
send, in chunks of bounded size with their byte offsets, at least every `progress_seconds` (with no
new output, the empty send is the command's heartbeat). The server answers how far it has each stream
and whether the command was cancelled; the streamer trusts that answer, so a lost reply only means the
same bytes are sent again, and stored once.

When the command ends, its result goes to the on-disk outbox first, with the output inside it when
small; `Delivery.deliver` then sends any (larger) output the server lacks and posts the result, and only the server's acknowledgement removes it. What
cannot be delivered now is retried later, after a restart too, with the same body.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from agent.client import RelayClient, RelayError
from agent.outbox import STREAMS, StateDir

log = logging.getLogger(__name__)
# Output up to this size rides in the result's own post (and its outbox entry).
INLINE_OUTPUT_BYTES = 64 * 1024
# How often an interactive command's streamer looks whether it has gone quiet.
QUIET_CHECK_SECONDS = 0.05


class Delivery:
    def __init__(self, client: RelayClient, state: StateDir, chunk_bytes: int) -> None:
        self.client, self.state, self.chunk_bytes = client, state, chunk_bytes
        self._lock = threading.Lock()  # one flush at a time
        # Results being posted right now: the command's thread and a flush must not post one twice.
        self._posting: set[str] = set()
        self._posting_lock = threading.Lock()
        # command id -> how far the server acknowledged each stream, learnt while streaming it
        self._acked: dict[str, dict[str, int]] = {}

    def send_once(self, command_id: str, acked: dict[str, int], idle: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """Send at most one chunk per stream (none: a heartbeat). Updates `acked` from the server's
        answer; returns the answer and whether spooled output remains unsent. `idle` (an interactive
        command's quiet mark) goes only with the post that sends the last of its output."""
        paths = self.state.spool_paths(command_id)
        chunks = []
        fits = True
        for stream in STREAMS:
            try:
                size = os.path.getsize(paths[stream])
            except FileNotFoundError:
                continue
            if size > acked[stream]:
                with open(paths[stream], "rb") as handle:
                    handle.seek(acked[stream])
                    data = handle.read(self.chunk_bytes)
                fits = fits and size - acked[stream] <= self.chunk_bytes
                chunks.append({"stream": stream, "offset": acked[stream], "data": base64.b64encode(data).decode("ascii")})
        reply = self.client.post_output(command_id, chunks, idle if fits else None)
        for stream in STREAMS:
            acked[stream] = int(reply.get("received", {}).get(stream, acked[stream]))
        self._acked[command_id] = dict(acked)
        remaining = False
        for stream in STREAMS:
            try:
                remaining = remaining or os.path.getsize(paths[stream]) > acked[stream]
            except FileNotFoundError:
                pass
        return reply, remaining

    def inline_output(self, command_id: str, body: dict[str, Any], held: dict[str, bytes] | None = None) -> bool:
        """Put a small output into the result body itself (one post instead of three); False when it
        is too big and must be streamed. `held` is the output when it never left memory."""
        if held is not None and sum(len(data) for data in held.values()) <= INLINE_OUTPUT_BYTES:
            body["output"] = [
                {"stream": stream, "offset": 0, "data": base64.b64encode(held[stream]).decode("ascii")}
                for stream in STREAMS
                if held.get(stream)
            ]
            return True
        paths = self.state.spool_paths(command_id)
        sizes = {s: os.path.getsize(p) if os.path.exists(p) else 0 for s, p in paths.items()}
        if sum(sizes.values()) > INLINE_OUTPUT_BYTES:
            return False
        chunks = []
        for stream in STREAMS:
            if sizes[stream]:
                with open(paths[stream], "rb") as handle:
                    chunks.append({"stream": stream, "offset": 0, "data": base64.b64encode(handle.read()).decode("ascii")})
        body["output"] = chunks
        return True

    def sync(self, command_id: str) -> None:
        """Send all spooled output the server lacks; raises on network trouble."""
        acked = self._acked.get(command_id)
        if acked is None:
            # Nothing streamed by this process: an empty send first learns how far the server has each stream.
            reply = self.client.post_output(command_id, [])
            acked = {stream: int(reply.get("received", {}).get(stream, 0)) for stream in STREAMS}
        acked = dict(acked)
        remaining = True
        while remaining:
            _, remaining = self.send_once(command_id, acked)

    def deliver(self, entry: dict[str, Any]) -> bool:
        """Send an outbox entry's output and result. True when the server has it (or refused it for
        good); False when it must be tried again later."""
        command_id = entry["id"]
        with self._posting_lock:
            if command_id in self._posting:
                return False  # another thread is posting it: the retry finds it delivered
            if not os.path.exists(os.path.join(self.state.outbox_dir, f"{command_id}.json")):
                return True  # delivered by another thread since this entry was read
            self._posting.add(command_id)
        try:
            return self._deliver(entry)
        finally:
            with self._posting_lock:
                self._posting.discard(command_id)

    def _deliver(self, entry: dict[str, Any]) -> bool:
        command_id = entry["id"]
        try:
            if entry.get("spooled"):
                self.sync(command_id)
            reply = self.client.post_result(command_id, entry["body"])
        except RelayError as error:
            if error.retryable or error.needs_register:
                log.info("result of %s not delivered yet: %s", command_id[:8], error)
                return False
            log.error("result of %s refused for good, dropped: %s", command_id[:8], error)
            self.state.done(command_id)
            self._acked.pop(command_id, None)
            return True
        except requests.RequestException as error:
            log.info("result of %s not delivered yet: %s", command_id[:8], type(error).__name__)
            return False
        log.info("result of %s delivered (%s%s)", command_id[:8], reply.get("state"), ", a repeat" if reply.get("duplicate") else "")
        self.state.done(command_id)
        self._acked.pop(command_id, None)
        return True

    def flush(self) -> int:
        """Try every undelivered result; return how many remain."""
        with self._lock:
            return sum(1 for entry in self.state.pending() if not self.deliver(entry))


class OutputStreamer:
    """Streams one running command's output and heartbeat; sets `cancel` when the server says so.

    Its first send is due `interval` after the command started, so its thread is made and started
    only then (`tick`, from the command's thread): a quick command never costs a thread."""

    def __init__(
        self, delivery: Delivery, command_id: str, cancel: threading.Event, interval: float,
        *, before_start: Callable[[], None] | None = None, interaction: Any = None,
    ) -> None:
        self.delivery, self.command_id, self.cancel, self.interval = delivery, command_id, cancel, interval
        self.before_start = before_start  # e.g. put the output held in memory where the streamer reads it
        # An interactive command (agent/interactive.py) streams from the start and reports its quiet periods.
        self.interaction = interaction
        self.finished = threading.Event()
        self._due_at: float | None = time.monotonic() + (0.0 if interaction is not None else interval)
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """Start streaming once the first send is due."""
        if self._due_at is not None and time.monotonic() >= self._due_at:
            self._due_at = None
            if self.before_start is not None:
                self.before_start()
            self._thread = threading.Thread(target=self.run, name=f"output-{self.command_id[:8]}", daemon=True)
            self._thread.start()

    def run(self) -> None:
        acked = {stream: 0 for stream in STREAMS}
        remaining = True  # started when the first send is due: send at once
        idle: dict[str, Any] | None = None
        sent_at = 0.0
        step = QUIET_CHECK_SECONDS if self.interaction is not None else self.interval
        while not self.finished.wait(0 if remaining else step):
            if self.interaction is not None:
                # Checked before the spool is read, so the mark goes with all the output before it.
                idle = idle or self.interaction.quiet()
                if not remaining and idle is None and time.monotonic() - sent_at < self.interval:
                    continue
            try:
                reply, remaining = self.delivery.send_once(self.command_id, acked, idle)
            except (requests.RequestException, RelayError) as error:
                log.debug("output of %s not sent: %s", self.command_id[:8], error)
                remaining = False
                self.finished.wait(self.interval if self.interaction is not None else 0)
                continue
            sent_at = time.monotonic()
            if not remaining:
                idle = None
            if reply.get("cancel") and not self.cancel.is_set():
                log.info("command %s was cancelled: ending its process group", self.command_id[:8])
                self.cancel.set()

    def stop(self) -> None:
        self.finished.set()
        if self._thread is not None:
            self._thread.join(timeout=35)
