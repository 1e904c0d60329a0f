"""Processes that escaped a command: found by a cookie in their environment, then ended or listed.

A command runs in a process group of its own, and its timeout or cancellation ends that group. But a
process can leave the group: `setsid sleep 300 &`, `nohup … &` (it stays in the group, yet outlives a
shell that exits normally), a double fork, or a `set -m` job, which gets a group of its own. Such a
process outlived its command, its timeout and its cancellation, and nothing reported it.

Every command's shell gets `CODE_REMOTE_COMMAND_COOKIE=<random>` in its environment, and every
process it starts inherits it (an environment is copied at fork and kept through exec, unless a
program clears it on purpose), as Jenkins' process tree killer does. When the command ends, times out
or is cancelled, the processes carrying its cookie are found (`/proc/<pid>/environ` on Linux; `ps`
showing environments on macOS) and ended: SIGTERM, then SIGKILL after the grace period, in rounds
until none is left (a process may fork while being ended). Where the call asked to keep them
(`keep_background`), they are only listed. Either way the result names them by pid and name. The
cookie is also kept in the command's running record, so that an agent restarted after being killed
mid-command ends what escaped it too (agent/reaper.py).

A process id can be reused: before each signal the process is checked to still carry the cookie, and
on Linux the signal goes through a pidfd opened before that check, so it cannot reach a newcomer.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time

log = logging.getLogger(__name__)

COOKIE_VARIABLE = "CODE_REMOTE_COMMAND_COOKIE"
MAX_ROUNDS = 5
# A process whose environment reads empty (in its exec) is looked at again this often, this far apart.
UNSURE_LOOKS = 10
UNSURE_PAUSE_SECONDS = 0.005
PF_KTHREAD = 0x00200000  # /proc/<pid>/stat flags: a kernel thread, which has no environment
QUICK_SECONDS = 5.0


def new_cookie() -> str:
    return secrets.token_hex(16)


def marked(cookie: str, after_pid: int | None = None) -> list[dict[str, object]]:
    """The live processes carrying `cookie`, as [{"pid", "name"}], oldest pid first; zombies left out.

    `after_pid`: the command's shell, when only processes created after it can carry the cookie and
    process ids have not wrapped around since (see `recent`); only higher ids are then looked at."""
    if os.path.isdir("/proc/self"):
        return _marked_proc(cookie, after_pid if after_pid is not None and _no_wrap_since(after_pid) else 0)
    if sys.platform == "darwin":
        return _marked_ps(cookie)
    return []  # no way to look here: nothing is claimed


def _entry(cookie: str) -> bytes:
    return f"{COOKIE_VARIABLE}={cookie}".encode()


def _carries(pid: int, cookie: str) -> bool | None:
    """Whether the process carries the cookie; None when it cannot be told yet: a live process whose
    environment reads empty is most likely in the middle of an exec (its new environment is not in
    place yet; 9 reads in 9 000 of processes just started by `setsid cmd &`), and is looked at again."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environment = handle.read()
    except OSError:  # gone, or another user's: not ours to end
        return False
    if environment:
        return _entry(cookie) in environment.split(b"\0")
    return None if _live_user_process(pid) else False  # a zombie, or a kernel thread: no environment


def _live_user_process(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] not in (b"Z", b"X") and not int(fields[6]) & PF_KTHREAD


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return "?"


def _no_wrap_since(pid: int) -> bool:
    """Whether every process created since `pid` has a higher id: Linux hands ids out in increasing
    order until pid_max, then starts again low. The last id handed out being at least `pid` says no
    wrap happened (a quick command, see `recent`, cannot see a whole cycle of ids go by)."""
    try:
        with open("/proc/sys/kernel/ns_last_pid", encoding="ascii") as handle:
            return int(handle.read()) >= pid
    except (OSError, ValueError):
        return False


def _marked_proc(cookie: str, after_pid: int = 0) -> list[dict[str, object]]:
    # Reading another process's environment costs the kernel a look into its memory: reading every
    # process's on each command made a quick command several times slower than the command itself.
    me = os.getpid()
    found, unsure = [], []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) > after_pid and int(entry) != me:
            carries = _carries(int(entry), cookie)
            if carries:
                found.append({"pid": int(entry), "name": _name(int(entry))})
            elif carries is None:
                unsure.append(int(entry))
    # A process caught in its exec (a `setsid sleep 300 &` just started) would otherwise be missed, and
    # outlive its command: it is looked at again until its environment is there.
    for _ in range(UNSURE_LOOKS):
        if not unsure:
            break
        time.sleep(UNSURE_PAUSE_SECONDS)
        again = []
        for pid in unsure:
            carries = _carries(pid, cookie)
            if carries:
                found.append({"pid": pid, "name": _name(pid)})
            elif carries is None:
                again.append(pid)
        unsure = again
    return sorted(found, key=lambda p: p["pid"])


def _marked_ps(cookie: str) -> list[dict[str, object]]:
    """macOS: `ps -E` appends each of our own processes' environment to its command line."""
    try:
        listing = subprocess.run(
            ["ps", "-axwwE", "-o", "pid=,stat=,comm=,command="], capture_output=True, text=True, errors="replace", timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    needle = f"{COOKIE_VARIABLE}={cookie}"
    for line in listing.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and needle in fields[3].split() and not fields[1].startswith("Z") and int(fields[0]) != os.getpid():
            found.append({"pid": int(fields[0]), "name": os.path.basename(fields[2])})
    return sorted(found, key=lambda p: p["pid"])


def _signal(pid: int, cookie: str, sig: int) -> None:
    """Send `sig` to `pid` if it still carries `cookie` (through a pidfd where there is one)."""
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pass
    try:
        if sys.platform == "darwin" or _carries(pid, cookie):
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, sig)
            else:
                os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if pidfd is not None:
            os.close(pidfd)


def recent(shell_pid: int, ran_seconds: float) -> int | None:
    """`after_pid` for a command whose shell was `shell_pid` and that ran `ran_seconds`: the shell's
    id when the command was quick (under QUICK_SECONDS, far too short to go through every process id),
    else None (look at every process)."""
    return shell_pid if ran_seconds < QUICK_SECONDS else None


def end(cookie: str, grace_seconds: float, after_pid: int | None = None) -> list[dict[str, object]]:
    """End every process carrying `cookie`: SIGTERM, then SIGKILL after `grace_seconds`, in rounds.
    Returns those found, as [{"pid", "name"}]."""
    ended: dict[int, dict[str, object]] = {}
    for _ in range(MAX_ROUNDS):
        found = marked(cookie, after_pid)
        if not found:
            break
        for process in found:
            ended.setdefault(int(process["pid"]), process)
            _signal(int(process["pid"]), cookie, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and marked(cookie, after_pid):
            time.sleep(0.02)
        for process in marked(cookie, after_pid):
            ended.setdefault(int(process["pid"]), process)
            _signal(int(process["pid"]), cookie, signal.SIGKILL)
    else:
        left = marked(cookie, after_pid)
        if left:
            log.warning("%d process(es) of a command survived %d rounds of SIGKILL", len(left), MAX_ROUNDS)
    return sorted(ended.values(), key=lambda p: p["pid"])
