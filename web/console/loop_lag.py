"""How long this process's event loop keeps a ready greenlet waiting: the loop-lag probe.

One gevent worker serves every held poll, stream and call of its process on one thread. Anything that
holds that thread without yielding (a full garbage collection over thousands of idle greenlets, a
blocking SQLite statement, a slow JSON encode) delays every other connection by as long. The probe
sees such pauses from the outside: a greenlet sleeps INTERVAL_SECONDS, again and again, and records
by how much each wake-up came later than asked. A late wake-up is the loop's pause (plus the probe's
own turn in the ready queue, a few microseconds on an idle worker).

It records a histogram of the lateness and the worst one since the process started, which /metrics
exposes as `code_remote_event_loop_lag_seconds` and `code_remote_event_loop_lag_max_seconds`
(web/console/metrics.py, through this process's `process_stat` row, like the other per-process
figures). Cost: 20 timer wake-ups a second, a few microseconds each, and a few integers; nothing is
added to any request's path. It runs only while /metrics is switched on (METRICS_TOKEN).

Under gevent `threading.Thread` is a greenlet and `time.sleep` yields to the loop, which is what the
probe must measure; without gevent (the development server) it measures the thread scheduler instead.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.05
# Upper bounds of the histogram's buckets, in seconds: from scheduling noise to a stall users notice.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A pause this long is also logged, at most once per LOG_EVERY_SECONDS, so an owner sees it without metrics.
LOG_PAUSE_SECONDS = 1.0
LOG_EVERY_SECONDS = 60.0


class LoopLag:
    """This process's record of late wake-ups; `start()` runs the probe, `record()` adds one figure."""

    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval
        self.counts = [0] * (len(BUCKETS) + 1)  # per bucket (not cumulative); the last is above every bound
        self.total = 0.0
        self.samples = 0
        self.worst = 0.0
        self._logged_at = -LOG_EVERY_SECONDS
        self._thread: threading.Thread | None = None

    def record(self, late: float) -> None:
        """Count one wake-up that came `late` seconds after it was due."""
        late = max(0.0, late)
        for index, bound in enumerate(BUCKETS):
            if late <= bound:
                break
        else:
            index = len(BUCKETS)
        self.counts[index] += 1
        self.total += late
        self.samples += 1
        if late > self.worst:
            self.worst = late
        if late >= LOG_PAUSE_SECONDS:
            at = time.monotonic()
            if at - self._logged_at >= LOG_EVERY_SECONDS:
                self._logged_at = at
                log.warning("the event loop paused %.2f s: every connection of this process waited that long "
                            "(code_remote_event_loop_lag_seconds on /metrics)", late)

    def figures(self) -> dict[str, float]:
        """Counters for `process_stat`: cumulative bucket counts ("loop_lag_bucket|<le>"), sum and count."""
        figures: dict[str, float] = {}
        running = 0
        for bound, count in zip(BUCKETS, self.counts):
            running += count
            figures[f"loop_lag_bucket|{bound!r}"] = running
        figures["loop_lag_bucket|+Inf"] = running + self.counts[-1]
        figures["loop_lag_sum|"] = self.total
        figures["loop_lag_count|"] = self.samples
        return figures

    def start(self) -> None:
        """Run the probe in a daemon thread (a greenlet under gevent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="loop-lag-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        clock, sleep, interval = time.perf_counter, time.sleep, self.interval
        while True:
            due = clock() + interval
            sleep(interval)
            self.record(clock() - due)
