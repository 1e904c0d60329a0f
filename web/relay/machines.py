"""Which machines exist and which are online: kept by the agents' registrations and polls.

A machine is online while one of its polls is held, or for `offline_after_seconds` after its last one.
`last_seen_at` is written to the database at most every LAST_SEEN_WRITE_SECONDS while it keeps polling.

Every agent request checks its token's generation against the machine's. That check is answered from
memory: a registration or revocation in this process updates it at once, and a generation read from
the database is trusted for GENERATION_READ_SECONDS, so a revocation made by another server process
takes effect there within that time (it was one SELECT per agent request).
"""

from __future__ import annotations

import collections
import time

from web import errors
from web.config import Config
from web.models import Machine, atomic_write, db, now

LAST_SEEN_WRITE_SECONDS = 10.0
GENERATION_READ_SECONDS = 1.0


class Machines:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._polls: collections.Counter[str] = collections.Counter()
        self._seen_at: dict[str, float] = {}
        self._seen_written_at: dict[str, float] = {}
        # name -> (token generation or None for no such machine, monotonic time it was read)
        self._generations: dict[str, tuple[int | None, float]] = {}
        # Every tool call picks a machine: the list is read at most every GENERATION_READ_SECONDS
        # (and at once after a change here); online-ness comes from memory anyway.
        self._listed: tuple[list[Machine], float] | None = None

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
        self._generations[name] = (machine.token_generation, time.monotonic())
        self._listed = None
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
        self._generations[name] = (machine.token_generation, time.monotonic())
        self._listed = None
        return machine

    def token_generation(self, name: str) -> int | None:
        """The machine's current token generation (None: no such machine), from memory when fresh."""
        cached = self._generations.get(name)
        if cached is not None and time.monotonic() - cached[1] < GENERATION_READ_SECONDS:
            return cached[0]
        with db.connection_context():
            row = Machine.select(Machine.token_generation).where(Machine.name == name).first()
        generation = None if row is None else row.token_generation
        if len(self._generations) > 10000:
            self._generations.clear()
        self._generations[name] = (generation, time.monotonic())
        return generation

    def machines(self) -> list[Machine]:
        listed = self._listed
        if listed is not None and time.monotonic() - listed[1] < GENERATION_READ_SECONDS:
            return list(listed[0])
        with db.connection_context():
            machines = list(Machine.select().order_by(Machine.name))
        self._listed = (machines, time.monotonic())
        return list(machines)

    def held_polls(self) -> int:
        """How many agent polls this process is holding open right now."""
        return sum(list(self._polls.values()))

    def is_online(self, machine: Machine) -> bool:
        if self._polls[machine.name] > 0:
            return True
        return now() - self.last_seen_at(machine) < self.config.offline_after_seconds

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
