"""Agent configuration, from the environment and an optional `.env` file.

The environment wins over the file. The file is `$CODE_REMOTE_ENV_FILE`, else `agent/.env` beside this
package. Never a `.env` in the current folder: started inside a project that has one (for its own
tools), the agent would take that project's RELAY_URL and give a shell on this machine to whatever
server it names. The only reader of the environment in the agent.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

DEFAULT_ROOTS = ("~", "/tmp", "/var/tmp")
# Variables that hold the agent's own credentials: removed from its environment once read, so that no
# command inherits them (agent/masking.py).
CREDENTIAL_VARIABLES = ("AUTH_TOKEN", "AGENT_ENROLMENT_SECRET", "MASK_VALUES")
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "FTP_PROXY")
MIN_MASK_CHARS = 4


class ConfigError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    relay_url: str
    auth_token: str
    machine_name: str
    roots: tuple[str, ...]
    home: str
    shell: str = "/bin/sh"
    # Output kept per stream of a command (spooled on disk and streamed to the server).
    max_output_bytes: int = 10 * 1024 * 1024
    # A page of a file rides twice in the answer (text and structuredContent), JSON-escaped: 256 KiB keeps
    # it well under the 1 MiB an SSE event may carry in the official clients.
    max_read_bytes: int = 256 * 1024
    max_concurrent_commands: int = 16
    connect_timeout_seconds: float = 10.0
    # Extra time past the server's advertised poll hold before the agent gives up on a poll.
    poll_slack_seconds: float = 10.0
    backoff_max_seconds: float = 30.0
    kill_grace_seconds: float = 2.0
    # The owner's policy for this machine (agent/policy.py).
    disabled_tools: frozenset[str] = frozenset()
    read_only: bool = False
    deny_paths: tuple[str, ...] = ()
    # Let the file tools write where programs start by themselves (shell start-up files, crontabs, ...).
    allow_persistence_writes: bool = False
    command_prefixes: tuple[str, ...] = ()
    env_file: str = ""
    # Where undelivered results (the outbox), output spools and running process groups are kept.
    state_dir: str = ""
    # A running command's output is sent at least this often (with none, as a heartbeat), in chunks
    # of at most output_chunk_bytes; the answer also says whether the command was cancelled.
    progress_seconds: float = 1.0
    output_chunk_bytes: int = 256 * 1024
    # The proxy for RELAY_URL ("" when none or when NO_PROXY names the server), and a CA bundle
    # ("" for the operating system's trust store). TLS is always verified: there is no switch to turn it off.
    proxy_url: str = ""
    ca_bundle: str = ""
    # The agent's own credentials (the enrolment secrets, proxy passwords): no command's environment
    # holds them. Values never sent in any result (agent/masking.py): those and the owner's MASK_VALUES;
    # the agent tokens the server issues are added as they arrive.
    credential_values: tuple[str, ...] = ()
    secret_values: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentConfig:
        env_file = _env_file(environ if environ is not None else os.environ)
        env = dict(read_env_file(env_file))
        env.update(os.environ if environ is None else environ)
        url = env.get("RELAY_URL", "").strip().rstrip("/")
        if not url:
            raise ConfigError("RELAY_URL is not set: the server's base URL, e.g. https://code-remote.example.com")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"RELAY_URL must start with http:// or https://, got {url!r}")
        # The server's AGENT_ENROLMENT_SECRET when it has one, else its AUTH_TOKEN.
        token = (env.get("AGENT_ENROLMENT_SECRET", "") or env.get("AUTH_TOKEN", "")).strip()
        if not token:
            raise ConfigError(
                "AUTH_TOKEN is not set: use the token the server was started with "
                "(or AGENT_ENROLMENT_SECRET, when the server has a separate one)"
            )
        home = env.get("HOME") or str(Path.home())
        roots_raw = env.get("ALLOWED_ROOTS", "").strip()
        roots = tuple(r for r in roots_raw.split(os.pathsep) if r) if roots_raw else DEFAULT_ROOTS
        return cls(
            relay_url=url,
            auth_token=token,
            machine_name=env.get("MACHINE_NAME", "").strip() or socket.gethostname().split(".")[0],
            roots=tuple(os.path.expanduser(r) if r != "~" else home for r in roots),
            home=home,
            shell=env.get("AGENT_SHELL") or env.get("SHELL") or "/bin/sh",
            max_output_bytes=_size(env, "MAX_OUTPUT_BYTES", cls.max_output_bytes),
            max_read_bytes=_size(env, "MAX_READ_BYTES", cls.max_read_bytes),
            disabled_tools=_disabled_tools(env.get("DISABLED_TOOLS", "")),
            read_only=_flag(env, "READ_ONLY"),
            allow_persistence_writes=_flag(env, "ALLOW_PERSISTENCE_WRITES"),
            deny_paths=tuple(p for p in env.get("DENY_PATHS", "").split(os.pathsep) if p.strip()),
            command_prefixes=tuple(p.strip() for p in env.get("ALLOWED_COMMANDS", "").split(",") if p.strip()),
            env_file=str(env_file.resolve()) if env_file else "",
            max_concurrent_commands=int(_number(env, "MAX_CONCURRENT_COMMANDS", cls.max_concurrent_commands, whole=True)),
            backoff_max_seconds=_number(env, "BACKOFF_MAX_SECONDS", cls.backoff_max_seconds),
            kill_grace_seconds=_number(env, "KILL_GRACE_SECONDS", cls.kill_grace_seconds),
            state_dir=env.get("CODE_REMOTE_STATE_DIR", "").strip()
            or os.path.join(env.get("XDG_STATE_HOME", "").strip() or os.path.join(home, ".local", "state"), "code-remote"),
            progress_seconds=_number(env, "PROGRESS_SECONDS", cls.progress_seconds),
            proxy_url=proxy_for(url, env),
            ca_bundle=ca_bundle_from(env),
            credential_values=credential_values(env),
            secret_values=credential_values(env) + mask_values(env),
        )


def _either(env: Mapping[str, str], name: str) -> str:
    """`name` from the environment, the lowercase spelling winning as in curl and requests."""
    return (env.get(name.lower()) or env.get(name.upper()) or "").strip()


def proxy_for(url: str, env: Mapping[str, str]) -> str:
    """The proxy to reach `url` through: https_proxy (http_proxy for an http:// URL), then all_proxy;
    none when no_proxy names the host (`*`, a host, a `.suffix`, `host:port` or a CIDR range)."""
    parts = urlsplit(url)
    if any(_bypasses(entry.strip().lower(), parts) for entry in _either(env, "NO_PROXY").replace(" ", ",").split(",")):
        return ""
    proxy = _either(env, "HTTPS_PROXY" if parts.scheme == "https" else "HTTP_PROXY") or _either(env, "ALL_PROXY")
    if proxy and "://" not in proxy:
        proxy = "http://" + proxy
    return proxy


def _bypasses(entry: str, parts) -> bool:
    host = (parts.hostname or "").lower()
    if not entry:
        return False
    if entry == "*":
        return True
    if "/" in entry:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    port = ""
    if entry.count(":") == 1:
        entry, port = entry.split(":")
    if port and port != str(parts.port or (443 if parts.scheme == "https" else 80)):
        return False
    entry = entry.lstrip("*").lstrip(".")
    return host == entry or host.endswith("." + entry)


def ca_bundle_from(env: Mapping[str, str]) -> str:
    """CA_BUNDLE or REQUESTS_CA_BUNDLE: a PEM file (or a folder of hashed certificates) to trust instead
    of the system's store, e.g. a corporate proxy's root. It must exist: a typo must not pass silently."""
    bundle = (env.get("CA_BUNDLE") or env.get("REQUESTS_CA_BUNDLE") or "").strip()
    if bundle and not os.path.exists(os.path.expanduser(bundle)):
        raise ConfigError(f"CA_BUNDLE {bundle!r} does not exist: give the path of a PEM file holding the CA")
    return os.path.expanduser(bundle) if bundle else ""


def credential_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The agent's own credentials: the enrolment secrets and every proxy URL's password (as written
    and percent-decoded)."""
    values = [env.get("AUTH_TOKEN", "").strip(), env.get("AGENT_ENROLMENT_SECRET", "").strip()]
    for name in PROXY_VARIABLES:
        for spelling in (name, name.lower()):
            password = proxy_password(env.get(spelling, ""))
            values += [password, unquote(password)]
    return tuple(dict.fromkeys(v for v in values if v))


def mask_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The owner's MASK_VALUES: comma-separated, each at least MIN_MASK_CHARS long."""
    values = []
    for value in env.get("MASK_VALUES", "").split(","):
        value = value.strip()
        if value and len(value) < MIN_MASK_CHARS:
            raise ConfigError(
                f"MASK_VALUES: a value of {len(value)} characters would mask ordinary text everywhere; "
                f"list only secrets of at least {MIN_MASK_CHARS} characters"
            )
        values.append(value)
    return tuple(dict.fromkeys(v for v in values if v))


def proxy_password(url: str) -> str:
    """The password in a proxy URL as written (percent-encoded), or ""."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    netloc = urlsplit(url).netloc
    userinfo = netloc.rpartition("@")[0]
    return userinfo.partition(":")[2] if ":" in userinfo else ""


def strip_password(url: str) -> str:
    """A proxy URL without its password: commands still find the proxy, not the agent's credential."""
    password = proxy_password(url)
    if not password:
        return url
    head, sep, tail = url.partition("://")
    if not sep:
        head, tail = "", url
    netloc, slash, path = tail.partition("/")
    userinfo, _, host = netloc.rpartition("@")
    return head + sep + userinfo.partition(":")[0] + "@" + host + slash + path


def mask(url: str) -> str:
    """`url` with any password replaced by ***, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _env_file(environ: Mapping[str, str]) -> Path | None:
    explicit = environ.get("CODE_REMOTE_ENV_FILE")
    if explicit:
        return Path(explicit)
    beside = Path(__file__).resolve().parent / ".env"
    return beside if beside.is_file() else None


def read_env_file(path: Path | None) -> dict[str, str]:
    """KEY=value lines; blank lines and # comments skipped; surrounding quotes removed."""
    if path is None or not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


# Sizes as people write them: bytes ("1048576"), SI units ("10MB" = 10 000 000, "10kB"), IEC units
# ("10MiB" = 10 485 760) and single letters as nginx and Docker read them ("10M" = 10MiB, "512k").
# Case and a space before the unit do not matter. The same grammar is in web/config.py (the agent never imports the server).
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


def _number(env: Mapping[str, str], name: str, default: float, *, whole: bool = False) -> float:
    """A positive number setting (a whole one where `whole`), or a ConfigError naming it."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf") or (whole and value != int(value)):
        kind = "a whole number above 0" if whole else "a number above 0"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}")
    return int(value) if whole else value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _disabled_tools(raw: str) -> frozenset[str]:
    from agent.policy import ALL_TOOLS

    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - set(ALL_TOOLS))
    if unknown:
        raise ConfigError(f"DISABLED_TOOLS: unknown tool {unknown[0]!r}; the tools are {', '.join(ALL_TOOLS)}")
    return names
