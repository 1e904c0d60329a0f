"""A throttle every server process counts together: each hit is a row (`throttle_hit`), so an address
that spreads its attempts over several processes or instances meets one limit, at once, everywhere.

Used when the database is shared (PostgreSQL); one process on SQLite counts in memory
(netpolicy.Throttle), which is the same limit there. Rows older than the window are deleted now and then
by whichever process counts.
"""

from __future__ import annotations

import math
import time

from peewee import fn

from web import errors
from web.models import ThrottleHit, db
from web.security.netpolicy import Throttle, counted_as

PURGE_SECONDS = 60.0


class SharedThrottle(Throttle):
    """netpolicy.Throttle's limit, counted in the database under `scope`."""

    def __init__(self, limit: int, window_seconds: float = 60.0, *, scope: str, **kwargs) -> None:
        super().__init__(limit, window_seconds, **kwargs)
        self.scope = scope
        self._purged_at = 0.0

    def hit(self, address: str | None) -> None:
        key = counted_as(address)[:64]
        t = time.time()
        since = t - self.window
        with db.connection_context():
            if t - self._purged_at >= PURGE_SECONDS:
                self._purged_at = t
                ThrottleHit.delete().where((ThrottleHit.scope == self.scope) & (ThrottleHit.at <= since)).execute()
            ThrottleHit.insert(scope=self.scope, key=key, at=t).execute()
            count, first = (
                ThrottleHit.select(fn.COUNT(ThrottleHit.id), fn.MIN(ThrottleHit.at))
                .where((ThrottleHit.scope == self.scope) & (ThrottleHit.key == key) & (ThrottleHit.at > since))
                .scalar(as_tuple=True)
            )
        if count > self.limit:
            retry_after = math.ceil((first or t) + self.window - t)
            raise errors.TooManyRequests(
                f"too many {self.what} from this address; retry in {retry_after} s",
                retry_after_seconds=max(1, retry_after),
                code=self.code,
            )
