"""Benchmark rows for the coding tools (scripts/bench.py): `search` and `edit_file` on a tree of N files.

Builds a tree of `files` small Python files (100 folders, 40 functions each), starts two more agents on
the same server whose only root is that tree, one with `rg` on its PATH and one without (an empty PATH:
the pure-Python walk), and times calls through the whole stack with the official client over `/mcp`:

  search rg / search python   a content search that must read every file (one match in the whole tree)
  edit_file                   one exact replacement in a different file each call (checkpoint included)

Targets (docs): a content search of 10 000 files answers in under 1 s p50 with rg, under 3 s without.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from tests.harness import Agent
from tests.mcp_client import open_session

FUNCTIONS = 40
TARGETS_MS = {"search rg": 1000.0, "search python": 3000.0}


def make_tree(root: Path, files: int) -> None:
    for number in range(files):
        folder = root / f"pkg{number % 100:02d}" / f"mod{number // 100 % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        body = "".join(f"def function_{number}_{j}(x):\n    return x + {j}\n\n" for j in range(FUNCTIONS))
        (folder / f"file{number}.py").write_text(body)


def path_of(root: Path, number: int) -> Path:
    return root / f"pkg{number % 100:02d}" / f"mod{number // 100 % 10}" / f"file{number}.py"


def measure(target, workdir: Path, files: int, calls: int) -> list[tuple[str, list[float]]]:
    """[(row name, latencies in ms)]; raises on a wrong answer."""
    tree = workdir / "tools-tree"
    started = time.monotonic()
    make_tree(tree, files)
    print(f"tools tree: {files} files made in {time.monotonic() - started:.1f} s", flush=True)
    empty = workdir / "no-rg"
    empty.mkdir(exist_ok=True)
    agents = {
        "rg": Agent(target, workdir / "tools-rg", "tools-rg", env={"ALLOWED_ROOTS": str(tree)}),
        "python": Agent(target, workdir / "tools-python", "tools-python", env={"ALLOWED_ROOTS": str(tree), "PATH": str(empty)}),
    }
    rows: list[tuple[str, list[float]]] = []
    try:
        for agent in agents.values():
            agent.start()

        async def run() -> None:
            async with open_session("http", target.url + "/mcp", target.token) as session:
                for engine, agent in agents.items():
                    times = []
                    for call in range(calls + 1):  # the first call warms the page cache, untimed
                        wanted = (call * 7919) % files
                        arguments = {"machine": agent.name, "path": str(tree), "pattern": rf"def function_{wanted}_3\b"}
                        begun = time.perf_counter()
                        answer = await session.call_tool("search", arguments)
                        elapsed = (time.perf_counter() - begun) * 1000
                        typed = answer["structured"] or {}
                        if answer["is_error"] or typed.get("engine") != engine or typed.get("count") != 1 or not typed.get("complete"):
                            raise RuntimeError(f"search on {agent.name}: {answer['text'][:300]}")
                        if call:
                            times.append(elapsed)
                    rows.append((f"search {engine}", times))
                times = []
                for call in range(calls):
                    number = (call * 104729) % files
                    edit = {"old_text": f"def function_{number}_0(x):", "new_text": f"def renamed_{number}_0(x):"}
                    begun = time.perf_counter()
                    answer = await session.call_tool("edit_file", {"machine": "tools-rg", "path": str(path_of(tree, number)), "edits": [edit]})
                    times.append((time.perf_counter() - begun) * 1000)
                    if answer["is_error"]:
                        raise RuntimeError(f"edit_file: {answer['text'][:300]}")
                rows.append(("edit_file", times))

        anyio.run(run)
    finally:
        for agent in agents.values():
            agent.stop()
    return rows


def print_rows(rows: list[tuple[str, list[float]]], files: int, percentile) -> None:
    print(f"\n{'tool':15} {'files':>6} {'calls':>5} {'p50 ms':>8} {'p95 ms':>8}  target")
    for name, times in rows:
        p50 = percentile(times, 0.5)
        target = TARGETS_MS.get(name)
        verdict = f"p50 < {target:g} ms: {'met' if p50 < target else 'MISSED'}" if target and files >= 10_000 else ""
        print(f"{name:15} {files:>6} {len(times):>5} {p50:8.1f} {percentile(times, 0.95):8.1f}  {verdict}")
    print(f"(cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f})")
