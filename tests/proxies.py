"""Real middleboxes for end-to-end tests: a private CA, nginx terminating TLS, squid as a forward proxy.

Both run from Debian's packages as the test's own processes on 127.0.0.1, with every file (config,
logs, pid, temp) under the test's folder. squid logs a CONNECT tunnel only when the tunnel closes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.harness import Process, free_port, wait_for

SQUID = shutil.which("squid") or "/usr/sbin/squid"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NCSA_AUTH = "/usr/lib/squid/basic_ncsa_auth"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path, ca_name: str = "Code Remote Test CA") -> Certificates:
    """A private CA and a server certificate it signs, for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca_name}",
             "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=code-remote.test", "-keyout", "server.key",
             "-out", "server.csr", cwd=folder)
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=folder)
    return Certificates(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Nginx:
    """nginx terminating TLS on 127.0.0.1 and proxying to a server, unbuffered (for polls and SSE)."""

    def __init__(self, folder: Path, upstream_port: int, certs: Certificates) -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.access_log = folder / "access.log"
        (folder / "nginx.conf").write_text(
            f"""
daemon off;
master_process off;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {self.access_log};
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {certs.cert};
        ssl_certificate_key {certs.key};
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""
        )
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        argv = [NGINX, "-p", str(self.folder), "-c", str(self.folder / "nginx.conf"), "-e", str(self.folder / "error.log")]
        self.process = Process(argv, env=dict(os.environ), log_path=self.folder / "stdout.log")
        wait_for(lambda: self._ready(), timeout=15, what=f"nginx on {self.port} (log: {self.folder / 'error.log'})")
        return self

    def _ready(self) -> bool:
        if self.process:
            self.process.check_running("nginx", (self.folder / "error.log").read_text(errors="replace"))
        return _listening(self.port)

    def stop(self) -> None:
        if self.process:
            self.process.stop()


class Squid:
    """squid as a corporate proxy: basic auth, CONNECT only and only to `allowed_port`, no caching."""

    def __init__(self, folder: Path, allowed_port: int, *, user: str = "agent", password: str = "s3cret-pass", read_timeout_seconds: int = 30) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.stdout_log = folder / "stdout.log"
        if os.geteuid() == 0:
            # squid started as root drops to the `proxy` user, which cannot enter pytest's private
            # temp folders: its files live in a folder of their own, removed on stop.
            folder = Path(tempfile.mkdtemp(prefix="code-remote-squid-"))
            os.chmod(folder, 0o755)
        self.folder, self.port = folder, free_port()
        self.user, self.password = user, password
        self.access_log = folder / "access.log"
        hashed = subprocess.run(["openssl", "passwd", "-apr1", password], check=True, capture_output=True, text=True).stdout.strip()
        (folder / "passwd").write_text(f"{user}:{hashed}\n")
        (folder / "squid.conf").write_text(
            f"""
http_port 127.0.0.1:{self.port}
visible_hostname code-remote-test-proxy
pid_filename {folder}/squid.pid
access_log stdio:{self.access_log} squid
cache_log {folder}/cache.log
cache_store_log none
coredump_dir {folder}
cache deny all
auth_param basic program {NCSA_AUTH} {folder}/passwd
auth_param basic realm code-remote-test
acl authenticated proxy_auth REQUIRED
acl server_port port {allowed_port}
acl CONNECT method CONNECT
http_access deny !authenticated
http_access allow CONNECT server_port
http_access deny all
read_timeout {read_timeout_seconds} seconds
shutdown_lifetime 0 seconds
"""
        )
        if os.geteuid() == 0:
            proxy = pwd.getpwnam("proxy")
            for path in [folder, *folder.iterdir()]:
                os.chown(path, proxy.pw_uid, proxy.pw_gid)
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.port}"

    def start(self) -> Squid:
        self.process = Process([SQUID, "-N", "-f", str(self.folder / "squid.conf")], env=dict(os.environ), log_path=self.stdout_log)
        wait_for(self._ready, timeout=30, what=f"squid on {self.port} (log: {self.folder / 'cache.log'})")
        return self

    def _ready(self) -> bool:
        if self.process:
            self.process.check_running("squid", (self.folder / "cache.log").read_text(errors="replace"))
        return _listening(self.port)

    def log(self) -> str:
        return self.access_log.read_text(errors="replace") if self.access_log.exists() else ""

    def stop(self) -> None:
        if self.process:
            self.process.stop()
        if self.folder.name.startswith("code-remote-squid-"):
            shutil.rmtree(self.folder, ignore_errors=True)


def agent_network_env(*, proxy: str = "", ca_bundle: str = "") -> dict[str, str]:
    """Agent environment that sets the proxy and CA explicitly, overriding whatever this machine sets
    (NO_PROXY naming 127.0.0.1 would bypass the proxy; REQUESTS_CA_BUNDLE may name the system store)."""
    return {
        "https_proxy": proxy,
        "HTTPS_PROXY": proxy,
        "http_proxy": proxy,
        "HTTP_PROXY": proxy,
        "no_proxy": "",
        "NO_PROXY": "",
        "CA_BUNDLE": ca_bundle,
        "REQUESTS_CA_BUNDLE": ca_bundle,
        "CURL_CA_BUNDLE": "",
    }

