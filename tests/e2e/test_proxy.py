"""The agent behind a real corporate-style forward proxy (squid from Debian's packages).

The proxy requires basic auth, allows only CONNECT and only to the server's TLS front (nginx with a
private CA), so WebSocket upgrades and plain requests are refused, and it cuts connections idle for
`read_timeout`. The server holds polls for less than that, so no poll is ever cut mid-hold; a second
proxy with a shorter read_timeout shows what the agent does when one is.
"""

from __future__ import annotations

import re

import pytest
import requests

from agent.client import RelayError, _error, classify
from agent.config import AgentConfig, mask, proxy_for
from tests.harness import Agent, Server, wait_for
from tests.mcp_client import call_tool
from tests.proxies import Nginx, Squid, agent_network_env

POLL_HOLD_SECONDS = 4  # well under squid's 30 s read_timeout, and short enough for a quick test


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A poll cut by the proxy may already have leased a command into the dead connection: a short
    # lease hands it out again soon, as the relay is designed to (the command never ran).
    env = {"POLL_TIMEOUT_SECONDS": str(POLL_HOLD_SECONDS), "LEASE_SECONDS": "3"}
    server = Server(tmp_path_factory.mktemp("server"), env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(server, certs, tmp_path_factory):
    proxy = Nginx(tmp_path_factory.mktemp("nginx"), server.port, certs).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def squid(front, tmp_path_factory):
    proxy = Squid(tmp_path_factory.mktemp("squid"), front.port, read_timeout_seconds=30).start()
    yield proxy
    proxy.stop()


def _agent(server, front, certs, proxy_url, workdir, name) -> Agent:
    agent = Agent(server, workdir, name, env=agent_network_env(proxy=proxy_url, ca_bundle=str(certs.ca)))
    agent.env["RELAY_URL"] = front.url
    return agent


def _tunnels(squid: Squid) -> list[tuple[int, str]]:
    """(duration ms, status) of every CONNECT squid logged (it logs a tunnel when it closes)."""
    found = []
    for line in squid.log().splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[5] == "CONNECT":
            found.append((int(fields[1]), fields[3]))
    return found


def test_agent_works_through_squid_with_basic_auth_and_no_poll_is_cut(server, front, squid, certs, tmp_path):
    agent = _agent(server, front, certs, squid.url, tmp_path, "proxied").start()
    try:
        result = call_tool("sse", server.url + "/sse", server.token, "run_shell_command",
                           {"command": "echo via-squid", "machine": "proxied"})
        assert not result["is_error"] and "via-squid" in result["text"]

        def held_polls() -> int:
            # gunicorn's access log: a poll that ran its whole hold and ended with 204 (the agent asks
            # for the advertised hold less up to a fifth, at random).
            times = re.findall(r'"GET /api/agent/poll(?:\?\S*)? HTTP/1.1" 204 \S+ (\d+)ms', server.process.log())
            return sum(1 for t in times if int(t) >= POLL_HOLD_SECONDS * 800 - 100)

        wait_for(lambda: held_polls() >= 2, timeout=4 * POLL_HOLD_SECONDS, interval=0.2, what="two full poll holds")
    finally:
        agent.stop()
    wait_for(lambda: _tunnels(squid), timeout=10, what="squid to log the agent's tunnel")
    log = agent.process.log()
    assert "held poll was cut" not in log and "lost contact" not in log
    assert squid.password not in log and "agent:***@" in log, "proxy credentials must be masked"
    connect_lines = [line for line in squid.log().splitlines() if "CONNECT" in line]
    assert all(f"CONNECT 127.0.0.1:{front.port} agent " in line for line in connect_lines), connect_lines
    # The polls' tunnel stayed open from the first poll to the agent's exit: no poll was cut. (The
    # command's start and result, sent while a poll is held, take a second connection.)
    tunnels = _tunnels(squid)
    assert {status for _, status in tunnels} == {"TCP_TUNNEL/200"} and len(tunnels) <= 2, tunnels
    assert max(duration for duration, _ in tunnels) >= 2 * POLL_HOLD_SECONDS * 800 - 200
    # Every poll but the one held when the agent was stopped (nginx's 499) ended normally.
    polls = [line for line in front.access_log.read_text().splitlines() if "/api/agent/poll" in line]
    assert len(polls) >= 3 and all(re.search(r'HTTP/1.1" (200|204) ', line) for line in polls[:-1]), polls


def test_squid_refuses_everything_but_an_authenticated_connect_to_the_server(server, front, squid):
    session = requests.Session()
    session.trust_env = False
    anonymous = f"http://127.0.0.1:{squid.port}"
    with pytest.raises(requests.exceptions.ProxyError) as refused:
        session.get(front.url + "/health", proxies={"https": anonymous}, verify=False, timeout=10)
    assert classify(refused.value) == ("proxy_refused", "the proxy refused the tunnel: 407 Proxy Authentication Required")
    upgrade = session.get(
        server.url + "/sse",
        headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
        proxies={"http": squid.url}, timeout=10,
    )
    assert upgrade.status_code == 403 and "text/html" in upgrade.headers["Content-Type"]
    # Its HTML page is no answer from our server: the agent would retry it, not give up.
    assert _error(upgrade).code == "http_error"
    with pytest.raises(requests.exceptions.ProxyError) as elsewhere:
        session.get(server.url.replace("http://", "https://") + "/health", proxies={"https": squid.url}, verify=False, timeout=10)
    assert classify(elsewhere.value)[0] == "proxy_refused" and "403" in classify(elsewhere.value)[1]


def test_a_poll_cut_by_the_proxy_is_polled_again_at_once_not_treated_as_an_outage(server, front, certs, tmp_path):
    impatient = Squid(tmp_path / "squid", front.port, read_timeout_seconds=2).start()
    agent = _agent(server, front, certs, impatient.url, tmp_path, "cut").start()
    try:
        wait_for(lambda: agent.process.log().count("held poll was cut") >= 2, timeout=6 * POLL_HOLD_SECONDS,
                 interval=0.2, what="the proxy to cut two held polls")
        result = call_tool("sse", server.url + "/sse", server.token, "run_shell_command",
                           {"command": "echo still-here", "machine": "cut"})
        assert not result["is_error"] and "still-here" in result["text"]
    finally:
        agent.stop()
        impatient.stop()
    assert "lost contact" not in agent.process.log()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128"}, "http://lower:3128"),
        ({"HTTPS_PROXY": "http://upper:3128"}, "http://upper:3128"),
        ({"https_proxy": "proxy.corp:8080"}, "http://proxy.corp:8080"),
        ({"https_proxy": "http://p:1", "no_proxy": ".example.com"}, ""),
        ({"https_proxy": "http://p:1", "NO_PROXY": "relay.example.com:443"}, ""),
        ({"https_proxy": "http://p:1", "no_proxy": "relay.example.com:8443"}, "http://p:1"),
        ({"https_proxy": "http://p:1", "no_proxy": "*"}, ""),
        ({"https_proxy": "http://p:1", "no_proxy": "example.org,other.com"}, "http://p:1"),
        ({"http_proxy": "http://only-http:1"}, ""),
        ({"ALL_PROXY": "http://all:1"}, "http://all:1"),
    ],
)
def test_proxy_settings_lowercase_wins_and_no_proxy_bypasses(env, expected):
    assert proxy_for("https://relay.example.com", env) == expected


