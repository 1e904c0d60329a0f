"""Server configuration, read once from the environment.

`Config.from_env()` is the only place in the server that reads `os.environ`. Tests build a `Config`
directly (or with `dataclasses.replace`) instead of patching the environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import math
import os
import re
from collections.abc import Mapping

DEFAULT_DATABASE_URL = "sqlite:///data/code-remote.db"
MAKE_TOKEN_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ConfigError(RuntimeError):
    """The environment does not describe a server that can start."""


@dataclasses.dataclass(frozen=True)
class Config:
    auth_token: str = dataclasses.field(repr=False)
    database_url: str = DEFAULT_DATABASE_URL
    # Signing keys for agent access tokens, newest first. Empty: one key derived from auth_token.
    signing_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)
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
    # Browser origins allowed on the MCP endpoints besides localhost ones ("*": any). Requests without
    # an Origin header (server-side clients such as Claude.ai, CLIs) are not affected.
    allowed_origins: tuple[str, ...] = ()
    # Security (docs/SECURITY.md). The server's public origin, e.g. https://code-remote.example.com;
    # empty: taken from each request (Host, and X-Forwarded-* through trusted proxy hops).
    public_url: str = ""
    # The secret agents enrol with. Empty: AUTH_TOKEN, for single-secret setups.
    agent_enrolment_secret: str = dataclasses.field(default="", repr=False)
    oauth_access_token_seconds: int = 3600
    oauth_refresh_token_seconds: int = 30 * 24 * 3600
    oauth_code_seconds: int = 60
    # CIDRs agents may connect from (empty: anywhere), and how many proxies in front append X-Forwarded-For.
    agent_allowed_networks: tuple[str, ...] = ()
    trusted_proxy_hops: int = 0
    max_sessions_per_credential: int = 64
    max_queued_per_machine: int = 256
    # Failed authentications per client address per minute before it is answered 429.
    auth_failures_per_minute: int = 20
    # OAuth client registrations (unauthenticated by nature) per client address per hour.
    client_registrations_per_hour: int = 60
    # ... and from every address together (an IPv6 address counts as its /64).
    client_registrations_total_per_hour: int = 600
    # Private networks a client's metadata document may be fetched from (default: public addresses only).
    client_metadata_private_networks: tuple[str, ...] = ()
    # The durable relay (web/relay/relay.py). A tool call waits at most this long, then answers with the
    # command's id, state and output so far (clients cap a call at ~60 s).
    tool_wait_seconds: float = 25.0
    # A queued or leased command not started within this long becomes `expired`.
    start_deadline_seconds: float = 60.0
    # A running command with no heartbeat from its agent for this long becomes `lost`.
    lost_after_seconds: float = 60.0
    # Output kept per command (both streams together), and how much of it a tool result shows.
    max_output_bytes: int = 10 * 1024 * 1024
    tool_output_budget_bytes: int = 40_000
    # GET /metrics (web/console/metrics.py) answers only when this is set, and only with it as the bearer token.
    metrics_token: str = dataclasses.field(default="", repr=False)
    # How long a dashboard sign-in lasts (web/console/signin.py).
    dashboard_session_seconds: float = 12 * 3600.0

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
            max_command_timeout_seconds=_number(env, "MAX_COMMAND_TIMEOUT_SECONDS", cls.max_command_timeout_seconds),
            agent_token_max_age_seconds=int(
                _number(env, "AGENT_TOKEN_MAX_AGE_SECONDS", cls.agent_token_max_age_seconds)
            ),
            session_idle_seconds=_number(env, "SESSION_IDLE_SECONDS", cls.session_idle_seconds),
            allowed_origins=tuple(
                o.strip().rstrip("/").lower() for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip()
            ),
            public_url=env.get("PUBLIC_URL", "").strip().rstrip("/"),
            agent_enrolment_secret=env.get("AGENT_ENROLMENT_SECRET", "").strip(),
            oauth_access_token_seconds=int(
                _number(env, "OAUTH_ACCESS_TOKEN_SECONDS", cls.oauth_access_token_seconds)
            ),
            agent_allowed_networks=_networks(env.get("AGENT_ALLOWED_NETWORKS", "")),
            client_metadata_private_networks=_networks(
                env.get("CLIENT_METADATA_PRIVATE_NETWORKS", ""), name="CLIENT_METADATA_PRIVATE_NETWORKS", example="10.0.0.0/8"
            ),
            trusted_proxy_hops=_whole(env, "TRUSTED_PROXY_HOPS", 0, allow_zero=True),
            auth_failures_per_minute=_whole(env, "AUTH_FAILURES_PER_MINUTE", cls.auth_failures_per_minute),
            client_registrations_per_hour=_whole(env, "CLIENT_REGISTRATIONS_PER_HOUR", cls.client_registrations_per_hour),
            client_registrations_total_per_hour=_whole(env, "CLIENT_REGISTRATIONS_TOTAL_PER_HOUR", cls.client_registrations_total_per_hour),
            max_queued_per_machine=_whole(env, "MAX_QUEUED_PER_MACHINE", cls.max_queued_per_machine),
            tool_wait_seconds=_number(env, "TOOL_WAIT_SECONDS", cls.tool_wait_seconds),
            start_deadline_seconds=_number(env, "START_DEADLINE_SECONDS", cls.start_deadline_seconds),
            lost_after_seconds=_number(env, "LOST_AFTER_SECONDS", cls.lost_after_seconds),
            max_output_bytes=_size(env, "MAX_STORED_OUTPUT_BYTES", cls.max_output_bytes),
            tool_output_budget_bytes=_size(env, "TOOL_OUTPUT_BUDGET_BYTES", cls.tool_output_budget_bytes),
            metrics_token=env.get("METRICS_TOKEN", "").strip(),
            dashboard_session_seconds=_number(env, "DASHBOARD_SESSION_SECONDS", cls.dashboard_session_seconds),
        )

    def __post_init__(self) -> None:
        if self.default_command_timeout_seconds > self.max_command_timeout_seconds:
            raise ConfigError(
                f"COMMAND_TIMEOUT_SECONDS ({self.default_command_timeout_seconds:g}) is over "
                f"MAX_COMMAND_TIMEOUT_SECONDS ({self.max_command_timeout_seconds:g}): raise the maximum or lower the default"
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


def _number(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


# Sizes as people write them: bytes ("1048576"), SI units ("10MB" = 10 000 000, "10kB"), IEC units
# ("10MiB" = 10 485 760) and single letters as nginx and Docker read them ("10M" = 10MiB, "512k").
# Case and a space before the unit do not matter. The same grammar is in agent/config.py (the agent never imports the server).
SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "m": 1024**2, "g": 1024**3,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}
SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(name: str, raw: str) -> int:
    """A size setting in bytes, or a ConfigError naming the setting and what it accepts."""
    match = SIZE.fullmatch(raw)
    unit = match and SIZE_UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise ConfigError(f"{name} must be a size such as 10MiB, 10MB, 10M, 512k or 1048576 (bytes), got {raw!r}")
    value = int(float(match.group(1)) * unit)
    if value <= 0:
        raise ConfigError(f"{name} must be above 0 bytes, got {raw!r}")
    return value


def _size(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    return parse_size(name, raw) if raw else default


def _whole(env: Mapping[str, str], name: str, default: int, *, allow_zero: bool = False) -> int:
    """A count setting: a whole number, positive (or zero where allowed)."""
    value = _number(env, name, default, allow_zero=allow_zero)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {env.get(name, '').strip()!r}")
    return int(value)


def _networks(raw: str, *, name: str = "AGENT_ALLOWED_NETWORKS", example: str = "100.64.0.0/10") -> tuple[str, ...]:
    """Comma-separated CIDRs, each checked now so a typo fails at start, not at the first agent."""
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not a network such as {example}") from None
    return tuple(networks)
