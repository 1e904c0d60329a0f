"""GET /metrics: the Prometheus text format, made with the official prometheus_client.

Off unless METRICS_TOKEN is set; then it answers only to `Authorization: Bearer <METRICS_TOKEN>`
(a wrong token counts toward the failed-authentication throttle, like every other credential).

With several server processes, on one host or many, every figure is the whole server's, whichever
process answers the scrape:

- read from the database at scrape time: tool calls by tool and outcome with their latency
  histogram (the `tool_call` audit table), relayed commands by state, the queue per machine, and the
  machines online (each machine's `last_seen_at`, written while its agent polls);
- summed over the processes' `process_stat` rows (web/console/process_stats.py): held polls, open
  streams, OAuth failures and throttled requests, and the event loop's pauses measured by each
  process's loop-lag probe (web/console/loop_lag.py; the worst pause is the highest of them).

A scrape costs a few aggregate queries (the audit table's is a scan of it: ~0.1 s at 100 000 rows on
SQLite); nothing is added to a relayed call's path.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Flask, Response, request
from peewee import Case, fn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from web import errors
from web.console.loop_lag import BUCKETS as LAG_BUCKETS
from web.http import services
from web.models import LEASED, QUEUED, RUNNING, STATES, Command, ToolCall, db
from web.security.auth import Unauthorized, bearer_token

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

# Latency buckets of a tool call, in seconds: from a quick file read to a call that waited its fill.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OAUTH_ENDPOINTS = {"/token": "token", "/register": "register", "/authorize": "authorize", "/revoke": "revoke"}


def install(app: Flask) -> None:
    """Serve /metrics, and count this process's figures, when METRICS_TOKEN is set."""
    svc = app.extensions["code_remote"]
    app.register_blueprint(bp)
    if not svc.config.metrics_token:
        return
    stats = svc.process_stats
    app.wsgi_app = stats.wrap(app.wsgi_app)  # type: ignore[method-assign]
    stats.start()

    @app.after_request
    def count_failures(response: Response) -> Response:
        status = response.status_code
        if status == 429:
            stats.count("throttled", _surface(request.path))
        elif status >= 400 and request.path in OAUTH_ENDPOINTS:
            stats.count("oauth_failures", OAUTH_ENDPOINTS[request.path])
        elif status == 401 and request.headers.get("Authorization"):
            stats.count("oauth_failures", "bearer")  # an access token refused (expired, revoked, unknown)
        return response


def _surface(path: str) -> str:
    if path.startswith("/api/agent/"):
        return "agent"
    if path.startswith(("/mcp", "/sse", "/messages")):
        return "mcp"
    if path in OAUTH_ENDPOINTS:
        return "oauth"
    return "dashboard" if path.startswith("/dashboard") else "other"


@bp.get("/metrics")
def get_metrics():
    svc = services()
    expected = svc.config.metrics_token
    if not expected:
        raise errors.NotFound("metrics are off: set METRICS_TOKEN on the server to switch them on", code="metrics_off")
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <METRICS_TOKEN>'", code="missing_token")
    if not hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected.encode()):
        svc.credentials.throttle.hit(request.remote_addr)
        raise Unauthorized("invalid metrics token", code="invalid_token")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Figures(svc))
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)


