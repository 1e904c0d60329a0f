"""Idle scale for scripts/bench.py `--idle N`: one worker holding N idle clients while a load runs.

N/2 idle MCP clients hold `GET /sse` streams open and read their keep-alive comments; N/2 idle agents,
each its own machine (`POST /api/agent/register`), hold `GET /api/agent/poll?wait=25` and poll again
on the same connection when a poll ends, as the real agent does. They are held by a separate process
(this file run as a script, `Holder`), on asyncio with one small coroutine per connection, so that
holding 10 000 connections costs the bench little and does not slow the timed client.

Each SSE client has its own OAuth access token (`grant_tokens` writes the grants into the database, as
the consent screen would): sessions are bound to their credential, and one credential keeps at most
64 sessions open. The idle connections come from source addresses 127.0.1.1, 127.0.1.2, ... with at
most PER_ADDRESS connections each, under the server's MAX_CONNECTIONS_PER_ADDRESS (100); none comes
from 127.0.0.1, which the default `forwarded_allow_ips` trusts as a proxy and does not cap.

`measure` runs, per repeat and interleaved: the load row alone, then the idle clients opened and held
`hold` seconds, the same load row with them held, and the idle clients closed. It reads the worker's
RSS before and while they are held, and the loop-lag probe's histogram (web/console/loop_lag.py, on
/metrics) over the held period: how long the event loop kept its greenlets waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import requests
from prometheus_client.parser import text_string_to_metric_families

PER_ADDRESS = 90  # idle connections per source address, under MAX_CONNECTIONS_PER_ADDRESS (100)
OPENING = 64  # connections being opened at once
TARGETS = {"kb_per_client": 25.0, "p99_ratio": 1.5, "pause_seconds": 0.1}


def source_address(index: int, first: int = 0) -> str:
    """127.0.1.1, ... : PER_ADDRESS connections each, never 127.0.0.1, from the `first`-th address on."""
    n = first + index // PER_ADDRESS
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def grant_tokens(database_url: str, resource: str, count: int) -> list[str]:
    """`count` OAuth access tokens for `resource`, each of its own grant, as `count` consents would leave."""
    from web.models import OAuthClient, OAuthGrant, now, open_database
    from web.oauth.store import ACCESS_PREFIX, SCOPE, digest

    database = open_database(database_url)
    tokens = [ACCESS_PREFIX + secrets.token_urlsafe(32) for _ in range(count)]
    t = now()
    client_id = "idle-bench-" + secrets.token_hex(8)
    with database.connection_context(), database.atomic():
        OAuthClient.create(client_id=client_id, client_name="idle clients (bench)", redirect_uris=["http://127.0.0.1/cb"], used_at=t)
        rows = [{"token_hash": digest(token), "kind": "access", "family": secrets.token_hex(16), "client_id": client_id,
                 "resource": resource, "scope": SCOPE, "expires_at": t + 86400} for token in tokens]
        for first in range(0, len(rows), 500):
            OAuthGrant.insert_many(rows[first:first + 500]).execute()
    database.close()
    return tokens


# --- the holder process ------------------------------------------------------------------------


class Holder:
    """The idle connections, opened on "open" and closed on "close" (commands read from stdin)."""

    def __init__(self, host: str, port: int, sse_tokens: list[str], agents: int, enrolment: str) -> None:
        self.host, self.port = host, port
        self.sse_tokens, self.agents, self.enrolment = sse_tokens, agents, enrolment
        self.agent_tokens: list[str | None] = [None] * agents
        self.tasks: list[asyncio.Task] = []
        self.first_address = 0
        self.figures = {"sse_open": 0, "polls_held": 0, "poll_answers": 0, "keepalives": 0, "ended": 0, "errors": 0}
        self.first_error = ""

    def say(self, **message: Any) -> None:
        print(json.dumps({**message, **self.figures, "first_error": self.first_error}), flush=True)

    async def connect(self, index: int):
        return await asyncio.open_connection(self.host, self.port, local_addr=(source_address(index, self.first_address), 0), limit=65536)

    async def request(self, reader, writer, method: str, path: str, token: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
                + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if method == "POST" else "") + "\r\n")
        writer.write(head.encode() + body)
        status, headers = await read_head(reader)
        if headers.get("transfer-encoding") == "chunked":
            data = b""
            while size := int((await reader.readline()).strip() or b"0", 16):
                data += await reader.readexactly(size + 2)
            await reader.readline()
            return status, data
        return status, await reader.readexactly(int(headers.get("content-length", "0")))

    async def sse(self, index: int, token: str, opened: asyncio.Semaphore) -> None:
        async with opened:
            reader, writer = await self.connect(index)
            writer.write(f"GET /sse HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
                         "Accept: text/event-stream\r\n\r\n".encode())
            status, _ = await read_head(reader)
            if status != 200:
                raise RuntimeError(f"GET /sse answered {status}")
            while b"event: endpoint" not in await reader.readline():
                pass
        self.figures["sse_open"] += 1
        try:
            while line := await reader.readline():
                self.figures["keepalives"] += line.startswith(b":")
            self.figures["ended"] += 1
        finally:
            self.figures["sse_open"] -= 1
            writer.close()

    async def poller(self, index: int, slot: int, opened: asyncio.Semaphore) -> None:
        async with opened:
            reader, writer = await self.connect(index)
            if self.agent_tokens[slot] is None:
                status, body = await self.request(reader, writer, "POST", "/api/agent/register", self.enrolment,
                                                  json.dumps({"machine": f"idle-{slot}"}).encode())
                if status != 200:
                    raise RuntimeError(f"register answered {status}: {body[:200]!r}")
                self.agent_tokens[slot] = json.loads(body)["token"]
        try:
            while True:
                self.figures["polls_held"] += 1
                try:
                    status, body = await self.request(reader, writer, "GET", "/api/agent/poll?wait=25", self.agent_tokens[slot])
                finally:
                    self.figures["polls_held"] -= 1
                if status not in (200, 204):
                    raise RuntimeError(f"poll answered {status}: {body[:200]!r}")
                self.figures["poll_answers"] += 1
        finally:
            writer.close()

    async def guarded(self, job) -> None:
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception as error:  # counted and shown by the bench
            self.figures["errors"] += 1
            self.first_error = self.first_error or f"{type(error).__name__}: {error}"

    async def open(self) -> None:
        opened = asyncio.Semaphore(OPENING)
        jobs = [self.sse(i, token, opened) for i, token in enumerate(self.sse_tokens)]
        jobs += [self.poller(len(self.sse_tokens) + slot, slot, opened) for slot in range(self.agents)]
        self.tasks = [asyncio.ensure_future(self.guarded(job)) for job in jobs]
        started = time.monotonic()
        while self.figures["sse_open"] + self.figures["polls_held"] + self.figures["errors"] < len(jobs):
            await asyncio.sleep(0.1)
        self.say(opened=round(time.monotonic() - started, 1))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        # The next opening comes from new addresses: the server may count a closed stream as open
        # until its next keep-alive write fails, and its per-address cap with it.
        self.first_address += -(-len(self.tasks) // PER_ADDRESS)
        self.tasks = []
        self.say(closed=True)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while command := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            await {"open": self.open, "close": self.close}.get(command, self.status)()

    async def status(self) -> None:
        self.say(status=True)


async def read_head(reader) -> tuple[int, dict[str, str]]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


# --- the bench's side --------------------------------------------------------------------------


class HolderProcess:
    """The holder as a child process, driven line by line."""

    def __init__(self, url: str, sse_tokens: list[str], agents: int, enrolment: str, workdir: Path) -> None:
        tokens = workdir / "idle-sse-tokens"
        tokens.write_text("\n".join(sse_tokens))
        host, port = url.removeprefix("http://").rsplit(":", 1)
        argv = [sys.executable, __file__, "--host", host, "--port", port, "--sse-tokens", str(tokens), "--agents", str(agents)]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={"IDLE_ENROLMENT": enrolment, "PATH": "/usr/bin:/bin"})

    def ask(self, command: str, timeout: float = 600) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not answer or not answer[0]:
            raise RuntimeError(f"the idle holder did not answer {command!r} within {timeout:g} s")
        return json.loads(answer[0])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def lag(url: str, token: str) -> dict[str, float]:
    """The loop-lag probe's figures from /metrics: bucket counts by bound, count, sum and max."""
    text = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=60).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "code_remote_event_loop_lag_seconds_bucket":
                found[sample.labels["le"]] = sample.value
            elif sample.name == "code_remote_event_loop_lag_seconds_count":
                found["count"] = sample.value
            elif sample.name == "code_remote_event_loop_lag_max_seconds":
                found["max"] = sample.value
    return found


