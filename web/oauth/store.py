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
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from peewee import SqliteDatabase

from web import errors
from web.models import OAuthClient, OAuthGrant, atomic_write, db, now
from web.oauth import client_metadata

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
    problem = redirect_problem(uri)
    if problem:
        raise OAuthError("invalid_redirect_uri", f"{uri!r}: {problem}")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        return uri
    if scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return uri
    if scheme == "http":
        raise OAuthError("invalid_redirect_uri", f"{uri!r}: plain http is allowed only to a loopback address")
    if (scheme and scheme not in FORBIDDEN_SCHEMES and "." in scheme) or scheme in {"cursor", "vscode", "claude"}:
        return uri
    raise OAuthError("invalid_redirect_uri", f"{uri!r}: use https, http://127.0.0.1 or an app's reverse-domain scheme")


# Percent-encoded forms a browser or a client library may turn into a path separator or a dot segment.
ENCODED_SEPARATOR = re.compile(r"%(2f|5c|2e)", re.IGNORECASE)


def redirect_problem(uri: str) -> str | None:
    """What makes `uri` unfit as a redirect target, or None. Each of these once let a code land
    somewhere other than where the client asked (RFC 9700 §4.1): a fragment, userinfo that reads as a
    host to a person (`http://evil.example@127.0.0.1/`), a backslash that some parsers take for a
    slash, dot segments and their encodings, a host with a trailing dot or escapes, a port that is not
    plain ASCII digits."""
    if any(ord(c) < 33 or ord(c) == 127 for c in uri):
        return "a redirect URI must not contain spaces or control characters"
    if not uri.isascii():
        return "a redirect URI must be ASCII (percent-encode anything else)"
    if "#" in uri:
        return "a redirect URI may not have a fragment"
    if "\\" in uri:
        return "a redirect URI may not contain a backslash"
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        return "a redirect URI may not carry userinfo (user@host)"
    if parts.netloc:  # an app's private-use scheme (com.example.app:/cb) may have none
        host, port = _host_and_port(parts.netloc)
        if not host or host.endswith(".") or "%" in host or ".." in host:
            return f"{host!r} is not a plain host name"
        if port is not None and not (port.isdigit() and not port.startswith("0") and 0 < int(port) < 65536):
            return f"port {port!r} must be a number from 1 to 65535 in ASCII digits"
    if ENCODED_SEPARATOR.search(parts.path):
        return "a redirect URI's path may not percent-encode '/', '\\' or '.'"
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return "a redirect URI's path may not contain '.' or '..' segments"
    return None


def _host_and_port(netloc: str) -> tuple[str, str | None]:
    """The host exactly as written (IPv6 in brackets) and the port text (None when absent)."""
    if netloc.startswith("["):
        host, _, rest = netloc.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else (None if not rest else rest)
    host, colon, port = netloc.rpartition(":")
    return (host, port) if colon else (netloc, None)


def redirect_registered(uri: str, registered: list[str]) -> bool:
    """Whether `uri` is one the client registered: the same string, except that a loopback http
    redirect may use any port (RFC 8252 §7.3), since native apps listen on whichever port is free.
    Everything else is compared as written (scheme, host, path, query), so no case, encoding or
    dot-segment variant of a registered URI matches it."""
    if redirect_problem(uri):
        return False
    if uri in registered:
        return True
    parts = urlsplit(uri)
    if not uri.startswith("http://") or not parts.hostname or not is_loopback_host(parts.hostname):
        return False
    wanted = _without_port(uri)
    return any(candidate.startswith("http://") and _without_port(candidate) == wanted for candidate in registered)


def _without_port(uri: str) -> tuple[str, str]:
    """An http URI as (host as written, everything after the authority as written)."""
    netloc = urlsplit(uri).netloc
    return _host_and_port(netloc)[0], uri[len("http://") + len(netloc) :]


def pkce_matches(verifier: str, challenge: str) -> bool:
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii", "replace")).digest()).rstrip(b"=")
    return hmac.compare_digest(computed.decode(), challenge)


