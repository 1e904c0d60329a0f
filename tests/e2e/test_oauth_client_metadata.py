"""Client ID Metadata Documents against the real server: the official client authorizes with an https
URL as its client_id (no registration), the server fetches that document within its limits, caches
it as its Cache-Control says, and refuses every unsafe or broken document on a page, audited.

The documents are served over https from a loopback server with a test CA (tests/proxies.py); the
server trusts that CA (SSL_CERT_FILE) and allows 127.0.0.1/32 through CLIENT_METADATA_PRIVATE_NETWORKS,
the setting that lets a private network be fetched from. Every other non-public address stays refused.
"""

from __future__ import annotations

import html
import http.server
import json
import ssl
import threading

import anyio
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.harness import Agent, Server, wait_for
from tests.oauth_helpers import REDIRECT_URI, MemoryStorage, answer_consent, make_provider, pkce_pair, redirect_params


class Documents:
    """An https server on 127.0.0.1 answering each path as set in `routes`; counts the fetches."""

    def __init__(self, certs) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.fetches: dict[str, int] = {}
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.fetches[self.path] = owner.fetches.get(self.path, 0) + 1
                if self.path == "/slow":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    while not owner.closing.wait(0.5):
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                    return
                status, headers, body = owner.routes.get(self.path, (404, {}, b"no such document"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.closing = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certs.cert, certs.key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def publish(self, path: str, document: dict | bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> str:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.routes[path] = (status, {"Content-Type": "application/json"} | (headers or {}), body)
        return self.url(path)

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def documents(certs):
    served = Documents(certs)
    yield served
    served.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, certs):
    env = {
        "SSL_CERT_FILE": str(certs.ca),
        "CLIENT_METADATA_PRIVATE_NETWORKS": "127.0.0.1/32",
        "AUTH_FAILURES_PER_MINUTE": "10000",
        "CLIENT_REGISTRATIONS_PER_HOUR": "10000",
    }
    server = Server(tmp_path_factory.mktemp("cimd"), env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(server, tmp_path_factory):
    agent = Agent(server, tmp_path_factory.mktemp("cimd-agent"), "box").start()
    yield agent
    agent.stop()


def _document(url: str, **extra) -> dict:
    return {
        "client_id": url,
        "client_name": "Metadata Client",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    } | extra


def _authorize(server: Server, client_id: str, **extra) -> requests.Response:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "st4te",
        "code_challenge": challenge, "code_challenge_method": "S256", "resource": server.url + "/",
    } | extra
    return requests.get(server.url + "/authorize", params=params, allow_redirects=False, timeout=30)


def test_the_server_says_it_takes_metadata_documents(server):
    metadata = requests.get(server.url + "/.well-known/oauth-authorization-server", timeout=5).json()
    assert metadata["client_id_metadata_document_supported"] is True


def test_the_official_client_authorizes_with_its_document_url_and_calls_tools(server, agent, documents):
    url = documents.url("/clients/official.json")
    documents.publish("/clients/official.json", _document(url, client_name="Official by URL"))
    storage = MemoryStorage()
    provider = make_provider(server.url + "/mcp", server.token, storage, client_metadata_url=url)

    async def scenario():
        async with create_mcp_http_client(auth=provider) as http:
            async with Client(streamable_http_client(server.url + "/mcp", http_client=http), mode="legacy", read_timeout_seconds=30) as client:
                return (await client.call_tool("run_shell_command", {"command": "echo via-metadata-document"})).content[0].text

    assert anyio.run(scenario).startswith("via-metadata-document")
    assert storage.client_info is not None and storage.client_info.client_id == url  # no registration
    assert documents.fetches["/clients/official.json"] == 1
    # The refresh token works for the URL client too.
    refreshed = requests.post(
        server.url + "/token",
        data={"grant_type": "refresh_token", "refresh_token": storage.tokens.refresh_token, "client_id": url},
        timeout=10,
    )
    assert refreshed.status_code == 200 and refreshed.json()["access_token"].startswith("cra_")
    # The consent page named the client from its document.
    page = _authorize(server, url)
    assert page.status_code == 200 and "Official by URL" in page.text and f"<code>{url}</code>" in page.text


def test_a_code_is_issued_and_refusals_after_the_client_is_known_go_back_as_redirects(server, documents):
    url = documents.publish("/clients/redirects.json", _document(documents.url("/clients/redirects.json")))
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": url, "redirect_uri": REDIRECT_URI, "state": "s1",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    authorization_url = requests.Request("GET", server.url + "/authorize", params=params).prepare().url
    granted = redirect_params(answer_consent(authorization_url, server.token))
    assert granted["code"] and granted["iss"] == server.url and granted["state"] == "s1"
    refused = redirect_params(_authorize(server, url, response_type="token"))
    assert refused["error"] == "unsupported_response_type" and refused["iss"] == server.url and refused["state"] == "st4te"


@pytest.mark.parametrize(
    ("cache_control", "fetches"),
    [("max-age=600", 1), ("no-store", 3), ("no-cache", 3), ("", 1), ("max-age=0", 1)],
)
def test_the_document_is_fetched_again_only_when_its_cache_time_is_over(server, documents, cache_control, fetches):
    path = f"/clients/cache-{cache_control or 'none'}.json"
    url = documents.url(path)
    documents.publish(path, _document(url), headers={"Cache-Control": cache_control} if cache_control else {})
    for _ in range(3):
        assert _authorize(server, url).status_code == 200
    # max-age=0 is held to the 60 s floor: an authorization does not refetch on every request.
    assert documents.fetches[path] == fetches


def _refused(server: Server, client_id: str, words: str) -> None:
    page = _authorize(server, client_id)
    assert page.status_code == 400, (page.status_code, page.text[:300])
    assert words in html.unescape(page.text), page.text[-800:]
    assert "Location" not in page.headers
    wait_for(
        lambda: [r for r in server.audit(50) if r["status"] == "refused" and r["error_code"] == "invalid_client" and words in r["message"]],
        timeout=10, what=f"the audit row for {words!r}",
    )


@pytest.mark.parametrize(
    ("case", "document", "headers", "words"),
    [
        ("client-id-mismatch", {"client_id": "https://other.example/client.json"}, {}, "must be its own URL, exactly"),
        ("client-secret", {"client_secret": "s3cret"}, {}, "may not carry a client_secret"),
        ("secret-auth-method", {"token_endpoint_auth_method": "client_secret_basic"}, {}, "is not supported for a metadata document client"),
        ("no-redirect-uris", {"redirect_uris": []}, {}, "must list 1-8 URIs"),
        ("javascript-redirect", {"redirect_uris": ["javascript:alert(1)"]}, {}, "use https, http://127.0.0.1"),
        ("not-json", b"<html>hello</html>", {}, "is not JSON"),
        ("wrong-content-type", None, {"Content-Type": "text/html"}, "must be served as application/json"),
        ("too-large", {"client_name": "x" * 6000}, {}, "is over 5120 bytes"),
        ("a-list", b"[1, 2]", {}, "must be a JSON object"),
    ],
)
def test_a_broken_or_unsafe_document_is_refused_on_a_page(server, documents, case, document, headers, words):
    path = f"/clients/{case}.json"
    url = documents.url(path)
    body = document if isinstance(document, bytes) else json.dumps(_document(url) | (document or {})).encode()
    documents.routes[path] = (200, {"Content-Type": "application/json"} | headers, body)
    _refused(server, url, words)


def test_a_missing_document_and_redirects_are_judged(server, documents):
    _refused(server, documents.url("/clients/missing.json"), "answered HTTP 404")
    documents.routes["/clients/loop.json"] = (302, {"Location": "/clients/loop.json"}, b"")
    _refused(server, documents.url("/clients/loop.json"), "redirects more than 3 times")
    documents.routes["/clients/to-http.json"] = (302, {"Location": "http://127.0.0.1/x.json"}, b"")
    _refused(server, documents.url("/clients/to-http.json"), "redirects to a URL that is refused")
    # A redirect to a private address outside CLIENT_METADATA_PRIVATE_NETWORKS (127.0.0.1/32 here).
    documents.routes["/clients/to-private.json"] = (302, {"Location": f"https://127.0.0.2:{documents.port}/x.json"}, b"")
    _refused(server, documents.url("/clients/to-private.json"), "resolves to 127.0.0.2, a non-public address")


@pytest.mark.parametrize(
    ("client_id", "words"),
    [
        ("https://127.0.0.2:9/client.json", "resolves to 127.0.0.2, a non-public address"),
        ("https://10.1.2.3/client.json", "resolves to 10.1.2.3, a non-public address"),
        ("https://169.254.169.254/latest/meta-data.json", "resolves to 169.254.169.254, a non-public address"),
        ("https://[::1]:9/client.json", "resolves to ::1, a non-public address"),
        ("https://[::ffff:10.0.0.1]/client.json", "a non-public address"),
        ("https://100.64.0.1/client.json", "resolves to 100.64.0.1, a non-public address"),
        ("https://example.com/", "must have a path"),
        ("https://example.com/a/../client.json", "'.' or '..' path segments"),
        ("https://user:pw@example.com/client.json", "a user or password"),
        ("https://example.com/client.json#frag", "a fragment"),
        ("https://example.com:99999/client.json", "port must be a number"),
    ],
)
def test_unsafe_client_id_urls_are_refused_before_any_fetch(server, client_id, words):
    _refused(server, client_id, words)


def test_a_document_that_never_finishes_is_cut_off_at_the_deadline(server, documents):
    _refused(server, documents.url("/slow"), "took longer than 5 s")


def test_a_token_request_for_a_url_never_authorized_here_is_refused(server, documents):
    url = documents.publish("/clients/never.json", _document(documents.url("/clients/never.json")))
    answer = requests.post(server.url + "/token", data={"grant_type": "refresh_token", "refresh_token": "crr_x", "client_id": url}, timeout=10)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert documents.fetches.get("/clients/never.json") is None  # a token request never makes the server fetch