def released(url: str, token: str, timeout: float = 90.0) -> None:
    """Wait until the server holds no idle stream or poll any more (it notices a closed stream at its
    next keep-alive, a closed poll at its next re-check), so that the next load row runs alone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=60).text
        held = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name in ("code_remote_held_polls", "code_remote_open_streams"))
        if held <= 50:  # the load's own streams and the real agent's poll
            return
        time.sleep(1.0)
    raise RuntimeError(f"the server still holds {held:.0f} polls and streams {timeout:g} s after the idle clients closed")


def pauses(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What the probe saw between two scrapes: wake-ups, how many were late by over 100 ms, and the
    worst: exact when it set a new maximum since start, else the bound of the lowest bucket holding
    every wake-up of the period."""
    grown = {le: after[le] - before[le] for le in before if le not in ("count", "max")}
    bound = min((float(le) for le, n in grown.items() if n == grown["+Inf"]), default=float("inf"))
    exact = after["max"] > before["max"]
    return {"samples": int(after["count"] - before["count"]), "over_100ms": int(grown["+Inf"] - grown["0.1"]),
            "worst": after["max"] if exact else bound, "exact": exact}


def measure(*, target, workdir: Path, idle: int, repeat: int, hold: float, metrics_token: str, worker_rss: Callable[[], float],
            row: Callable[[], dict[str, Any]], percentile) -> list[str]:
    """Interleaved load rows without and with `idle` clients held; prints the figures, returns errors."""
    sse_count, agents = idle // 2, idle - idle // 2
    tokens = grant_tokens(target.database_url, target.url + "/", sse_count)
    holder = HolderProcess(target.url, tokens, agents, target.token, workdir)
    runs: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        for n in range(repeat):
            alone = row()
            rss_before = worker_rss()
            opened = holder.ask("open")
            lag_before = lag(target.url, metrics_token)
            time.sleep(hold)  # the held period: the idle clients' keep-alives and re-polls come and go
            held = holder.ask("status")
            loaded = row()
            time.sleep(1.0)
            lag_after = lag(target.url, metrics_token)
            rss_held = worker_rss()
            status = holder.ask("status")
            holder.ask("close")
            released(target.url, metrics_token)
            run = {"alone": alone, "loaded": loaded, "kb": (rss_held - rss_before) * 1024 / idle, "rss": (rss_before, rss_held),
                   "opened": opened, "held": held, "status": status, "pauses": pauses(lag_before, lag_after)}
            runs.append(run)
            for key in ("alone", "loaded"):
                errors += run[key]["errors"]
            if status["errors"] or status["sse_open"] < sse_count or held["polls_held"] < agents * 0.9:
                errors.append(f"idle clients not all held: {status}")
            p99 = [percentile(run[k]["latencies"], 0.99) for k in ("alone", "loaded")]
            print(f"  run {n + 1}: opened {idle} idle clients in {opened['opened']} s; worker RSS {rss_before:.1f} -> {rss_held:.1f} MB "
                  f"({run['kb']:.1f} KB per idle client); held {status['sse_open']} streams and {held['polls_held']} polls "
                  f"({status['keepalives']} keep-alives, {status['poll_answers']} polls answered, {status['errors']} errors"
                  f"{': ' + status['first_error'] if status['first_error'] else ''}); c=8 p99 {p99[0]:.1f} ms alone, {p99[1]:.1f} ms held; "
                  f"loop: {run['pauses']['samples']} wake-ups, {run['pauses']['over_100ms']} over 100 ms, worst "
                  f"{'' if run['pauses']['exact'] else '<= '}{run['pauses']['worst'] * 1000:.1f} ms", flush=True)
    finally:
        holder.stop()
    print_summary(runs, idle, percentile)
    return errors


