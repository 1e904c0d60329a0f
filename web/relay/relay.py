"""The relay: the durable queue between MCP tool calls and the agents that run them.

A command moves through states stored in the database, the server being their only writer. Each
transition is one transaction that also writes a `command_event` row (the transition log):

    queued --claim--> leased --start--> running --complete--> succeeded | failed | timed_out | cancelled
       |    <--lease ran out, unconfirmed--+         |
       +--(not started by start_by_at)--> expired     +--(no heartbeat for lost_after_seconds, or the
       +--(cancel before start)--> cancelled              agent restarted without it)--> lost

A poll *leases* commands; it does not deliver them. A command counts as delivered only when the agent
confirms it with `start`, quoting its lease number; a started command is never handed out again, so it
runs at most once (web/relay/lease.py: polls, leases and their confirmation).

`lost` means "outcome unknown": the agent may or may not have finished it. If that agent later proves
the outcome (a result from its on-disk outbox), the real outcome replaces `lost`; no other terminal
state ever changes.

While a command runs, the agent streams its output in chunks (`progress`), each with its byte offset,
so a repeat is stored once; every progress call is also the command's heartbeat and tells the agent
whether the command was cancelled. Expiry and loss are found by `sweep` (web/relay/sweeper.py), which the
waits and polls run at most once a second.

The relay is a front over small parts, each handed what it needs: `Machines` (records, online-ness,
token generations), `Leases` (polls and their confirmation), `Sweeper`, `OutputStore`, and `Wakeups`,
which wakes waiters in this process and, through the bus (web/bus.py), in every other server process.
Every wait also re-reads the database at least once a second, as a safety net. Most transitions are one conditional
statement or a read and a write of the changed columns, plus the log row: a relayed call with its
audit row and a line of output costs 13 statements, transaction brackets aside, each run from SQL text
built once (web/sql.py).

No Flask in here: the HTTP surfaces call these methods.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from web import errors, sql
from web.bus import Bus
from web.config import Config
from web.models import (
    CANCELLED,
    EXPIRED,
    FAILED,
    LEASED,
    LOST,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
    TIMED_OUT,
    Command,
    CommandEvent,
    atomic_write,
    db,
    event,
    locked,
    log_event,
    now,
    transition,
)
from web.relay.lease import Leases, owned
from web.relay.machines import Machines
from web.relay import stdin
from web.relay.output import STREAMS, OutputStore
from web.relay.sweeper import Sweeper
from web.relay.wakeup import RECHECK_SECONDS, Wakeups

log = logging.getLogger(__name__)

# A running command's heartbeat_at is written at most this often.
HEARTBEAT_WRITE_SECONDS = 5.0
AGENT_FINAL_STATES = frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED})
PENDING_STATES = (QUEUED, LEASED, RUNNING)
# A machine's pending commands are counted through the (machine, state) index (web/relay/lease.py), so the
# cost does not grow with the machine's history. Run from SQL text (web/sql.py): every call counts.
COUNT_PENDING = "SELECT COUNT(*) FROM command WHERE machine = ? AND state IN (?, ?, ?)"


def _may_finish(command: Command) -> bool:
    """Whether an outcome posted for `command` applies: it is running (or lost, whose unknown outcome
    a late result replaces); False for a repeat after it finished. Refused before it started."""
    if command.state in TERMINAL_STATES and command.state != LOST:
        return False
    if command.state not in (RUNNING, LOST):
        raise errors.Conflict(
            f"command {command.id} is {command.state}: confirm it with start before posting a result",
            code="not_started",
        )
    return True


def _finish_detail(command: Command) -> str:
    return "result" if command.state == RUNNING else "late result replaces the unknown outcome"


class Relay:
    """Submit, claim, start, stream, complete, cancel and wait on commands; track machines."""

    def __init__(self, config: Config, bus: Bus | None = None) -> None:
        self.config = config
        self.bus = bus or Bus()
        self.wakeups = Wakeups(self.bus)
        self.output = OutputStore(config.max_output_bytes)
        self.registry = Machines(config, self.bus)
        self.sweeper = Sweeper(config, self.wakeups)
        self.leases = Leases(config, self.registry, self.wakeups, self.sweeper)
        self.stdin = stdin.StdinQueue(self.wakeups)
        # The parts' verbs, for the HTTP surfaces and the tools.
        leases, sweeper, registry = self.leases, self.sweeper, self.registry
        self.register, self.poll, self.claim, self.start = leases.register, leases.poll, leases.claim, leases.start
        self.sweep, self.sweep_soon, self.reconcile = sweeper.sweep, sweeper.sweep_soon, sweeper.reconcile
        self.machine, self.machines, self.status = registry.machine, registry.machines, registry.status
        self.token_generation, self.is_online, self.last_seen_at = registry.token_generation, registry.is_online, registry.last_seen_at
        self.held_polls = registry.held_polls

    def approve(self, name: str, key_hash: str):
        """The owner binds `name` to another agent's key; the agent holding the old one is out."""
        machine = self.registry.approve(name, key_hash)
        self.leases.supersede(name)
        return machine

    def revoke(self, name: str):
        """Invalidate every token issued to `name` so far, and end its held polls everywhere."""
        machine = self.registry.revoke(name)
        self.leases.supersede(name)
        return machine

    # --- the caller's side --------------------------------------------------------------------

    def submit(
        self, machine: str, tool: str, arguments: dict, *, timeout_seconds: float, session_id: str = "", request_id: str | None = None
    ) -> Command:
        """Queue a command for `machine` and wake its poll; `machine_busy` past the machine's cap."""
        t = now()
        with db.connection_context():
            # Not in one transaction with the writes: on PostgreSQL a count locks nothing anyway (two
            # processes may each queue one past the cap), and in one process nothing runs in between.
            pending = sql.scalar(Command, COUNT_PENDING, (machine, *PENDING_STATES))
            if pending >= self.config.max_queued_per_machine:
                raise errors.ToolError(
                    f"machine {machine!r} is busy: {pending} commands are queued or running (limit "
                    f"{self.config.max_queued_per_machine}); wait for some to finish, or cancel_command them",
                    code="machine_busy",
                )
            command = Command(
                id=uuid.uuid4().hex,
                state="",
                machine=machine,
                tool=tool,
                arguments=arguments,
                timeout_seconds=timeout_seconds,
                session_id=session_id,
                request_id=request_id,
                created_at=t,
                start_by_at=t + self.config.start_deadline_seconds,
            )
            command.state = QUEUED
            sql.insert_together([event(command.id, "", QUEUED, "client", f"{tool} submitted", at=t), command])
            # Its wake-up exists before anyone can change it, so a `wait` started later misses nothing.
            self.wakeups.changed(command.id)
        self.wakeups.wake_machine(machine)
        return command

    def wait(self, command_id: str, timeout_seconds: float, on_change=None, *, known: Command | None = None, until=None) -> Command:
        """Wait until the command is terminal, `until(command)` holds, or the time is up; return its
        latest record.

        Nothing happens to the command when the time is up: it keeps its state, and the caller can
        learn its outcome later. `on_change(command)` is called whenever output arrives. `known` is
        the record `submit` returned, which spares a first read unless the command changed since.
        """
        deadline = time.monotonic() + timeout_seconds
        changed = self.wakeups.changed(command_id)
        try:
            while True:
                if changed.is_set():
                    known = None  # changed since `submit`: the record in hand is stale
                changed.clear()
                self.sweep_soon()
                command, known = known or self._latest(command_id), None
                if command.state in TERMINAL_STATES or (until is not None and until(command)):
                    return command
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return command
                if changed.wait(min(remaining, RECHECK_SECONDS)) and on_change is not None:
                    on_change(self.wakeups.snapshot(command_id) or self.get(command_id))
        finally:
            self.wakeups.forget(command_id)

    def cancel(self, command_id: str, *, actor: str = "client", reason: str = "") -> Command:
        """Cancel a command: at once if it has not started, else ask its agent to end it."""
        with db.connection_context(), atomic_write():
            command = locked(Command.select().where(Command.id == command_id)).first()
            if command is None:
                raise errors.ToolError(f"no command {command_id}", code="unknown_command")
            if command.state in (QUEUED, LEASED):
                transition(
                    command, CANCELLED, actor, reason or "cancelled before it started",
                    finished_at=now(), error_code="cancelled", error_message="cancelled before it started; it never ran",
                )
                command.save()
            elif command.state == RUNNING and command.cancel_requested_at is None:
                command.cancel_requested_at = now()
                command.save()
                log_event(command.id, RUNNING, RUNNING, actor, "cancel requested: " + reason)
        self.wakeups.signal(command_id)
        return command

    # --- the agent's side ---------------------------------------------------------------------

    def progress(self, machine: str, command_id: str, chunks: list[dict], idle: dict | None = None) -> dict:
        """Store streamed output chunks (idempotent by offset), note a heartbeat, report cancellation.
        `idle` ({"stdin": bytes written, "closed": bool}) says an interactive command has been quiet
        since it was given that much input, its output all sent (web/relay/stdin.py).

        Returns {"received": {stream: next offset expected}, "cancel": bool, "state": state}.
        """
        t = now()
        every = min(HEARTBEAT_WRITE_SECONDS, self.config.lost_after_seconds / 4)
        stored = False
        with db.connection_context():
            command = owned(machine, command_id)
            due = command.state == RUNNING and t - (command.heartbeat_at or 0.0) >= every
            if chunks or due or idle:  # a heartbeat alone writes only every few seconds
                with atomic_write():
                    command = owned(machine, command_id)
                    stored = self.output.append(command, chunks) if chunks else False
                    if idle and command.state == RUNNING:
                        command.output = stdin.with_idle(command.output, idle)
                        stored = True
                    if command.state == RUNNING and t - (command.heartbeat_at or 0.0) >= every:
                        command.heartbeat_at = t
                        due = True
                    if stored or due:
                        command.save()
        if stored:
            self.wakeups.signal(command_id, command)
        received = {s: (command.output or {}).get(s, {}).get("received", 0) for s in STREAMS}
        cancel = command.cancel_requested_at is not None or command.state in (CANCELLED, EXPIRED)
        return {"received": received, "cancel": cancel, "state": command.state}

    def complete(self, machine: str, command_id: str, state: str, result: dict | None, *, exit_code: int | None = None, error_code: str | None = None, error_message: str | None = None, chunks: list | None = None) -> tuple[Command, bool]:
        """Record a command's outcome, and the output `chunks` that come with it, in one transaction.
        Idempotent: a repeat is acknowledged and not applied again.

        Returns the command and whether this call changed it. A result for a `lost` command replaces
        the unknown outcome with the real one.
        """
        if state not in AGENT_FINAL_STATES:
            raise errors.BadRequest(f"status must be one of {sorted(AGENT_FINAL_STATES)}, got {state!r}", code="invalid_status")
        outcome = {"result": result, "exit_code": exit_code, "error_code": error_code, "error_message": error_message}
        with db.connection_context():
            # PostgreSQL: one read, then one statement that writes the outcome, its output and its log
            # row only if the command is still as it was read; two round trips instead of six (BEGIN,
            # read, three writes, COMMIT). If another process changed it in between, the transaction decides.
            finished = self._finish_in_one(machine, command_id, state, outcome, chunks) if sql.writes_in_with(Command) else None
            if finished is None:
                with atomic_write():
                    finished = self._finish(machine, command_id, state, outcome, chunks)
        command, changed = finished
        if not changed:
            return command, False
        if chunks:
            self.output.remember(command, chunks)
        self.wakeups.signal(command_id, command)
        return command, True

    def _finish(self, machine: str, command_id: str, state: str, outcome: dict, chunks: list | None) -> tuple[Command, bool]:
        command = owned(machine, command_id)
        if not _may_finish(command):
            return command, False
        if chunks:
            self.output.append(command, chunks)
        transition(command, state, "agent", _finish_detail(command), **outcome, finished_at=now())
        sql.update(command)
        return command, True

    def _finish_in_one(self, machine: str, command_id: str, state: str, outcome: dict, chunks: list | None) -> tuple[Command, bool] | None:
        command = owned(machine, command_id)
        if not _may_finish(command):
            return command, False
        as_read = (command.state, Command.output.db_value(command.output))
        rows: list = self.output.new_rows(command, chunks) if chunks else []
        rows.append(event(command_id, command.state, state, "agent", _finish_detail(command)))
        command.state = state
        for name, value in {**outcome, "finished_at": now()}.items():
            setattr(command, name, value)
        if sql.update_then_insert(command, "state = ? AND output IS NOT DISTINCT FROM ?", as_read, rows):
            return command, True
        return None

    # --- reading ------------------------------------------------------------------------------

    def get(self, command_id: str) -> Command:
        with db.connection_context():
            command = sql.get(Command, command_id)
        if command is None:
            raise Command.DoesNotExist(f"no command {command_id}")
        return command

    def pending_for_request(self, session_id: str, request_id: str) -> Command | None:
        """The unfinished command a session's JSON-RPC request waits on, if any."""
        with db.connection_context():
            query = Command.select().where(
                (Command.session_id == session_id) & (Command.request_id == request_id) & Command.state.in_(PENDING_STATES)
            )
            return query.first()

    def find(self, command_id: str) -> Command | None:
        with db.connection_context():
            return Command.get_or_none(Command.id == command_id)

    def events(self, command_id: str) -> list[CommandEvent]:
        with db.connection_context():
            return list(CommandEvent.select().where(CommandEvent.command_id == command_id).order_by(CommandEvent.id))

    def commands(self, *, machine: str | None = None, states: Iterable[str] | None = None, limit: int = 50) -> list[Command]:
        self.sweep_soon()
        with db.connection_context():
            query = Command.select().order_by(Command.created_at.desc()).limit(limit)
            if machine:
                query = query.where(Command.machine == machine)
            if states:
                query = query.where(Command.state.in_(list(states)))
            return list(query)

    # --- helpers ------------------------------------------------------------------------------

    def _latest(self, command_id: str) -> Command:
        """The command's latest record: the one handed over by `Wakeups.signal` when it is final (a final
        state never changes again, but for `lost`), else read from the database, which also sees
        changes made by other server processes."""
        command = self.wakeups.snapshot(command_id)
        if command is not None and command.state in TERMINAL_STATES and command.state != LOST:
            return command
        return self.get(command_id)
