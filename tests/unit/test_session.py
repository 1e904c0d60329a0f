"""MCP sessions: bound to the credential and transport that opened them, gone once closed."""

from __future__ import annotations

import pytest

from web import errors
from web.mcp.session import CLOSED, SessionStore


def test_a_session_is_found_only_with_the_credential_and_transport_that_opened_it():
    store = SessionStore(idle_seconds=3600)
    session = store.open("owner-fingerprint", "sse")
    assert store.get(session.id, "owner-fingerprint", "sse") is session
    for credential, transport in (("someone-else", "sse"), ("owner-fingerprint", "http")):
        with pytest.raises(errors.NotFound) as caught:
            store.get(session.id, credential, transport)
        assert caught.value.code == "unknown_session" and caught.value.http_status == 404


@pytest.mark.parametrize("session_id", [None, "", "0" * 32])
def test_a_missing_or_unknown_session_id_is_not_found(session_id):
    with pytest.raises(errors.NotFound):
        SessionStore(idle_seconds=3600).get(session_id, "owner", "sse")


def test_a_closed_session_is_gone_and_drops_what_is_sent_to_it():
    store = SessionStore(idle_seconds=3600)
    session = store.open("owner", "sse")
    assert len(store) == 1
    store.close(session)
    assert len(store) == 0
    with pytest.raises(errors.NotFound):
        store.get(session.id, "owner", "sse")
    session.send({"jsonrpc": "2.0", "id": 1, "result": {}})
    queued = []
    while not session.outbox.empty():
        queued.append(session.outbox.get_nowait())
    assert queued == [CLOSED], "a closed session's outbox holds only its end marker"
