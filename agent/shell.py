"""Run a shell command the way a user expects, and bound everything about it.

The command runs in the user's shell with stdin closed, in a process group of its own, so that at the
timeout the whole group (the shell and everything it started) is killed: SIGTERM, then SIGKILL after a
grace period. Output is read from both pipes without threads; past the cap it is counted and dropped,
and the result says how much was dropped. A child that outlives the shell while holding the pipes
open (a daemon) does not hold the result back for more than a moment.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from typing import Any

from agent.errors import OperationError

DRAIN_AFTER_EXIT_SECONDS = 0.5
READ_CHUNK = 65536


def _decode(data: bytes) -> str:
    # Bytes that are not UTF-8 survive as \xNN escapes rather than vanishing or breaking the JSON.
    return data.decode("utf-8", errors="backslashreplace")


class _Capture:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]
        self.dropped += max(0, len(data) - max(room, 0))

    def text(self) -> str:
        text = _decode(bytes(self.kept))
        if self.dropped:
            text += f"\n[… output truncated: {self.dropped} more bytes not shown (limit {self.limit} bytes) …]"
        return text


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(command: str, *, shell: str, cwd: str, timeout_seconds: float, max_output_bytes: int, kill_grace_seconds: float = 2.0) -> dict[str, Any]:
    """Run `command`; return stdout, stderr, exit code, whether it timed out and how long it took."""
    if not os.path.isdir(cwd):
        raise OperationError("working_dir_not_found", f"working directory does not exist: {cwd}")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [shell, "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as error:
        raise OperationError("spawn_failed", f"could not start {shell}: {error.strerror}") from None
    pgid = proc.pid  # start_new_session makes the shell the leader of a new group
    captures = {proc.stdout.fileno(): _Capture(max_output_bytes), proc.stderr.fileno(): _Capture(max_output_bytes)}
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    selector = selectors.DefaultSelector()
    for fd in captures:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    deadline = started + timeout_seconds
    timed_out = False
    term_sent_at: float | None = None
    exited_at: float | None = None
    try:
        while selector.get_map():
            t = time.monotonic()
            if proc.poll() is not None and exited_at is None:
                exited_at = t
            if exited_at is not None and t - exited_at > DRAIN_AFTER_EXIT_SECONDS:
                # The shell is gone but something it started still holds the pipes: stop waiting.
                _kill_group(pgid, signal.SIGKILL)
                break
            if exited_at is None and t >= deadline and term_sent_at is None:
                timed_out = True
                term_sent_at = t
                _kill_group(pgid, signal.SIGTERM)
            if term_sent_at is not None and t - term_sent_at >= kill_grace_seconds:
                _kill_group(pgid, signal.SIGKILL)
            wait = 0.1 if (exited_at or term_sent_at) else max(0.0, min(deadline - t, 1.0))
            for key, _ in selector.select(timeout=wait):
                try:
                    data = os.read(key.fd, READ_CHUNK)
                except BlockingIOError:
                    continue
                if data:
                    captures[key.fd].add(data)
                else:
                    selector.unregister(key.fd)
        try:
            returncode = proc.wait(timeout=max(0.0, deadline - time.monotonic()) if not timed_out else kill_grace_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(pgid, signal.SIGTERM)
            try:
                returncode = proc.wait(timeout=kill_grace_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(pgid, signal.SIGKILL)
                returncode = proc.wait()
        if timed_out:
            _kill_group(pgid, signal.SIGKILL)  # anything the group left behind
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
        if proc.poll() is None:
            _kill_group(pgid, signal.SIGKILL)
            proc.wait()
    result: dict[str, Any] = {
        "stdout": captures[out_fd].text(),
        "stderr": captures[err_fd].text(),
        "exit_code": returncode if returncode >= 0 else 128 - returncode,
        "timed_out": timed_out,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "stdout_bytes": len(captures[out_fd].kept) + captures[out_fd].dropped,
        "stderr_bytes": len(captures[err_fd].kept) + captures[err_fd].dropped,
    }
    if returncode < 0:
        result["signal"] = signal.Signals(-returncode).name
    return result
