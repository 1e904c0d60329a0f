"""Helpers for OAuth tests: an in-memory token store for the official client, the consent page
answered over plain HTTP as a person's browser would, and PKCE pairs."""

from __future__ import annotations

import base64
import hashlib
import secrets
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT_URI = "http://127.0.0.1:33418/callback"
CLAUDE_CALLBACK = "https://claude.ai/api/mcp/auth_callback"


class MemoryStorage:
    """The official client's TokenStorage, in memory, with a record of every token set."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.history: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.action = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


def consent_form(html: str) -> dict[str, str]:
    """The hidden fields of the consent page's form."""
    parser = _Form()
    parser.feed(html)
    return parser.fields


def answer_consent(authorization_url: str, secret: str, *, decision: str = "approve") -> requests.Response:
    """Open the consent page and submit it; the response is the redirect (not followed)."""
    page = requests.get(authorization_url, timeout=10)
    page.raise_for_status()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(authorization_url))
    fields = consent_form(page.text) | {"owner_secret": secret, "decision": decision}
    return requests.post(origin + "/authorize", data=fields, allow_redirects=False, timeout=10)


def redirect_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, (response.status_code, response.text[:500])
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    return {k: v[0] for k, v in query.items()}


def make_provider(
    server_url: str, secret: str, storage: MemoryStorage, *, client_name: str = "Test client", client_metadata_url: str | None = None
) -> OAuthClientProvider:
    """The official client's OAuth provider, whose 'browser' approves the consent page. With
    `client_metadata_url` it uses that URL as its client_id (a Client ID Metadata Document)."""
    pending: dict[str, Any] = {}

    async def redirect_handler(url: str) -> None:
        pending["params"] = redirect_params(answer_consent(url, secret))

    async def callback_handler() -> AuthorizationCodeResult:
        params = pending.pop("params")
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    metadata = OAuthClientMetadata(
        client_name=client_name,
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    return OAuthClientProvider(server_url, metadata, storage, redirect_handler, callback_handler, client_metadata_url=client_metadata_url)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge
