"""The gunicorn worker: gevent's, bounded against slow and crowding clients (gunicorn.conf.py uses it).

One gevent worker holds thousands of connections, so a client that sends its request slowly costs
nothing but a connection, and that is exactly what it takes: a body that never completes held one
for as long as the client liked (over 30 s seen, no end), and `WORKER_CONNECTIONS` of them stop the
worker from accepting anyone else. gunicorn's gevent worker bounds neither: reading the headers waits
up to `keepalive` (75 s) and reading the body has no limit at all. So, on every connection:

- **Headers** must be complete `HEADER_TIMEOUT_SECONDS` (20) after the connection opens, or, on a
  kept-alive connection, after the next request's first byte. Past it: `408` with code
  `header_timeout`, and the connection is closed.
- **A body** must arrive within `BODY_TIMEOUT_SECONDS` (20), extended by one second for every
  `BODY_MIN_BYTES_PER_SECOND` (500) bytes received, as Apache's mod_reqtimeout does, so a large
  agent result on a slow link gets through and a trickle does not. Past it, the application's read
  raises `SlowClient` (werkzeug's 408, code `body_timeout`), which the server answers as any bad
  body; every later read is an end of file, so the connection closes.
- **Connections per client address** (an IPv6 address counted by its /64, like the throttles) are
  capped at `MAX_CONNECTIONS_PER_ADDRESS` (100) in each worker process; one more is answered `429`
  `too_many_connections` and closed at once, so a few slow clients cannot take a worker's
  connections. Peers in gunicorn's `forwarded_allow_ips` are proxies carrying many users and are not
  capped: a proxy in front enforces its own limits (nginx `limit_conn`, `client_body_timeout`).

Held polls, SSE streams and slow answers are untouched: the deadlines bound only what the client
sends, never how long the server takes to answer. Each refusal is logged and audited (connection
refusals at most once per address every 10 s, saying how many were refused meanwhile, so a flood
does not turn into a flood of rows).

This module is imported by gunicorn's master, before gevent patches anything: it imports no part of
the application (`web/`) at module level.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import os
import socket
import time

from gunicorn.workers.ggevent import GeventWorker
from werkzeug.exceptions import RequestTimeout

log = logging.getLogger(__name__)
AUDIT_EVERY_SECONDS = 10.0


def _setting(name: str, default: float, *, zero_allowed: bool = False) -> float:
    """A number setting from the environment, or an exit that names it."""
    raw = os.environ.get(name, "").strip() or str(default)
    try:
        value = float(raw) if raw.isascii() else -1.0
    except ValueError:
        value = -1.0
    if not (value > 0 or (zero_allowed and value == 0)) or value != value or value == float("inf"):
        raise SystemExit(f"{name} must be a number above 0{' (or 0 to switch it off)' if zero_allowed else ''}, got {raw!r}")
    return value


class Limits:
    """The four settings, read once from the environment by gunicorn.conf.py."""

    def __init__(self) -> None:
        self.header_seconds = _setting("HEADER_TIMEOUT_SECONDS", 20)
        self.body_seconds = _setting("BODY_TIMEOUT_SECONDS", 20)
        self.body_min_rate = _setting("BODY_MIN_BYTES_PER_SECOND", 500)
        self.connections_per_address = int(_setting("MAX_CONNECTIONS_PER_ADDRESS", 100, zero_allowed=True))


class SlowClient(RequestTimeout):
    """The client did not send its request (headers or body) in time."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


class GuardedSocket:
    """A client socket whose reads keep to the request's deadlines; everything else is the socket's.

    Phases: `headers` (a deadline from the connection's start or the request's first byte), `body`
    (a deadline that grows with the bytes received) and `idle` between requests (gunicorn's own
    `keepalive` bounds that wait). A read with flags (the held poll's MSG_PEEK check for a hang-up)
    is not a request read and passes through.
    """

    def __init__(self, sock: socket.socket, limits: Limits) -> None:
        self._sock = sock
        self._limits = limits
        self._outer_timeout = sock.gettimeout()
        self._expired = False
        self._phase = "headers"
        self._deadline: float | None = time.monotonic() + limits.header_seconds

    def __getattr__(self, name: str):
        return getattr(self._sock, name)

    def settimeout(self, value: float | None) -> None:
        self._outer_timeout = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._outer_timeout

    def reading_body(self) -> None:
        """The headers are in: the application may now read the body."""
        self._phase, self._deadline = "body", time.monotonic() + self._limits.body_seconds

    def idle(self) -> None:
        """The answer is sent: wait for the next request, whose first byte starts its header deadline."""
        self._phase, self._deadline = "idle", None

    def recv(self, size: int, flags: int = 0) -> bytes:
        if flags:
            return self._sock.recv(size, flags)
        if self._expired:
            return b""
        if self._deadline is None:
            data = self._sock.recv(size)
            if data:
                self._phase, self._deadline = "headers", time.monotonic() + self._limits.header_seconds
            return data
        remaining = self._deadline - time.monotonic()
        timeout = remaining if self._outer_timeout is None else min(remaining, self._outer_timeout)
        if remaining <= 0:
            raise self._expire()
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(size)
        except socket.timeout:
            if self._outer_timeout is not None and self._outer_timeout <= remaining:
                raise
            raise self._expire() from None
        finally:
            self._sock.settimeout(self._outer_timeout)
        if self._phase == "body":
            self._deadline += len(data) / self._limits.body_min_rate
        return data

    def _expire(self) -> SlowClient:
        self._expired = True
        if self._phase == "body":
            return SlowClient(
                "body_timeout",
                f"the request body did not arrive in time ({self._limits.body_seconds:g} s, plus 1 s per "
                f"{self._limits.body_min_rate:g} bytes received; BODY_TIMEOUT_SECONDS, BODY_MIN_BYTES_PER_SECOND)",
            )
        return SlowClient(
            "header_timeout",
            f"the request headers did not arrive within {self._limits.header_seconds:g} s (HEADER_TIMEOUT_SECONDS)",
        )


