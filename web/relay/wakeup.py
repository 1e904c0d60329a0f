"""In-process wake-ups between the relay's waiters and the requests that change what they wait on.

Per command, an Event set when its output or outcome changes, carrying the record just committed so
the waiter need not read it back; per machine, a Condition and a generation counter, bumped when a
command is queued for it or it registers again. These are `threading` primitives, which gevent makes
cooperative. A second server process does not see them: the relay's waits also re-read the database
at least once a second.
"""

from __future__ import annotations

import collections
import threading

from web.models import Command

# How often a waiter re-reads the database, for changes made by another server process.
RECHECK_SECONDS = 1.0
# Beyond this many commands waited on, the table is started afresh (a waiter then re-reads).
MAX_COMMANDS = 10000


class Wakeups:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._command_changed: dict[str, threading.Event] = {}
        # command id -> its record as last committed by this process, for the waiters it wakes
        self._snapshots: dict[str, Command] = {}
        self._machine_changed: dict[str, threading.Condition] = {}
        self._generations: collections.Counter[str] = collections.Counter()

    def changed(self, command_id: str) -> threading.Event:
        """The command's Event; clear it before reading the command, then wait on it."""
        with self._lock:
            event = self._command_changed.get(command_id)
            if event is None:
                if len(self._command_changed) > MAX_COMMANDS:
                    self._command_changed.clear()
                    self._snapshots.clear()
                event = self._command_changed[command_id] = threading.Event()
            return event

    def signal(self, command_id: str, command: Command | None = None) -> None:
        """Wake the command's waiters; `command`, just committed, spares them re-reading it."""
        with self._lock:
            event = self._command_changed.get(command_id)
        if event is not None:
            if command is not None:
                self._snapshots[command_id] = command
            event.set()

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
        condition = self.condition(machine)
        with condition:
            self._generations[machine] += 1
            condition.notify_all()
