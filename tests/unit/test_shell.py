"""The agent's shell runner with real processes: exit codes, timeouts that kill the whole process
group, the output cap and non-UTF-8 output. Commands run only in scratch folders under tmp_path."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from agent import shell
from agent.errors import OperationError
from tests.harness import process_alive, wait_for


def run(command: str, cwd: Path, *, timeout: float = 10.0, max_output_bytes: int = 100_000, grace: float = 0.5) -> dict:
    return shell.run(command, shell="/bin/sh", cwd=str(cwd), timeout_seconds=timeout, max_output_bytes=max_output_bytes, kill_grace_seconds=grace)


def gone(pid: int) -> bool:
    return not process_alive(pid)


def test_a_non_zero_exit_code_is_a_normal_result(tmp_path):
    result = run("echo out; echo err >&2; exit 7", tmp_path)
    assert result["exit_code"] == 7 and not result["timed_out"]
    assert result["stdout"] == "out\n" and result["stderr"] == "err\n"


def test_the_command_runs_in_the_working_dir_with_stdin_closed(tmp_path):
    result = run("pwd; cat; echo done", tmp_path)
    assert result["stdout"] == f"{tmp_path}\ndone\n" and result["exit_code"] == 0


def test_a_missing_working_dir_is_a_precise_error(tmp_path):
    with pytest.raises(OperationError) as caught:
        run("true", tmp_path / "nope")
    assert caught.value.code == "working_dir_not_found" and "nope" in caught.value.message


def test_a_timeout_kills_the_whole_process_group_grandchildren_included(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    result = run(f"sh -c 'sleep 60 & echo $! > {pid_file}; wait' ; echo never", tmp_path, timeout=0.5)
    assert result["timed_out"] and "never" not in result["stdout"]
    grandchild = int(wait_for(lambda: pid_file.read_text().strip(), timeout=5, what="pid file"))
    wait_for(lambda: gone(grandchild), timeout=5, what=f"grandchild {grandchild} to be killed")


def test_a_grandchild_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    pid_file = tmp_path / "stubborn.pid"
    result = run(f"sh -c 'trap \"\" TERM; echo $$ > {pid_file}; while :; do sleep 0.05; done' & wait", tmp_path, timeout=0.5, grace=0.3)
    assert result["timed_out"]
    stubborn = int(pid_file.read_text().strip())
    wait_for(lambda: gone(stubborn), timeout=5, what=f"stubborn process {stubborn} to be killed")


def test_output_past_the_cap_is_dropped_with_an_explicit_marker(tmp_path):
    result = run("head -c 5000 /dev/zero | tr '\\0' a; echo tail >&2", tmp_path, max_output_bytes=1000)
    kept, marker = result["stdout"].split("\n", 1)
    assert kept == "a" * 1000
    assert "output truncated: 4000 more bytes not shown (limit 1000 bytes)" in marker
    assert result["stdout_bytes"] == 5000
    assert result["stderr"] == "tail\n"


def test_non_utf8_output_survives_as_text(tmp_path):
    result = run("printf 'caf\\351 \\377ok'", tmp_path)
    assert result["stdout"] == "caf\\xe9 \\xffok"


def test_a_background_process_holding_the_pipes_does_not_hold_the_result(tmp_path):
    pid_file = tmp_path / "daemon.pid"
    result = run(f"sleep 60 & echo $! > {pid_file}; echo started", tmp_path, timeout=30)
    assert result["stdout"] == "started\n" and result["exit_code"] == 0 and not result["timed_out"]
    wait_for(lambda: gone(int(pid_file.read_text())), timeout=5, what="left-behind process to be killed")


@pytest.mark.parametrize(
    "command, code, expected",
    [
        ("kill -KILL $$", 137, {"number": 9, "name": "SIGKILL"}),
        ("kill -SEGV $$", 139, {"number": 11, "name": "SIGSEGV"}),
        ("kill -ABRT $$", 134, {"number": 6, "name": "SIGABRT"}),
        # The shell survives and reports its child's death as 128+N.
        ("sh -c 'kill -SEGV $$'; exit $?", 139, {"number": 11, "name": "SIGSEGV", "from_exit_status": True}),
        ("sh -c 'kill -TERM $$'; exit $?", 143, {"number": 15, "name": "SIGTERM", "from_exit_status": True}),
    ],
)
def test_a_command_killed_by_a_signal_reports_its_number_and_name(tmp_path, command, code, expected):
    result = run(command, tmp_path)
    assert result["signal"] == expected and result["exit_code"] == code


@pytest.mark.parametrize("status", [0, 1, 127, 128, 200, 255])
def test_an_exit_status_that_is_no_signal_reports_none(tmp_path, status):
    result = run(f"exit {status}", tmp_path)
    assert "signal" not in result and result["exit_code"] == status


def spooled(command: str, tmp_path: Path, *, memory_bytes: int, max_output_bytes: int = 100_000) -> tuple[dict, shell.OutputSpool]:
    spool = shell.OutputSpool({s: str(tmp_path / "spool" / s) for s in ("stdout", "stderr")}, memory_bytes=memory_bytes)
    result = shell.run(command, shell="/bin/sh", cwd=str(tmp_path), timeout_seconds=10, max_output_bytes=max_output_bytes, spool=spool)
    return result, spool


def test_a_small_spooled_output_stays_in_memory_and_never_creates_files(tmp_path):
    result, spool = spooled("echo out; echo err >&2", tmp_path, memory_bytes=1000)
    assert spool.held() == {"stdout": b"out\n", "stderr": b"err\n"} and result["stdout_bytes"] == 4
    assert not (tmp_path / "spool").exists()


def test_a_spooled_output_past_memory_goes_to_the_files_whole_and_capped(tmp_path):
    result, spool = spooled("head -c 5000 /dev/zero; echo err >&2", tmp_path, memory_bytes=1000, max_output_bytes=3000)
    assert spool.held() is None and result["stdout_bytes"] == 5000 and result["stdout_dropped"] == 2000
    assert (tmp_path / "spool" / "stdout").read_bytes() == b"\0" * 3000
    assert (tmp_path / "spool" / "stderr").read_bytes() == b"err\n"


def test_a_spill_puts_what_was_held_in_the_files_before_later_output(tmp_path):
    spool = shell.OutputSpool({s: str(tmp_path / "spool" / s) for s in ("stdout", "stderr")}, memory_bytes=1000)
    spool.write("stdout", b"early ")
    spool.spill()  # as the streamer is about to start
    spool.write("stdout", b"late")
    spool.close()
    assert (tmp_path / "spool" / "stdout").read_bytes() == b"early late" and (tmp_path / "spool" / "stderr").read_bytes() == b""


def test_a_process_that_left_the_session_is_ended_at_the_end_and_named(tmp_path):
    result = run(f"setsid sleep 300 >/dev/null 2>&1 & echo $! > {tmp_path}/pid", tmp_path)
    pid = int((tmp_path / "pid").read_text())
    assert gone(pid), "the setsid sleep outlived its command"
    assert pid in [p["pid"] for p in result["background_ended"]]  # named 'setsid' or 'sleep': it may not have exec'd yet


def test_keep_background_leaves_a_daemon_running_and_lists_it(tmp_path):
    result = shell.run(
        f"setsid sleep 300 & echo $! > {tmp_path}/pid; echo ok", shell="/bin/sh", cwd=str(tmp_path),
        timeout_seconds=10, max_output_bytes=1000, kill_grace_seconds=0.5, keep_background=True,
    )
    pid = int((tmp_path / "pid").read_text())
    try:
        assert process_alive(pid) and result["stdout"] == "ok\n"
        assert result["background"] == [{"pid": pid, "name": "sleep"}]
    finally:
        os.kill(pid, signal.SIGKILL)


def test_each_command_gets_its_own_cookie(tmp_path):
    first = run('echo "$CODE_REMOTE_COMMAND_COOKIE"', tmp_path)["stdout"].strip()
    second = run('echo "$CODE_REMOTE_COMMAND_COOKIE"', tmp_path)["stdout"].strip()
    assert len(first) == 32 and len(second) == 32 and first != second
