"""Server configuration, read once from the environment.

`Config.from_env()` is the only place in the server that reads `os.environ`. Tests build a `Config`
directly (or with `dataclasses.replace`) instead of patching the environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from collections.abc import Mapping

DEFAULT_DATABASE_URL = "sqlite:///data/code-remote.db"
MAKE_TOKEN_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ConfigError(RuntimeError):
    """The environment does not describe a server that can start."""


@dataclasses.dataclass(frozen=True)
class Config:
    auth_token: str
    database_url: str = DEFAULT_DATABASE_URL
    # Signing keys for agent access tokens, newest first. Empty: one key derived from auth_token.
    signing_keys: tuple[str, ...] = ()
    agent_token_max_age_seconds: int = 3600
    poll_timeout_seconds: float = 25.0
    heartbeat_seconds: float = 15.0
    # A machine counts as online while polling, or for this long after its last poll ended.
    offline_after_seconds: float = 60.0
    # A leased command that the agent has not confirmed goes back to the queue after this long.
    lease_seconds: float = 30.0
    default_command_timeout_seconds: float = 30.0
    max_command_timeout_seconds: float = 3600.0
    max_request_bytes: int = 1024 * 1024
    max_result_bytes: int = 4 * 1024 * 1024
    # Extra time a tool call waits past the command's own timeout for the agent to report back.
    result_grace_seconds: float = 10.0
    session_idle_seconds: float = 3600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Build the configuration from environment variables, failing fast on what is missing."""
        env = os.environ if environ is None else environ
        token = env.get("AUTH_TOKEN", "").strip()
        if not token:
            raise ConfigError(f"AUTH_TOKEN is not set; {MAKE_TOKEN_HINT}")
        if len(token) < 16:
            raise ConfigError(f"AUTH_TOKEN is too short (under 16 characters); {MAKE_TOKEN_HINT}")
        keys = tuple(k.strip() for k in env.get("SIGNING_KEYS", "").split(",") if k.strip())
        return cls(
            auth_token=token,
            database_url=env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL,
            signing_keys=keys,
            poll_timeout_seconds=_number(env, "POLL_TIMEOUT_SECONDS", cls.poll_timeout_seconds),
            heartbeat_seconds=_number(env, "HEARTBEAT_SECONDS", cls.heartbeat_seconds),
            offline_after_seconds=_number(env, "OFFLINE_AFTER_SECONDS", cls.offline_after_seconds),
            lease_seconds=_number(env, "LEASE_SECONDS", cls.lease_seconds),
            default_command_timeout_seconds=_number(
                env, "COMMAND_TIMEOUT_SECONDS", cls.default_command_timeout_seconds
            ),
            agent_token_max_age_seconds=int(
                _number(env, "AGENT_TOKEN_MAX_AGE_SECONDS", cls.agent_token_max_age_seconds)
            ),
        )

    @property
    def agent_signing_keys(self) -> list[str]:
        """Keys for itsdangerous, oldest first (it signs with the last one and accepts them all)."""
        if self.signing_keys:
            return list(reversed(self.signing_keys))
        derived = hmac.new(self.auth_token.encode(), b"code-remote agent token signing", hashlib.sha256)
        return [derived.hexdigest()]


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The database URL alone, for tools such as the migration runner that need no token."""
    env = os.environ if environ is None else environ
    return env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value
