"""The worker's deadlines on a real socket pair, and its settings read from the environment."""

from __future__ import annotations

import selectors
import socket
import time

import pytest

import gunicorn_worker
from gunicorn_worker import GuardedSocket, Limits, SlowClient


@pytest.fixture
def limits(monkeypatch) -> Limits:
    monkeypatch.setenv("HEADER_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("BODY_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("BODY_MIN_BYTES_PER_SECOND", "10")
    return Limits()


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_headers_past_their_deadline_raise_once_then_read_as_an_end_of_file(limits, pair):
    server, client = pair
    guarded = GuardedSocket(server, limits)
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert guarded.recv(100) == b"GET / HTTP/1.1\r\n"
    with pytest.raises(SlowClient) as caught:
        guarded.recv(100)
    assert caught.value.error_code == "header_timeout" and caught.value.code == 408
    assert guarded.recv(100) == b""
    assert server.gettimeout() is None  # the socket's own timeout is left as it was


def test_a_body_earns_time_with_every_byte(limits, pair):
    server, client = pair
    guarded = GuardedSocket(server, limits)
    guarded.reading_body()
    started = time.monotonic()
    for _ in range(4):  # 5 bytes every 0.2 s: 0.8 s in all, past the 0.3 s base, never past the earned time
        client.sendall(b"x" * 5)
        assert guarded.recv(100) == b"xxxxx"
        with selectors.DefaultSelector() as selector:  # the client's pace: 0.2 s with nothing sent
            selector.register(server, selectors.EVENT_READ)
            assert selector.select(0.2) == []
    assert time.monotonic() - started > 0.6
    with pytest.raises(SlowClient) as caught:
        guarded.recv(100)
    assert caught.value.error_code == "body_timeout"


def test_between_requests_the_wait_is_unbounded_and_the_next_first_byte_starts_a_deadline(limits, pair):
    server, client = pair
    guarded = GuardedSocket(server, limits)
    guarded.idle()
    client.sendall(b"G")
    assert guarded.recv(1) == b"G"
    with pytest.raises(SlowClient):
        guarded.recv(1)


def test_a_peek_and_an_outer_timeout_keep_their_own_meaning(limits, pair):
    server, client = pair
    guarded = GuardedSocket(server, limits)
    client.sendall(b"abc")
    assert guarded.recv(1, socket.MSG_PEEK) == b"a"
    guarded.settimeout(0.05)
    assert guarded.gettimeout() == 0.05
    assert guarded.recv(10) == b"abc"
    with pytest.raises(socket.timeout):  # the caller's shorter timeout fires first: its own error
        guarded.recv(10)


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "nan", "inf", "٣", "1e999"])
def test_a_bad_setting_stops_the_start_naming_it(monkeypatch, raw):
    monkeypatch.setenv("BODY_TIMEOUT_SECONDS", raw)
    with pytest.raises(SystemExit, match="BODY_TIMEOUT_SECONDS"):
        Limits()


def test_the_cap_may_be_switched_off_with_zero(monkeypatch):
    monkeypatch.setenv("MAX_CONNECTIONS_PER_ADDRESS", "0")
    assert Limits().connections_per_address == 0
    assert gunicorn_worker.address_key("2001:db8::1") == gunicorn_worker.address_key("2001:db8::ffff") == "2001:db8::/64"
