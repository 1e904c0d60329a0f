"""`scripts/bench.py --profile`: where the server worker's and the agent's CPU goes under the bench.

py-spy (a sampling profiler that reads another process's stacks from outside, so nothing in the
server or agent changes) records each process for the whole run. Only samples of running threads are
kept (py-spy leaves idle threads out by default), so the figures are mostly CPU, not waiting; sqlite3
and fork run with the GIL released and are counted (`--gil` would hide them). py-spy cannot tell every
wait from work: an agent thread blocked in a C call (a socket read, `SimpleQueue.get`) can show as
`SocketIO.readinto` or as the Python function that called it (`Agent._work_forever`); read those
entries as waiting, and compare the CPU per call columns of the table for what a change saved. Then, per
process, it prints the functions most often on top of the stack (self) and the project's own functions
most often anywhere on it (inclusive), as shares of that process's samples. The raw collapsed stacks are
kept beside the logs with `--keep` (`<name>.folded`, the format flame graph tools read).
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path

PROJECT_FOLDERS = ("web/", "agent/")


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install -r requirements-dev.txt")
    return found


class Profiles:
    """One py-spy recorder per named process, started at once and stopped (SIGINT writes the file) by `stop`."""

    def __init__(self, folder: Path, pids: dict[str, int], rate: int = 200) -> None:
        self.folder, self.pids, self.rate = folder, pids, rate
        self.recorders: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        for name, pid in self.pids.items():
            argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw", "--nolineno",
                    "--nonblocking", "--output", str(self.folder / f"{name}.folded")]
            log = open(self.folder / f"{name}.py-spy.log", "wb")
            self.recorders[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        for recorder in self.recorders.values():
            if recorder.poll() is None:
                recorder.send_signal(signal.SIGINT)
        for recorder in self.recorders.values():
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()

    def print_summary(self, top: int = 12) -> None:
        for name in self.pids:
            path = self.folder / f"{name}.folded"
            if not path.exists():
                print(f"\nprofile of {name}: py-spy wrote nothing; see {self.folder / f'{name}.py-spy.log'}")
                continue
            total, own, inclusive = summarise(path.read_text())
            print(f"\nprofile of {name} ({total} samples of running threads at {self.rate}/s):")
            print("  self (on top of the stack):")
            for frame, count in own.most_common(top):
                print(f"    {100 * count / max(1, total):5.1f} %  {frame}")
            print("  inclusive, the project's own functions:")
            for frame, count in inclusive.most_common(top):
                print(f"    {100 * count / max(1, total):5.1f} %  {frame}")


def summarise(folded: str) -> tuple[int, collections.Counter, collections.Counter]:
    """Total samples, samples per leaf frame, and samples per project frame anywhere on the stack
    (counted once per stack), from py-spy's collapsed stacks: `frame;frame;... count` per line."""
    total, own, inclusive = 0, collections.Counter(), collections.Counter()
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(frame) for frame in stack.split(";")[1:]]  # the first is the thread
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if frame.split("(", 1)[-1].startswith(PROJECT_FOLDERS):
                inclusive[frame] += count
    return total, own, inclusive


def short(frame: str) -> str:
    """`function (path)` with the path cut to what follows site-packages/ or the project root."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "lib/python3", str(Path(__file__).resolve().parent.parent) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"
