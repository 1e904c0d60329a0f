"""Transitions nobody asks for: commands not started by their deadline expire, running commands
whose agent fell silent (or restarted without them) become `lost`.

`sweep` runs at most once a second (`sweep_soon`, called by waits and polls), and first looks with a
plain SELECT: in the common case it takes no write lock at all. A restarted server counts heartbeats
from its own start, so its downtime does not make running commands look lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from web.config import Config
from web.models import EXPIRED, LEASED, LOST, QUEUED, RUNNING, Command, atomic_write, db, locked, now, transition
from web.relay.wakeup import Wakeups

SWEEP_SECONDS = 1.0
LOST_MESSAGE = "outcome unknown: {why}; the command may or may not have run to completion"


class Sweeper:
    """Expiry, loss, and the reconciliation of a restarted agent's running commands."""

    def __init__(self, config: Config, wakeups: Wakeups) -> None:
        self.config = config
        self.wakeups = wakeups
        self.started_at = now()
        self._swept_at = 0.0

    def reconcile(self, machine: str, keep: Iterable[str]) -> list[str]:
        """A restarted agent names the commands it still holds; its other running ones are `lost`."""
        keep = set(keep)
        lost = []
        with db.connection_context(), atomic_write():
            for command in locked(Command.select().where((Command.machine == machine) & (Command.state == RUNNING))):
                if command.id in keep:
                    continue
                why = "the agent restarted while the command was running and stopped it"
                transition(command, LOST, "agent", why, finished_at=now(), error_code="lost", error_message=LOST_MESSAGE.format(why=why))
                command.save()
                lost.append(command.id)
        for command_id in lost:
            self.wakeups.signal(command_id)
        return lost

    # --- time-driven transitions --------------------------------------------------------------

    def sweep_soon(self) -> None:
        """Run `sweep` unless one ran in the last second."""
        t = time.monotonic()
        if t - self._swept_at >= SWEEP_SECONDS:
            self._swept_at = t
            self.sweep()

    def sweep(self, at: float | None = None) -> list[str]:
        """Expire commands not started by their deadline; mark running ones whose agent went silent lost."""
        t = now() if at is None else at
        stale_before = t - self.config.lost_after_seconds
        expire = Command.state.in_((QUEUED, LEASED)) & (Command.start_by_at <= t)
        due = expire
        # Heartbeats missed while this server was down do not count against the agent: until it has
        # been up for a whole window, nothing is declared lost.
        if self.started_at <= stale_before:
            due = expire | ((Command.state == RUNNING) & (Command.heartbeat_at < stale_before))
        with db.connection_context():
            if not Command.select().where(due).exists():
                return []  # the common case: no write transaction at all
            changed = []
            with atomic_write():
                for command in locked(Command.select().where(due)):
                    if command.state == RUNNING:
                        why = f"no word from the agent for {t - command.heartbeat_at:.0f} s while it was running"
                        transition(command, LOST, "server", why, finished_at=t, error_code="lost", error_message=LOST_MESSAGE.format(why=why))
                    else:
                        transition(
                            command, EXPIRED, "server", "not started before its deadline", finished_at=t, error_code="not_started",
                            error_message="the agent did not start the command before its deadline; it was not run",
                        )
                    command.save()
                    changed.append(command.id)
        for command_id in changed:
            self.wakeups.signal(command_id)
        return changed
