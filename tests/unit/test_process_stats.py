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
    assert counters == {"throttled|mcp": 2, "oauth_failures|token": 1}

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
