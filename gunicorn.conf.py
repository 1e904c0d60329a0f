"""gunicorn settings for Code Remote (read by `gunicorn -c gunicorn.conf.py wsgi:app`).

One gevent worker serves thousands of held long-polls and SSE streams. With PostgreSQL, any number of
workers (`WEB_CONCURRENCY`) and hosts serve every request alike: sessions live in the database and
wake-ups cross processes by LISTEN/NOTIFY (web/bus.py). With SQLite (one process),
`on_starting` refuses more than one worker (docs/DEPLOYMENT.md). Never use
`preload_app` with gevent: the app would be imported before gevent patches the standard library.

Timeouts, outermost first: a PaaS router or proxy in front cuts idle connections (Heroku 55 s, Fly and
most load balancers 60 s or more, squid's read_timeout often 30 s), so agents' polls are held 25 s and
SSE streams get a comment every 15 s: neither is ever idle long enough to be cut. `keepalive` is longer
than the agent's gap between polls, so an agent keeps its connection (and its TLS session) from poll to
poll.
"""

import gc
import os
import sys

# gunicorn reads this file before it changes to the app's folder: make the worker module importable.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gunicorn_worker  # noqa: E402  (reads HEADER_TIMEOUT_SECONDS, ..., MAX_CONNECTIONS_PER_ADDRESS)


def _whole(name: str, default: int) -> int:
    """A whole-number setting from the environment, or an error that names it."""
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"{name} must be a whole number above 0, got {raw!r}")
    return int(raw)


bind = f"{os.environ.get('HOST', '0.0.0.0')}:{_whole('PORT', 8000)}"
# gevent's worker, with deadlines for request headers and bodies and a cap on connections per client
# address, so that slow clients cannot hold a worker's connections (gunicorn_worker.py).
worker_class = gunicorn_worker.GuardedGeventWorker
workers = _whole("WEB_CONCURRENCY", 1)
# Past this many open connections new requests hang instead of failing: size it for held polls+streams.
worker_connections = _whole("WORKER_CONNECTIONS", 4000)
# With gevent, `timeout` is the worker's own heartbeat, not a per-request limit: long polls are fine.
timeout = 60
# SIGTERM (a deploy) waits this long for held polls (<= 25 s) to end before the worker is killed.
graceful_timeout = 30
# On SIGTERM, idle kept-alive connections are closed this long after held requests are handed back.
DRAIN_IDLE_GRACE_SECONDS = 1.0
keepalive = 75
preload_app = False
# Behind a TLS-terminating proxy (Fly, nginx, Caddy), trust its X-Forwarded-* headers. The default,
# 127.0.0.1, fits a proxy on the same host; set FORWARDED_ALLOW_IPS='*' where only the proxy can reach us.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-" if os.environ.get("ACCESS_LOG", "1") == "1" else None
# The path without its query string: a token or session id pasted into a URL must not reach the log.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
# gunicorn 27 otherwise opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl or
# $HOME/.gunicorn/gunicorn.ctl: nothing here uses it, and two instances on one host would share that path.
control_socket_disable = True
loglevel = os.environ.get("LOG_LEVEL", "info")


def on_starting(server):
    """Refuse, before any port is bound, what cannot work: several workers on SQLite."""
    refuse_workers_on_sqlite(server.cfg.workers, os.environ.get("DATABASE_URL", ""))


def refuse_workers_on_sqlite(workers, database_url):
    """Raise (gunicorn prints "Error: ..." and exits 1) when `workers` > 1 and the database is SQLite.

    Sessions, streams and wake-ups are shared between processes through PostgreSQL only: on SQLite a
    second worker silently breaks concurrent clients (calls time out, "unknown or expired session"),
    while a quick manual try still passes. Refusing is the one honest answer.
    """
    if workers <= 1 or database_url.strip().lower().startswith(("postgresql://", "postgres://")):
        return
    source = "DATABASE_URL is unset, so SQLite is used" if not database_url.strip() else "DATABASE_URL is not PostgreSQL"
    raise RuntimeError(
        f"refusing to start {workers} gunicorn workers on SQLite ({source}). SQLite serves one process: "
        "MCP sessions, streams and agent wake-ups are shared between processes only through PostgreSQL, "
        "so with several workers on SQLite concurrent clients would fail. "
        "Set WEB_CONCURRENCY=1 (one gevent worker holds thousands of connections; a platform may set "
        "WEB_CONCURRENCY by itself, so set it explicitly), or set DATABASE_URL=postgresql://... to run "
        "several workers or instances. See docs/DEPLOYMENT.md."
    )