def print_summary(runs: list[dict[str, Any]], idle: int, percentile) -> None:
    if not runs:
        return

    def median(figure) -> float:
        return statistics.median(figure(run) for run in runs)

    def p(key: str, fraction: float):
        return lambda run: percentile(run[key]["latencies"], fraction)

    ratios = [p("loaded", 0.99)(run) / p("alone", 0.99)(run) for run in runs]
    kb, ratio, worst = runs[0]["kb"], statistics.median(ratios), max(r["pauses"]["worst"] for r in runs)
    print(f"\nidle scale, {idle} idle clients ({idle // 2} SSE streams, {idle - idle // 2} held polls), medians of {len(runs)} runs:")
    each = ", ".join(f"{r['kb']:.1f}" for r in runs)
    print(f"  memory: {kb:.1f} KB per idle client at the first opening (later openings reuse what the first freed: {each}); "
          f"target <= {TARGETS['kb_per_client']:g}: {'met' if kb <= TARGETS['kb_per_client'] else 'NOT met'}")
    print(f"  c=8 echo hi alone: p50 {median(p('alone', 0.5)):.1f} ms, p99 {median(p('alone', 0.99)):.1f} ms; "
          f"held: p50 {median(p('loaded', 0.5)):.1f} ms, p99 {median(p('loaded', 0.99)):.1f} ms")
    print(f"  p99 held / alone: {ratio:.2f}x (runs {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"target <= {TARGETS['p99_ratio']:g}: {'met' if ratio <= TARGETS['p99_ratio'] else 'NOT met'}")
    exact = all(r["pauses"]["exact"] or r["pauses"]["worst"] < worst for r in runs)
    print(f"  worst event-loop pause while held: {'' if exact else '<= '}{worst * 1000:.1f} ms "
          f"({', '.join(str(r['pauses']['over_100ms']) for r in runs)} wake-ups over 100 ms per run); "
          f"target < {TARGETS['pause_seconds'] * 1000:g} ms: {'met' if worst < TARGETS['pause_seconds'] else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description="hold idle SSE streams and agent polls (driven by scripts/bench.py --idle)")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sse-tokens", type=Path, required=True)
    parser.add_argument("--agents", type=int, required=True)
    args = parser.parse_args()
    import os

    tokens = [t for t in args.sse_tokens.read_text().splitlines() if t]
    asyncio.run(Holder(args.host, args.port, tokens, args.agents, os.environ["IDLE_ENROLMENT"]).serve())


if __name__ == "__main__":
    main()
