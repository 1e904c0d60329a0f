"""End the process groups a previous run of the agent left behind.

Each command runs in a process group of its own, recorded on disk (agent/outbox.py) with its leader's
start time. An agent that was killed leaves those groups running with no one to read their output or
report their end; on restart they are ended (SIGTERM, then SIGKILL after the grace period) and their
commands are reported lost by the server, since their outcome is unknown.

Process ids are reused, so a group is ended only if it is still ours: its leader is alive with the
recorded start time, or the leader is gone and members remain (Linux does not hand out a process id
while a group still uses it as its id, so those members are the leader's).
"""

from __future__ import annotations

import logging
import os
import signal
import time

from agent import escapes
from agent.outbox import StateDir

log = logging.getLogger(__name__)


def start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _members(pgid: int) -> list[tuple[int, int | None]]:
    """(pid, start ticks) of the live processes in group `pgid`, zombies left out."""
    found = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append((pid, int(fields[19])))
    return found


def ours(pgid: int, recorded_ticks: int | None) -> bool:
    members = dict(_members(pgid))
    if not members:
        return False
    if pgid in members and recorded_ticks is not None:
        return members[pgid] == recorded_ticks  # the leader itself: the very process we started?
    return True


def end_group(pgid: int, grace_seconds: float) -> None:
    """SIGTERM the group, then SIGKILL what is left after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and _members(pgid):
            time.sleep(0.05)
        if not _members(pgid):
            return


def reap(state: StateDir, grace_seconds: float) -> list[str]:
    """End every recorded group that is still ours, and every process carrying a recorded command's
    cookie (agent/escapes.py: those that left the group); return the ids of the commands they ran."""
    reaped = []
    for record in state.running():
        pgid, command_id, cookie = record.get("pgid"), record.get("id"), record.get("cookie")
        ended = False
        if isinstance(pgid, int) and pgid > 1 and ours(pgid, record.get("start_ticks")):
            log.warning("ending process group %d left running by a previous agent (command %s)", pgid, str(command_id)[:8])
            end_group(pgid, grace_seconds)
            ended = True
        if isinstance(cookie, str) and cookie:
            # A random cookie names only this command's processes: no process id reuse to fear.
            escaped = escapes.end(cookie, grace_seconds)
            if escaped:
                log.warning(
                    "ended %d process(es) that command %s of a previous agent left running: %s",
                    len(escaped), str(command_id)[:8], ", ".join(f"{p['pid']} ({p['name']})" for p in escaped[:10]),
                )
                ended = True
        if ended:
            reaped.append(command_id)
        state.finished_running(command_id)
    return reaped
