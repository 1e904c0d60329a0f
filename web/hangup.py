"""Whether the client of a held request has hung up, asked of its connection without waiting.

An agent sends nothing while its poll is held, so its connection becomes readable only when it is
closed: a readable socket whose next byte is the end of the stream (a peek reads b"") means the agent
hung up, and the poll can end before it leases anything into a dead connection.

Two rules, each learnt from a fleet that stopped working past about a thousand connections:

- Never `select.select()`: it refuses a file descriptor above 1023 (FD_SETSIZE) with ValueError, and
  one gevent worker holding a thousand polls and streams gets there. `poll(2)` has no such limit. Under
  gevent, `select.poll` is replaced by a cooperative version whose zero timeout returns before it looks
  at the socket, so the operating system's own `poll` is used (a zero timeout never blocks the worker).
- An error in the check is not an answer. The old check read select's ValueError as "hung up", so
  every poll past the thousandth connection ended at once, leased nothing, and its agent polled again:
  a quarter of a million empty polls in two minutes. Now a check that cannot tell logs why once and
  says "still there": the poll then simply runs to its deadline, as it would without the check.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

try:  # the operating system's poll, even after gevent's monkey-patching
    from gevent.monkey import get_original

    _poll = get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is a server requirement
    _poll = getattr(select, "poll", None)

GONE = select.POLLHUP | select.POLLERR if _poll is not None else 0


def hang_up_check(sock: Any) -> Callable[[], bool] | None:
    """A function telling whether the peer of `sock` has closed the connection, or None where this
    cannot be told (no socket, as under a test client; TLS, whose framing hides a plain end of file;
    a platform without poll)."""
    if sock is None or isinstance(sock, ssl.SSLSocket) or _poll is None:
        return None
    broken: list[str] = []

    def hung_up() -> bool:
        if broken:
            return False  # said once why it cannot tell; the hold runs to its deadline
        try:
            return _closed(sock)
        except Exception as error:  # noqa: BLE001 - any failure means "cannot tell", never "gone"
            broken.append(type(error).__name__)
            log.warning("cannot tell whether a held poll's client hung up (%s: %s); holding it to its deadline", type(error).__name__, error)
            return False

    return hung_up


def _closed(sock: Any) -> bool:
    """True when the peer has closed (end of stream, reset); False while it is there."""
    poller = _poll()
    fd = sock.fileno()
    if fd < 0:
        raise OSError(f"the connection's socket is already closed here (fd {fd})")
    poller.register(fd, select.POLLIN)
    events = poller.poll(0)
    if not events:
        return False
    mask = events[0][1]
    if mask & select.POLLNVAL:
        raise OSError(f"poll() says fd {fd} is not an open file")
    if mask & GONE:
        return True  # reset, or closed both ways: the kernel says so without a read
    try:
        # Readable: the end of the stream, or bytes the client sent (then it is still there). The
        # peek returns at once: the socket is readable, so gevent's recv does not wait.
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return True
    except (BlockingIOError, InterruptedError):
        return False  # the readiness went away between poll and peek: still there


def readable(sock: Any) -> bool:
    """Whether something waits to be read on `sock` (request bytes, or its end), asked without
    waiting; False where this cannot be told."""
    if _poll is None:
        return False
    try:
        poller = _poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False