def address_key(address: str) -> str:
    """The unit a client is counted by, as the throttles count it: IPv4, or IPv6 by its /64."""
    from web.security.netpolicy import counted_as  # loaded with the application, in the worker

    return counted_as(address)


class GuardedGeventWorker(GeventWorker):
    """gunicorn's gevent worker with the deadlines and the per-address cap described above."""

    limits: Limits = Limits()

    def init_process(self) -> None:
        self._open: collections.Counter[str] = collections.Counter()
        self._refused: collections.Counter[tuple[str, str]] = collections.Counter()
        self._audited_at: dict[tuple[str, str], float] = {}
        super().init_process()

    def handle(self, listener, client, addr) -> None:
        peer = addr[0] if isinstance(addr, tuple) and addr else ""
        key = address_key(peer) if peer else ""
        capped = bool(key) and self.limits.connections_per_address > 0 and not self._trusted(peer)
        if capped and self._open[key] >= self.limits.connections_per_address:
            self._refuse_connection(client, peer, key)
            return
        if capped:
            self._open[key] += 1
        try:
            super().handle(listener, GuardedSocket(client, self.limits), addr)
        finally:
            if capped:
                self._open[key] -= 1
                if self._open[key] <= 0:
                    del self._open[key]

    def handle_request(self, listener_name, req, sock, addr):
        if isinstance(sock, GuardedSocket):
            sock.reading_body()
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            if isinstance(sock, GuardedSocket):
                sock.idle()

    def handle_error(self, req, client, addr, exc) -> None:
        if not isinstance(exc, SlowClient):
            super().handle_error(req, client, addr, exc)
            return
        peer = addr[0] if isinstance(addr, tuple) and addr else ""
        log.warning("closed a connection from %s: %s", peer, exc.description)
        self._answer(client, 408, "Request Timeout", exc.error_code, exc.description)
        self._audit(peer, exc.error_code, exc.description)

    def _trusted(self, peer: str) -> bool:
        allowed = self.cfg.forwarded_allow_ips
        if "*" in allowed:
            return True
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        for entry in allowed:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False

    def _refuse_connection(self, client, peer: str, key: str) -> None:
        cap = self.limits.connections_per_address
        message = (
            f"{cap} connections are already open from {key}: the cap per client address is "
            f"MAX_CONNECTIONS_PER_ADDRESS={cap}. Close idle connections, or raise the setting"
        )
        try:
            self._answer(client, 429, "Too Many Requests", "too_many_connections", message, retry_after=5)
        finally:
            client.close()
        self._audit(peer, "too_many_connections", message)

    @staticmethod
    def _answer(client, status: int, reason: str, code: str, message: str, *, retry_after: int | None = None) -> None:
        """A complete JSON error response, sent without waiting on a client that may not read."""
        body = json.dumps({"error": {"code": code, "message": message}}, indent=2).encode() + b"\n"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + (f"Retry-After: {retry_after}\r\n" if retry_after else "") + "\r\n"
        )
        try:
            client.settimeout(1.0)
            client.sendall(head.encode() + body)
        except OSError:
            pass

    def _audit(self, peer: str, code: str, message: str) -> None:
        """One audit row per address and kind every AUDIT_EVERY_SECONDS, counting those in between."""
        slot = (address_key(peer) if peer else "", code)
        self._refused[slot] += 1
        now = time.monotonic()
        if now - self._audited_at.get(slot, -AUDIT_EVERY_SECONDS) < AUDIT_EVERY_SECONDS:
            return
        count, self._refused[slot] = self._refused[slot], 0
        self._audited_at[slot] = now
        if len(self._audited_at) > 10_000:  # forget old addresses rather than grow without end
            self._audited_at = {s: t for s, t in self._audited_at.items() if now - t < AUDIT_EVERY_SECONDS}
            self._refused = collections.Counter({s: n for s, n in self._refused.items() if s in self._audited_at})
        from web import audit  # the application is loaded by now, in this (patched) worker

        try:
            audit.record_refusal(
                transport="connection",
                error_code=code,
                message=f"{peer}: {message}" + (f" ({count} refused from this address since the last row)" if count > 1 else ""),
            )
        except Exception as failure:  # a refusal must not fail because the audit could not be written
            log.error("could not audit a refused connection (%s)", type(failure).__name__)
