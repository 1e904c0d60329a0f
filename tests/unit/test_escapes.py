"""Finding a command's processes by the cookie in their environment (agent/escapes.py), on /proc."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent import escapes
from tests.harness import wait_for


@pytest.fixture
def marked_sleep():
    cookie = escapes.new_cookie()
    proc = subprocess.Popen(["sleep", "300"], env={**os.environ, escapes.COOKIE_VARIABLE: cookie}, start_new_session=True)
    wait_for(lambda: escapes.marked(cookie), what="the marked sleep")
    yield cookie, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_marked_process_is_found_by_pid_and_name_and_no_other(marked_sleep):
    cookie, proc = marked_sleep
    assert escapes.marked(cookie) == [{"pid": proc.pid, "name": "sleep"}]
    assert escapes.marked(escapes.new_cookie()) == []
    assert escapes.marked(cookie[:-1]) == []  # a prefix of the cookie is another cookie


def test_a_quick_look_sees_ids_after_the_shell_and_falls_back_to_all_after_a_wrap(marked_sleep):
    cookie, proc = marked_sleep
    assert escapes.marked(cookie, after_pid=proc.pid - 1) == [{"pid": proc.pid, "name": "sleep"}]
    # An id above the last one handed out means the ids wrapped around since: every process is looked at.
    with open("/proc/sys/kernel/pid_max") as handle:
        assert escapes.marked(cookie, after_pid=int(handle.read()) + 1) == [{"pid": proc.pid, "name": "sleep"}]
    assert escapes.recent(proc.pid, 0.5) == proc.pid and escapes.recent(proc.pid, escapes.QUICK_SECONDS) is None


def test_end_ends_it_and_says_so(marked_sleep):
    cookie, proc = marked_sleep
    assert escapes.end(cookie, grace_seconds=1) == [{"pid": proc.pid, "name": "sleep"}]
    assert proc.wait(timeout=5) < 0 and escapes.marked(cookie) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_a_live_process_whose_environment_reads_empty_is_looked_at_again_not_passed_over():
    """In its exec, a process's environment reads empty for a moment (9 reads in 9 000 of processes just
    started by `setsid sleep &`): read as "not ours", the sweep passed it over and it outlived its
    command. A process with no environment at all stands in for that moment here."""
    empty = subprocess.Popen(["env", "-i", "sleep", "30"])
    try:
        wait_for(lambda: open(f"/proc/{empty.pid}/comm").read().strip() == "sleep", timeout=10, what="env to exec sleep")
        assert escapes._carries(empty.pid, escapes.new_cookie()) is None, "cannot be told yet: looked at again"
        assert escapes.marked(escapes.new_cookie(), empty.pid - 1) == [], "and after the looks, not taken for ours"
    finally:
        empty.kill()
        empty.wait()
    if os.path.exists("/proc/2/comm") and open("/proc/2/comm").read().strip() == "kthreadd":
        assert escapes._carries(2, escapes.new_cookie()) is False, "a kernel thread has no environment: not ours, no second look"
