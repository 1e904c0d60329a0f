"""Figures only a server process knows, summed over every process through the database.

Held polls and open streams live in each process's memory; so do the counts of OAuth failures and
throttled requests (neither is otherwise written anywhere), and the event loop's pauses measured by
the loop-lag probe (web/console/loop_lag.py). Each process keeps them here and writes
them to its own `process_stat` row every FLUSH_SECONDS (only when they changed, and at least every
HEARTBEAT_SECONDS so the row shows it is alive). /metrics, served by whichever process, sums:

- gauges (held polls, open streams) over the rows written in the last LIVE_SECONDS: a process that
  died stops counting within that time;
- counters over every row, the gone processes' included, so a total never shrinks when a process
  exits; rows untouched for PRUNE_SECONDS are deleted (Prometheus sees that as a counter reset);
- except the worst loop pause (MAX_GAUGES), which is the highest of the live rows, not their sum.

The probe's histogram changes 20 times a second; it alone does not make a row be written, so another
process's histogram is at most HEARTBEAT_SECONDS old in a scrape (this process's is always current).

This is instead of prometheus_client's multiprocess mode, whose files are per host: with several
hosts behind a load balancer, a scrape would see only the processes of the host it landed on.

Nothing here runs unless /metrics is switched on (METRICS_TOKEN), and the request path pays only a
dictionary increment and, for an event stream, a wrapper around its body.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from web.console.loop_lag import LoopLag
from web.models import ProcessStat, db, now

log = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0
HEARTBEAT_SECONDS = 10.0
LIVE_SECONDS = 30.0
PRUNE_SECONDS = 7 * 24 * 3600.0
STREAM_KINDS = (("/sse", "sse"), ("/mcp", "mcp"), ("/dashboard", "dashboard"))
MAX_GAUGES = ("loop_lag_max|",)


class ProcessStats:
    """This process's gauges and counters, and their row in `process_stat`."""

    def __init__(self, held_polls: Callable[[], int]) -> None:
        self.process = f"{socket.gethostname()[:64]}:{os.getpid()}:{int(now() * 1000)}"
        self._held_polls = held_polls
        self._lock = threading.Lock()
        self.streams: collections.Counter[str] = collections.Counter()
        self.counters: collections.Counter[str] = collections.Counter()
        self._written: tuple | None = None
        self._written_at = 0.0
        self._thread: threading.Thread | None = None
        self.loop_lag = LoopLag()

    # --- counting -----------------------------------------------------------------------------

    def count(self, name: str, label: str) -> None:
        """Add one to counter `name` with label value `label` (kept as "name|label")."""
        with self._lock:
            self.counters[f"{name}|{label}"] += 1

    def gauges(self) -> dict[str, int]:
        with self._lock:
            values = {f"open_streams|{kind}": n for kind, n in self.streams.items()}
        values["held_polls|"] = self._held_polls()
        values["loop_lag_max|"] = self.loop_lag.worst
        return values

    def _counters(self) -> dict[str, float]:
        with self._lock:
            counters: dict[str, float] = dict(self.counters)
        counters.update(self.loop_lag.figures())
        return counters

    def wrap(self, wsgi_app):
        """A WSGI middleware counting the event streams open in this process, by kind of stream."""

        def app(environ, start_response):
            seen: list[str] = []

            def spy(status, headers, exc_info=None):
                for name, value in headers:
                    if name.lower() == "content-type" and value.startswith("text/event-stream"):
                        seen.append(_kind(environ.get("PATH_INFO", "")))
                return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            body = wsgi_app(environ, spy)
            if not seen:
                return body
            return _Counted(body, self, seen[0])

        return app

    # --- the shared row -----------------------------------------------------------------------

    def flush(self, *, force: bool = False) -> None:
        """Write this process's row if its figures changed (or a heartbeat is due)."""
        gauges = self.gauges()
        counters = self._counters()
        t = now()
        state = (tuple(sorted(gauges.items())), tuple(sorted(i for i in counters.items() if not i[0].startswith("loop_lag_"))))
        if not force and state == self._written and t - self._written_at < HEARTBEAT_SECONDS:
            return
        with db.connection_context():
            ProcessStat.insert(process=self.process, started_at=t, updated_at=t, gauges=gauges, counters=counters).on_conflict(
                conflict_target=[ProcessStat.process],
                update={ProcessStat.updated_at: t, ProcessStat.gauges: gauges, ProcessStat.counters: counters},
            ).execute()
        self._written, self._written_at = state, t

    def totals(self) -> tuple[dict[str, float], dict[str, float]]:
        """(gauges, counters) summed over every process: this one's live values, the others' rows."""
        t = now()
        gauges: collections.Counter[str] = collections.Counter(self.gauges())
        counters: collections.Counter[str] = collections.Counter(self._counters())
        with db.connection_context():
            for row in ProcessStat.select().where(ProcessStat.process != self.process):
                counters.update(row.counters or {})
                if row.updated_at >= t - LIVE_SECONDS:
                    theirs = dict(row.gauges or {})
                    for key in MAX_GAUGES:
                        if key in theirs:
                            gauges[key] = max(gauges.get(key, 0), theirs.pop(key))
                    gauges.update(theirs)
        return dict(gauges), dict(counters)

    def start(self) -> None:
        """Start the loop-lag probe, and write the row every FLUSH_SECONDS from a daemon thread (a
        greenlet under gevent)."""
        if self._thread is not None:
            return
        self.loop_lag.start()
        self._thread = threading.Thread(target=self._run, name="process-stats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with db.connection_context():
                ProcessStat.delete().where(ProcessStat.updated_at < now() - PRUNE_SECONDS).execute()
        except Exception as error:
            log.warning("could not prune old process_stat rows (%s)", type(error).__name__)
        while True:
            try:
                self.flush()
            except Exception as error:  # the database may be away for a while: try again next time
                log.warning("could not write this process's figures (%s)", type(error).__name__)
            time.sleep(FLUSH_SECONDS)


def _kind(path: str) -> str:
    for prefix, kind in STREAM_KINDS:
        if path.startswith(prefix):
            return kind
    return "other"


class _Counted:
    """A response body counted as an open stream until the server closes it."""

    def __init__(self, body, stats: ProcessStats, kind: str) -> None:
        self._body, self._stats, self._kind = body, stats, kind
        self._closed = False
        with stats._lock:
            stats.streams[kind] += 1

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._stats._lock:
            self._stats.streams[self._kind] -= 1
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
