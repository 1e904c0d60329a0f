"""Credentials: the owner's bearer token for MCP and the REST API, and agents' signed access tokens.

The two never stand in for each other. `AUTH_TOKEN` is accepted only as a bearer token on MCP and REST
endpoints and, once, by `register`, which exchanges it for an agent access token: an itsdangerous
signature over `{"aud": "agent", "m": machine, "g": generation}` with an enforced lifetime. Agent
endpoints accept only that token; the MCP endpoints refuse it.

Tokens are never accepted in a URL, and never logged: logs carry `fingerprint(token)` at most.
"""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from web import errors

AGENT_AUDIENCE = "agent"
SIGNING_SALT = "code-remote.access-token"


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a credential, for logs and session binding."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Unauthorized(errors.Unauthorized):
    """A 401 that also tells the client how to authenticate."""


def check_owner_token(authorization: str | None, expected: str) -> str:
    """Check the owner's bearer token; return its fingerprint."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <AUTH_TOKEN>'", code="missing_token"
        )
    if not hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected.encode()):
        raise Unauthorized("invalid bearer token", code="invalid_token")
    return fingerprint(token)


class AgentTokens:
    """Issue and verify agents' signed access tokens."""

    def __init__(self, keys: list[str], max_age_seconds: int) -> None:
        # itsdangerous signs with the last key and accepts every key: rotate by appending.
        self._serializer = URLSafeTimedSerializer(keys, salt=SIGNING_SALT)
        self.max_age_seconds = max_age_seconds

    def issue(self, machine: str, generation: int) -> str:
        return self._serializer.dumps({"aud": AGENT_AUDIENCE, "m": machine, "g": generation})

    def verify(self, authorization: str | None) -> tuple[str, int]:
        """Return (machine, generation) of a valid agent token, or raise a 401 with a distinct code."""
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized(
                "missing agent token: register first and send 'Authorization: Bearer <token>'",
                code="missing_token",
            )
        try:
            claims = self._serializer.loads(token, max_age=self.max_age_seconds)
        except SignatureExpired:
            raise Unauthorized("agent token expired: register again", code="token_expired") from None
        except BadSignature:
            raise Unauthorized("agent token is not valid (forged or tampered)", code="token_invalid") from None
        if not isinstance(claims, dict) or claims.get("aud") != AGENT_AUDIENCE:
            raise Unauthorized("token is not an agent token", code="token_wrong_audience")
        machine, generation = claims.get("m"), claims.get("g")
        if not isinstance(machine, str) or not isinstance(generation, int):
            raise Unauthorized("agent token is not valid (bad claims)", code="token_invalid")
        return machine, generation


class Credentials:
    """Checks the MCP client credential, in one place for every MCP and REST endpoint.

    Accepted: the static `AUTH_TOKEN`, or an OAuth access token issued by this server for this
    resource. Never an agent token or the enrolment secret (when it is separate). The returned
    credential name binds MCP sessions: for OAuth it names the grant, so a refreshed access token
    keeps its sessions.
    """

    def __init__(self, *, auth_token: str, enrolment_secret: str, oauth, throttle) -> None:
        self.auth_token = auth_token
        # Without a separate enrolment secret, agents enrol with AUTH_TOKEN (single-secret setups).
        self.enrolment_secret = enrolment_secret or auth_token
        self.oauth = oauth
        self.throttle = throttle

    def owner(self, authorization: str | None, *, resource: str, address: str | None) -> str:
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized(
                "missing bearer token: send 'Authorization: Bearer <AUTH_TOKEN>' or sign in with OAuth",
                code="missing_token",
            )
        if _same(token, self.auth_token):
            return fingerprint(token)
        grant = self.oauth.verify_access(token, resource) if len(token) <= 512 else None
        if grant is not None:
            return f"oauth:{grant.family}"
        self.throttle.hit(address)
        raise Unauthorized("invalid bearer token (unknown, expired, revoked or for another audience)", code="invalid_token")

    def enrolment(self, authorization: str | None, *, address: str | None) -> str:
        """Check the agent enrolment secret on `register`; return its fingerprint."""
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized("missing enrolment secret: send 'Authorization: Bearer <secret>'", code="missing_token")
        if _same(token, self.enrolment_secret):
            return fingerprint(token)
        self.throttle.hit(address)
        raise Unauthorized("invalid enrolment secret", code="invalid_token")

    def owner_secret(self, secret: str, *, address: str | None) -> bool:
        """The consent page's sign-in: True for the owner's secret, else counts a failure."""
        if _same(secret, self.auth_token):
            return True
        self.throttle.hit(address)
        return False


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())
