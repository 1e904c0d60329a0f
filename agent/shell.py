"""Run a shell command the way a user expects, and bound everything about it.

The command runs in the user's shell with stdin closed (or, given an `Interaction`, a pipe that
agent/interactive.py feeds), in a process group of its own, so that at the
timeout the whole group (the shell and everything it started) is killed: SIGTERM, then SIGKILL after a
grace period; a `cancel` event ends the group the same way. Output is read from both pipes without
threads; past the cap it is counted and dropped, and the result says how much was dropped. With a
`spool`, each stream goes to it as it arrives (for the agent to stream to the server) and the result
carries byte counts instead of text. A child that outlives the shell while holding the
pipes open (a daemon) does not hold the result back for more than a moment. Deadlines use the
monotonic clock, so a change of the wall clock cannot fire them early or late.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from agent import escapes
from agent.errors import OperationError
from agent.masking import Secrets, StreamMasker

DRAIN_AFTER_EXIT_SECONDS = 0.5
READ_CHUNK = 65536
MAX_LISTED_PROCESSES = 50


def _decode(data: bytes) -> str:
    # Bytes that are not UTF-8 survive as \xNN escapes rather than vanishing or breaking the JSON.
    return data.decode("utf-8", errors="backslashreplace")


class _Masked:
    """Output passes through the stream's masker (agent/masking.py) before it is kept or counted."""

    masker: StreamMasker | None = None

    def add(self, data: bytes) -> None:
        self._keep(self.masker.feed(data) if self.masker is not None else data)

    def finish(self) -> None:
        if self.masker is not None:
            self._keep(self.masker.finish())

    @property
    def masked(self) -> int:
        return self.masker.count if self.masker is not None else 0


class _Capture(_Masked):
    def __init__(self, limit: int, masker: StreamMasker | None = None) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0
        self.masker = masker

    def _keep(self, data: bytes) -> None:
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]
        self.dropped += max(0, len(data) - max(room, 0))

    def text(self) -> str:
        text = _decode(bytes(self.kept))
        if self.dropped:
            text += f"\n[… output truncated: {self.dropped} more bytes not shown (limit {self.limit} bytes) …]"
        return text


class OutputSpool:
    """A command's output, one file per stream for a reader in another thread (the agent's streamer).

    It is held in memory until `spill()` (called before anyone reads the files) or until it outgrows
    `memory_bytes`; from then on it is appended to the files, flushed at once so a reader sees it. A
    quick command's output thus never touches the disk: creating, reading and removing a folder and
    two files cost more than the rest of the command's disk work. Used from one thread only."""

    def __init__(self, paths: dict[str, str], memory_bytes: int) -> None:
        self.paths, self.memory_bytes = paths, memory_bytes
        self.buffers: dict[str, bytearray] | None = {stream: bytearray() for stream in paths}
        self.files: dict[str, Any] = {}

    def write(self, stream: str, data: bytes) -> None:
        if self.buffers is not None:
            self.buffers[stream] += data
            if sum(len(held) for held in self.buffers.values()) > self.memory_bytes:
                self.spill()
            return
        self.files[stream].write(data)
        self.files[stream].flush()

    def spill(self) -> None:
        """Write what is held to the files and send all later output there."""
        if self.buffers is None:
            return
        os.makedirs(os.path.dirname(self.paths["stdout"]), mode=0o700, exist_ok=True)
        for stream, path in self.paths.items():
            self.files[stream] = open(path, "wb")
            self.files[stream].write(self.buffers[stream])
            self.files[stream].flush()
        self.buffers = None

    def held(self) -> dict[str, bytes] | None:
        """The whole output when it never left memory, else None (read the files)."""
        return None if self.buffers is None else {stream: bytes(data) for stream, data in self.buffers.items()}

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


class _Spool(_Masked):
    """A capture that sends what it keeps to an `OutputSpool` stream."""

    def __init__(self, limit: int, spool: OutputSpool, stream: str, masker: StreamMasker | None = None) -> None:
        self.limit, self.size, self.dropped = limit, 0, 0
        self.spool, self.stream = spool, stream
        self.masker = masker

    def _keep(self, data: bytes) -> None:
        keep = data[: max(self.limit - self.size, 0)]
        if keep:
            self.spool.write(self.stream, keep)
            self.size += len(keep)
        self.dropped += len(data) - len(keep)


