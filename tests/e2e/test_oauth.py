"""OAuth 2.1 against the real gunicorn server: the official mcp client's whole flow (discovery, DCR,
PKCE, consent, token, refresh) then tool calls, and each misuse failing with its OAuth error."""

from __future__ import annotations

import contextlib
import html
import json
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
import requests
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.harness import Agent, Server, serve_page
from tests.oauth_helpers import (
    CLAUDE_CALLBACK,
    REDIRECT_URI,
    MemoryStorage,
    answer_consent,
    make_provider,
    pkce_pair,
    redirect_params,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    # Many failures on purpose here: keep the per-address slow-down out of the way.
    server = Server(tmp_path_factory.mktemp("oauth"), env={"AUTH_FAILURES_PER_MINUTE": "10000", "CLIENT_REGISTRATIONS_PER_HOUR": "10000"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(server, tmp_path_factory) -> Agent:
    agent = Agent(server, tmp_path_factory.mktemp("oauth-agent"), "box").start()
    yield agent
    agent.stop()


async def _use_tools(transport) -> dict:
    async with Client(transport, mode="legacy", read_timeout_seconds=30) as client:
        status = await client.call_tool("check_agent_status", {})
        shell = await client.call_tool("run_shell_command", {"command": "echo via-oauth"})
    return {"status": json.loads(status.content[0].text), "shell": shell.content[0].text}


def test_official_client_completes_oauth_then_calls_tools_and_refreshes(server, agent):
    storage = MemoryStorage()
    provider = make_provider(server.url + "/sse", server.token, storage, client_name="Official SDK")

    first = anyio.run(_use_tools, sse_client(server.url + "/sse", auth=provider, timeout=10))
    assert first["status"]["machines"][0]["name"] == "box"
    assert first["shell"].startswith("via-oauth")
    assert storage.client_info is not None and storage.client_info.client_name == "Official SDK"
    assert len(storage.history) == 1 and storage.history[0].access_token.startswith("cra_")

    # The access token runs out: the client refreshes with its refresh token and carries on.
    provider.context.token_expiry_time = time.time() - 1
    second = anyio.run(_use_tools, sse_client(server.url + "/sse", auth=provider, timeout=10))
    assert second["shell"].startswith("via-oauth")
    assert len(storage.history) == 2
    old, new = storage.history
    assert new.access_token != old.access_token and new.refresh_token != old.refresh_token

    # Rotation: the spent refresh token is refused, and its replay revokes the newer tokens too.
    replay = _token(server, grant_type="refresh_token", refresh_token=old.refresh_token, client_id=storage.client_info.client_id)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert _bearer_status(server, new.access_token) == 401


def test_official_client_oauth_over_streamable_http(server, agent):
    # Without a credential /mcp answers 401 pointing at the OAuth metadata: where the client's flow starts.
    probe = requests.post(server.url + "/mcp", json={}, headers={"Accept": "application/json, text/event-stream"}, timeout=5)
    assert probe.status_code == 401 and "resource_metadata=" in probe.headers["WWW-Authenticate"]
    storage = MemoryStorage()
    provider = make_provider(server.url + "/mcp", server.token, storage)

    async def scenario():
        async with create_mcp_http_client(auth=provider) as http:
            return await _use_tools(streamable_http_client(server.url + "/mcp", http_client=http))

    result = anyio.run(scenario)
    assert result["shell"].startswith("via-oauth")


def test_every_401_points_at_the_protected_resource_metadata(server):
    for method, path in (("GET", "/sse"), ("POST", "/messages?session_id=x"), ("GET", "/api/machines")):
        response = requests.request(method, server.url + path, timeout=5)
        assert response.status_code == 401
        assert f'resource_metadata="{server.url}/.well-known/oauth-protected-resource"' in response.headers["WWW-Authenticate"]
    prm = requests.get(server.url + "/.well-known/oauth-protected-resource", timeout=5).json()
    assert prm["resource"] == server.url + "/" and prm["authorization_servers"] == [server.url]
    asm = requests.get(server.url + "/.well-known/oauth-authorization-server", timeout=5).json()
    assert asm["issuer"] == server.url and asm["code_challenge_methods_supported"] == ["S256"]
    assert asm["registration_endpoint"] == server.url + "/register"


# --- the flow by hand, to break it ------------------------------------------------------------


def _register(server, redirect_uris=(REDIRECT_URI,), **extra) -> requests.Response:
    body = {"client_name": "Hand-made", "redirect_uris": list(redirect_uris), "token_endpoint_auth_method": "none", **extra}
    return requests.post(server.url + "/register", json=body, timeout=5)


def _authorize_url(server, client_id, challenge, *, redirect_uri=REDIRECT_URI, **extra) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": server.url + "/",
        **extra,
    }
    return requests.Request("GET", server.url + "/authorize", params=params).prepare().url


def _token(server, **form) -> requests.Response:
    return requests.post(server.url + "/token", data=form, timeout=5)


def _bearer_status(server, token) -> int:
    return requests.get(server.url + "/api/machines", headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code


def _approved_code(server, *, redirect_uri=REDIRECT_URI):
    client_id = _register(server).json()["client_id"]
    verifier, challenge = pkce_pair()
    params = redirect_params(answer_consent(_authorize_url(server, client_id, challenge), server.token))
    assert params["state"] == "st4te"
    return client_id, verifier, params["code"]


def _exchange(server, client_id, code, verifier, redirect_uri=REDIRECT_URI) -> requests.Response:
    form = {"grant_type": "authorization_code", "client_id": client_id, "code": code, "redirect_uri": redirect_uri, "resource": server.url + "/"}
    if verifier is not None:
        form["code_verifier"] = verifier
    return _token(server, **form)


def test_wrong_owner_secret_is_refused_on_the_consent_page(server):
    client_id = _register(server).json()["client_id"]
    _, challenge = pkce_pair()
    response = answer_consent(_authorize_url(server, client_id, challenge), "not-the-owner-secret")
    assert response.status_code == 401 and "Location" not in response.headers
    assert "not the owner secret" in response.text


def test_deny_sends_access_denied_back(server):
    client_id = _register(server).json()["client_id"]
    _, challenge = pkce_pair()
    params = redirect_params(answer_consent(_authorize_url(server, client_id, challenge), "", decision="deny"))
    assert params == {"error": "access_denied", "error_description": "the owner declined", "state": "st4te", "iss": server.url}


def test_unregistered_redirect_uri_is_shown_not_followed(server):
    client_id = _register(server).json()["client_id"]
    _, challenge = pkce_pair()
    url = _authorize_url(server, client_id, challenge, redirect_uri="https://evil.example/cb")
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 400 and "Location" not in response.headers
    assert "redirect_uri is not one this client registered" in response.text


def test_missing_pkce_challenge_is_an_invalid_request(server):
    client_id = _register(server).json()["client_id"]
    url = _authorize_url(server, client_id, "", code_challenge_method="plain")
    params = redirect_params(requests.get(url, allow_redirects=False, timeout=5))
    assert params["error"] == "invalid_request" and "PKCE" in params["error_description"]


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("mismatched_redirect_uri", "invalid_grant"),
        ("missing_verifier", "invalid_request"),
        ("wrong_verifier", "invalid_grant"),
        ("other_resource", "invalid_target"),
        ("unknown_client", "invalid_client"),
    ],
)
def test_bad_code_exchange_fails_with_the_right_oauth_error(server, case, error):
    client_id, verifier, code = _approved_code(server)
    redirect_uri = REDIRECT_URI
    if case == "mismatched_redirect_uri":
        redirect_uri = "http://127.0.0.1:9/other"
    elif case == "missing_verifier":
        verifier = None
    elif case == "wrong_verifier":
        verifier = pkce_pair()[0]
    elif case == "unknown_client":
        client_id = "no-such-client"
    if case == "other_resource":
        response = _token(server, grant_type="authorization_code", client_id=client_id, code=code,
                          redirect_uri=redirect_uri, code_verifier=verifier, resource="https://elsewhere.example/")
    else:
        response = _exchange(server, client_id, code, verifier, redirect_uri)
    assert response.json()["error"] == error, response.text
    assert response.status_code == (401 if error == "invalid_client" else 400)


def test_reused_code_fails_and_revokes_what_it_issued(server):
    client_id, verifier, code = _approved_code(server)
    first = _exchange(server, client_id, code, verifier)
    assert first.status_code == 200, first.text
    assert first.json()["token_type"] == "Bearer" and first.json()["expires_in"] == 3600
    assert _bearer_status(server, first.json()["access_token"]) == 200
    again = _exchange(server, client_id, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert "already used" in again.json()["error_description"]
    assert _bearer_status(server, first.json()["access_token"]) == 401


def test_revoked_refresh_token_is_refused(server):
    client_id, verifier, code = _approved_code(server)
    tokens = _exchange(server, client_id, code, verifier).json()
    revoked = requests.post(server.url + "/revoke", data={"token": tokens["refresh_token"], "client_id": client_id}, timeout=5)
    assert revoked.status_code == 200
    refreshed = _token(server, grant_type="refresh_token", refresh_token=tokens["refresh_token"], client_id=client_id)
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert "revoked" in refreshed.json()["error_description"]
    assert _bearer_status(server, tokens["access_token"]) == 401


def test_claude_callbacks_register_and_unsafe_redirects_do_not(server):
    ok = _register(server, (CLAUDE_CALLBACK, "https://claude.com/api/mcp/auth_callback"))
    assert ok.status_code == 201 and ok.json()["redirect_uris"][0] == CLAUDE_CALLBACK
    for bad in ("javascript:alert(1)", "http://example.com/cb", "https://claude.ai/cb#frag", "data:text/html,x", ""):
        response = _register(server, (bad,))
        assert response.status_code == 400 and response.json()["error"] == "invalid_redirect_uri", bad


def test_confidential_client_must_present_its_secret(server):
    registered = _register(server, token_endpoint_auth_method="client_secret_post").json()
    assert registered["client_secret"]
    verifier, challenge = pkce_pair()
    code = redirect_params(answer_consent(_authorize_url(server, registered["client_id"], challenge), server.token))["code"]
    without = _exchange(server, registered["client_id"], code, verifier)
    assert without.status_code == 401 and without.json()["error"] == "invalid_client"


NODE_DIR = Path(__file__).resolve().parent.parent / "node"


def test_consent_page_in_headless_chromium(server, tmp_path):
    if not Path("/usr/bin/chromium").exists() or not (NODE_DIR / "node_modules" / "playwright-core").exists():
        pytest.fail("needs Debian's chromium (.ci/apt-packages) and playwright-core (scripts/bootstrap --node)")
    with callback_server() as callback_uri:
        client_id = _register(server, (callback_uri,)).json()["client_id"]
        verifier, challenge = pkce_pair()
        url = _authorize_url(server, client_id, challenge, redirect_uri=callback_uri)
        run = subprocess.run(
            ["node", str(NODE_DIR / "consent.mjs"), url, server.token, str(tmp_path), "wrong-secret"],
            cwd=NODE_DIR, capture_output=True, text=True, timeout=90,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["clientName"] == "Hand-made"
    assert "not the owner secret" in outcome["wrongSecretError"]
    assert outcome["redirect"].startswith(callback_uri + "?")
    params = redirect_params_from_url(outcome["redirect"])
    assert params["state"] == "st4te"
    assert (tmp_path / "consent.png").stat().st_size > 5000
    tokens = _exchange(server, client_id, params["code"], verifier, callback_uri)
    assert tokens.status_code == 200 and _bearer_status(server, tokens.json()["access_token"]) == 200


@contextlib.contextmanager
def callback_server():
    """A local client's redirect target on a loopback port, as Claude Code or VS Code opens one."""
    with serve_page(b"<p>signed in; you may close this tab</p>") as port:
        yield f"http://127.0.0.1:{port}/callback"


def redirect_params_from_url(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_the_consent_page_escapes_what_the_client_registered(server):
    registered = _register(server, client_name='<script>alert("x")</script>').json()
    _, challenge = pkce_pair()
    page = requests.get(_authorize_url(server, registered["client_id"], challenge), timeout=5)
    assert page.status_code == 200 and "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert page.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_browser_clients_may_read_the_metadata_and_token_answers_cross_origin(server):
    origin = {"Origin": "http://localhost:6274"}
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-authorization-server"):
        assert requests.get(server.url + path, headers=origin, timeout=5).headers["Access-Control-Allow-Origin"] == "*"
    preflight = requests.options(server.url + "/token", headers=origin | {"Access-Control-Request-Method": "POST"}, timeout=5)
    assert preflight.status_code == 200 and "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in requests.get(server.url + "/authorize", headers=origin, timeout=5).headers


def test_a_loopback_redirect_may_use_any_port_but_nothing_else_may_differ(server):
    client_id = _register(server, ("http://127.0.0.1:33418/callback",)).json()["client_id"]
    verifier, challenge = pkce_pair()
    other_port = "http://127.0.0.1:50123/callback"
    params = redirect_params(answer_consent(_authorize_url(server, client_id, challenge, redirect_uri=other_port), server.token))
    assert _exchange(server, client_id, params["code"], verifier, other_port).status_code == 200
    for changed in ("http://127.0.0.1:50123/other", "http://localhost:33418/callback", "https://127.0.0.1:33418/callback"):
        page = requests.get(_authorize_url(server, client_id, challenge, redirect_uri=changed), allow_redirects=False, timeout=5)
        assert page.status_code == 400 and "Location" not in page.headers, changed


REGISTERED_LOOPBACK = "http://127.0.0.1:5555/cb"


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("http://127.0.0.1:5555/cb#x", "fragment"),
        ("http://127.0.0.1:5555/cb#", "fragment"),
        ("http://evil.example@127.0.0.1:5555/cb", "userinfo"),
        ("http://127.0.0.1:5555@evil.example/cb", "userinfo"),
        ("http://user:pw@127.0.0.1:5555/cb", "userinfo"),
        ("http://127.0.0.1:5555\\@evil.example/cb", "backslash"),
        ("http:\\\\127.0.0.1:5555/cb", "backslash"),
        ("http://127.0.0.1:5555/cb\\..\\x", "backslash"),
        ("http://127.0.0.1:5555/x/../cb", "'..'"),
        ("http://127.0.0.1:5555/./cb", "'.'"),
        ("http://127.0.0.1:5555/%2e%2e/cb", "percent-encode"),
        ("http://127.0.0.1:5555/x%2Fcb", "percent-encode"),
        ("http://127.0.0.1.:5555/cb", "plain host"),
        ("http://127.0.0.%31:5555/cb", "plain host"),
        ("http://127.0.0.1:05555/cb", "port"),
        ("http://127.0.0.1:\uff15\uff15\uff15\uff15/cb", "ASCII"),
        ("HTTP://127.0.0.1:5555/cb", "not one this client registered"),
        ("http://LOCALHOST:5555/cb", "not one this client registered"),
        ("http://127.1:5555/cb", "not one this client registered"),
        ("http://[::1]:5555/cb", "not one this client registered"),
        ("http://127.0.0.1:5555/CB", "not one this client registered"),
        ("http://127.0.0.1:5555/cb/", "not one this client registered"),
        ("http://127.0.0.1:5555/cb?", "not one this client registered"),
        ("http://127.0.0.1:5555/cb?x=1", "not one this client registered"),
        ("http://127.0.0.1:5555//cb", "not one this client registered"),
        ("http://127.0.0.1:5555/cb%20", "not one this client registered"),
        ("https://127.0.0.1:5555/cb", "not one this client registered"),
    ],
)
def test_a_loopback_redirect_variant_is_refused_on_a_page_and_audited(server, variant, reason):
    client_id = _register(server, (REGISTERED_LOOPBACK,)).json()["client_id"]
    _, challenge = pkce_pair()
    page = requests.get(_authorize_url(server, client_id, challenge, redirect_uri=variant), allow_redirects=False, timeout=5)
    assert page.status_code == 400 and "Location" not in page.headers, variant
    assert reason in html.unescape(page.text), page.text
    rows = [r for r in server.audit(limit=20) if r["error_code"] == "invalid_redirect_uri" and r["message"].startswith("GET /authorize")]
    assert rows and reason in rows[0]["message"]


@pytest.mark.parametrize(
    "uri",
    ["http://evil.example@127.0.0.1:5555/cb", "https://claude.ai\\@evil.example/cb", "https://claude.ai./cb",
     "https://claude.ai/a/../cb", "http://127.0.0.1:0/cb", "https://claude.ai/%2e%2e/cb"],
)
def test_registration_refuses_redirect_uris_that_could_read_two_ways(server, uri):
    response = _register(server, (uri,))
    assert response.status_code == 400 and response.json()["error"] == "invalid_redirect_uri", uri


def test_the_authorization_response_names_the_issuer(server):
    assert requests.get(server.url + "/.well-known/oauth-authorization-server", timeout=5).json()[
        "authorization_response_iss_parameter_supported"
    ] is True
    client_id = _register(server).json()["client_id"]
    _, challenge = pkce_pair()
    granted = redirect_params(answer_consent(_authorize_url(server, client_id, challenge), server.token))
    assert granted["iss"] == server.url and granted["code"]
    refused = redirect_params(requests.get(_authorize_url(server, client_id, challenge, response_type="token"), allow_redirects=False, timeout=5))
    assert refused["iss"] == server.url and refused["error"] == "unsupported_response_type" and refused["state"] == "st4te"
