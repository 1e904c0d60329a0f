"""Three credentials that never stand in for each other, key rotation, machine revocation, the
agents' network rule through trusted proxies, and the slow-down for failed authentication.
All against the real gunicorn server; the agent API is driven by hand, as curl would."""

from __future__ import annotations

import pytest
import requests

from tests.harness import Agent, Server, wait_for
from tests.oauth_helpers import REDIRECT_URI, answer_consent, pkce_pair, redirect_params

ENROLMENT = "separate-enrolment-secret-0123456789"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _register(server: Server, secret: str, machine: str = "hand") -> requests.Response:
    return requests.post(server.url + "/api/agent/register", json={"machine": machine}, headers=_bearer(secret), timeout=5)


def _poll(server: Server, token: str) -> requests.Response:
    return requests.get(server.url + "/api/agent/poll", params={"wait": "0"}, headers=_bearer(token), timeout=10)


def _oauth_access_token(server: Server) -> str:
    client_id = requests.post(server.url + "/register", json={"redirect_uris": [REDIRECT_URI]}, timeout=5).json()["client_id"]
    verifier, challenge = pkce_pair()
    url = requests.Request("GET", server.url + "/authorize", params={
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256",
    }).prepare().url
    code = redirect_params(answer_consent(url, server.token))["code"]
    tokens = requests.post(server.url + "/token", data={
        "grant_type": "authorization_code", "client_id": client_id, "code": code,
        "redirect_uri": REDIRECT_URI, "code_verifier": verifier,
    }, timeout=5)
    return tokens.json()["access_token"]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    server = Server(
        tmp_path_factory.mktemp("credentials"),
        env={"AGENT_ENROLMENT_SECRET": ENROLMENT, "AUTH_FAILURES_PER_MINUTE": "10000"},
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent_token(server) -> str:
    response = _register(server, ENROLMENT)
    assert response.status_code == 200, response.text
    return response.json()["token"]


@pytest.fixture(scope="module")
def oauth_token(server) -> str:
    return _oauth_access_token(server)


MCP_SURFACES = [("GET", "/sse"), ("POST", "/mcp"), ("GET", "/api/machines"), ("GET", "/api/commands")]


@pytest.mark.parametrize(("method", "path"), MCP_SURFACES)
def test_agent_token_and_enrolment_secret_are_refused_by_mcp_and_rest(server, agent_token, method, path):
    for wrong in (agent_token, ENROLMENT):
        response = requests.request(method, server.url + path, headers=_bearer(wrong), json={}, timeout=5)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize(("method", "path"), MCP_SURFACES[2:])
def test_owner_and_oauth_tokens_are_accepted_by_rest(server, oauth_token, method, path):
    for right in (server.token, oauth_token):
        assert requests.request(method, server.url + path, headers=_bearer(right), timeout=5).status_code == 200


def test_owner_and_oauth_tokens_are_refused_by_the_agent_api(server, oauth_token):
    for wrong in (server.token, oauth_token, ENROLMENT):
        response = _poll(server, wrong)
        assert response.status_code == 401 and response.json()["error"]["code"] == "token_invalid"


def test_only_the_enrolment_secret_enrols_an_agent(server, agent_token, oauth_token):
    for wrong in (server.token, oauth_token, agent_token):
        response = _register(server, wrong)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_token"
    assert _poll(server, agent_token).status_code == 204


def test_revoking_a_machine_kills_its_tokens_at_once(server):
    token = _register(server, ENROLMENT, "revokable").json()["token"]
    assert _poll(server, token).status_code == 204
    revoked = requests.post(server.url + "/api/machines/revokable/revoke", headers=server.headers(), timeout=5)
    assert revoked.status_code == 200 and revoked.json()["revoked"]
    refused = _poll(server, token)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
    again = _register(server, ENROLMENT, "revokable").json()["token"]
    assert _poll(server, again).status_code == 204
    missing = requests.post(server.url + "/api/machines/nope/revoke", headers=server.headers(), timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_machine"


def test_a_revoked_real_agent_enrols_again_and_keeps_working(tmp_path):
    # A short poll hold: the revocation is noticed at the agent's next poll.
    server = Server(tmp_path / "server", env={"POLL_TIMEOUT_SECONDS": "2"}).start()
    try:
        agent = Agent(server, tmp_path, "box").start()
        requests.post(server.url + "/api/machines/box/revoke", headers=server.headers(), timeout=5).raise_for_status()
        wait_for(lambda: agent.process.log().count("registering again") >= 1, timeout=40, what="agent re-enrols")
        wait_for(agent.online, timeout=20, what="agent online again")
        agent.stop()
    finally:
        server.stop()


def test_adding_a_signing_key_keeps_old_agent_tokens_working(tmp_path):
    server = Server(tmp_path / "server", env={"SIGNING_KEYS": "first-key-0123456789abcdef"}).start()
    try:
        old = _register(server, server.token).json()["token"]
        server.stop()
        server.env["SIGNING_KEYS"] = "second-key-0123456789abcdef,first-key-0123456789abcdef"
        server.start()
        assert _poll(server, old).status_code == 204
        new = _register(server, server.token).json()["token"]
        assert new != old and _poll(server, new).status_code == 204
        server.stop()
        server.env["SIGNING_KEYS"] = "second-key-0123456789abcdef"
        server.start()
        assert _poll(server, new).status_code == 204
        retired = _poll(server, old)
        assert retired.status_code == 401 and retired.json()["error"]["code"] == "token_invalid"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory) -> Server:
    """A server behind one trusted proxy that admits agents only from Tailscale's range."""
    server = Server(
        tmp_path_factory.mktemp("proxied"),
        env={"AGENT_ALLOWED_NETWORKS": "100.64.0.0/10", "TRUSTED_PROXY_HOPS": "1"},
    ).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("forwarded_for", "allowed"),
    [
        (None, False),  # straight from 127.0.0.1, outside the range
        ("100.64.1.2", True),  # the proxy saw a Tailscale peer
        ("100.64.1.2, 127.0.0.1", False),  # the client forged the left entry; the proxy saw 127.0.0.1
        ("10.0.0.1, 100.64.1.2", True),  # the right-most entry is the proxy's
        ("garbage", False),
        ("100.127.255.255", True),
        ("100.128.0.1", False),
    ],
)
def test_agents_are_admitted_by_the_address_the_trusted_proxy_saw(proxied, forwarded_for, allowed):
    headers = _bearer(proxied.token) | ({"X-Forwarded-For": forwarded_for} if forwarded_for else {})
    response = requests.post(proxied.url + "/api/agent/register", json={"machine": "netbox"}, headers=headers, timeout=5)
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403 and response.json()["error"]["code"] == "network_not_allowed"


