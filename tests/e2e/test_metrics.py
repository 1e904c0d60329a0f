"""GET /metrics on a real server with a real agent, after traffic from the official MCP client: the
Prometheus text parses with prometheus_client's own parser and its counts are what was sent."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Agent, Server, wait_for
from tests.mcp_client import MCPError, open_session, with_session

METRICS_TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server"), env={"METRICS_TOKEN": METRICS_TOKEN, "AUTH_FAILURES_PER_MINUTE": "3"}).start()
    agent = Agent(server, tmp_path_factory.mktemp("agent"), "box").start()
    yield server, agent
    agent.stop()
    server.stop()


def scrape(server: Server, token: str | None = METRICS_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(server.url + "/metrics", headers=headers, timeout=10)


def samples(server: Server) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}, parsed by prometheus_client.parser."""
    response = scrape(server)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_are_off_without_a_token_and_need_the_token_when_on(tmp_path, stack):
    server, _ = stack
    assert scrape(server, None).status_code == 401
    off = Server(tmp_path / "off").start()
    try:
        response = requests.get(off.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        assert response.status_code == 404 and response.json()["error"]["code"] == "metrics_off"
    finally:
        off.stop()


def test_counts_match_the_official_clients_traffic(stack):
    server, agent = stack

    async def traffic(s):
        for _ in range(3):
            assert not (await s.call_tool("run_shell_command", {"command": "echo hi"}))["is_error"]
        assert "[exit code 3]" in (await s.call_tool("run_shell_command", {"command": "exit 3"}))["text"]
        missing = await s.call_tool("read_file", {"path": str(agent.scratch / "no-such-file")})
        assert missing["is_error"]
        json.loads((await s.call_tool("check_agent_status", {}))["text"])
        with pytest.raises(MCPError):
            await s.call_tool("no_such_tool", {})

    with_session("http", server.url + "/mcp", server.token, traffic, overall_timeout=90)

    # One refused OAuth token request, then bad bearer tokens until the throttle answers 429.
    assert requests.post(server.url + "/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "nobody"}, timeout=10).status_code in (400, 401)
    codes = [requests.post(server.url + "/mcp", json={}, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code for _ in range(3)]
    assert codes == [401, 401, 429]

    # An SSE stream held open while we scrape.
    with requests.get(server.url + "/sse", headers=server.headers(), stream=True, timeout=10) as stream:
        assert stream.status_code == 200
        next(stream.iter_lines())
        def counted():
            found = samples(server)
            return found if found.get(("code_remote_open_streams", (("kind", "sse"),))) == 1 else None

        found = wait_for(counted, what="the open SSE stream counted")

    calls = {labels: value for (name, labels), value in found.items() if name == "code_remote_tool_calls_total"}
    assert calls == {
        (("outcome", "succeeded"), ("tool", "run_shell_command")): 4,  # a non-zero exit is a normal result
        (("outcome", "failed"), ("tool", "read_file")): 1,
        (("outcome", "ok"), ("tool", "check_agent_status")): 1,
        (("outcome", "refused"), ("tool", "no_such_tool")): 1,
    }
    assert found[("code_remote_tool_call_duration_seconds_count", (("tool", "run_shell_command"),))] == 4
    assert found[("code_remote_tool_call_duration_seconds_bucket", (("le", "+Inf"), ("tool", "run_shell_command")))] == 4
    assert found[("code_remote_tool_call_duration_seconds_sum", (("tool", "run_shell_command"),))] > 0
    assert found[("code_remote_commands", (("state", "succeeded"),))] == 4
    assert found[("code_remote_commands", (("state", "failed"),))] == 1
    assert found[("code_remote_queue_depth", (("machine", "box"),))] == 0
    assert found[("code_remote_agents_online", ())] == 1
    assert found[("code_remote_held_polls", ())] == 1
    assert found[("code_remote_oauth_failures_total", (("endpoint", "token"),))] == 1
    assert found[("code_remote_oauth_failures_total", (("endpoint", "bearer"),))] == 2
    assert found[("code_remote_throttled_requests_total", (("surface", "mcp"),))] == 1


def test_a_wrong_metrics_token_is_refused_and_counted_by_the_throttle(stack):
    server, _ = stack
    assert scrape(server, "wrong").status_code in (401, 429)
    assert scrape(server).status_code == 200  # the right token always passes


def test_the_loop_lag_probe_shows_a_stalled_worker_as_a_pause(stack):
    """The worker is frozen from outside (SIGSTOP, then SIGCONT after STALL seconds), as a blocking
    call or a long garbage collection would freeze its event loop: the probe's wake-up comes that late."""
    server, _ = stack
    lag = wait_for(lambda: (found := samples(server)).get(("code_remote_event_loop_lag_seconds_count", ())) and found,
                   what="the loop-lag probe's first samples")
    assert lag[("code_remote_event_loop_lag_seconds_bucket", (("le", "+Inf"),))] == lag[("code_remote_event_loop_lag_seconds_count", ())]
    (worker,) = (int(pid) for pid in Path(f"/proc/{server.process.proc.pid}/task/{server.process.proc.pid}/children").read_text().split())
    stall = 0.6
    os.kill(worker, signal.SIGSTOP)
    try:
        time.sleep(stall)  # the length of the stall itself, not a wait for a condition
    finally:
        os.kill(worker, signal.SIGCONT)

    def paused():
        found = samples(server)
        return found if found[("code_remote_event_loop_lag_max_seconds", ())] >= stall - 0.05 else None

    found = wait_for(paused, what="the stall seen by the probe")
    over = found[("code_remote_event_loop_lag_seconds_bucket", (("le", "+Inf"),))] - found[("code_remote_event_loop_lag_seconds_bucket", (("le", "0.5"),))]
    assert over >= 1  # the stalled wake-up is counted above 0.5 s
    assert found[("code_remote_event_loop_lag_seconds_sum", ())] >= stall - 0.05
    assert found[("code_remote_event_loop_lag_seconds_count", ())] > lag[("code_remote_event_loop_lag_seconds_count", ())]
