"""The agent's on-disk state and reaper with real files and real processes under tmp_path: results
outlive the agent until acknowledged, and left-over process groups are ended only if still ours."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent import escapes, reaper
from agent.outbox import StateDir
from tests.harness import wait_for


def test_a_result_is_kept_across_restarts_until_the_server_has_it(tmp_path):
    state = StateDir(str(tmp_path / "state"))
    spool = state.spool("c1")
    open(spool["stdout"], "wb").write(b"out")
    state.put("c1", {"status": "succeeded", "exit_code": 0}, spooled=True)
    again = StateDir(str(tmp_path / "state"))  # as a restarted agent sees it
    assert again.pending() == [{"id": "c1", "body": {"status": "succeeded", "exit_code": 0}, "spooled": True}]
    assert again.holds("c1") and not again.holds("c2")
    again.done("c1")
    assert again.pending() == [] and not os.path.exists(spool["stdout"]) and not again.holds("c1")


def test_a_result_kept_without_fsync_is_hardened_in_place_and_hardening_a_delivered_one_does_nothing(tmp_path, monkeypatch):
    # A power cut cannot be staged here: record what reaches the disk with fsync, by path.
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    state = StateDir(str(tmp_path / "state"))
    entry = os.path.join(state.outbox_dir, "c1.json")
    state.put("c1", {"status": "failed", "exit_code": 3}, spooled=False, durable=False)
    assert synced == [], "durable=False leaves the fsync to harden"
    state.harden("c1")  # the first post failed: now it must also survive a power cut
    assert synced == [entry, state.outbox_dir], "the entry's data, then the folder holding its name"
    assert StateDir(str(tmp_path / "state")).pending() == [{"id": "c1", "body": {"status": "failed", "exit_code": 3}, "spooled": False}]
    state.done("c1")
    synced.clear()
    state.harden("c1")  # delivered by the outbox's flush meanwhile
    assert synced == [] and state.pending() == [] and os.listdir(state.outbox_dir) == []


def test_an_unreadable_outbox_entry_is_set_aside_not_fatal(tmp_path):
    state = StateDir(str(tmp_path / "state"))
    (tmp_path / "state" / "outbox" / "broken.json").write_text("{not json")
    assert state.pending() == []
    assert (tmp_path / "state" / "outbox" / "broken.json.bad").exists()


@pytest.fixture
def group():
    """A process group like a command's: a shell leader with a child."""
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 300 & wait"], start_new_session=True)
    wait_for(lambda: len(reaper._members(proc.pid)) == 2, what="leader and child")
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, 9)
    proc.wait()


def test_the_reaper_ends_a_recorded_group_with_its_children(tmp_path, group):
    state = StateDir(str(tmp_path / "state"))
    state.record_running("c1", group.pid, reaper.start_ticks(group.pid))
    assert reaper.reap(state, grace_seconds=1) == ["c1"]
    group.wait(timeout=5)
    assert reaper._members(group.pid) == [] and state.running() == []


def test_the_reaper_leaves_alone_a_leader_that_is_not_the_process_it_started(tmp_path, group):
    state = StateDir(str(tmp_path / "state"))
    state.record_running("c1", group.pid, reaper.start_ticks(group.pid) - 1)  # a reused process id
    assert reaper.reap(state, grace_seconds=1) == []
    assert group.poll() is None and state.running() == []


def test_a_claimed_command_is_held_and_only_a_recorded_group_is_reaped(tmp_path, group):
    state = StateDir(str(tmp_path / "state"))
    before_spawn = state.claim_running("c1")  # as if killed before its shell started
    spawned = state.claim_running("c2")
    spawned.record_group(group.pid, reaper.start_ticks(group.pid))
    assert state.holds("c1") and state.holds("c2")
    assert reaper.reap(state, grace_seconds=1) == ["c2"]  # the records are read while still open, as after kill -9
    group.wait(timeout=5)
    assert state.running() == [] and not state.holds("c1") and not state.holds("c2")
    before_spawn.close()
    spawned.close()


def test_the_reaper_ends_what_left_a_recorded_group_by_its_cookie(tmp_path, group):
    cookie = escapes.new_cookie()
    escaped = subprocess.Popen(
        ["sleep", "300"], env={**os.environ, escapes.COOKIE_VARIABLE: cookie}, start_new_session=True
    )
    stranger = subprocess.Popen(["sleep", "300"], env={**os.environ, escapes.COOKIE_VARIABLE: escapes.new_cookie()})
    try:
        wait_for(lambda: escapes.marked(cookie), what="the escaped sleep")
        state = StateDir(str(tmp_path / "state"))
        state.record_running("c1", group.pid, reaper.start_ticks(group.pid), cookie)
        assert reaper.reap(state, grace_seconds=1) == ["c1"]
        escaped.wait(timeout=5)
        assert escapes.marked(cookie) == [] and stranger.poll() is None  # another command's process stays
    finally:
        for proc in (escaped, stranger):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
