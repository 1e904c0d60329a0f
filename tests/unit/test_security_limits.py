"""Bounds and hygiene, in process: sessions per credential, the failed-auth slow-down, the agents'
network rule and the audit trail's escaping of control characters."""

from __future__ import annotations

import pytest

from web import errors
from web.audit import clean, summarize_arguments
from web.mcp.session import SessionStore
from web.security.netpolicy import Throttle, address_allowed


def test_sessions_past_the_limit_close_the_credentials_least_recently_used():
    store = SessionStore(idle_seconds=3600, max_per_credential=3)
    first, second, third = (store.open("alice", "http") for _ in range(3))
    second.last_active = first.last_active - 10  # the least recently used
    other = store.open("bob", "http")
    fourth = store.open("alice", "http")
    assert second.closed and not first.closed and not third.closed and not fourth.closed and not other.closed
    with pytest.raises(errors.NotFound):
        store.get(second.id, "alice", "http")
    assert len(store) == 4


def test_the_throttle_counts_failures_per_address_and_says_when_to_retry():
    throttle = Throttle(2, window_seconds=60)
    throttle.hit("10.0.0.1")
    throttle.hit("10.0.0.1")
    throttle.hit("10.0.0.2")
    with pytest.raises(errors.TooManyRequests) as caught:
        throttle.hit("10.0.0.1")
    assert caught.value.http_status == 429 and 1 <= caught.value.retry_after_seconds <= 60


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("100.64.0.1", True), ("100.127.255.254", True), ("100.128.0.1", False), ("127.0.0.1", False),
     ("::ffff:100.64.0.9", True), ("fd7a:115c:a1e0::1", True), ("not-an-ip", False), (None, False), ("", False)],
)
def test_agent_networks(address, allowed):
    assert address_allowed(address, ("100.64.0.0/10", "fd7a:115c:a1e0::/48")) is allowed


def test_no_networks_configured_admits_everyone():
    assert address_allowed("203.0.113.9", ())


def test_audit_rows_escape_control_characters_and_keep_newlines():
    assert clean("ok\n\tline\x1b[31mred\x00\x7f\u202e") == "ok\n\tline\\x1b[31mred\\x00\\x7f\\u202e"
    summary = summarize_arguments({"command": "printf '\x1b]0;pwned\x07'", "k\x1b": 1, "content": "secret"})
    assert summary["command"] == "printf '\\x1b]0;pwned\\x07'" and "k\\x1b" in summary
    assert summary["content"]["bytes"] == 6 and "secret" not in str(summary)
