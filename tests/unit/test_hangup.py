"""The held poll's hang-up check on real sockets, at file descriptors above select()'s 1023 too."""

from __future__ import annotations

import io
import logging
import os
import re
import resource
import socket
import tokenize
from pathlib import Path

import pytest

from web.hangup import hang_up_check

ROOT = Path(__file__).resolve().parents[2]
HIGH_FD = 1500


@pytest.fixture(params=["low", "high"])
def pair(request):
    """A connected pair (server end, client end); "high" puts the server end at fd 1500."""
    server, client = socket.socketpair()
    if request.param == "high":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft <= HIGH_FD:
            if hard != resource.RLIM_INFINITY and hard <= HIGH_FD:
                pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is under {HIGH_FD}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH_FD + 1, hard))
        os.dup2(server.fileno(), HIGH_FD)
        server.close()
        server = socket.socket(fileno=HIGH_FD)
        assert server.fileno() > 1023
    yield server, client
    server.close()
    client.close()


def test_a_quiet_open_connection_is_still_there(pair):
    server, _ = pair
    assert hang_up_check(server)() is False


def test_a_closed_connection_has_hung_up(pair):
    server, client = pair
    check = hang_up_check(server)
    client.close()
    assert check() is True


def test_a_client_that_sent_bytes_is_still_there_and_the_bytes_stay_unread(pair):
    server, client = pair
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert hang_up_check(server)() is False
    assert server.recv(100) == b"GET / HTTP/1.1\r\n"


def test_a_check_that_cannot_tell_says_still_there_and_logs_why_once(pair, caplog):
    server, client = pair
    check = hang_up_check(server)
    server.close()  # our own end is gone: the check cannot look at it (fileno() is -1)
    client.close()
    with caplog.at_level(logging.WARNING, logger="web.hangup"):
        assert [check(), check(), check()] == [False, False, False]
    assert len([r for r in caplog.records if "cannot tell" in r.getMessage()]) == 1


def test_no_socket_means_no_check():
    assert hang_up_check(None) is None


def _calls_select_select(path: Path) -> bool:
    """Whether the code (not its docstrings or comments) calls select.select or imports select from select."""
    words = [
        ";" if t.type == tokenize.NEWLINE else t.string
        for t in tokenize.generate_tokens(io.StringIO(path.read_text(errors="replace")).readline)
        if t.type in (tokenize.NAME, tokenize.OP, tokenize.NEWLINE) and t.string not in ("(", ")")
    ]
    return bool(re.search(r"\bselect \. select\b|\bfrom select import [^;]*\bselect\b", " ".join(words)))


def test_no_source_file_calls_select_select():
    """select.select() refuses file descriptors above 1023; poll, selectors or a peek do not."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("web", "agent", "tests", "scripts", "migrations")
        for path in (ROOT / folder).rglob("*.py")
        if _calls_select_select(path)
    ]
    assert not offenders, f"select.select() used in {offenders}: use selectors or poll"


def test_the_scan_finds_a_call(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import select\nready = select.select([s], [], [], 0)\n")
    assert _calls_select_select(sample)
    sample.write_text("from select import (\n    poll,\n    select,\n)\n")
    assert _calls_select_select(sample)
    sample.write_text('"""never select.select(): it refuses fds above 1023"""\nfrom select import poll\nrows = sql.select(x)\n')
    assert not _calls_select_select(sample)
