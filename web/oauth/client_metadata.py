"""Client ID Metadata Documents: a client whose `client_id` is an https URL, described by the JSON
document at that URL (draft-ietf-oauth-client-id-metadata-document; MCP 2025-11-25 recommends it over
dynamic registration, and 2026-07-28 deprecates registration).

Fetching a URL that anyone may name is a server-side request forgery risk, so the fetch is narrow:

- the URL: https, a path other than `/`, no fragment, no user or password, no dot segments, ASCII,
  at most 2000 characters;
- the address: every address the host resolves to must be public (no loopback, private, link-local,
  shared, multicast or reserved range), unless it lies in `CLIENT_METADATA_PRIVATE_NETWORKS`; the
  connection goes to the address that was checked (no second lookup to rebind), with the host's
  certificate verified;
- redirects: at most 3, each to an https URL checked the same way;
- time and size: one deadline of 5 s for the whole exchange (a server trickling bytes is cut off),
  and at most 5 KiB of document (the draft's example limit);
- the document: a JSON object whose `client_id` is the URL exactly, public (`token_endpoint_auth_method`
  `none` or absent; never a `client_secret`), with 1-8 valid `redirect_uris`.

The OAuth store (web/oauth/store.py) keeps what was fetched in the client's row and reuses it for the
time the document's `Cache-Control: max-age` allows, between 1 minute and 1 day (1 hour without one;
`no-store` or `no-cache`: fetched again at every authorization).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_URL_CHARS = 2000
MAX_DOCUMENT_BYTES = 5 * 1024
MAX_HEAD_BYTES = 16 * 1024
FETCH_SECONDS = 5.0
MAX_REDIRECTS = 3
DEFAULT_CACHE_SECONDS = 3600
MIN_CACHE_SECONDS, MAX_CACHE_SECONDS = 60, 86400
MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)


class MetadataError(Exception):
    """Why a client's metadata document cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Document:
    metadata: dict[str, Any]
    cache_seconds: int


def is_metadata_url(client_id: Any) -> bool:
    """Whether this client_id names a metadata document (rather than a registered client)."""
    return isinstance(client_id, str) and client_id[:8].lower() == "https://"


def check_url(url: str) -> None:
    """Raise MetadataError unless `url` may be a client_id URL."""
    if len(url) > MAX_URL_CHARS or not url.isascii() or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise MetadataError(f"a client_id URL must be ASCII without spaces, at most {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise MetadataError("a client_id URL must be https://host/path")
    if parts.path in ("", "/"):
        raise MetadataError("a client_id URL must have a path (https://host/path/client.json)")
    if "#" in url or parts.username is not None or parts.password is not None or "\\" in url:
        raise MetadataError("a client_id URL may not carry a fragment, a user or password, or a backslash")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise MetadataError("a client_id URL may not contain '.' or '..' path segments")
    try:
        parts.port
    except ValueError:
        raise MetadataError("a client_id URL's port must be a number from 1 to 65535") from None


def fetch(url: str, *, private_networks: tuple[str, ...] = ()) -> Document:
    """The checked document at `url`, or MetadataError saying why not."""
    check_url(url)
    deadline = time.monotonic() + FETCH_SECONDS
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        status, headers, body = _get(target, deadline, private_networks)
        if status in (301, 302, 303, 307, 308) and headers.get("location"):
            target = urljoin(target, headers["location"])
            try:
                check_url(target)
            except MetadataError as error:
                raise MetadataError(f"the client metadata document redirects to a URL that is refused: {error}") from None
            continue
        break
    else:
        raise MetadataError(f"the client metadata document redirects more than {MAX_REDIRECTS} times")
    if status != 200:
        raise MetadataError(f"fetching the client metadata document answered HTTP {status}, not 200")
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise MetadataError(f"the client metadata document must be served as application/json, not {kind or 'nothing'!r}")
    try:
        metadata = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise MetadataError(f"the client metadata document is not JSON: {error}") from None
    _check_document(url, metadata)
    return Document(metadata, _cache_seconds(headers.get("cache-control", "")))


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _check_document(url: str, metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise MetadataError("the client metadata document must be a JSON object")
    if metadata.get("client_id") != url:
        raise MetadataError("the client metadata document's client_id must be its own URL, exactly")
    if "client_secret" in metadata or "client_secret_expires_at" in metadata:
        raise MetadataError("a client metadata document may not carry a client_secret (it is public)")
    method = metadata.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise MetadataError(f"token_endpoint_auth_method {method!r} is not supported for a metadata document client: use 'none' (PKCE)")


def _cache_seconds(cache_control: str) -> int:
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0
    found = MAX_AGE.search(cache_control)
    seconds = int(found.group(1)) if found else DEFAULT_CACHE_SECONDS
    return max(MIN_CACHE_SECONDS, min(seconds, MAX_CACHE_SECONDS))


def _address(host: str, port: int, private_networks: tuple[str, ...]) -> str:
    """The one address to connect to: every address `host` resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise MetadataError(f"the client metadata host {host!r} does not resolve ({error})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        if not _allowed(address, private_networks):
            raise MetadataError(
                f"the client metadata host {host!r} resolves to {address}, a non-public address: refused "
                "(CLIENT_METADATA_PRIVATE_NETWORKS allows chosen private networks)"
            )
    if not addresses:
        raise MetadataError(f"the client metadata host {host!r} has no address")
    return addresses[0]


def _allowed(address: str, private_networks: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in ipaddress.ip_network(network) for network in private_networks):
        return True
    return ip.is_global and not ip.is_multicast


def _get(url: str, deadline: float, private_networks: tuple[str, ...]) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 GET (so the answer is plain bytes to the end, never chunked) within the deadline."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    address = _address(host, port, private_networks)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rpartition("@")[2]
    request = f"GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\nUser-Agent: code-remote\r\n\r\n"
    context = ssl.create_default_context()
    try:
        with socket.create_connection((address, port), timeout=_remaining(deadline)) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.settimeout(_remaining(deadline))
                tls.sendall(request.encode("ascii"))
                data = b""
                while True:
                    tls.settimeout(_remaining(deadline))
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    if len(data) > MAX_HEAD_BYTES + MAX_DOCUMENT_BYTES:
                        break
    except (socket.timeout, TimeoutError):
        raise MetadataError(f"fetching the client metadata document took longer than {FETCH_SECONDS:g} s") from None
    except ssl.SSLError as error:
        raise MetadataError(f"the client metadata host's TLS was refused: {error.reason or error}") from None
    except OSError as error:
        raise MetadataError(f"the client metadata document could not be fetched: {error.strerror or error}") from None
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator or len(head) > MAX_HEAD_BYTES:
        raise MetadataError("the client metadata host did not answer with a complete HTTP response")
    if len(body) > MAX_DOCUMENT_BYTES:
        raise MetadataError(f"the client metadata document is over {MAX_DOCUMENT_BYTES} bytes")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or not status_line[1].isdigit():
        raise MetadataError("the client metadata host did not answer with an HTTP status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length and length.isdigit() and int(status_line[1]) == 200 and len(body) < int(length):
        raise MetadataError("the client metadata document ended before its Content-Length")
    return int(status_line[1]), headers, body


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left