def test_proxy_credentials_are_masked_and_ca_bundle_comes_from_the_agent_settings(tmp_path):
    bundle = tmp_path / "corp.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    config = AgentConfig.from_env({
        "RELAY_URL": "https://relay.example.com", "AUTH_TOKEN": "t" * 20, "HOME": str(tmp_path),
        "CODE_REMOTE_ENV_FILE": str(tmp_path / "none"), "https_proxy": "http://me:hunter2@proxy:3128",
        "REQUESTS_CA_BUNDLE": str(bundle),
    })
    assert config.proxy_url == "http://me:hunter2@proxy:3128" and config.ca_bundle == str(bundle)
    assert mask(config.proxy_url) == "http://me:***@proxy:3128"


def test_an_html_error_page_from_a_proxy_is_retryable():
    page = requests.Response()
    page.status_code, page._content = 502, b"<html><body>Bad Gateway</body></html>"
    page.headers["Content-Type"] = "text/html; charset=utf-8"
    error = _error(page)
    assert isinstance(error, RelayError) and error.code == "http_error" and error.retryable


def test_failures_are_classified_without_credentials():
    from tests.harness import free_port

    session = requests.Session()
    session.trust_env = False
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(requests.RequestException) as direct:
        session.get(closed + "/health", timeout=5)
    assert classify(direct.value) == ("unreachable", "cannot connect to the server (connection refused or no route)")
    with pytest.raises(requests.RequestException) as via_proxy:
        session.get("https://relay.example.com/health", proxies={"https": closed.replace("//", "//me:hunter2@")}, timeout=5)
    kind, reason = classify(via_proxy.value)
    assert kind == "unreachable" and "the proxy" in reason and "hunter2" not in reason


def test_a_proxy_asking_for_credentials_on_plain_http_is_named_as_such(server, squid):
    session = requests.Session()
    session.trust_env = False
    page = session.get(server.url + "/health", proxies={"http": f"http://127.0.0.1:{squid.port}"}, timeout=10)
    assert page.status_code == 407
    error = _error(page)
    assert error.retryable and classify(error)[0] == "proxy_refused" and "407" in classify(error)[1]
