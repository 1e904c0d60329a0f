"""The relay benchmark still runs end to end: a tiny run of scripts/bench.py against its own stack."""

from __future__ import annotations

import re
import subprocess

from tests.harness import PYTHON, ROOT


def test_bench_prints_a_row_per_transport_and_the_server_rss():
    argv = [PYTHON, "scripts/bench.py", "--calls", "3", "--repeat", "1", "--concurrency", "1", "--client", "raw", "--history", "100"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = re.findall(r"^(sse|http)\s+raw\s+\S+\s+1\s+3\s", run.stdout, re.MULTILINE)
    assert sorted(rows) == ["http", "sse"], run.stdout
    assert re.search(r"^server worker RSS: [\d.]+ MB before, [\d.]+ MB after", run.stdout, re.MULTILINE), run.stdout
