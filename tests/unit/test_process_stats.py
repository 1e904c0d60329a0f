"""Per-process figures summed through the database: as two server processes would see them."""

from __future__ import annotations

from web.console.process_stats import LIVE_SECONDS, ProcessStats
from web.models import ProcessStat, db


def test_gauges_sum_over_live_processes_and_counters_over_all(app):
    polls = {"a": 2, "b": 3}
    a, b = ProcessStats(lambda: polls["a"]), ProcessStats(lambda: polls["b"])
    b.process += ":b"  # two processes of one test run share a pid
    a.count("throttled", "mcp")
    b.count("throttled", "mcp")
    b.count("oauth_failures", "token")
    b.flush()
    gauges, counters = a.totals()
    assert gauges["held_polls|"] == 5
    assert {k: v for k, v in counters.items() if not k.startswith("loop_lag_")} == {"throttled|mcp": 2, "oauth_failures|token": 1}

    # b dies: its row goes stale; its polls stop counting, its counts stay in the totals.
    with db.connection_context():
        ProcessStat.update(updated_at=ProcessStat.updated_at - LIVE_SECONDS - 1).where(ProcessStat.process == b.process).execute()
    gauges, counters = a.totals()
    assert gauges["held_polls|"] == 2
    assert counters["throttled|mcp"] == 2


def test_an_open_event_stream_counts_until_the_server_closes_it(app):
    stats = ProcessStats(lambda: 0)

    def sse_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return iter([b": hi\n\n"])

    wrapped = stats.wrap(sse_app)
    body = wrapped({"PATH_INFO": "/sse"}, lambda status, headers: None)
    assert stats.gauges()["open_streams|sse"] == 1
    body.close()
    body.close()
    assert stats.gauges()["open_streams|sse"] == 0


def test_loop_lag_histograms_add_up_and_the_worst_pause_is_the_highest_live_one(app):
    a, b = ProcessStats(lambda: 0), ProcessStats(lambda: 0)
    b.process += ":b"
    for late in (0.0002, 0.003, 0.3):
        a.loop_lag.record(late)
    for late in (0.0004, 0.07):
        b.loop_lag.record(late)
    b.flush()
    gauges, counters = a.totals()
    assert gauges["loop_lag_max|"] == 0.3  # the highest, not 0.37
    assert counters["loop_lag_count|"] == 5
    assert counters["loop_lag_bucket|0.001"] == 2
    assert counters["loop_lag_bucket|0.1"] == 4
    assert counters["loop_lag_bucket|+Inf"] == 5
    assert abs(counters["loop_lag_sum|"] - 0.3736) < 1e-9


def test_the_probes_histogram_alone_does_not_rewrite_the_row(app):
    stats = ProcessStats(lambda: 0)
    stats.loop_lag.record(0.0002)
    stats.flush()
    with db.connection_context():
        written = ProcessStat.get(ProcessStat.process == stats.process).updated_at
    stats.loop_lag.record(0.0001)  # a wake-up on time, no worse than before: only the histogram changed
    stats.flush()
    with db.connection_context():
        assert ProcessStat.get(ProcessStat.process == stats.process).updated_at == written
    stats.loop_lag.record(0.2)  # a new worst pause is written at the next flush
    stats.flush()
    with db.connection_context():
        row = ProcessStat.get(ProcessStat.process == stats.process)
    assert row.gauges["loop_lag_max|"] == 0.2 and row.counters["loop_lag_count|"] == 3
