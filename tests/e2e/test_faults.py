"""Faults: nothing lost, nothing run twice. Real server (killed with SIGKILL and restarted on the same
port and database), real agent (killed and restarted with the same state folder), a relay between
them (tests/e2e/fault_proxy.py) that partitions them or cuts the server's answers.

Every command first appends a line to its own marker file in scratch, so the executions are counted
on the agent's side: each marker must end with exactly one line. Commands are named by a leading
`: NAME;` so list_commands shows which is which. The counts observed are printed (pytest -s).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.fault_proxy import FaultProxy
from tests.harness import Agent, Server, process_alive, wait_for
from tests.mcp_client import call_tool

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "expired", "lost"}
AGENT_ENV = {"PROGRESS_SECONDS": "0.3", "BACKOFF_MAX_SECONDS": "1", "KILL_GRACE_SECONDS": "1"}


class Rig:
    """A server, a fault proxy in front of it for the agent, and an agent; with counting helpers."""

    def __init__(self, tmp_path: Path, server_env: dict[str, str], agent_env: dict[str, str] | None = None) -> None:
        env = {"TOOL_WAIT_SECONDS": "1", "POLL_TIMEOUT_SECONDS": "5", **server_env}
        self.server = Server(tmp_path / "server", env=env).start()
        self.proxy = FaultProxy(self.server.port).start()
        self.agent = Agent(self.server, tmp_path, "box", env={**AGENT_ENV, **(agent_env or {})})
        self.agent.env["RELAY_URL"] = self.proxy.url
        self.markers = self.agent.scratch / "markers"
        self.markers.mkdir()
        self.outbox = self.agent.home / ".local" / "state" / "code-remote" / "outbox"
        self.agent.start()

    def close(self) -> None:
        self.agent.stop()
        self.proxy.stop()
        self.server.stop()

    def tool(self, name: str, arguments: dict) -> dict:
        return call_tool("sse", self.server.url + "/sse", self.server.token, name, arguments)

    def submit(self, name: str, work: str = "true", timeout: float = 60) -> dict:
        command = f": {name}; echo run >> {self.markers / name}; {work}; echo out-{name}"
        return self.tool("run_shell_command", {"command": command, "timeout": timeout})

    def commands(self) -> dict[str, tuple[str, str]]:
        """name -> (command id, state), from list_commands."""
        found = {}
        for line in self.tool("list_commands", {})["text"].splitlines():
            match = re.match(r"([0-9a-f]{32})  \S+  run_shell_command  (\w+)  \S+ \S+  : (\w+);", line)
            if match:
                found[match.group(3)] = (match.group(1), match.group(2))
        return found

    def states(self) -> dict[str, str]:
        return {name: state for name, (_, state) in self.commands().items()}

    def output(self, name: str) -> str:
        return self.tool("get_command_output", {"command_id": self.commands()[name][0]})["text"]

    def runs(self, name: str) -> int:
        path = self.markers / name
        return len(path.read_text().splitlines()) if path.exists() else 0

    def all_terminal(self, names) -> dict[str, str] | None:
        states = self.states()
        return states if all(states.get(n) in TERMINAL for n in names) else None

    def outbox_size(self) -> int:
        return len([n for n in os.listdir(self.outbox) if n.endswith(".json")]) if self.outbox.exists() else 0


@pytest.fixture
def rig_factory(tmp_path):
    rigs = []

    def make(server_env: dict[str, str], agent_env: dict[str, str] | None = None) -> Rig:
        rig = Rig(tmp_path, server_env, agent_env)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


alive = process_alive


def report(title: str, **counts) -> None:
    print(f"\n[fault] {title}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


def test_server_killed_with_commands_queued_leased_and_running_loses_and_repeats_nothing(rig_factory):
    rig = rig_factory({"LEASE_SECONDS": "4", "LOST_AFTER_SECONDS": "30"}, {"MAX_CONCURRENT_COMMANDS": "2"})
    # Leased: the poll carrying L is answered by the server but never reaches the agent.
    rig.proxy.drop_responses("/api/agent/poll", 1, status=200)
    rig.submit("L")
    wait_for(lambda: rig.states().get("L") == "leased" and rig.proxy.dropped, what="L leased into a lost poll")
    # Running: two commands fill the agent's two slots; queued: three more wait behind them.
    rig.submit("R1", "sleep 8")
    rig.submit("R2", "sleep 8")
    wait_for(lambda: rig.runs("R1") and rig.runs("R2"), what="R1 and R2 running")
    for name in ("Q1", "Q2", "Q3"):
        rig.submit(name)
    before = rig.states()
    assert before == {"L": "leased", "R1": "running", "R2": "running", "Q1": "queued", "Q2": "queued", "Q3": "queued"}

    rig.server.stop(signal.SIGKILL)
    wait_for(lambda: rig.outbox_size() == 2, timeout=15, what="R1 and R2 results kept in the outbox while the server is down")
    restarted_at = time.monotonic()
    rig.server.start()
    wait_for(lambda: rig.server.machines()["box"]["online"], timeout=30, what="the agent back")
    back_after = time.monotonic() - restarted_at
    names = ["L", "R1", "R2", "Q1", "Q2", "Q3"]
    states = wait_for(lambda: rig.all_terminal(names), timeout=30, what="every command terminal")
    wait_for(lambda: rig.outbox_size() == 0, what="outbox empty")

    runs = {n: rig.runs(n) for n in names}
    report("server kill -9", before=before, after=states, runs=runs, agent_back_seconds=round(back_after, 1))
    assert states == {n: "succeeded" for n in names}
    assert runs == {n: 1 for n in names}
    assert all(f"out-{n}" in rig.output(n) for n in ("R1", "R2", "L"))
    assert back_after < 30


def test_agent_killed_mid_command_delivers_finished_results_and_reports_the_rest_lost(rig_factory):
    rig = rig_factory({"LOST_AFTER_SECONDS": "30"})
    pidfile, shellfile = rig.agent.scratch / "u1.pid", rig.agent.scratch / "u1-shell.pid"
    rig.submit("F1", "sleep 5")
    rig.submit("F2", "sleep 5")
    rig.submit("U1", f"echo $$ > {shellfile}; sleep 300 & echo $! > {pidfile}; wait")
    wait_for(lambda: rig.runs("F1") and rig.runs("F2") and pidfile.exists() and pidfile.read_text().strip(), what="all three running")
    sleeper, shell = int(pidfile.read_text()), int(shellfile.read_text())
    rig.proxy.stop()  # F1 and F2 finish while the agent cannot reach the server
    wait_for(lambda: rig.outbox_size() == 2, timeout=15, what="F1 and F2 results in the outbox")
    os.kill(rig.agent.process.proc.pid, signal.SIGKILL)
    rig.agent.process.stop()
    assert alive(sleeper) and alive(shell)  # orphans, until the agent comes back

    rig.proxy.start()
    rig.agent.start()
    names = ["F1", "F2", "U1"]
    states = wait_for(lambda: rig.all_terminal(names), timeout=30, what="every command terminal")
    wait_for(lambda: not alive(sleeper) and not alive(shell), timeout=10, what="the orphaned group reaped")
    runs = {n: rig.runs(n) for n in names}
    report("agent kill -9", after=states, runs=runs, outbox_left=rig.outbox_size(), orphan_alive=alive(sleeper))
    assert states == {"F1": "succeeded", "F2": "succeeded", "U1": "lost"}
    assert runs == {"F1": 1, "F2": 1, "U1": 1}
    assert "outcome unknown" in rig.output("U1")
    assert "out-F1" in rig.output("F1") and rig.outbox_size() == 0


def test_partitions_short_and_longer_than_the_lease_lose_and_repeat_nothing(rig_factory):
    rig = rig_factory({"LEASE_SECONDS": "1", "LOST_AFTER_SECONDS": "20", "TOOL_WAIT_SECONDS": "2"})
    # A few seconds: the call's wait ends inside the partition and must not claim success.
    answer: dict = {}
    caller = threading.Thread(target=lambda: answer.update(rig.submit("S1", "sleep 2")))
    caller.start()
    wait_for(lambda: rig.runs("S1"), what="S1 running")
    rig.proxy.stop()
    caller.join(30)
    wait_for(lambda: rig.outbox_size() == 1, timeout=15, what="S1 finished during the partition")
    rig.proxy.start()
    wait_for(lambda: rig.states().get("S1") == "succeeded", timeout=15, what="S1 delivered after the partition")
    assert not answer["is_error"] and "outcome is unknown" in answer["text"] and "may still be running" in answer["text"]

    # Longer than the lease: P1 is submitted while the agent is cut off; R1 finishes meanwhile.
    caller = threading.Thread(target=rig.submit, args=("R1", "sleep 3"))
    caller.start()
    wait_for(lambda: rig.runs("R1"), what="R1 running")
    rig.proxy.stop()
    cut_at = time.monotonic()
    rig.submit("P1")
    during = rig.states()["P1"]
    wait_for(lambda: rig.outbox_size() == 1 and time.monotonic() - cut_at > 4, timeout=20, what="a partition of 4 lease periods")
    rig.proxy.start()
    caller.join(30)
    names = ["S1", "R1", "P1"]
    states = wait_for(lambda: rig.all_terminal(names), timeout=30, what="every command terminal")
    runs = {n: rig.runs(n) for n in names}
    report("partitions", p1_during=during, after=states, runs=runs, outbox_left=rig.outbox_size())
    assert states == {n: "succeeded" for n in names}
    assert runs == {n: 1 for n in names}


def test_result_answers_cut_after_the_server_committed_are_not_applied_twice(rig_factory):
    rig = rig_factory({})
    rig.proxy.drop_responses("/result", 2)
    for name in ("D1", "D2"):
        rig.submit(name)
    names = ["D1", "D2"]
    states = wait_for(lambda: rig.all_terminal(names), timeout=20, what="both terminal")
    wait_for(lambda: rig.outbox_size() == 0 and len(rig.proxy.dropped) == 2, timeout=20, what="outbox empty")
    runs = {n: rig.runs(n) for n in names}
    repeats = rig.agent.process.log().count("a repeat)")
    report("result answers dropped", dropped=len(rig.proxy.dropped), after=states, runs=runs, repeats_acknowledged=repeats, outbox_left=rig.outbox_size())
    assert states == {"D1": "succeeded", "D2": "succeeded"} and runs == {"D1": 1, "D2": 1}
    # Each command whose answer was cut is acknowledged as a repeat exactly once, when a resend lands.
    assert repeats == len(set(rig.proxy.dropped)) >= 1
    assert all(f"out-{n}" in rig.output(n) for n in names)


def test_a_lease_confirmation_cut_after_the_server_committed_it_is_retried_and_the_command_runs_once(rig_factory):
    """A stopping server or a flaky network loses the answer to `start`: the agent confirms again
    (the same lease is accepted twice) instead of leaving the command to its lease or to 'lost'."""
    rig = rig_factory({})
    rig.proxy.drop_responses("/start", 2)
    rig.submit("S1")
    states = wait_for(lambda: rig.all_terminal(["S1"]), timeout=20, what="S1 terminal")
    assert len(rig.proxy.dropped) == 2, rig.proxy.dropped
    assert states == {"S1": "succeeded"} and rig.runs("S1") == 1
    assert "out-S1" in rig.output("S1")
