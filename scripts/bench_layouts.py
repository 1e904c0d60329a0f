"""More stacks for scripts/bench.py `--layouts`: the same rows against other deployments of this checkout,
interleaved, so that figures meant to be compared (one SQLite process, one PostgreSQL process, three
instances behind nginx) meet the same load in the same run.

A layout is `DATABASE:INSTANCES`: `sqlite:1` and `postgresql:1` are one server on its own; `postgresql:3` is
three instances from the Procfile's web line, 2 workers each, behind nginx round robin (tests/cluster.py).
Each stack has its own database (with the same finished history) and its own agent.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_floor import figure_ratios


def parse(text: str) -> list[tuple[str, int]]:
    """`sqlite:1,postgresql:3` -> [("sqlite", 1), ("postgresql", 3)], or an exit that says what is wrong."""
    layouts = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, count = part.partition(":")
        if kind not in ("sqlite", "postgresql") or not count.isdigit() or int(count) < 1:
            raise SystemExit(f"--layouts: {part!r} is not DATABASE:INSTANCES (sqlite:1, postgresql:1, postgresql:3)")
        if kind == "sqlite" and int(count) > 1:
            raise SystemExit(f"--layouts: {part!r}: SQLite serves one process")
        layouts.append((kind, int(count)))
    return layouts


def name(kind: str, instances: int, *, behind_nginx: bool) -> str:
    return f"{'pg' if kind == 'postgresql' else kind}x{instances}" + ("+nginx" if behind_nginx else "")


class Stack:
    """One deployment of this checkout with its agent, for the bench to drive."""

    def __init__(self, workdir: Path, kind: str, instances: int, history: int, *, fill_history, cpu_seconds, worker_of, roots: str,
                 env: dict[str, str]) -> None:
        from tests import database
        from tests.cluster import Cluster
        from tests.harness import Agent, Server

        self.cluster = self.server = None
        if instances > 1:
            self.cluster = Cluster(workdir / "cluster", instances=instances, agents=0, web_concurrency=2, database_kind=kind, env=env)
            self.cluster.start()
            self.target = self.cluster
            self.workers = [pid for instance in self.cluster.instances for pid in instance.worker_pids()]
        else:
            mode, database.MODE = database.MODE, kind
            try:
                self.server = Server(workdir / "server", env=env)
            finally:
                database.MODE = mode
            self.server.start()
            self.target = self.server
            self.workers = [worker_of(self.server.process.proc.pid)]
        self.name = name(kind, instances, behind_nginx=instances > 1)
        fill_history(self.target.database_url, "bench", history)
        self.agent = Agent(self.target, workdir / "agent", "bench", env={"ALLOWED_ROOTS": roots}).start()  # `roots`: where the bench's files are
        self.url, self.token = self.target.url, self.target.token
        self._cpu_seconds = cpu_seconds

    def cpu(self) -> list[float]:
        import time

        return [sum(self._cpu_seconds(w) for w in self.workers), self._cpu_seconds(self.agent.process.proc.pid), time.process_time()]

    def stop(self) -> None:
        self.agent.stop()
        (self.cluster or self.server).stop()


def print_ratios(results: dict[tuple, list[dict[str, Any]]], percentile: Callable[[list[float], float], float], names: list[str]) -> None:
    """Every pair of layouts, for each row both ran: p50 and calls/s of one over the other, the median
    of the per-repeat ratios, with both medians."""
    print("\nlayouts against each other (median of per-repeat ratios):")
    rows = sorted({key[:5] for key in results})
    for row in rows:
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                runs_a, runs_b = results.get((*row, a)), results.get((*row, b))
                if not runs_a or not runs_b:
                    continue
                transport, client, concurrency, views, tool = row
                for figure in ("p50", "calls/s"):
                    ours, theirs, ratios = figure_ratios(runs_b, runs_a, figure, percentile)
                    if ratios:
                        unit = " ms" if figure == "p50" else ""
                        print(f"  {transport:4} {client:8} {tool:9} c={concurrency:<3} {figure:7} {b} / {a}: "
                              f"{ours:7.1f}{unit} / {theirs:7.1f}{unit} = {statistics.median(ratios):5.2f}x"
                              f" (runs {', '.join(f'{r:.2f}' for r in ratios)})")
