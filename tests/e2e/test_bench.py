"""The relay benchmark still runs end to end: a tiny run of scripts/bench.py against its own stack."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests import database
from tests.harness import PYTHON, ROOT


def assert_ratios_add_up(rows: list[tuple[str, str, str]], output: str) -> None:
    """Each printed (ours, theirs, ratio): the ratio is ours over theirs, to rounding (the medians of
    the repeats against the median of per-repeat ratios: the same with one repeat)."""
    for ours, theirs, ratio in rows:
        assert abs(float(ours) / float(theirs) - float(ratio)) < 0.05 * float(ratio) + 0.01, (ours, theirs, ratio, output)


def test_bench_prints_a_row_per_transport_and_the_server_rss():
    argv = [PYTHON, "scripts/bench.py", "--calls", "3", "--repeat", "1", "--concurrency", "1", "--client", "raw", "--history", "100",
            "--tool-files", "300", "--tool-calls", "2"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = re.findall(r"^(sse|http)\s+raw\s+\S+\s+1\s+0\s+3\s", run.stdout, re.MULTILINE)  # concurrency 1, 0 live views, 3 calls
    assert sorted(rows) == ["http", "sse"], run.stdout
    assert re.search(r"^server worker RSS: [\d.]+ MB before, [\d.]+ MB after", run.stdout, re.MULTILINE), run.stdout
    tools = re.findall(r"^(search rg|search python|edit_file)\s+300\s+2\s+[\d.]+\s+[\d.]+", run.stdout, re.MULTILINE)
    assert tools == ["search rg", "search python", "edit_file"], run.stdout


@pytest.mark.skipif(not database.PG_BIN_DIRS, reason="needs PostgreSQL (Debian: apt-get install postgresql)")
def test_bench_with_instances_runs_through_nginx_and_measures_the_cross_instance_wakeup():
    argv = [PYTHON, "scripts/bench.py", "--instances", "2", "--database", "postgresql", "--calls", "3", "--repeat", "1",
            "--concurrency", "1", "--client", "raw", "--history", "100", "--wakeups", "3", "--tool-files", "0"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert "2 instance(s) x 2 worker(s) behind nginx round robin" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(re.findall(r"^(sse|http)\s+raw\s+\S+\s+1\s+\d+\s", run.stdout, re.MULTILINE)) == ["http", "sse"], run.stdout
    assert re.search(r"^transport .* server\s+agent\s+client\s+proxy\s+errors\s+tool\s+served by$", run.stdout, re.MULTILINE), run.stdout
    wakeup = re.search(r"^cross-instance wake-up \(submit on web\.1 to poll answered on web\.2, 3 samples\): "
                       r"p50 ([\d.]+) ms, p95 ([\d.]+) ms", run.stdout, re.MULTILINE)
    assert wakeup, run.stdout[-3000:] + run.stderr[-3000:]
    assert 0 < float(wakeup.group(1)) <= float(wakeup.group(2))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_bench_floor_runs_the_sdk_server_beside_the_relay_and_prints_the_ratios():
    argv = [PYTHON, "scripts/bench.py", "--floor", "--calls", "3", "--repeat", "1", "--concurrency", "1", "--client", "raw",
            "--transport", "sse", "--history", "100", "--tool-files", "0"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"^floor: the official mcp [\d.]+ MCPServer", run.stdout, re.MULTILINE), run.stdout
    served = re.findall(r"^sse\s+raw\s+\S+\s+1\s+0\s+3\s.*\s(echo|read_file)\s+(relay|SDK floor)$", run.stdout, re.MULTILINE)
    assert sorted(served) == [("echo", "SDK floor"), ("echo", "relay"), ("read_file", "SDK floor"), ("read_file", "relay")], run.stdout
    ratios = re.findall(r"^  ratio sse\s+raw\s+(echo|read_file)\s+c=1\s+(p50|calls/s)\s+([\d.]+)(?: ms)? vs\s+([\d.]+)(?: ms)?: +([\d.]+)x"
                        r".*?(?:target (<=|>=) ([\d.]+): (met|NOT met))?$", run.stdout, re.MULTILINE)
    assert {(tool, figure) for tool, figure, *_ in ratios} == {("echo", "p50"), ("echo", "calls/s"), ("read_file", "p50"), ("read_file", "calls/s")}, run.stdout
    assert_ratios_add_up([(ours, theirs, ratio) for _, _, ours, theirs, ratio, *_ in ratios], run.stdout)
    for tool, figure, ours, theirs, ratio, sign, goal, verdict in ratios:
        assert bool(goal) == (figure == "p50"), run.stdout  # the targets at c=1: both p50s


def test_bench_baseline_runs_another_commit_beside_this_checkout_and_prints_the_ratios():
    argv = [PYTHON, "scripts/bench.py", "--baseline", "HEAD", "--calls", "3", "--repeat", "1", "--concurrency", "1", "--client", "raw",
            "--transport", "http", "--history", "100", "--tool-files", "0"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"^baseline: commit [0-9a-f]{7,}, server worker pid \d+", run.stdout, re.MULTILINE), run.stdout
    served = re.findall(r"^http\s+raw\s+\S+\s+1\s+0\s+3\s.*\secho\s+(relay|baseline)$", run.stdout, re.MULTILINE)
    assert sorted(served) == ["baseline", "relay"], run.stdout
    ratios = re.findall(r"^  ratio http raw\s+echo\s+c=1\s+views=0 (p50|calls/s)\s+([\d.]+)(?: ms)? vs\s+([\d.]+)(?: ms)?: +([\d.]+)x",
                        run.stdout, re.MULTILINE)
    assert [figure for figure, *_ in ratios] == ["p50", "calls/s"], run.stdout
    assert_ratios_add_up([(ours, theirs, ratio) for _, ours, theirs, ratio in ratios], run.stdout)


def test_bench_baseline_names_a_revision_that_does_not_exist():
    argv = [PYTHON, "scripts/bench.py", "--baseline", "no-such-commit", "--calls", "1", "--tool-files", "0"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "--baseline: 'no-such-commit' is not a commit of this repository" in run.stdout + run.stderr


@pytest.mark.skipif(not database.PG_BIN_DIRS, reason="needs PostgreSQL (Debian: apt-get install postgresql)")
def test_bench_layouts_run_other_deployments_in_the_same_run_and_print_every_pair():
    argv = [PYTHON, "scripts/bench.py", "--layouts", "postgresql:1", "--calls", "3", "--repeat", "1", "--concurrency", "1",
            "--client", "raw", "--transport", "http", "--history", "100", "--tool-files", "0"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    served = re.findall(r"^http\s+raw\s+\S+\s+1\s+0\s+3\s.*\secho\s+(\S+)$", run.stdout, re.MULTILINE)
    assert sorted(served) == ["pgx1", "sqlitex1"], run.stdout
    pairs = re.findall(r"^  http raw\s+echo\s+c=1\s+(p50|calls/s)\s+pgx1 / sqlitex1: +([\d.]+)(?: ms)? / +([\d.]+)(?: ms)? = +([\d.]+)x",
                       run.stdout, re.MULTILINE)
    assert [figure for figure, *_ in pairs] == ["p50", "calls/s"], run.stdout
    assert_ratios_add_up([(ours, theirs, ratio) for _, ours, theirs, ratio in pairs], run.stdout)


@pytest.mark.parametrize("layouts, error", [("sqlite:2", "SQLite serves one process"), ("mysql:1", "is not DATABASE:INSTANCES"),
                                            ("postgresql:0", "is not DATABASE:INSTANCES")])
def test_bench_layouts_that_cannot_run_are_refused_before_anything_starts(layouts, error):
    run = subprocess.run([PYTHON, "scripts/bench.py", "--layouts", layouts], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and error in run.stderr and "code-remote" not in run.stdout, run.stdout + run.stderr


def test_bench_idle_holds_streams_and_polls_and_reads_the_loop_lag_probe():
    argv = [PYTHON, "scripts/bench.py", "--idle", "40", "--idle-hold", "1", "--calls", "10", "--repeat", "1", "--history", "100"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"^idle: server settings WEB_CONCURRENCY=1, WORKER_CONNECTIONS=1040, METRICS_TOKEN=\(set\)", run.stdout, re.MULTILINE), run.stdout
    held = re.search(r"held 20 streams and (\d+) polls .* (\d+) errors\); c=8 p99 ([\d.]+) ms alone, ([\d.]+) ms held; loop: (\d+) wake-ups",
                     run.stdout)
    assert held and int(held.group(1)) >= 18 and held.group(2) == "0", run.stdout
    assert int(held.group(5)) >= 10, run.stdout  # 20 a second over the held period (1 s and the load row)
    assert re.search(r"^  memory: -?[\d.]+ KB per idle client .* target <= 25: (met|NOT met)$", run.stdout, re.MULTILINE), run.stdout
    assert re.search(r"^  p99 held / alone: [\d.]+x .* target <= 1.5: (met|NOT met)$", run.stdout, re.MULTILINE), run.stdout
    assert re.search(r"^  worst event-loop pause while held: (<= )?[\d.]+ ms .* target < 100 ms: (met|NOT met)$", run.stdout, re.MULTILINE), run.stdout