def test_without_trusted_proxies_a_forwarded_for_header_is_ignored(tmp_path):
    server = Server(tmp_path / "server", env={"AGENT_ALLOWED_NETWORKS": "100.64.0.0/10"}).start()
    try:
        headers = _bearer(server.token) | {"X-Forwarded-For": "100.64.1.2"}
        response = requests.post(server.url + "/api/agent/register", json={"machine": "x"}, headers=headers, timeout=5)
        assert response.status_code == 403 and response.json()["error"]["code"] == "network_not_allowed"
        # The MCP side is not restricted by the agents' rule.
        assert requests.get(server.url + "/api/machines", headers=server.headers(), timeout=5).status_code == 200
    finally:
        server.stop()


def test_failed_authentication_slows_down_but_never_locks_the_owner_out(tmp_path):
    server = Server(tmp_path / "server", env={"AUTH_FAILURES_PER_MINUTE": "3"}).start()
    try:
        statuses = [requests.get(server.url + "/api/machines", headers=_bearer("wrong-token"), timeout=5) for _ in range(5)]
        assert [r.status_code for r in statuses] == [401, 401, 401, 429, 429]
        assert 1 <= int(statuses[-1].headers["Retry-After"]) <= 60
        assert statuses[-1].json()["error"]["code"] == "too_many_failed_attempts"
        assert requests.get(server.url + "/api/machines", headers=server.headers(), timeout=5).status_code == 200
        consent = requests.post(server.url + "/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "y"}, timeout=5)
        assert consent.status_code == 429
    finally:
        server.stop()


def test_client_registrations_are_limited_per_address(tmp_path):
    server = Server(tmp_path / "server", env={"CLIENT_REGISTRATIONS_PER_HOUR": "2"}).start()
    try:
        body = {"redirect_uris": [REDIRECT_URI]}
        statuses = [requests.post(server.url + "/register", json=body, timeout=5) for _ in range(3)]
        assert [r.status_code for r in statuses] == [201, 201, 429]
        assert statuses[-1].json()["error"]["code"] == "too_many_registrations"
        assert int(statuses[-1].headers["Retry-After"]) > 3000
    finally:
        server.stop()


def test_a_read_only_agent_enrolled_with_the_separate_secret_refuses_writes_and_the_shell(server, tmp_path):
    from tests.mcp_client import call_tool

    # The harness also gives the agent AUTH_TOKEN, which this server refuses for enrolment.
    agent = Agent(server, tmp_path, "reader", env={"READ_ONLY": "1", "AGENT_ENROLMENT_SECRET": ENROLMENT}).start()
    try:
        (agent.home / "notes.txt").write_text("readable\n")
        url = server.url + "/sse"
        read = call_tool("sse", url, server.token, "read_file", {"path": str(agent.home / "notes.txt"), "machine": "reader"})
        assert read["text"] == "readable\n"
        for tool, arguments in (("write_file", {"path": str(agent.home / "x"), "content": "x"}), ("run_shell_command", {"command": "touch x"})):
            result = call_tool("sse", url, server.token, tool, arguments | {"machine": "reader"})
            assert result["is_error"] and "read-only mode" in result["text"], result["text"]
        assert not (agent.home / "x").exists()
        secret = call_tool("sse", url, server.token, "read_file", {"path": "~/.ssh/id_rsa", "machine": "reader"})
        assert secret["is_error"] and "deny-list" in secret["text"]
    finally:
        agent.stop()