def _exit_watch(pid: int) -> int | None:
    """A descriptor that becomes readable when process `pid` exits (Linux 5.3+), so the wait for a
    quick command's exit needs no polling; None elsewhere, where the exit is polled."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def signal_death(returncode: int) -> dict[str, Any] | None:
    """The signal that ended the command, by this machine's numbering (Linux and macOS differ), as
    {"number", "name"}; None when it exited. Either the shell itself was killed (a negative return
    code, e.g. `kill -SEGV $$`), or it exited 128+N, the status a shell gives a command that signal N
    killed (a program may exit with such a number on its own: `from_exit_status` says which)."""
    if returncode < 0:
        number, from_status = -returncode, False
    elif 128 < returncode <= 128 + 64:
        number, from_status = returncode - 128, True
    else:
        return None
    try:
        name = signal.Signals(number).name
    except ValueError:
        if from_status:
            return None  # no signal of that number here: a plain exit status
        name = f"SIG{number}"  # a real-time signal, say
    return {"number": number, "name": name, **({"from_exit_status": True} if from_status else {})}


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(
    command: str,
    *,
    shell: str,
    cwd: str,
    timeout_seconds: float,
    max_output_bytes: int,
    kill_grace_seconds: float = 2.0,
    spool: OutputSpool | None = None,
    cancel: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    secrets: Secrets | None = None,
    env: dict[str, str] | None = None,
    keep_background: bool = False,
    stdin: Any = None,
    cookie: str | None = None,
) -> dict[str, Any]:
    """Run `command`; return stdout, stderr, exit code, whether it timed out and how long it took.

    `spool` (an OutputSpool) takes the output instead of the result;
    `cancel` ends the process group when set; `on_start(pgid)` is called once it exists; `on_tick()`
    is called at least every 0.2 s while the command runs when `cancel` is given. Every occurrence of
    `secrets` in the output is masked as it is read (the result's `masked` counts them); `env` is the
    command's environment (default: the agent's own, already scrubbed of its credentials).

    Processes the command started that are still alive when it ends (agent/escapes.py) are ended, or
    with `keep_background` left running; the result lists them as `background_ended` or `background`. `stdin` (an
    agent.interactive.Interaction) gets the process's stdin pipe and hears of every output read."""
    if not os.path.isdir(cwd):
        raise OperationError("working_dir_not_found", f"working directory does not exist: {cwd}")
    started = time.monotonic()
    cookie = cookie or escapes.new_cookie()  # the caller's, when it records it (agent/reaper.py)
    env = {**(os.environ if env is None else env), escapes.COOKIE_VARIABLE: cookie}
    try:
        proc = subprocess.Popen(
            [shell, "-c", command],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as error:
        raise OperationError("spawn_failed", f"could not start {shell}: {error.strerror}") from None
    pgid = proc.pid  # start_new_session makes the shell the leader of a new group
    if on_start is not None:
        on_start(pgid)
    if stdin is not None:
        stdin.attach(proc.stdin)
    def masker() -> StreamMasker | None:
        return StreamMasker(secrets) if secrets is not None else None

    if spool is None:
        captures = {proc.stdout.fileno(): _Capture(max_output_bytes, masker()), proc.stderr.fileno(): _Capture(max_output_bytes, masker())}
    else:
        captures = {
            proc.stdout.fileno(): _Spool(max_output_bytes, spool, "stdout", masker()),
            proc.stderr.fileno(): _Spool(max_output_bytes, spool, "stderr", masker()),
        }
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    selector = selectors.DefaultSelector()
    open_pipes = set(captures)
    for fd in captures:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    exit_fd = _exit_watch(proc.pid)
    if exit_fd is not None:
        selector.register(exit_fd, selectors.EVENT_READ)
    deadline = started + timeout_seconds
    timed_out = cancelled = False
    term_sent_at: float | None = None
    exited_at: float | None = None
    try:
        while open_pipes:
            t = time.monotonic()
            if proc.poll() is not None and exited_at is None:
                exited_at = t
            if exited_at is not None and t - exited_at > DRAIN_AFTER_EXIT_SECONDS:
                # The shell is gone but something it started still holds the pipes: stop waiting.
                # It is ended below with the command's other leftovers, unless the call keeps them.
                break
            if exited_at is None and t >= deadline and term_sent_at is None:
                timed_out = True
                term_sent_at = t
                _kill_group(pgid, signal.SIGTERM)
            if exited_at is None and cancel is not None and cancel.is_set() and term_sent_at is None:
                cancelled = True
                term_sent_at = t
                _kill_group(pgid, signal.SIGTERM)
            if term_sent_at is not None and t - term_sent_at >= kill_grace_seconds:
                _kill_group(pgid, signal.SIGKILL)
            wait = 0.1 if (exited_at or term_sent_at) else max(0.0, min(deadline - t, 1.0 if cancel is None else 0.2))
            if on_tick is not None:
                on_tick()
            for key, _ in selector.select(timeout=wait):
                if key.fd == exit_fd:
                    selector.unregister(exit_fd)  # exited: seen by proc.poll() above, next round
                    continue
                try:
                    data = os.read(key.fd, READ_CHUNK)
                except BlockingIOError:
                    continue
                if data:
                    if stdin is not None:
                        stdin.touch()  # before the output is spooled, so no quiet mark can precede it
                    captures[key.fd].add(data)
                else:
                    selector.unregister(key.fd)
                    open_pipes.discard(key.fd)
        # The pipes are closed but the shell may still run (it closed its output): keep watching
        # for a cancellation while waiting for it. Pipes usually close a moment before the exit
        # can be reaped, so look again soon at first: a fixed 0.2 s step made every ~20th quick
        # command take 200 ms. Where the exit can be watched, it ends the wait the moment it comes.
        step = 0.001
        while cancel is not None and term_sent_at is None and proc.poll() is None and time.monotonic() < deadline:
            if on_tick is not None:
                on_tick()
            if selector.get_map():
                selector.select(timeout=step)  # only the exit is left to watch
                stop = cancel.is_set()
            else:
                stop = cancel.wait(step)
            if stop and proc.poll() is None:
                cancelled = True
                term_sent_at = time.monotonic()
                _kill_group(pgid, signal.SIGTERM)
            step = min(step * 2, 0.2)
        try:
            returncode = proc.wait(timeout=max(0.0, deadline - time.monotonic()) if not term_sent_at else kill_grace_seconds)
        except subprocess.TimeoutExpired:
            timed_out = not cancelled
            _kill_group(pgid, signal.SIGTERM)
            try:
                returncode = proc.wait(timeout=kill_grace_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(pgid, signal.SIGKILL)
                returncode = proc.wait()
        if timed_out or cancelled:
            _kill_group(pgid, signal.SIGKILL)  # anything the group left behind
    finally:
        for capture in captures.values():
            capture.finish()  # what was held back as a possible start of a secret
        selector.close()
        if exit_fd is not None:
            os.close(exit_fd)
        proc.stdout.close()
        proc.stderr.close()
        if spool is not None:
            spool.close()
        if stdin is not None:
            stdin.end()
        if proc.poll() is None:
            _kill_group(pgid, signal.SIGKILL)
            proc.wait()
    # Whatever still carries the command's cookie outlived it: left the group (setsid, a `set -m` job)
    # or stayed in it past the shell's exit (nohup, a double fork). The group is ended as well, for
    # a process that cleared its environment.
    after_pid = escapes.recent(proc.pid, time.monotonic() - started)
    if keep_background:
        left = escapes.marked(cookie, after_pid)
    else:
        left = escapes.end(cookie, kill_grace_seconds, after_pid)
        _kill_group(pgid, signal.SIGKILL)
    result: dict[str, Any] = {
        "exit_code": returncode if returncode >= 0 else 128 - returncode,
        "timed_out": timed_out,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    if cancelled:
        result["cancelled"] = True
    masked = sum(capture.masked for capture in captures.values())
    if masked:
        result["masked"] = masked
    for name, fd in (("stdout", out_fd), ("stderr", err_fd)):
        capture = captures[fd]
        if isinstance(capture, _Spool):
            result[f"{name}_bytes"] = capture.size + capture.dropped
            if capture.dropped:
                result[f"{name}_dropped"] = capture.dropped
        else:
            result[name] = capture.text()
            result[f"{name}_bytes"] = len(capture.kept) + capture.dropped
    died = signal_death(returncode)
    if died is not None:
        result["signal"] = died
    if left:
        result["background" if keep_background else "background_ended"] = left[:MAX_LISTED_PROCESSES]
        if len(left) > MAX_LISTED_PROCESSES:
            result["background_count"] = len(left)
    return result
