"""The baseline for scripts/bench.py `--baseline REV`: another commit's server and agent, run side by side
with this checkout's, on the same rows, interleaved, so that both meet the same load.

A change that should make Code Remote faster (or at least no slower) is judged against the commit
before it in one run: on a shared machine, figures from two runs an hour apart differ by more than most
changes do. The commit is exported with `git archive` into the bench's temporary folder and started
from there, with its own database (same backend, same history) and its own agent, using this
checkout's virtualenv; its migrations run on its own database.
"""

from __future__ import annotations

import io
import statistics
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_floor import figure_ratios

ROOT = Path(__file__).resolve().parent.parent


def export(rev: str, folder: Path) -> str:
    """Write commit `rev`'s tree into `folder`; returns its short id."""
    commit = subprocess.run(["git", "rev-parse", "--short", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True, text=True)
    if commit.returncode != 0:
        raise SystemExit(f"--baseline: {rev!r} is not a commit of this repository ({commit.stderr.strip()})")
    archive = subprocess.run(["git", "archive", "--format=tar", commit.stdout.strip()], cwd=ROOT, capture_output=True, check=True)
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return commit.stdout.strip()


def print_ratios(results: dict[tuple, list[dict[str, Any]]], percentile: Callable[[list[float], float], float], label: str) -> None:
    """This checkout over the baseline for each row both ran: p50 (lower is better) and calls/s
    (higher is better), the median of the per-repeat ratios, with both medians."""
    print(f"\nagainst the baseline (this checkout / {label}; median of per-repeat ratios):")
    for (transport, client, concurrency, views, tool, target), runs in results.items():
        base = results.get((transport, client, concurrency, views, tool, "baseline"))
        if target != "relay" or not base:
            continue
        for figure in ("p50", "calls/s"):
            ours, theirs, ratios = figure_ratios(runs, base, figure, percentile)
            if not ratios:
                continue
            unit = " ms" if figure == "p50" else ""
            print(f"  ratio {transport:4} {client:8} {tool:9} c={concurrency:<3} views={views} {figure:7} "
                  f"{ours:7.1f}{unit} vs {theirs:7.1f}{unit}: {statistics.median(ratios):5.2f}x"
                  f" (runs {', '.join(f'{r:.2f}' for r in ratios)})")
