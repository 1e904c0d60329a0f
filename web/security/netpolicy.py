"""Who is calling, from where: the client address through trusted proxies, the networks agents may
connect from, and the slow-down for failed authentication.

The client address is the right-most `X-Forwarded-For` entry that a trusted proxy wrote: with
`TRUSTED_PROXY_HOPS=1` (one proxy such as Fly's edge in front) it is the last entry, which that proxy
appended; anything to its left came from the client and may be forged. With 0 hops the header is
ignored and the socket's peer address is used. werkzeug's ProxyFix implements exactly this rule.

Failed authentication is counted per client address over a sliding minute. An IPv6 address counts
as its /64: one subscriber or one cloud host usually holds a whole /64, and would otherwise have 2^64
addresses to spread attempts over. Past the limit a failed
attempt is answered 429 with `Retry-After` instead of 401, but a correct credential is always checked
first and always passes, so an attacker hammering from the owner's address cannot lock the owner out.
"""

from __future__ import annotations

import collections
import ipaddress
import math
import threading
import time

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from web import errors

WINDOW_SECONDS = 60.0
MAX_TRACKED_ADDRESSES = 10_000
AGENT_PATH_PREFIX = "/api/agent/"


class Throttle:
    """Counts of something per client address over a sliding window, in memory, bounded in size."""

    def __init__(
        self,
        limit: int,
        window_seconds: float = WINDOW_SECONDS,
        *,
        what: str = "failed authentication attempts",
        code: str = "too_many_failed_attempts",
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.what, self.code = what, code
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def hit(self, address: str | None) -> None:
        """Count one more for `address`; raise TooManyRequests once it is over its limit."""
        address = counted_as(address)
        t = time.monotonic()
        with self._lock:
            times = self._failures.pop(address, None) or collections.deque()
            while times and times[0] <= t - self.window:
                times.popleft()
            times.append(t)
            self._failures[address] = times
            while len(self._failures) > MAX_TRACKED_ADDRESSES:
                self._failures.popitem(last=False)
            over = len(times) > self.limit
            retry_after = math.ceil(times[0] + self.window - t) if over else 0
        if over:
            raise errors.TooManyRequests(
                f"too many {self.what} from this address; retry in {retry_after} s",
                retry_after_seconds=max(1, retry_after),
                code=self.code,
            )


def counted_as(address: str | None) -> str:
    """The key a throttle counts `address` under: IPv4 as is, IPv6 by its /64 (IPv4-mapped: as IPv4)."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return address or "unknown"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def address_allowed(address: str | None, networks: tuple[str, ...]) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(n) for n in networks)


def install(app: Flask, *, trusted_proxy_hops: int, agent_networks: tuple[str, ...]) -> None:
    """Trust exactly `trusted_proxy_hops` proxies, and refuse agents from outside `agent_networks`."""
    if trusted_proxy_hops > 0:
        hops = trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    if not agent_networks:
        return

    @app.before_request
    def refuse_agents_from_elsewhere():
        if request.path.startswith(AGENT_PATH_PREFIX) and not address_allowed(request.remote_addr, agent_networks):
            raise errors.Forbidden(
                f"agent connections are not accepted from {request.remote_addr}: "
                "the server allows only AGENT_ALLOWED_NETWORKS",
                code="network_not_allowed",
            )
