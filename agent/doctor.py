"""`python -m agent doctor`: check, step by step, that this agent can reach its server.

Each step prints a one-line verdict and the `curl -v` command that checks the same thing by hand:

    config  the settings the agent would use (proxy and CA bundle included; secrets masked)
    dns     the first hop's name resolves (the proxy's when there is one, else the server's)
    tcp     a TCP connection to the first hop opens
    proxy   the proxy accepts CONNECT to the server (407: wrong credentials, 403: destination refused)
    tls     the server's certificate verifies against CA_BUNDLE or the system store; on failure the
            certificate's issuer is named, which tells a TLS-inspecting proxy's CA from the server's
    clock   the local clock against the server's Date header
    token   the server accepts AUTH_TOKEN
    poll    register and one poll round trip, as the agent does (leasing nothing)

A failed step skips the steps that depend on it. The exit status is 0 when every step passed.
"""

from __future__ import annotations

import base64
import email.utils
import os
import platform
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TextIO
from urllib.parse import unquote, urlsplit

import requests

from agent import VERSION, machine_key
from agent.client import RelayClient, RelayError, classify, trust_store
from agent.config import AgentConfig, ConfigError, mask

STEP_TIMEOUT_SECONDS = 10.0
CLOCK_SKEW_WARN_SECONDS = 60.0


class StepFailed(Exception):
    """A check did not pass; the message says why and what to do."""


