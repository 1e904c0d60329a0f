"""The agent's HTTP client: one `requests.Session`, explicit timeouts on every call, tokens only in
the Authorization header.

The proxy and the trusted CAs come from `AgentConfig` (which reads them from the environment or
agent/.env, lowercase proxy variables winning), not from requests' own look at the environment, so the
agent behaves the same under a service manager as in a shell. TLS is verified against CA_BUNDLE when
given, else the operating system's store; there is no way to turn verification off.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

import requests

from agent import VERSION, machine_key
from agent.config import AgentConfig, mask
from agent.masking import Secrets

log = logging.getLogger(__name__)
REREGISTER_CODES = frozenset({"token_expired", "token_invalid", "token_revoked", "token_wrong_audience", "missing_token"})


class RelayError(Exception):
    """The server answered with an error (status, code and message from its JSON body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    @property
    def needs_register(self) -> bool:
        return self.status == 401 and self.code in REREGISTER_CODES

    @property
    def retryable(self) -> bool:
        # 5xx and proxy HTML pages (no JSON code) may pass; 4xx from our server will not.
        return self.status >= 500 or self.status in (408, 429) or self.code == "http_error"


class RelayClient:
    def __init__(self, config: AgentConfig, *, facts: dict[str, Any], secrets: Secrets | None = None) -> None:
        self.config = config
        self.facts = facts
        self.secrets = secrets  # told of every agent token, so that no result can carry one
        self.http = requests.Session()
        self.http.headers["User-Agent"] = f"code-remote-agent/{VERSION}"
        configure_session(self.http, config)
        # Connections kept for reuse: one for every thread that may be in a request at once, or a
        # busy agent opens (and, over HTTPS, handshakes) a new connection for most results and logs
        # "Connection pool is full, discarding connection". requests' default keeps 10.
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=pool_size(config.max_concurrent_commands))
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)
        # What Session.request would merge from the session on every call (proxies, verify, cert,
        # stream): with trust_env off it depends on nothing else, so it is merged once here.
        self._send_settings = self.http.merge_environment_settings(config.relay_url, {}, None, None, None)
        self.access_token: str | None = None
        self.poll_timeout_seconds = 25.0
        self._renew_lock = threading.Lock()

    def _request(
        self, method: str, path: str, *, token: str | None, read_timeout: float,
        params: dict[str, str] | None = None, json: Any = None,
    ) -> requests.Response:
        # The session's own prepare-and-send, less Session.request's per-call merging of settings that
        # never change here (each merge asks typing whether a dict has .items(): a third of the
        # agent's CPU per request on Python 3.11). Same adapter, pool, cookies, redirects and errors.
        headers = dict(self.http.headers)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = requests.PreparedRequest()
        request.prepare(
            method=method,
            url=self.config.relay_url + path,
            headers=headers,
            params=params,
            json=json,
            cookies=self.http.cookies.copy() if len(self.http.cookies) else None,
        )
        response = self.http.send(
            request,
            timeout=(self.config.connect_timeout_seconds, read_timeout),
            allow_redirects=True,
            **self._send_settings,
        )
        if response.status_code >= 400:
            raise _error(response)
        return response

    def register(self) -> None:
        """Exchange the enrolment secret for an agent token, proving the machine name is ours with
        the machine key (agent/machine_key.py). A refusal names what to do; it is logged as is."""
        key = machine_key.load_or_create(self.config.state_dir)
        if self.secrets is not None:
            self.secrets.add(key)
        body = {"machine": self.config.machine_name, "key": key, **self.facts}
        response = self._request("POST", "/api/agent/register", token=self.config.auth_token, read_timeout=30, json=body)
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("token"), str) or not data["token"]:
            kind = response.headers.get("Content-Type", "unknown type").split(";")[0]
            raise RelayError(response.status_code, "http_error", f"a registration answer without a token ({kind}, {len(response.content)} bytes)")
        if self.secrets is not None:
            self.secrets.add(data["token"])
        self.access_token = data["token"]
        self.poll_timeout_seconds = _hold(data.get("poll_timeout_seconds"))

    def _agent_call(self, method: str, path: str, *, read_timeout: float, **kwargs: Any) -> requests.Response:
        if self.access_token is None:
            self._register_unless_renewed(None)
        token = self.access_token
        try:
            return self._request(method, path, token=token, read_timeout=read_timeout, **kwargs)
        except RelayError as error:
            if not error.needs_register:
                raise
            log.info("agent token refused (%s): registering again", error.code)
            self._register_unless_renewed(token)
            return self._request(method, path, token=self.access_token, read_timeout=read_timeout, **kwargs)

    def _register_unless_renewed(self, refused: str | None) -> None:
        """Register, unless another thread already did since `refused` was sent: every registration
        revokes the tokens issued before it, so threads registering in turn would revoke each other's."""
        with self._renew_lock:
            if self.access_token == refused:
                self.register()

    def poll(self, hold_seconds: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Wait for commands (the server's hold, or `hold_seconds`); an empty list when none came.
        `limit` caps how many are leased at once (the agent's free slots)."""
        hold = self.poll_timeout_seconds if hold_seconds is None else hold_seconds
        params = {"wait": f"{hold:g}"}
        if limit is not None:
            params["limit"] = str(limit)
        response = self._agent_call(
            "GET", "/api/agent/poll", params=params, read_timeout=hold + self.config.poll_slack_seconds
        )
        if response.status_code == 204:
            return []
        return _commands(response)

    def start(self, command: dict[str, Any]) -> None:
        """Confirm a leased command; raises RelayError 409/404 when it must not be run."""
        self._agent_call("POST", f"/api/agent/commands/{command['id']}/start", read_timeout=30, json={"lease": command["lease"]})

    def post_result(self, command_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Post a result; safe to repeat with the same body (the server applies it once)."""
        return self._agent_call("POST", f"/api/agent/commands/{command_id}/result", read_timeout=30, json=body).json()

    def post_output(self, command_id: str, chunks: list[dict[str, Any]], idle: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send output chunks (or none, as a heartbeat); safe to repeat. Returns how far the server
        has each stream and whether the command was cancelled. `idle` marks an interactive command
        quiet since its latest input."""
        body: dict[str, Any] = {"chunks": chunks}
        if idle is not None:
            body["idle"] = idle
        return self._agent_call("POST", f"/api/agent/commands/{command_id}/output", read_timeout=30, json=body).json()

    def take_input(self, command_id: str, offset: int) -> dict[str, Any] | None:
        """Wait (the server's hold) for input to an interactive command past `offset`, the bytes
        already written (which acknowledges them); None when none came."""
        hold = self.poll_timeout_seconds
        response = self._agent_call(
            "GET", f"/api/agent/commands/{command_id}/input", params={"offset": str(offset), "wait": f"{hold:g}"},
            read_timeout=hold + self.config.poll_slack_seconds,
        )
        return None if response.status_code == 204 else response.json()

    def reconcile(self, keep: list[str]) -> list[str]:
        """After a restart: name the commands still held; the server marks the machine's others lost."""
        return self._agent_call("POST", "/api/agent/reconcile", read_timeout=30, json={"keep": keep}).json()["lost"]


MAX_POLL_HOLD_SECONDS = 300.0


def pool_size(max_concurrent_commands: int) -> int:
    """How many threads may send a request at once: each running command's worker (its result),
    output streamer and, for an interactive command, input taker; plus the poller and the outbox."""
    return 3 * max_concurrent_commands + 2


def _hold(advertised: Any) -> float:
    """The poll hold the server advertised, if it is a sane number of seconds; else the usual 25."""
    if isinstance(advertised, (int, float)) and not isinstance(advertised, bool) and 0 < advertised <= MAX_POLL_HOLD_SECONDS:
        return float(advertised)
    if advertised is not None:
        log.warning("the server advertised poll_timeout_seconds=%r; holding polls 25 s instead", advertised)
    return 25.0


def _commands(response: requests.Response) -> list[dict[str, Any]]:
    """The commands of a 200 poll answer, or a retryable RelayError naming what is wrong with it
    (an answer from something other than our server must not stop the agent's poller)."""
    try:
        commands = response.json()["commands"]
    except (ValueError, KeyError, TypeError):
        commands = None
    if not isinstance(commands, list) or not all(
        isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("tool"), str) for c in commands
    ):
        kind = response.headers.get("Content-Type", "unknown type").split(";")[0]
        raise RelayError(response.status_code, "http_error", f"a poll answer that is not {{\"commands\": [...]}} ({kind}, {len(response.content)} bytes)")
    return commands


def _error(response: requests.Response) -> RelayError:
    try:
        error = response.json()["error"]
        return RelayError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        # Not our server's JSON: a proxy's or load balancer's page. Say so, without dumping it.
        kind = response.headers.get("Content-Type", "unknown type").split(";")[0]
        return RelayError(response.status_code, "http_error", f"non-JSON {kind} response ({len(response.content)} bytes)")


# Where the operating system keeps its CA bundle (Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine, macOS).
SYSTEM_CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
)


def trust_store(config: AgentConfig) -> str | bool:
    """What TLS is verified against: CA_BUNDLE, else the system's bundle, else requests' own (certifi)."""
    if config.ca_bundle:
        return config.ca_bundle
    import ssl

    found = ssl.get_default_verify_paths().cafile
    for candidate in (found, *SYSTEM_CA_FILES):
        if candidate and os.path.isfile(candidate):
            return candidate
    return True


def configure_session(session: requests.Session, config: AgentConfig) -> None:
    """Point `session` at the configured proxy and trust store, ignoring requests' own env lookups."""
    session.trust_env = False
    session.proxies = {"http": config.proxy_url, "https": config.proxy_url} if config.proxy_url else {}
    session.verify = trust_store(config)
    if config.proxy_url:
        log.info("using proxy %s for %s", mask(config.proxy_url), config.relay_url)
    if config.ca_bundle:
        log.info("trusting the CA bundle %s", config.ca_bundle)


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and everything wrapped inside it (urllib3 nests reasons in args, not only __cause__)."""
    seen: list[BaseException] = []
    queue: list[BaseException] = [error]
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.append(current)
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__]
        nested += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        queue += [n for n in nested if isinstance(n, BaseException)]
    return seen


def classify(error: BaseException) -> tuple[str, str]:
    """(kind, one-line reason) for a failed request, without credentials or bodies.

    Kinds: `dropped` (an open connection was cut, e.g. a proxy ending a held poll: retry at once),
    `proxy_refused` (the proxy answered 407/403 to CONNECT), `tls` (certificate not trusted), `dns`,
    `unreachable`, `timeout`, `server` (an error answer) or `other`.
    """
    if isinstance(error, RelayError):
        if error.status == 407:  # a proxy on the way to an http:// server, asking for credentials
            return "proxy_refused", "the proxy answered 407 Proxy Authentication Required: put user:password in HTTPS_PROXY"
        return "server", str(error)
    chain = _causes(error)
    text = " | ".join(str(e) for e in chain)
    names = {type(e).__name__ for e in chain}
    tunnel = re.search(r"Tunnel connection failed: (\d{3}[^'\"|)]*)", text)
    if tunnel:
        return "proxy_refused", f"the proxy refused the tunnel: {tunnel.group(1).strip()}"
    verify = next((e for e in chain if type(e).__name__ == "SSLCertVerificationError"), None)
    if verify is not None:
        detail = getattr(verify, "verify_message", "") or "certificate not trusted"
        return "tls", f"TLS verification of {mask_url(error)} failed: {detail}; if a proxy or private CA signs it, set CA_BUNDLE to that CA's PEM file"
    dropped = {"RemoteDisconnected", "ConnectionResetError", "BrokenPipeError", "IncompleteRead", "SSLEOFError", "SSLZeroReturnError"}
    if names & dropped or "Connection aborted" in text or "UNEXPECTED_EOF" in text:
        return "dropped", "the connection was closed mid-request (a proxy or load balancer cutting it?)"
    if isinstance(error, requests.exceptions.SSLError):
        return "tls", f"TLS with {mask_url(error)} failed: {chain[-1]}"
    if isinstance(error, requests.Timeout):
        return "timeout", "timed out"
    if "NameResolutionError" in names or "Name or service not known" in text or "getaddrinfo failed" in text:
        return "dns", "the host name does not resolve"
    if names & {"NewConnectionError", "ConnectionRefusedError"}:
        where = "the proxy" if isinstance(error, requests.exceptions.ProxyError) else "the server"
        return "unreachable", f"cannot connect to {where} (connection refused or no route)"
    return "other", f"{type(error).__name__}"


def mask_url(error: BaseException) -> str:
    """The URL a failed request went to, without query string or password."""
    request = getattr(error, "request", None)
    url = getattr(request, "url", "") or "the server"
    return mask(url.split("?", 1)[0])
