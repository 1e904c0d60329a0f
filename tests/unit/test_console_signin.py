"""Dashboard sign-in, its cookie, CSRF and the guard on every page, through the Flask test client."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.conftest import replace_config
from tests.harness import TOKEN
from web import create_app
from web.models import Machine, db

PAGES = ["/dashboard/", "/dashboard/machines", "/dashboard/live", "/dashboard/history", "/dashboard/access",
         "/dashboard/connect", "/dashboard/commands/0123", "/dashboard/machines/laptop/revoke",
         "/dashboard/machines/laptop/approve", "/dashboard/access/clients/x/revoke"]


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, secret: str = TOKEN):
    form = client.get("/dashboard/signin")
    return client.post("/dashboard/signin", data={"csrf_token": csrf(form.get_data(as_text=True)), "owner_secret": secret, "next": "/dashboard/history"})


@pytest.fixture
def laptop(app):
    with db.connection_context():
        Machine.create(name="laptop", hostname="secret-host-name", os="Linux", agent_version="1", roots=["/home/me"])


@pytest.mark.parametrize("path", PAGES)
def test_signed_out_every_page_redirects_to_sign_in_with_no_data(client, laptop, path):
    response = client.get(path)
    assert response.status_code == 302 and "/dashboard/signin?next=" in response.headers["Location"]
    assert b"laptop" not in response.data.replace(path.encode(), b"") and b"secret-host-name" not in response.data


def test_signed_out_the_event_stream_and_every_form_are_refused(client, laptop):
    assert client.get("/dashboard/events").status_code == 401
    for path in ["/dashboard/machines/laptop/revoke", "/dashboard/machines/laptop/approve", "/dashboard/commands/x/cancel", "/dashboard/access/clients/x/revoke", "/dashboard/connect"]:
        response = client.post(path, data={"csrf_token": "x", "reveal": "1"})
        assert response.status_code == 401 and TOKEN.encode() not in response.data
    with db.connection_context():
        assert Machine.get(Machine.name == "laptop").token_generation == 0


def test_sign_in_sets_a_strict_http_only_expiring_cookie_and_goes_where_asked(client, laptop):
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/history"
    cookie = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("code_remote_console=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=43200" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain http here; see the next test
    page = client.get("/dashboard/machines")
    assert page.status_code == 200 and b"secret-host-name" in page.data
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_the_cookie_is_secure_behind_tls(config, tmp_path):
    app = create_app(replace_config(config, public_url="https://remote.example.com"))
    from migrations import upgrade

    with db.connection_context():
        upgrade(db.obj)
    client = app.test_client()
    response = sign_in(client)
    cookie = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("code_remote_console=")][0]
    assert "Secure" in cookie


def test_a_wrong_secret_is_refused_and_counted_by_the_throttle(config, tmp_path):
    from migrations import upgrade

    app = create_app(replace_config(config, auth_failures_per_minute=2))
    with db.connection_context():
        upgrade(db.obj)
    client = app.test_client()
    codes = [sign_in(client, "wrong").status_code for _ in range(3)]
    assert codes == [401, 401, 429]
    assert client.get("/dashboard/machines").status_code == 302
    assert sign_in(client).status_code == 303  # the right secret always passes


def test_a_sign_in_form_without_its_csrf_token_is_refused(client):
    client.get("/dashboard/signin")
    response = client.post("/dashboard/signin", data={"owner_secret": TOKEN})
    assert response.status_code == 403
    assert client.get("/dashboard/machines").status_code == 302


@pytest.mark.parametrize("token", [None, "", "wrong"])
def test_a_form_without_the_right_csrf_token_is_refused(client, laptop, token):
    sign_in(client)
    data = {} if token is None else {"csrf_token": token}
    response = client.post("/dashboard/machines/laptop/revoke", data=data)
    assert response.status_code == 403
    with db.connection_context():
        assert Machine.get(Machine.name == "laptop").token_generation == 0
    page = client.get("/dashboard/machines/laptop/revoke").get_data(as_text=True)
    assert client.post("/dashboard/machines/laptop/revoke", data={"csrf_token": csrf(page)}).status_code == 303
    with db.connection_context():
        assert Machine.get(Machine.name == "laptop").token_generation == 1


def test_the_secret_is_shown_on_the_connect_page_only_after_a_click(client):
    sign_in(client)
    page = client.get("/dashboard/connect")
    assert TOKEN.encode() not in page.data and b"&lt;AUTH_TOKEN&gt;" in page.data
    shown = client.post("/dashboard/connect", data={"csrf_token": csrf(page.get_data(as_text=True)), "reveal": "1"})
    assert shown.status_code == 200 and TOKEN.encode() in shown.data and shown.headers["Cache-Control"] == "no-store"


def test_signing_out_ends_the_session(client):
    sign_in(client)
    page = client.get("/dashboard/machines").get_data(as_text=True)
    assert client.post("/dashboard/signout", data={"csrf_token": csrf(page)}).status_code == 303
    assert client.get("/dashboard/machines").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/api/commands", "/\\evil.example"])
def test_sign_in_never_redirects_off_the_dashboard(client, target):
    form = client.get("/dashboard/signin")
    response = client.post("/dashboard/signin", data={"csrf_token": csrf(form.get_data(as_text=True)), "owner_secret": TOKEN, "next": target})
    assert response.headers["Location"] == "/dashboard/machines"


def test_a_key_refused_a_machine_name_is_offered_on_the_machines_page(client):
    enrol = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/agent/register", json={"machine": "moved", "key": "a" * 40}, headers=enrol).status_code == 200
    assert client.post("/api/agent/register", json={"machine": "moved", "key": "b" * 40}, headers=enrol).status_code == 403
    sign_in(client)
    page = client.get("/dashboard/machines").get_data(as_text=True)
    assert hashlib.sha256(b"b" * 40).hexdigest()[:12] in page and 'id="approve-moved"' in page
    assert hashlib.sha256(b"a" * 40).hexdigest()[:12] not in page, "the key that holds the name is not offered"


def test_the_access_page_lists_an_open_mcp_session_with_its_client(client):
    opened = client.post(
        "/mcp", headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "access-page-client", "version": "9.1"}}},
    )
    session_id = opened.headers["Mcp-Session-Id"]
    sign_in(client)
    page = client.get("/dashboard/access").get_data(as_text=True)
    assert session_id[:8] in page and "access-page-client 9.1" in page and "owner secret" in page