class OAuthStore:
    def __init__(
        self, *, code_seconds: int, access_seconds: int, refresh_seconds: int, registrations_per_hour_total: int = 600,
        metadata_private_networks: tuple[str, ...] = (),
    ) -> None:
        self.code_seconds, self.access_seconds, self.refresh_seconds = code_seconds, access_seconds, refresh_seconds
        self.registrations_per_hour_total = registrations_per_hour_total
        self.metadata_private_networks = metadata_private_networks

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
        with db.connection_context(), atomic_write():
            self._purge_unused_clients()
            self._check_total(OAuthClient.select().where(OAuthClient.created_at > now() - 3600).count())
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

    def _purge_unused_clients(self) -> None:
        """Delete clients registered over a day ago and never used (no approved consent)."""
        OAuthClient.delete().where(
            (OAuthClient.created_at < now() - PURGE_AFTER_SECONDS) & OAuthClient.used_at.is_null()
        ).execute()

    def _check_total(self, last_hour: int) -> None:
        """The cap on registrations from everywhere together, counted in the database so every server
        process shares it: per-address limits alone let many addresses fill the table."""
        if last_hour >= self.registrations_per_hour_total:
            raise errors.TooManyRequests(
                f"this server takes at most {self.registrations_per_hour_total} client registrations an hour from "
                "everywhere (CLIENT_REGISTRATIONS_TOTAL_PER_HOUR); try again later. Registered clients keep working.",
                retry_after_seconds=600,
                code="too_many_registrations",
            )

    def client(self, client_id: Any, *, fresh: bool = False, before_fetch: Callable[[], None] | None = None) -> OAuthClient:
        """The client `client_id` names: a registered one, or one known by its metadata document URL.

        For a URL, `fresh=True` (an authorization request) fetches the document when the row holds none
        or its cache time has passed, calling `before_fetch` first (the caller's throttle); token and
        revocation requests use the row as it is."""
        if client_metadata.is_metadata_url(client_id):
            return self._metadata_client(client_id, fresh=fresh, before_fetch=before_fetch)
        if not isinstance(client_id, str) or not client_id or len(client_id) > 64:
            raise OAuthError("invalid_client", "missing or malformed client_id", 401)
        with db.connection_context():
            client = OAuthClient.get_or_none(OAuthClient.client_id == client_id)
        if client is None or client.metadata_url is not None:
            raise OAuthError("invalid_client", "unknown client_id: register the client again", 401)
        return client

    def _metadata_client(self, url: str, *, fresh: bool, before_fetch: Callable[[], None] | None) -> OAuthClient:
        try:
            client_metadata.check_url(url)
        except client_metadata.MetadataError as error:
            raise OAuthError("invalid_client", str(error), 401) from None
        key = "cimd_" + digest(url)[:40]
        with db.connection_context():
            client = OAuthClient.get_or_none(OAuthClient.client_id == key)
        if client is not None and (not fresh or (client.metadata_expires_at or 0) > now()):
            return client
        if client is None and not fresh:
            raise OAuthError("invalid_client", "this client_id URL has not been through /authorize here yet", 401)
        if before_fetch is not None:
            before_fetch()
        try:
            document = client_metadata.fetch(url, private_networks=self.metadata_private_networks)
            uris = document.metadata.get("redirect_uris")
            if not isinstance(uris, list) or not uris or len(uris) > MAX_REDIRECT_URIS:
                raise OAuthError("invalid_redirect_uri", f"the document's 'redirect_uris' must list 1-{MAX_REDIRECT_URIS} URIs")
            uris = [check_redirect_uri(u) for u in uris]
            name = document.metadata.get("client_name", "")
            grant_types = document.metadata.get("grant_types", ["authorization_code", "refresh_token"])
            if not isinstance(grant_types, list) or not set(grant_types) <= {"authorization_code", "refresh_token"}:
                raise OAuthError("invalid_client_metadata", "grant_types may only be authorization_code and refresh_token")
        except client_metadata.MetadataError as error:
            raise OAuthError("invalid_client", str(error), 401) from None
        except OAuthError as error:
            raise OAuthError("invalid_client", f"the client metadata document was refused: {error.description}", 401) from None
        fields = {
            "client_name": "".join(c for c in (name if isinstance(name, str) else "") if c.isprintable())[:200],
            "redirect_uris": uris,
            "token_endpoint_auth_method": "none",
            "secret_hash": None,
            "metadata_url": url,
            "metadata_expires_at": now() + document.cache_seconds,
        }
        with db.connection_context(), atomic_write():
            if OAuthClient.update(**fields).where(OAuthClient.client_id == key).execute() == 0:
                self._purge_unused_clients()
                self._check_total(OAuthClient.select().where(OAuthClient.created_at > now() - 3600).count())
                OAuthClient.insert(client_id=key, **fields).on_conflict_ignore().execute()
            return OAuthClient.get(OAuthClient.client_id == key)

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
            OAuthClient.update(used_at=now()).where((OAuthClient.client_id == client.client_id) & OAuthClient.used_at.is_null()).execute()
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
        if not self._spend(grant):
            self._revoke_family(grant.family, grant.token_hash)
            return OAuthError("invalid_grant", "authorization code was already used; its tokens are revoked")
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
            self._revoke_family(grant.family, grant.token_hash)
            return OAuthError("invalid_grant", "refresh token was already used; every token of this grant is revoked")
        if grant.expires_at < now():
            return OAuthError("invalid_grant", "refresh token expired: authorize again")
        if resource != grant.resource:
            return OAuthError("invalid_target", "resource does not match the one authorized")
        if not self._spend(grant):
            self._revoke_family(grant.family, grant.token_hash)
            return OAuthError("invalid_grant", "refresh token was already used; every token of this grant is revoked")
        return self._issue_tokens(grant)

    @staticmethod
    def _spend(grant: OAuthGrant) -> bool:
        """Mark a code or refresh token used; False when it already was.

        One conditional UPDATE, judged by its row count: the row read before may be stale. On
        PostgreSQL (READ COMMITTED) two concurrent requests both read `used_at IS NULL`; the second
        UPDATE waits for the first to commit, re-checks the condition and changes nothing. A read
        followed by an unconditional save let both spend one refresh token (10 of 10 races).
        """
        spent = (
            OAuthGrant.update(used_at=now())
            .where((OAuthGrant.token_hash == grant.token_hash) & OAuthGrant.used_at.is_null())
            .execute()
        )
        return spent == 1

    def revoke(self, client: OAuthClient, token: Any) -> None:
        """RFC 7009: revoke a token and its family; unknown tokens are not an error."""
        if not isinstance(token, str) or not token:
            raise OAuthError("invalid_request", "missing 'token'")
        with db.connection_context(), atomic_write():
            grant = OAuthGrant.get_or_none(OAuthGrant.token_hash == digest(token))
            if grant is not None and grant.client_id == client.client_id and grant.kind != "code":
                self._revoke_family(grant.family)

    def revoke_client(self, client_id: str) -> bool:
        """The owner removes a client (the dashboard's Access page): every code and token it holds is
        revoked at once and its registration deleted, so it must register and be approved again."""
        with db.connection_context(), atomic_write():
            OAuthGrant.update(revoked_at=now()).where((OAuthGrant.client_id == client_id) & OAuthGrant.revoked_at.is_null()).execute()
            return OAuthClient.delete().where(OAuthClient.client_id == client_id).execute() > 0

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

    def _revoke_family(self, family: str, replayed: str | None = None) -> None:
        """Revoke every token of a grant; `replayed` is the token_hash of the code or refresh token
        whose reuse is the reason.

        On PostgreSQL the rows are locked first, in one order: the replayed row, then the rest by
        token_hash. A racer whose spending UPDATE waited for the winner keeps a lock on the replayed
        row (PostgreSQL locks the newest version before it re-checks `used_at IS NULL`, and keeps it),
        while a racer that came later locked the family's rows in scan order: each then waited for the
        other, and PostgreSQL ended one as a deadlock (a 500 in about one race of four). Taking the
        replayed row first queues every racer behind it. SQLite's BEGIN IMMEDIATE already serializes."""
        unrevoked = (OAuthGrant.family == family) & OAuthGrant.revoked_at.is_null()
        if not isinstance(db.obj, SqliteDatabase):
            if replayed is not None:
                list(OAuthGrant.select(OAuthGrant.token_hash).where(OAuthGrant.token_hash == replayed).for_update())
            list(OAuthGrant.select(OAuthGrant.token_hash).where(unrevoked).order_by(OAuthGrant.token_hash).for_update())
        OAuthGrant.update(revoked_at=now()).where(unrevoked).execute()
