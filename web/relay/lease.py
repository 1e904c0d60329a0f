"""Leases: how a poll hands a machine's commands to its agent, and how the agent confirms one.

A poll *leases* queued commands; it does not deliver them. The agent confirms each with `start`,
quoting its lease number, before running it. A lease that is never confirmed (the poll's socket was
already dead, the agent crashed) runs out and the command is leased again under a new number, so a
late `start` under the old one is refused; a started command is never leased again. A registration
(a new agent process) ends the machine's held polls and releases its unconfirmed leases at once.

A poll asks the database for ready commands only when something was queued here for its machine
(a new wake-up generation: it then leases at once), or a second after its last look found nothing,
the bound in which a command queued by another server process, or a lease that ran out, is found.
Ready commands are found through the (machine, state) index: the cost of a poll does not grow with
the machine's history. Leasing and confirming run from SQL text built once (web/sql.py).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from web import errors, sql
from web.config import Config
from web.models import LEASED, QUEUED, RUNNING, Command, Machine, atomic_write, db, log_event, now
from web.relay.machines import Machines
from web.relay.sweeper import Sweeper
from web.relay.wakeup import RECHECK_SECONDS, Wakeups

# The safety-net re-reads of every poll held in this process together stay under this rate: each
# held poll re-reads every RECHECK_SECONDS, or every held/MAX_RECHECKS_PER_SECOND seconds when more
# polls are held. With 5 000 held polls, one re-read a second each was 5 000 statements and wake-ups
# a second: most of an idle worker's CPU, and pauses of the event loop near a second
# (scripts/bench.py --idle). Wake-ups (a submit, a registration, the bus) still end a wait at once;
# only what nothing announces (a lease that ran out, a message the bus lost) waits up to the longer bound.
MAX_RECHECKS_PER_SECOND = 500

# Queued, or leased under a lease that ran out unconfirmed, and not past its start deadline; the
# states named in one IN so that the (machine, state) index finds them.
# Parameters: machine, QUEUED, LEASED, QUEUED, now, now.
READY = "machine = ? AND state IN (?, ?) AND (state = ? OR lease_expires_at < ?) AND (start_by_at IS NULL OR start_by_at > ?)"
# `ORDER BY +created_at`: the unary plus keeps SQLite from walking the (machine, created_at) index to
# get the order for free, which read the machine's whole history on every lease (3.6 ms of a worker's
# CPU with 20 000 finished commands, 40 % of it under the bench); the few ready rows are sorted instead.
LEASE = (
    "UPDATE command SET state = ?, leased_at = ?, lease_expires_at = ?, lease_count = lease_count + 1 "
    f"WHERE id IN (SELECT id FROM command WHERE {READY} ORDER BY +created_at LIMIT ?) AND {READY} "
    f"RETURNING {sql.columns(Command)}"
)
START = (
    "UPDATE command SET state = ?, started_at = ?, heartbeat_at = ? "
    f"WHERE id = ? AND machine = ? AND state = ? AND lease_count = ? RETURNING {sql.columns(Command)}"
)
# On PostgreSQL each of the two, with the `command_event` rows that log it, is one statement and so a
# transaction of its own: BEGIN, the change, the log rows and COMMIT were four round trips, twice on the
# way of every relayed call. (SQLite has no writes in WITH; there a transaction costs no round trip.)
EVENT_COLUMNS = "command_event (command_id, at, from_state, to_state, actor, detail)"
LEASE_LOGGED = (
    f"WITH leased AS ({LEASE}), logged AS (INSERT INTO {EVENT_COLUMNS} "
    "SELECT id, ?, CASE WHEN lease_count = 1 THEN ? ELSE ? END, ?, ?, "
    "'lease ' || lease_count || CASE WHEN lease_count = 1 THEN '' ELSE ? END FROM leased) "
    "SELECT * FROM leased"
)
START_LOGGED = (
    f"WITH started AS ({START}), logged AS (INSERT INTO {EVENT_COLUMNS} SELECT id, ?, ?, ?, ?, ? FROM started) "
    "SELECT * FROM started"
)
REPEAT_LEASE = " (previous lease ran out unconfirmed)"


def owned(machine: str, command_id: str) -> Command:
    """The command, if it is `machine`'s; another machine's command looks exactly like a missing one."""
    command = sql.get(Command, command_id)
    if command is None or command.machine != machine:
        raise errors.NotFound(f"no command {command_id} for machine {machine!r}", code="unknown_command")
    return command


class Leases:
    """A machine's polls, the leases they hand out, and the agent's confirmation of them."""

    def __init__(self, config: Config, machines: Machines, wakeups: Wakeups, sweeper: Sweeper) -> None:
        self.config = config
        self.machines = machines
        self.wakeups = wakeups
        self.sweeper = sweeper
        self._registrations: collections.Counter[str] = collections.Counter()
        # machine -> (wake-up generation, monotonic time) of its last claim that left nothing ready
        self._empty: dict[str, tuple[int, float]] = {}
        # This process is stopping: polls are answered at once, so agents poll another process.
        self.draining = False
        wakeups.bus.subscribe("registration", self._supersede)

    def register(self, name: str, **facts) -> Machine:
        """Register the machine, end its held polls and release its unconfirmed leases.

        A registration is a new agent process (or one renewing its token). Polls still held for the
        machine belong to an agent that has gone, and leases it has not confirmed were most likely
        written into a dead socket: without this the next command waits out a whole lease before
        the live agent gets it. A released lease is handed out again under a new number, so a late
        start under the old one is refused and the command still runs at most once.
        """
        machine = self.machines.register(name, **facts)
        with db.connection_context():
            Command.update(lease_expires_at=now()).where((Command.machine == name) & (Command.state == LEASED)).execute()
        self.supersede(name)
        return machine

    def supersede(self, name: str) -> None:
        """End the machine's held polls, here and in every other process: its agent registered
        again, or its tokens were revoked."""
        self._supersede(name)
        self.wakeups.bus.publish("registration", name)

    def _supersede(self, name: str) -> None:
        self._registrations[name] += 1
        self.wakeups.wake_machine_locally(name)

    def poll(self, machine: str, wait_seconds: float, limit: int = 16, *, gone: Callable[[], bool] | None = None) -> list[Command]:
        """Lease the machine's queued commands, waiting up to `wait_seconds` for one to arrive.

        `gone` tells whether the polling agent has hung up: a dead poll then ends before it can
        lease anything, and stops counting the machine as online."""
        deadline = time.monotonic() + wait_seconds
        condition = self.wakeups.condition(machine)
        registration = self._registrations[machine]
        self.machines.polling(machine, +1)
        try:
            while True:
                with condition:
                    generation = self.wakeups.generation(machine)
                if self._registrations[machine] != registration or self.draining or (gone is not None and gone()):
                    return []  # superseded by a newer registration of this machine, stopping, or hung up
                self.sweeper.sweep_soon()
                leased, recheck_in = [], self._known_empty_for(machine, generation) if wait_seconds > 0 else 0.0
                if limit > 0 and recheck_in <= 0:
                    looked_at = time.monotonic()
                    # Woken by a submit (a new generation): something is most likely ready.
                    seen = self._empty.get(machine)
                    leased = self.claim(machine, limit, look_first=seen is not None and seen[0] == generation)
                    if len(leased) < limit:  # nothing more was ready when it looked
                        self._empty[machine] = (generation, looked_at)
                    recheck_in = max(RECHECK_SECONDS, self.machines.held_polls() / MAX_RECHECKS_PER_SECOND)
                remaining = deadline - time.monotonic()
                if leased or remaining <= 0:
                    return leased
                with condition:
                    if self.wakeups.generation(machine) == generation:
                        condition.wait(min(remaining, recheck_in))
        finally:
            self.machines.polling(machine, -1)

    def drain(self) -> None:
        """End every poll held here, now and from now on: this process is stopping."""
        self.draining = True
        self.wakeups.wake_all()

    def _known_empty_for(self, machine: str, generation: int) -> float:
        """How much longer the machine's last claim that left nothing ready still answers for it.

        The agent polls again as soon as a poll returns commands, and most of those polls find
        nothing: if nothing was queued here for the machine (same wake-up generation) since a claim
        left nothing ready, the database is not asked again for RECHECK_SECONDS, the bound in which
        a command queued by another server process, or a lease that ran out, is found anyway.
        """
        seen = self._empty.get(machine)
        if seen is None or seen[0] != generation:
            return 0.0
        return RECHECK_SECONDS - (time.monotonic() - seen[1])

    def claim(self, machine: str, limit: int = 16, *, look_first: bool = True) -> list[Command]:
        """Lease up to `limit` commands: queued ones, and leased ones whose lease ran out unconfirmed.

        `look_first` reads before taking the write lock, for a poll that does not know whether
        anything is ready (most such looks find nothing); a poll woken by a submit leases directly."""
        t = now()
        ready = (machine, QUEUED, LEASED, QUEUED, t, t)
        with db.connection_context():
            if look_first and not sql.execute(Command, f"SELECT 1 FROM command WHERE {READY} LIMIT 1", ready).fetchall():
                return []
            # One statement leases them all (`ready` again, so PostgreSQL re-checks a row another
            # process leased meanwhile). A lease number above 1 means an earlier lease ran out
            # unconfirmed: only submit makes a command queued.
            lease = (LEASED, t, t + self.config.lease_seconds, *ready, limit, *ready)
            if sql.writes_in_with(Command):
                commands = sql.select(Command, LEASE_LOGGED, (*lease, t, QUEUED, LEASED, LEASED, "server", REPEAT_LEASE))
            else:
                with atomic_write():
                    commands = sql.select(Command, LEASE, lease)
                    for c in commands:
                        first = c.lease_count == 1
                        detail = f"lease {c.lease_count}" + ("" if first else REPEAT_LEASE)
                        log_event(c.id, QUEUED if first else LEASED, LEASED, "server", detail, at=t)
        commands.sort(key=lambda c: c.created_at)
        return commands

    def start(self, machine: str, command_id: str, lease: int) -> Command:
        """The agent confirms it is about to run the command under lease number `lease`."""
        t = now()
        start, detail = (RUNNING, t, t, command_id, machine, LEASED, lease), f"started under lease {lease}"
        with db.connection_context():
            # The usual case in one statement: still leased to this agent under this lease.
            if sql.writes_in_with(Command):
                started = sql.select(Command, START_LOGGED, (*start, t, LEASED, RUNNING, "agent", detail))
            else:
                with atomic_write():
                    started = sql.select(Command, START, start)
                    if started:
                        log_event(command_id, LEASED, RUNNING, "agent", detail, at=t)
            if started:
                return started[0]
            command = owned(machine, command_id)
            if command.state == RUNNING and command.lease_count == lease:
                return command  # a repeated confirmation of the same lease
            raise errors.Conflict(
                f"command {command_id} is {command.state} under lease {command.lease_count}, "
                f"not leased to you under lease {lease}: do not run it",
                code="lease_lost",
            )
        # No wake-up: a waiter acts only on output and on the outcome, and re-reading the row for
        # nothing was a tenth of a relayed call's server time.
        return command
