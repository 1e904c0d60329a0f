"""The dashboard's live feed (web/console/feed.py): rows read by id, none lost to an id that commits
late, and the event stream's catch-up from the mark a page was rendered at."""

from __future__ import annotations

import json
import re
import time

from tests.unit.test_console_signin import sign_in
from web.console import feed
from web.models import CommandEvent, CommandOutput, db


def test_the_mark_waits_at_a_hole_and_a_late_row_is_still_taken():
    tail = feed.Tail(10)
    assert tail.take([11, 12, 14]) == [11, 12, 14]
    assert tail.mark == 12, "13 may still commit: a reconnecting view must get it"
    assert tail.take([14]) == [], "a row is taken once"
    assert tail.take([13, 14, 15]) == [13, 15]
    assert tail.mark == 15


def test_a_hole_that_stays_open_is_passed_over(monkeypatch):
    monkeypatch.setattr(feed, "GAP_SECONDS", 0.0)  # a rolled-back insert never fills its id
    tail = feed.Tail(0)
    tail.take([1, 3])
    assert tail.mark == 3


def event(command_id: str, to_state: str, **fields) -> CommandEvent:
    with db.connection_context():
        return CommandEvent.create(command_id=command_id, from_state="queued", to_state=to_state, actor="agent", **fields)


def test_a_state_change_committed_after_a_newer_one_still_reaches_the_views(app):
    live = feed.Feed()
    live._events, live._chunks = feed.Tail(0), feed.Tail(0)
    event("a" * 32, "running", id=2)
    live._tick()
    event("b" * 32, "running", id=1)  # its id was handed out first, its transaction committed last
    live._tick()
    ticks = live.after(0, timeout=0)
    sent = [json.loads(m.text.split("data: ", 1)[1])["command"] for tick in ticks for m in tick.messages]
    assert sent == ["a" * 32, "b" * 32]
    assert ticks[-1].mark == "2.0"


def test_the_stream_first_sends_what_changed_since_the_page_was_rendered(app, client):
    sign_in(client)
    before = event("c" * 32, "leased")
    with db.connection_context():
        CommandOutput.create(command_id="c" * 32, stream="stdout", offset=0, length=6, data=b"hello\n")
    event("c" * 32, "running")
    response = client.get(f"/dashboard/events?since={before.id}.0&command={'c' * 32}")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    chunks = response.response
    text = next(chunks) + next(chunks)
    response.close()  # the view leaves: the feed stops
    text = text.decode() if isinstance(text, bytes) else text
    assert "event: state" in text and '"to":"running"' in text and '"to":"leased"' not in text
    assert '"text":"hello\\n"' in text
    assert re.search(r"^id: \d+\.\d+$", text, re.M), "the batch carries the mark to resume from"


def test_the_stream_ends_when_its_sign_in_expires(config):
    from migrations import upgrade
    from tests.conftest import replace_config
    from web import create_app

    app = create_app(replace_config(config, dashboard_session_seconds=2))
    with db.connection_context():
        upgrade(db.obj)
    client = app.test_client()
    sign_in(client)
    response = client.get("/dashboard/events")
    assert response.status_code == 200
    list(response.response)  # returns only because the stream ended (pytest-timeout guards a stream that would not)
    response.close()
    # The browser reconnects: within the second the signature's whole-second clock allows, a stream
    # that ends at once; then a refusal.
    deadline = time.monotonic() + 5
    while (again := client.get("/dashboard/events")).status_code == 200 and time.monotonic() < deadline:
        list(again.response)
        again.close()
    assert again.status_code == 401, "the browser's reconnection is refused"