class Figures:
    """A prometheus_client collector that reads the figures anew at each scrape."""

    def __init__(self, svc) -> None:
        self.svc = svc

    def collect(self):
        yield from self._tool_calls()
        yield from self._commands()
        yield from self._machines()
        yield from self._processes()

    def _tool_calls(self):
        calls = CounterMetricFamily("code_remote_tool_calls", "MCP tool calls by tool and outcome (from the audit trail)", labels=["tool", "outcome"])
        latency = HistogramMetricFamily("code_remote_tool_call_duration_seconds", "Time from a tool call's arrival to its answer", labels=["tool"])
        seconds = ToolCall.duration_ms / 1000.0
        columns = [ToolCall.tool, ToolCall.status, ToolCall.is_error, fn.COUNT(ToolCall.id), fn.SUM(ToolCall.duration_ms)]
        columns += [fn.SUM(Case(None, [(seconds <= bound, 1)], 0)) for bound in BUCKETS]
        timed: dict[str, list[float]] = {}
        with db.connection_context():
            rows = list(ToolCall.select(*columns).where(ToolCall.tool != "").group_by(ToolCall.tool, ToolCall.status, ToolCall.is_error).tuples())
            timed_rows = list(
                ToolCall.select(ToolCall.tool, fn.COUNT(ToolCall.id), fn.SUM(ToolCall.duration_ms), *columns[5:])
                .where((ToolCall.tool != "") & ToolCall.duration_ms.is_null(False))
                .group_by(ToolCall.tool)
                .tuples()
            )
        outcomes: dict[tuple[str, str], int] = {}
        for tool, status, is_error, count, *_ in rows:
            outcome = "error" if status == "ok" and is_error else status
            outcomes[(tool, outcome)] = outcomes.get((tool, outcome), 0) + int(count)
        for (tool, outcome), count in sorted(outcomes.items()):
            calls.add_metric([tool, outcome], count)
        for tool, count, total_ms, *in_bucket in timed_rows:
            timed[tool] = [int(count), float(total_ms or 0) / 1000.0, *(int(n or 0) for n in in_bucket)]
        for tool, (count, total, *in_bucket) in sorted(timed.items()):
            buckets = [(_le(bound), n) for bound, n in zip(BUCKETS, in_bucket)] + [("+Inf", count)]
            latency.add_metric([tool], buckets, total)
        yield calls
        yield latency

    def _commands(self):
        by_state = GaugeMetricFamily("code_remote_commands", "Relayed commands by state", labels=["state"])
        queue = GaugeMetricFamily("code_remote_queue_depth", "Commands waiting for an agent (queued or leased, not started) per machine", labels=["machine"])
        running = GaugeMetricFamily("code_remote_running_commands", "Commands running per machine", labels=["machine"])
        with db.connection_context():
            counts = dict(Command.select(Command.state, fn.COUNT(Command.id)).group_by(Command.state).tuples())
            pending = list(
                Command.select(Command.machine, Command.state, fn.COUNT(Command.id))
                .where(Command.state.in_([QUEUED, LEASED, RUNNING]))
                .group_by(Command.machine, Command.state)
                .tuples()
            )
        for state in sorted(STATES):
            by_state.add_metric([state], counts.get(state, 0))
        waiting: dict[str, int] = {m.name: 0 for m in self.svc.relay.machines()}
        busy: dict[str, int] = dict(waiting)
        for machine, state, count in pending:
            target = busy if state == RUNNING else waiting
            target[machine] = target.get(machine, 0) + int(count)
        for machine in sorted(waiting):
            queue.add_metric([machine], waiting[machine])
        for machine in sorted(busy):
            running.add_metric([machine], busy[machine])
        yield by_state
        yield queue
        yield running

    def _machines(self):
        relay = self.svc.relay
        machines = relay.machines()
        yield GaugeMetricFamily("code_remote_machines", "Machines known to the server", value=len(machines))
        yield GaugeMetricFamily("code_remote_agents_online", "Machines whose agent is polling", value=sum(1 for m in machines if relay.is_online(m)))

    def _processes(self):
        gauges, counters = self.svc.process_stats.totals()
        streams = GaugeMetricFamily("code_remote_open_streams", "Event streams open (MCP SSE, Streamable HTTP, dashboard), all processes", labels=["kind"])
        oauth = CounterMetricFamily("code_remote_oauth_failures", "Refused OAuth requests, and refused bearer tokens, by endpoint", labels=["endpoint"])
        throttled = CounterMetricFamily("code_remote_throttled_requests", "Requests answered 429 by a throttle, by surface", labels=["surface"])
        yield GaugeMetricFamily("code_remote_held_polls", "Agent polls being held open, all processes", value=gauges.get("held_polls|", 0))
        for key, value in sorted(gauges.items()):
            name, _, label = key.partition("|")
            if name == "open_streams":
                streams.add_metric([label], value)
        for key, value in sorted(counters.items()):
            name, _, label = key.partition("|")
            if name == "oauth_failures":
                oauth.add_metric([label], value)
            elif name == "throttled":
                throttled.add_metric([label], value)
        yield streams
        yield oauth
        yield throttled
        yield from _loop_lag(gauges, counters)


def _loop_lag(gauges: dict[str, float], counters: dict[str, float]):
    lag = HistogramMetricFamily(
        "code_remote_event_loop_lag_seconds",
        "How late the loop-lag probe's 50 ms sleeps woke up: the event loop's pauses, all processes",
    )
    buckets = [(_le(bound), counters.get(f"loop_lag_bucket|{bound!r}", 0)) for bound in LAG_BUCKETS]
    lag.add_metric([], buckets + [("+Inf", counters.get("loop_lag_bucket|+Inf", 0))], counters.get("loop_lag_sum|", 0.0))
    yield lag
    yield GaugeMetricFamily(
        "code_remote_event_loop_lag_max_seconds",
        "The longest event-loop pause since start, the highest over the live processes",
        value=gauges.get("loop_lag_max|", 0.0),
    )


def _le(bound: float) -> str:
    return repr(float(bound))
