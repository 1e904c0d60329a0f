"""Wake-ups between the relay's waiters and the requests that change what they wait on, in this
process and, through the bus (web/bus.py), in every other server process.

Per command, an Event set when its output or outcome changes, carrying the record just committed so
a waiter in this process need not read it back; per machine, a Condition and a generation counter,
bumped when a command is queued for it or it registers again. These are `threading` primitives,
which gevent makes cooperative.

Each change is acted on here at once and published for the other processes, whose bus listener
wakes their waiters the same way (without a record: they read it from the database). When the bus
may have missed messages (its connection was lost) it delivers `resync`, which wakes every waiter
to re-read. Waits still re-read the database at least every RECHECK_SECONDS as a safety net.
"""

from __future__ import annotations

import collections
import threading

from web.bus import Bus, Signals
from web.models import Command

# How often a waiter re-reads the database, whatever it was told.
RECHECK_SECONDS = 1.0
# Beyond this many commands waited on, the table is started afresh (a waiter then re-reads).
MAX_COMMANDS = 10000


class Wakeups:
    def __init__(self, bus: Bus | None = None) -> None:
        self.bus = bus or Bus()
        self._lock = threading.Lock()
        self._command_changed = Signals()
        # command id -> its record as last committed by this process, for the waiters it wakes
        self._snapshots: dict[str, Command] = {}
        self._machine_changed: dict[str, threading.Condition] = {}
        self._generations: collections.Counter[str] = collections.Counter()
        self.bus.subscribe("command", self._wake_command)
        self.bus.subscribe("machine", self.wake_machine_locally)
        self.bus.subscribe("resync", lambda _: self.wake_all())

    def changed(self, command_id: str) -> threading.Event:
        """The command's Event; clear it before reading the command, then wait on it."""
        if len(self._command_changed) > MAX_COMMANDS and not self._command_changed.waiting(command_id):
            self._command_changed.clear()
            self._snapshots.clear()
        return self._command_changed.event(command_id)

    def signal(self, command_id: str, command: Command | None = None) -> None:
        """Wake the command's waiters here and in every other process; `command`, just committed,
        spares this process's waiters re-reading it."""
        self._wake_command(command_id, command)
        self.bus.publish("command", command_id)

    def snapshot(self, command_id: str) -> Command | None:
        return self._snapshots.get(command_id)

    def forget(self, command_id: str) -> None:
        """Drop the command's snapshot (a result may be large: keep none past its waiter)."""
        self._snapshots.pop(command_id, None)

    def condition(self, machine: str) -> threading.Condition:
        with self._lock:
            condition = self._machine_changed.get(machine)
            if condition is None:
                condition = self._machine_changed[machine] = threading.Condition()
            return condition

    def generation(self, machine: str) -> int:
        """How many times the machine was woken; read it under its condition."""
        return self._generations[machine]

    def wake_machine(self, machine: str) -> None:
        """Wake the machine's held polls here and in every other process."""
        self.wake_machine_locally(machine)
        self.bus.publish("machine", machine)

    def wake_all(self) -> None:
        """Wake every waiter in this process, to re-read the database."""
        self._command_changed.set_all()
        with self._lock:
            machines = list(self._machine_changed)
        for machine in machines:
            self.wake_machine_locally(machine)

    def _wake_command(self, command_id: str, command: Command | None = None) -> None:
        if command is not None and self._command_changed.waiting(command_id):
            self._snapshots[command_id] = command
        self._command_changed.set(command_id)

    def wake_machine_locally(self, machine: str) -> None:
        condition = self.condition(machine)
        with condition:
            self._generations[machine] += 1
            condition.notify_all()
