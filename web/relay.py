"""The relay: the durable queue between MCP tool calls and the agents that run them.

A command moves through states stored in the database, the server being their only writer:

    queued --claim--> leased --start--> running --complete--> succeeded | failed | timed_out
       |                 |
       +-----------------+--(nobody started it before the caller gave up)--> expired

A poll *leases* commands; it does not deliver them. A command counts as delivered only when the agent
confirms it with `start`, quoting its lease number. A lease that is never confirmed (the poll's socket
was already dead, the agent crashed) runs out and the command is leased again; a started command is
never handed out again, so it runs at most once.

Wake-ups are in-process (`threading` primitives, which gevent makes cooperative): a submit wakes the
machine's poll and a completion wakes the tool call waiting on it. Every wait also re-reads the database
at least once a second, so a second server process still sees the change, only later.

No Flask in here: the HTTP surfaces call these methods.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Iterable

from web import errors
from web.config import Config
from web.models import (
    FAILED,
    LEASED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
    TIMED_OUT,
    EXPIRED,
    Command,
    Machine,
    atomic_write,
    db,
    now,
)

log = logging.getLogger(__name__)

# How often a waiter re-reads the database, for changes made by another server process.
RECHECK_SECONDS = 1.0
# A machine's last_seen_at is written at most this often while it keeps polling.
LAST_SEEN_WRITE_SECONDS = 10.0
AGENT_FINAL_STATES = frozenset({SUCCEEDED, FAILED, TIMED_OUT})


class Relay:
    """Submit, claim, start, complete and wait on commands; track which machines are online."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._machine_changed: dict[str, threading.Condition] = {}
        self._machine_generation: collections.Counter[str] = collections.Counter()
        self._command_done: dict[str, threading.Event] = {}
        self._polls: collections.Counter[str] = collections.Counter()
        self._seen_at: dict[str, float] = {}
        self._seen_written_at: dict[str, float] = {}

    # --- machines -----------------------------------------------------------------------------

    def register(self, name: str, *, hostname: str, os_name: str, version: str, roots: list[str]) -> Machine:
        """Create or refresh a machine's record when its agent (re)registers."""
        with db.connection_context(), atomic_write():
            machine = Machine.get_or_none(Machine.name == name)
            if machine is None:
                machine = Machine(name=name)
            machine.hostname, machine.os, machine.agent_version = hostname, os_name, version
            machine.roots = roots
            machine.last_seen_at = now()
            machine.save()
        self._touch(name, force=True)
        return machine

    def machine(self, name: str) -> Machine | None:
        with db.connection_context():
            return Machine.get_or_none(Machine.name == name)

    def revoke(self, name: str) -> Machine:
        """Invalidate every token issued to `name` so far: its agent must enrol again."""
        with db.connection_context(), atomic_write():
            machine = Machine.get_or_none(Machine.name == name)
            if machine is None:
                raise errors.NotFound(f"no machine named {name!r}", code="unknown_machine")
            machine.token_generation += 1
            machine.save()
        return machine

    def machines(self) -> list[Machine]:
        with db.connection_context():
            return list(Machine.select().order_by(Machine.name))

    def is_online(self, machine: Machine) -> bool:
        if self._polls[machine.name] > 0:
            return True
        last = max(self._seen_at.get(machine.name, 0.0), machine.last_seen_at or 0.0)
        return now() - last < self.config.offline_after_seconds

    def last_seen_at(self, machine: Machine) -> float:
        return max(self._seen_at.get(machine.name, 0.0), machine.last_seen_at or 0.0)

    def status(self) -> list[dict]:
        """Every known machine, online or not, as JSON-ready dicts."""
        t = now()
        return [
            {
                "name": m.name,
                "online": self.is_online(m),
                "last_seen_seconds_ago": round(t - self.last_seen_at(m), 1),
                "hostname": m.hostname,
                "os": m.os,
                "agent_version": m.agent_version,
                "allowed_roots": m.roots,
            }
            for m in self.machines()
        ]

    def _touch(self, name: str, *, force: bool = False) -> None:
        t = now()
        self._seen_at[name] = t
        if force or t - self._seen_written_at.get(name, 0.0) >= LAST_SEEN_WRITE_SECONDS:
            self._seen_written_at[name] = t
            with db.connection_context():
                Machine.update(last_seen_at=t).where(Machine.name == name).execute()

    # --- the caller's side --------------------------------------------------------------------

    def submit(self, machine: str, tool: str, arguments: dict, *, timeout_seconds: float, session_id: str = "") -> Command:
        """Queue a command for `machine` and wake its poll."""
        command_id = uuid.uuid4().hex
        with self._lock:
            self._command_done[command_id] = threading.Event()
        with db.connection_context():
            command = Command.create(
                id=command_id,
                machine=machine,
                tool=tool,
                arguments=arguments,
                state=QUEUED,
                timeout_seconds=timeout_seconds,
                session_id=session_id,
            )
        self._wake_machine(machine)
        return command

    def wait(self, command_id: str, timeout_seconds: float) -> Command:
        """Wait until the command is terminal or the time is up; return its latest record.

        A command still queued or leased when the time is up never started and never will: it
        becomes `expired`. A running one is left running: its outcome is unknown to the caller.
        """
        deadline = time.monotonic() + timeout_seconds
        with self._lock:
            done = self._command_done.setdefault(command_id, threading.Event())
        try:
            while True:
                command = self._get(command_id)
                if command.state in TERMINAL_STATES:
                    return command
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._expire_if_unstarted(command_id)
                done.wait(min(remaining, RECHECK_SECONDS))
        finally:
            with self._lock:
                self._command_done.pop(command_id, None)

    def _expire_if_unstarted(self, command_id: str) -> Command:
        with db.connection_context(), atomic_write():
            command = Command.get_by_id(command_id)
            if command.state in (QUEUED, LEASED):
                command.state = EXPIRED
                command.finished_at = now()
                command.error_code = "not_started"
                command.error_message = "the agent did not start the command before the deadline"
                command.save()
        return command

    # --- the agent's side ---------------------------------------------------------------------

    def poll(self, machine: str, wait_seconds: float, limit: int = 16) -> list[Command]:
        """Lease the machine's queued commands, waiting up to `wait_seconds` for one to arrive."""
        deadline = time.monotonic() + wait_seconds
        condition = self._condition(machine)
        self._polls[machine] += 1
        self._touch(machine)
        try:
            while True:
                with condition:
                    generation = self._machine_generation[machine]
                leased = self.claim(machine, limit)
                remaining = deadline - time.monotonic()
                if leased or remaining <= 0:
                    return leased
                with condition:
                    if self._machine_generation[machine] == generation:
                        condition.wait(min(remaining, RECHECK_SECONDS))
        finally:
            self._polls[machine] -= 1
            self._touch(machine)

    def claim(self, machine: str, limit: int = 16) -> list[Command]:
        """Lease up to `limit` commands: queued ones, and leased ones whose lease ran out unconfirmed."""
        t = now()
        with db.connection_context(), atomic_write():
            ready = (Command.state == QUEUED) | ((Command.state == LEASED) & (Command.lease_expires_at < t))
            commands = list(
                Command.select()
                .where((Command.machine == machine) & ready)
                .order_by(Command.created_at)
                .limit(limit)
            )
            for command in commands:
                command.state = LEASED
                command.leased_at = t
                command.lease_expires_at = t + self.config.lease_seconds
                command.lease_count += 1
                command.save()
        return commands

    def start(self, machine: str, command_id: str, lease: int) -> Command:
        """The agent confirms it is about to run the command under lease number `lease`."""
        with db.connection_context(), atomic_write():
            command = self._owned(machine, command_id)
            if command.state == RUNNING and command.lease_count == lease:
                return command  # a repeated confirmation of the same lease
            if command.state != LEASED or command.lease_count != lease:
                raise errors.Conflict(
                    f"command {command_id} is {command.state} under lease {command.lease_count}, "
                    f"not leased to you under lease {lease}: do not run it",
                    code="lease_lost",
                )
            command.state = RUNNING
            command.started_at = now()
            command.save()
        return command

    def complete(self, machine: str, command_id: str, state: str, result: dict | None, *, exit_code: int | None = None, error_code: str | None = None, error_message: str | None = None) -> tuple[Command, bool]:
        """Record a command's outcome. Idempotent: a repeat is acknowledged and not applied again.

        Returns the command and whether this call changed it.
        """
        if state not in AGENT_FINAL_STATES:
            raise errors.BadRequest(
                f"status must be one of {sorted(AGENT_FINAL_STATES)}, got {state!r}", code="invalid_status"
            )
        with db.connection_context(), atomic_write():
            command = self._owned(machine, command_id)
            if command.state in TERMINAL_STATES:
                return command, False
            if command.state != RUNNING:
                raise errors.Conflict(
                    f"command {command_id} is {command.state}: confirm it with start before posting a result",
                    code="not_started",
                )
            command.state = state
            command.result = result
            command.exit_code = exit_code
            command.error_code = error_code
            command.error_message = error_message
            command.finished_at = now()
            command.save()
        with self._lock:
            done = self._command_done.get(command_id)
        if done is not None:
            done.set()
        return command, True

    # --- helpers ------------------------------------------------------------------------------

    def _owned(self, machine: str, command_id: str) -> Command:
        command = Command.get_or_none(Command.id == command_id)
        if command is None or command.machine != machine:
            # Another machine's command looks exactly like a missing one.
            raise errors.NotFound(f"no command {command_id} for machine {machine!r}", code="unknown_command")
        return command

    def _get(self, command_id: str) -> Command:
        with db.connection_context():
            return Command.get_by_id(command_id)

    def _condition(self, machine: str) -> threading.Condition:
        with self._lock:
            condition = self._machine_changed.get(machine)
            if condition is None:
                condition = self._machine_changed[machine] = threading.Condition()
            return condition

    def _wake_machine(self, machine: str) -> None:
        condition = self._condition(machine)
        with condition:
            self._machine_generation[machine] += 1
            condition.notify_all()

    def commands(self, *, machine: str | None = None, states: Iterable[str] | None = None, limit: int = 50) -> list[Command]:
        with db.connection_context():
            query = Command.select().order_by(Command.created_at.desc()).limit(limit)
            if machine:
                query = query.where(Command.machine == machine)
            if states:
                query = query.where(Command.state.in_(list(states)))
            return list(query)
