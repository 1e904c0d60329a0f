"""OAuth 2.1 state without Flask: registered clients, authorization codes and tokens.

Every code and token is a random string handed out once and stored only as its SHA-256, so a copy of
the database grants nothing. Access tokens are short-lived and bound to one resource (this server's
origin); refresh tokens rotate on every use. Tokens from one consent share a `family`: replaying a
used code or refresh token (a sign it was stolen) revokes the whole family at once (RFC 9700 §4.14).

Errors are `OAuthError`s carrying the RFC 6749 error code (`invalid_grant`, `invalid_client`, ...).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from web.models import OAuthClient, OAuthGrant, atomic_write, db, now

SCOPE = "mcp"
ACCESS_PREFIX = "cra_"
REFRESH_PREFIX = "crr_"
CODE_PREFIX = "crc_"
MAX_REDIRECT_URIS = 8
PURGE_AFTER_SECONDS = 24 * 3600
MAX_URI_CHARS = 2000
# Schemes a redirect may never use, whoever approves it.
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ftp", "ws", "wss"})


class OAuthError(Exception):
    """An RFC 6749 error: `error` is the standard code, `description` says how to fix it."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class AccessGrant:
    """What a valid access token stands for."""

    client_id: str
    scope: str
    family: str
    expires_at: float


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: Any) -> str:
    """Accept https anywhere, http on loopback only (RFC 8252) and private-use app schemes."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_CHARS:
        raise OAuthError("invalid_redirect_uri", f"a redirect URI must be a string of 1-{MAX_URI_CHARS} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in uri):
        raise OAuthError("invalid_redirect_uri", "a redirect URI must not contain spaces or control characters")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in uri:
        raise OAuthError("invalid_redirect_uri", f"{uri!r} has a fragment, which redirect URIs may not have")
    if scheme == "https" and parts.hostname:
        return uri
    if scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return uri
    if scheme == "http":
        raise OAuthError("invalid_redirect_uri", f"{uri!r}: plain http is allowed only to a loopback address")
    if (scheme and scheme not in FORBIDDEN_SCHEMES and "." in scheme) or scheme in {"cursor", "vscode", "claude"}:
        return uri
    raise OAuthError("invalid_redirect_uri", f"{uri!r}: use https, http://127.0.0.1 or an app's reverse-domain scheme")


def redirect_registered(uri: str, registered: list[str]) -> bool:
    """Exact match, except that a loopback http redirect may use any port (RFC 8252 §7.3): native
    apps listen on whichever port is free when the person signs in."""
    if uri in registered:
        return True
    parts = urlsplit(uri)
    if parts.scheme != "http" or not parts.hostname or not is_loopback_host(parts.hostname):
        return False
    try:
        parts.port
    except ValueError:
        return False
    for candidate in registered:
        other = urlsplit(candidate)
        if other.scheme == "http" and (other.hostname, other.path, other.query) == (parts.hostname, parts.path, parts.query):
            return True
    return False


def pkce_matches(verifier: str, challenge: str) -> bool:
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii", "replace")).digest()).rstrip(b"=")
    return hmac.compare_digest(computed.decode(), challenge)


class OAuthStore:
    def __init__(self, *, code_seconds: int, access_seconds: int, refresh_seconds: int) -> None:
        self.code_seconds, self.access_seconds, self.refresh_seconds = code_seconds, access_seconds, refresh_seconds

    # --- clients ------------------------------------------------------------------------------

    def register(self, metadata: Any) -> dict[str, Any]:
        """RFC 7591: register a client from its metadata; return the registration response."""
        if not isinstance(metadata, dict):
            raise OAuthError("invalid_client_metadata", "the body must be a JSON object")
        uris = metadata.get("redirect_uris")
        if not isinstance(uris, list) or not uris or len(uris) > MAX_REDIRECT_URIS:
            raise OAuthError("invalid_redirect_uri", f"'redirect_uris' must list 1-{MAX_REDIRECT_URIS} URIs")
        uris = [check_redirect_uri(u) for u in uris]
        name = metadata.get("client_name", "")
        if not isinstance(name, str) or len(name) > 200:
            raise OAuthError("invalid_client_metadata", "'client_name' must be a string of at most 200 characters")
        method = metadata.get("token_endpoint_auth_method", "none")
        if method not in ("none", "client_secret_post", "client_secret_basic"):
            raise OAuthError("invalid_client_metadata", f"token_endpoint_auth_method {method!r} is not supported")
        grant_types = metadata.get("grant_types", ["authorization_code", "refresh_token"])
        if not isinstance(grant_types, list) or not set(grant_types) <= {"authorization_code", "refresh_token"}:
            raise OAuthError("invalid_client_metadata", "grant_types may only be authorization_code and refresh_token")
        client_id = secrets.token_urlsafe(18)
        secret = secrets.token_urlsafe(32) if method != "none" else None
        with db.connection_context():
            client = OAuthClient.create(
                client_id=client_id,
                client_name="".join(c for c in name if c.isprintable())[:200],
                redirect_uris=uris,
                token_endpoint_auth_method=method,
                secret_hash=digest(secret) if secret else None,
            )
        response = {
            "client_id": client_id,
            "client_id_issued_at": int(client.created_at),
            "client_name": client.client_name,
            "redirect_uris": uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": method,
            "scope": SCOPE,
        }
        if secret:
            response |= {"client_secret": secret, "client_secret_expires_at": 0}
        return response

    def client(self, client_id: Any) -> OAuthClient:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 64:
            raise OAuthError("invalid_client", "missing or malformed client_id", 401)
        with db.connection_context():
            client = OAuthClient.get_or_none(OAuthClient.client_id == client_id)
        if client is None:
            raise OAuthError("invalid_client", "unknown client_id: register the client again", 401)
        return client

    def authenticate(self, client_id: Any, secret: str | None) -> OAuthClient:
        """The client for a token request, its secret checked when it was registered with one."""
        client = self.client(client_id)
        if client.token_endpoint_auth_method != "none":
            if not secret or not hmac.compare_digest(digest(secret), client.secret_hash or ""):
                raise OAuthError("invalid_client", "client authentication failed", 401)
        return client

    # --- codes and tokens ---------------------------------------------------------------------

    def issue_code(self, client: OAuthClient, *, redirect_uri: str, code_challenge: str, resource: str, scope: str) -> str:
        code = CODE_PREFIX + secrets.token_urlsafe(32)
        with db.connection_context():
            # Each consent clears out what expired more than a day ago, so the table stays small.
            OAuthGrant.delete().where(OAuthGrant.expires_at < now() - PURGE_AFTER_SECONDS).execute()
            OAuthGrant.create(
                token_hash=digest(code),
                kind="code",
                family=secrets.token_hex(16),
                client_id=client.client_id,
                resource=resource,
                scope=scope,
                redirect_uri=redirect_uri,
                code_challenge=code_challenge,
                expires_at=now() + self.code_seconds,
            )
        return code

    def exchange_code(self, client: OAuthClient, code: Any, *, redirect_uri: Any, verifier: Any, resource: str) -> dict[str, Any]:
        """authorization_code grant: one use only, same client and redirect URI, PKCE S256 verified."""
        if not isinstance(code, str) or not code:
            raise OAuthError("invalid_request", "missing 'code'")
        if not isinstance(verifier, str) or not 43 <= len(verifier) <= 128:
            raise OAuthError("invalid_request", "missing or malformed 'code_verifier' (PKCE is required)")
        # Errors are raised after the transaction commits: spending the code and revoking a replayed
        # code's tokens must stick even though the request fails.
        with db.connection_context(), atomic_write():
            grant = OAuthGrant.get_or_none((OAuthGrant.token_hash == digest(code)) & (OAuthGrant.kind == "code"))
            outcome = self._spend_code(grant, client, redirect_uri, verifier, resource)
        if isinstance(outcome, OAuthError):
            raise outcome
        return outcome

    def _spend_code(self, grant, client, redirect_uri, verifier, resource) -> dict[str, Any] | OAuthError:
        if grant is None or grant.client_id != client.client_id:
            return OAuthError("invalid_grant", "unknown authorization code")
        if grant.used_at is not None:
            self._revoke_family(grant.family)
            return OAuthError("invalid_grant", "authorization code was already used; its tokens are revoked")
        grant.used_at = now()
        grant.save()
        if grant.expires_at < now():
            return OAuthError("invalid_grant", "authorization code expired: authorize again")
        if redirect_uri != grant.redirect_uri:
            return OAuthError("invalid_grant", "redirect_uri does not match the one authorized")
        if not pkce_matches(verifier, grant.code_challenge):
            return OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        if resource != grant.resource:
            return OAuthError("invalid_target", "resource does not match the one authorized")
        return self._issue_tokens(grant)

    def refresh(self, client: OAuthClient, token: Any, *, resource: str) -> dict[str, Any]:
        """refresh_token grant with rotation: the old refresh token is spent, a reused one kills the family."""
        if not isinstance(token, str) or not token:
            raise OAuthError("invalid_request", "missing 'refresh_token'")
        with db.connection_context(), atomic_write():
            grant = OAuthGrant.get_or_none((OAuthGrant.token_hash == digest(token)) & (OAuthGrant.kind == "refresh"))
            outcome = self._spend_refresh(grant, client, resource)
        if isinstance(outcome, OAuthError):
            raise outcome
        return outcome

    def _spend_refresh(self, grant, client, resource) -> dict[str, Any] | OAuthError:
        if grant is None or grant.client_id != client.client_id:
            return OAuthError("invalid_grant", "unknown refresh token")
        if grant.revoked_at is not None:
            return OAuthError("invalid_grant", "refresh token was revoked: authorize again")
        if grant.used_at is not None:
            self._revoke_family(grant.family)
            return OAuthError("invalid_grant", "refresh token was already used; every token of this grant is revoked")
        if grant.expires_at < now():
            return OAuthError("invalid_grant", "refresh token expired: authorize again")
        if resource != grant.resource:
            return OAuthError("invalid_target", "resource does not match the one authorized")
        grant.used_at = now()
        grant.save()
        return self._issue_tokens(grant)

    def revoke(self, client: OAuthClient, token: Any) -> None:
        """RFC 7009: revoke a token and its family; unknown tokens are not an error."""
        if not isinstance(token, str) or not token:
            raise OAuthError("invalid_request", "missing 'token'")
        with db.connection_context(), atomic_write():
            grant = OAuthGrant.get_or_none(OAuthGrant.token_hash == digest(token))
            if grant is not None and grant.client_id == client.client_id and grant.kind != "code":
                self._revoke_family(grant.family)

    def verify_access(self, token: str, resource: str) -> AccessGrant | None:
        """The grant behind a valid access token for `resource`; None when it is not one of ours."""
        if not token.startswith(ACCESS_PREFIX):
            return None
        with db.connection_context():
            grant = OAuthGrant.get_or_none((OAuthGrant.token_hash == digest(token)) & (OAuthGrant.kind == "access"))
        if grant is None or grant.revoked_at is not None or grant.expires_at < now():
            return None
        if grant.resource != resource:
            return None
        return AccessGrant(grant.client_id, grant.scope, grant.family, grant.expires_at)

    def _issue_tokens(self, parent: OAuthGrant) -> dict[str, Any]:
        access = ACCESS_PREFIX + secrets.token_urlsafe(32)
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        t = now()
        common = {"family": parent.family, "client_id": parent.client_id, "resource": parent.resource, "scope": parent.scope}
        OAuthGrant.create(token_hash=digest(access), kind="access", expires_at=t + self.access_seconds, **common)
        OAuthGrant.create(token_hash=digest(refresh), kind="refresh", expires_at=t + self.refresh_seconds, **common)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_seconds,
            "refresh_token": refresh,
            "scope": parent.scope,
        }

    def _revoke_family(self, family: str) -> None:
        OAuthGrant.update(revoked_at=now()).where(
            (OAuthGrant.family == family) & OAuthGrant.revoked_at.is_null()
        ).execute()