class Doctor:
    def __init__(self, config: AgentConfig, out: TextIO) -> None:
        self.config = config
        self.out = out
        self.server = urlsplit(config.relay_url)
        self.server_port = self.server.port or (443 if self.server.scheme == "https" else 80)
        self.proxy = urlsplit(config.proxy_url) if config.proxy_url else None
        self.failed = False

    # --- output ---------------------------------------------------------------------------------

    def report(self, verdict: str, step: str, message: str, curl: str = "") -> None:
        self.out.write(f"{verdict:<5} {step:<7} {message}\n")
        if curl:
            self.out.write(f"{'':14}$ {curl}\n")
        self.out.flush()

    def curl(self, path: str, *extra: str) -> str:
        parts = ["curl -v"]
        if self.proxy:
            parts.append(f"--proxy '{mask(self.config.proxy_url)}'")
        if self.config.ca_bundle and self.server.scheme == "https":
            parts.append(f"--cacert '{self.config.ca_bundle}'")
        parts += list(extra)
        parts.append(f"'{self.config.relay_url}{path}'")
        return " ".join(parts)

    def poll_curl(self) -> str:
        """Register and poll by hand, as the agent does (docs/ARCHITECTURE.md has the whole contract)."""
        # The machine key is read from its file by the shell, never printed (agent/machine_key.py).
        key_file = os.path.join(self.config.state_dir, machine_key.KEY_FILE)
        body = '"{\\"machine\\": \\"%s\\", \\"key\\": \\"$(cat \'%s\')\\"}"' % (self.config.machine_name, key_file)
        register = self.curl("/api/agent/register", "-X POST -H \"Authorization: Bearer $AUTH_TOKEN\"",
                             "-H 'Content-Type: application/json'", f"-d {body}").replace("curl -v", "curl -s", 1)
        extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"token\"])'"
        poll = self.curl("/api/agent/poll?wait=0&limit=0", "-H \"Authorization: Bearer $TOKEN\"")
        return f"TOKEN=$({register} | {extract}) && {poll}"

    # --- the steps ------------------------------------------------------------------------------

    def run(self) -> int:
        trust = trust_store(self.config)
        self.report(
            "ok",
            "config",
            f"server {self.config.relay_url}, machine {self.config.machine_name!r}, "
            f"proxy {mask(self.config.proxy_url) if self.proxy else 'none'}, "
            f"trusting {trust if isinstance(trust, str) else 'the certifi bundle'}",
        )
        steps: list[tuple[str, Callable[[], str], str]] = [
            ("dns", self.check_dns, self.curl("/health")),
            ("tcp", self.check_tcp, ""),
        ]
        if self.proxy:
            steps.append(("proxy", self.check_proxy, ""))
        if self.server.scheme == "https":
            steps.append(("tls", self.check_tls, ""))
        steps += [
            ("clock", self.check_clock, ""),
            ("token", self.check_token, self.curl("/api/machines", "-H \"Authorization: Bearer $AUTH_TOKEN\"")),
            ("poll", self.check_poll, self.poll_curl()),
        ]
        for step, check, curl in steps:
            if self.failed:
                self.report("skip", step, "not checked: an earlier step failed")
                continue
            try:
                message = check()
            except StepFailed as error:
                self.failed = True
                self.report("FAIL", step, str(error), curl or self.curl("/health"))
                continue
            verdict = "warn" if message.startswith("warning: ") else "ok"
            self.report(verdict, step, message.removeprefix("warning: "), curl)
        self.out.write("verdict: " + ("the agent cannot work; fix the first FAIL above\n" if self.failed else "all checks passed\n"))
        return 1 if self.failed else 0

    def _first_hop(self) -> tuple[str, int]:
        if self.proxy:
            return self.proxy.hostname or "", self.proxy.port or 8080
        return self.server.hostname or "", self.server_port

    def check_dns(self) -> str:
        host, port = self._first_hop()
        role = "proxy" if self.proxy else "server"
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise StepFailed(f"the {role} name {host!r} does not resolve ({error.strerror})") from None
        addresses = sorted({info[4][0] for info in infos})
        return f"{role} {host} -> {', '.join(addresses)}"

    def _connect(self) -> socket.socket:
        host, port = self._first_hop()
        try:
            return socket.create_connection((host, port), timeout=STEP_TIMEOUT_SECONDS)
        except OSError as error:
            role = "proxy" if self.proxy else "server"
            raise StepFailed(f"cannot open a TCP connection to the {role} {host}:{port}: {error.strerror or error}") from None

    def check_tcp(self) -> str:
        started = time.monotonic()
        with self._connect():
            elapsed = (time.monotonic() - started) * 1000
        host, port = self._first_hop()
        return f"connected to {host}:{port} in {elapsed:.0f} ms"

    def _tunnel(self) -> socket.socket:
        """A socket to the server: through the proxy's CONNECT when there is one."""
        sock = self._connect()
        if not self.proxy or self.server.scheme != "https":
            return sock
        target = f"{self.server.hostname}:{self.server_port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if self.proxy.username is not None:
            pair = f"{unquote(self.proxy.username)}:{unquote(self.proxy.password or '')}"
            lines.append("Proxy-Authorization: Basic " + base64.b64encode(pair.encode()).decode())
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = _read_head(sock)
        code = status.split(" ", 2)[1] if status.count(" ") >= 1 else "?"
        if code != "200":
            sock.close()
            hint = {
                "407": "the proxy wants credentials: put them in HTTPS_PROXY as http://user:password@host:port",
                "403": "the proxy forbids this destination or port: ask for the server to be allowed",
            }.get(code, "the proxy refused the tunnel")
            raise StepFailed(f"CONNECT {target} answered {status!r}: {hint}")
        return sock

    def check_proxy(self) -> str:
        if self.server.scheme != "https":
            return "plain http through the proxy (no CONNECT needed); the next steps go through it"
        with self._tunnel():
            pass
        return f"CONNECT {self.server.hostname}:{self.server_port} accepted by {mask(self.config.proxy_url)}"

    def check_tls(self) -> str:
        trust = trust_store(self.config)
        context = ssl.create_default_context()
        if isinstance(trust, str):
            context = ssl.create_default_context(**({"capath": trust} if os.path.isdir(trust) else {"cafile": trust}))
        sock = self._tunnel()
        try:
            with context.wrap_socket(sock, server_hostname=self.server.hostname) as tls:
                cert = tls.getpeercert() or {}
                version = tls.version()
        except ssl.SSLCertVerificationError as error:
            issuer, subject = self._unverified_names()
            where = trust if isinstance(trust, str) else "the certifi bundle"
            raise StepFailed(
                f"certificate verify failed: {error.verify_message}; the server presented {subject!r} "
                f"issued by {issuer!r}, which {where} does not trust: if that issuer is your company's "
                f"proxy or a private CA, set CA_BUNDLE to a PEM file holding its certificate"
            ) from None
        except (ssl.SSLError, OSError) as error:
            raise StepFailed(f"TLS handshake with {self.server.hostname} failed: {error}") from None
        finally:
            sock.close()
        return f"{version}, certificate for {_name(cert.get('subject'))!r} issued by {_name(cert.get('issuer'))!r}, valid until {cert.get('notAfter', '?')}"

    def _unverified_names(self) -> tuple[str, str]:
        """The issuer and subject of whatever certificate the server (or a proxy) presents."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only to read the names for the message; nothing is sent
        try:
            sock = self._tunnel()
            with context.wrap_socket(sock, server_hostname=self.server.hostname) as tls:
                der = tls.getpeercert(binary_form=True)
        except (StepFailed, OSError):
            return "unknown", "unknown"
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as handle:
            handle.write(ssl.DER_cert_to_PEM_cert(der))
            handle.flush()
            try:
                decoded = ssl._ssl._test_decode_cert(handle.name)  # the stdlib's own PEM decoder
            except (AttributeError, ssl.SSLError):
                return "unknown", "unknown"
        return _name(decoded.get("issuer")), _name(decoded.get("subject"))

    def _http(self) -> requests.Session:
        client = RelayClient(self.config, facts={})
        return client.http

    def check_clock(self) -> str:
        session = self._http()
        try:
            before = time.time()
            response = session.get(self.config.relay_url + "/health", timeout=STEP_TIMEOUT_SECONDS)
            after = time.time()
        except requests.RequestException as error:
            raise StepFailed(classify(error)[1]) from None
        if response.status_code != 200:
            raise StepFailed(f"GET /health answered {response.status_code}: is {self.config.relay_url} a Code Remote server?")
        date = response.headers.get("Date")
        if not date:
            return "warning: the server sent no Date header; clock not compared"
        skew = email.utils.parsedate_to_datetime(date).timestamp() - (before + after) / 2
        if abs(skew) > CLOCK_SKEW_WARN_SECONDS:
            return f"warning: the server's clock is {skew:+.0f} s from this machine's: certificates may look expired; sync the clock (NTP)"
        return f"the server's clock is within {max(abs(skew), 1):.0f} s of this machine's"

    def check_token(self) -> str:
        session = self._http()
        try:
            response = session.get(
                self.config.relay_url + "/api/machines",
                headers={"Authorization": f"Bearer {self.config.auth_token}"},
                timeout=STEP_TIMEOUT_SECONDS,
            )
        except requests.RequestException as error:
            raise StepFailed(classify(error)[1]) from None
        if response.status_code == 401:
            raise StepFailed("the server refused AUTH_TOKEN: use the exact AUTH_TOKEN the server was started with")
        if response.status_code != 200:
            raise StepFailed(f"GET /api/machines answered {response.status_code} (not JSON from Code Remote? a proxy page?)")
        return f"AUTH_TOKEN accepted; the server knows {len(response.json().get('machines', []))} machine(s)"

    def check_poll(self) -> str:
        # The same facts the agent registers with, so the machine's record stays as the agent left it.
        facts = {
            "hostname": platform.node(),
            "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
            "version": VERSION,
            "roots": [os.path.realpath(root) for root in self.config.roots],
        }
        client = RelayClient(self.config, facts=facts)
        try:
            started = time.monotonic()
            client.register()
            # limit=0: a full round trip that leases nothing, so queued commands stay for the agent.
            client.poll(hold_seconds=0, limit=0)
            elapsed = (time.monotonic() - started) * 1000
        except (requests.RequestException, RelayError) as error:
            raise StepFailed(classify(error)[1]) from None
        return f"registered as {self.config.machine_name!r} and polled in {elapsed:.0f} ms"


def _read_head(sock: socket.socket) -> str:
    """The status line of an HTTP response head (the rest of the head is read and dropped)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1").strip() or "no answer"


def _name(rdns) -> str:
    """'CN=x, O=y' from the tuple-of-tuples form ssl uses for subjects and issuers."""
    if not rdns:
        return "unknown"
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    return ", ".join(f"{short.get(k, k)}={v}" for rdn in rdns for k, v in rdn)


def main(out: TextIO = sys.stdout) -> int:
    try:
        config = AgentConfig.from_env()
    except ConfigError as error:
        out.write(f"FAIL  config  {error}\nverdict: the agent cannot work; fix the first FAIL above\n")
        return 2
    return Doctor(config, out).run()
