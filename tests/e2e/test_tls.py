"""The agent behind a real TLS-terminating reverse proxy (nginx) whose certificate a private CA signs."""

from __future__ import annotations

import subprocess

import pytest

from tests.harness import PYTHON, ROOT, Agent, base_env, wait_for
from tests.mcp_client import call_tool
from tests.proxies import Nginx, agent_network_env


@pytest.fixture(scope="module")
def nginx(live_server, certs, tmp_path_factory):
    proxy = Nginx(tmp_path_factory.mktemp("nginx"), live_server.port, certs).start()
    yield proxy
    proxy.stop()


def _agent(live_server, nginx, workdir, name: str, ca_bundle: str) -> Agent:
    agent = Agent(live_server, workdir, name, env=agent_network_env(ca_bundle=ca_bundle))
    agent.env["RELAY_URL"] = nginx.url
    return agent


def test_agent_works_through_tls_proxy_given_the_private_ca_as_a_bundle(live_server, nginx, certs, tmp_path):
    agent = _agent(live_server, nginx, tmp_path, "tls-box", str(certs.ca)).start()
    try:
        result = call_tool("sse", live_server.url + "/sse", live_server.token, "run_shell_command",
                           {"command": "echo through-tls", "machine": "tls-box"})
        assert not result["is_error"] and "through-tls" in result["text"]
        assert "GET /api/agent/poll" in nginx.access_log.read_text()
        assert "TLS verification" not in agent.process.log()
    finally:
        agent.stop()


def test_agent_without_the_private_ca_fails_with_a_message_naming_the_problem(live_server, nginx, tmp_path):
    agent = _agent(live_server, nginx, tmp_path, "no-ca-box", "").start(wait_online=False)
    try:
        wait_for(lambda: "TLS verification of" in agent.process.log(), timeout=20, what="the TLS failure in the agent log")
        log = agent.process.log()
        assert f"TLS verification of {nginx.url}/api/agent/register failed" in log
        assert "unable to get local issuer certificate" in log
        assert "set CA_BUNDLE" in log
        assert agent.process.alive(), "the agent keeps retrying: the fix may be a CA installed into the system store"
        assert "no-ca-box" not in live_server.machines()
    finally:
        agent.stop()


def test_a_ca_bundle_that_does_not_exist_stops_the_agent_at_start(live_server, tmp_path):
    env = base_env(RELAY_URL="https://127.0.0.1:9", AUTH_TOKEN=live_server.token, HOME=str(tmp_path),
                   CODE_REMOTE_ENV_FILE=str(tmp_path / "none.env"), **agent_network_env(ca_bundle=str(tmp_path / "missing.pem")))
    done = subprocess.run([PYTHON, "-m", "agent"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "CA_BUNDLE" in done.stderr and "missing.pem" in done.stderr and "does not exist" in done.stderr