def post_worker_init(worker):
    """Tune the worker once the app is loaded and gevent has patched the standard library."""
    # Thousands of idle greenlets make full collections slow (0.6-0.8 s stalls were measured with
    # 10 000 held connections); freezing the start-up objects and collecting less often cut that to 0.3 s.
    # A held connection's objects (about 100) outlive a few young collections, and a middle collection
    # walks everything promoted since the last one: every 20 young collections that was 333 ms with
    # 10 000 held (scripts/bench.py --idle); after every other one, under 100 ms. Full collections
    # stay as rare as before (2 000 young collections apart: 1 x 1 000 instead of 20 x 100).
    gc.freeze()
    gc.set_threshold(50_000, 1, 1_000)
    _make_psycopg2_cooperative()
    _send_headers_with_the_body()
    _drain_on_sigterm(worker)


def _drain_on_sigterm(worker):
    """On SIGTERM (a deploy, a restart), hand back what is held before gunicorn's graceful stop.

    gunicorn stops accepting and waits up to `graceful_timeout` for open requests; a held poll (25 s)
    or an SSE stream (forever) would keep it waiting. The app ends those at once (Services.drain) and
    every answer from then on closes its connection (the worker is no longer `alive`), so agents and
    clients reconnect to another process.
    """
    import signal
    import socket

    import gevent

    from web.hangup import readable

    services = worker.wsgi.extensions["code_remote"]
    # Open client connections, and whether a request is in progress on each. A keep-alive connection
    # waiting for its next request holds nothing, but gunicorn would wait for it up to `keepalive`.
    connections: dict = {}
    handle, handle_request = worker.handle, worker.handle_request

    def tracked_handle(listener, client, addr):
        connections[client] = False
        try:
            handle(listener, client, addr)
        finally:
            connections.pop(client, None)

    def tracked_request(listener_name, req, sock, addr):
        raw = getattr(sock, "_sock", sock)  # the connection under the worker's guard (gunicorn_worker.py)
        connections[raw] = True
        try:
            return handle_request(listener_name, req, sock, addr)
        finally:
            if raw in connections:
                connections[raw] = False
            if not worker.alive:  # a request that began before the stop: its connection ends with it
                _shut(raw)

    worker.handle, worker.handle_request = tracked_handle, tracked_request

    def drain():
        services.drain()
        # A router learns of the stop a moment after this process does, and may still send a request
        # on a kept-alive connection: a request sent into a connection closed here is lost (a 502, which
        # a router does not retry for a POST). So idle connections stay open a moment longer; a request
        # that arrives meanwhile is served and its connection closed after the answer. Then the idle
        # ones close, except one whose request bytes are already waiting to be read.
        gevent.sleep(DRAIN_IDLE_GRACE_SECONDS)
        for sock, busy in list(connections.items()):
            if not busy and not readable(sock):
                _shut(sock)

    def _shut(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def handle_term(signum, frame):
        worker.alive = False
        gevent.spawn(drain)  # not in the signal handler itself: drain takes locks

    signal.signal(signal.SIGTERM, handle_term)


def _send_headers_with_the_body():
    """Send a response's headers in the same write as its first body bytes.

    gunicorn writes the headers, then the body: two sends per response. On this relay's small JSON
    answers each send costs about as much as the other, and a socket write was a quarter of the
    worker's time in scripts/bench.py. Headers are kept until the first body bytes (or the end of
    the response) and go out with them; sendfile is not used (nothing here serves files).
    """
    from gunicorn import util
    from gunicorn.http import wsgi

    class Response(wsgi.Response):
        _head = None

        def send_headers(self):
            if self.headers_sent:
                return
            lines = self.default_headers()
            lines.extend(["%s: %s\r\n" % (k, v) for k, v in self.headers])
            self._head = util.to_bytestring("%s\r\n" % "".join(lines), "latin-1")
            self.headers_sent = True

        def _emit_body(self, data):
            head, self._head = self._head, None
            if head is None:
                return super()._emit_body(data)
            if self.chunked:
                data = b"%X\r\n%s\r\n" % (len(data), data)
            self.sock.sendall(head + data)

        def can_sendfile(self):
            return False

        def close(self):
            self.send_headers()
            head, self._head = self._head, None
            if head is not None:
                self.sock.sendall(head)
            super().close()

    wsgi.Response = Response


def _make_psycopg2_cooperative():
    """Let PostgreSQL queries yield to other greenlets instead of blocking the whole worker."""
    try:
        import psycopg2.extensions
        from gevent.socket import wait_read, wait_write
    except ImportError:
        return

    def wait(connection, timeout=None):
        while True:
            state = connection.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            if state == psycopg2.extensions.POLL_READ:
                wait_read(connection.fileno(), timeout=timeout)
            elif state == psycopg2.extensions.POLL_WRITE:
                wait_write(connection.fileno(), timeout=timeout)
            else:
                raise psycopg2.OperationalError(f"bad state from connection.poll(): {state}")

    psycopg2.extensions.set_wait_callback(wait)
