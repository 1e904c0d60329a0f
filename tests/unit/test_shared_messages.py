"""Messages queued at once for one session's stream, on PostgreSQL, all reach the stream, in order.

PostgreSQL numbers a row when it is inserted and shows it when it commits. When 32 tool calls of one
SSE session ended together, one answer's row could commit after a later-numbered one; the stream had
already read past that number, and the call waited for its answer until the client gave up.
"""

from __future__ import annotations

import threading

import psycopg2
import pytest

from migrations import upgrade
from tests import database
from tests.harness import wait_for
from web.bus import LocalBus
from web.mcp.shared import SharedSessions
from web.mcp.replay import MAX_FINISHED
from web.mcp.shared_replay import APPEND_IN_TURN, MESSAGE_LOCKS, SharedReplays
from web.models import db, open_database

pytestmark = pytest.mark.skipif(not database.PG_BIN_DIRS, reason="needs PostgreSQL (Debian: apt-get install postgresql)")


@pytest.fixture
def url():
    url = database.cluster().create_database()
    open_database(url)
    with db.connection_context():
        upgrade(db.obj)
    return url


def received(session, count: int, timeout: float = 20.0) -> list[dict]:
    """What the session's stream sends, until `count` messages or the deadline."""
    got: list[dict] = []

    def follow() -> None:
        for message in session.messages(heartbeat_seconds=0.2):
            if message is not None:
                got.append(message)
            if len(got) >= count:
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    reader.join(timeout)
    return got


def waiting_for_a_stream_turn(url: str) -> bool:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND NOT granted", (MESSAGE_LOCKS,))
        return cursor.fetchone()[0] > 0


def test_a_message_numbered_later_is_not_shown_before_one_still_being_written(url):
    sessions = SharedSessions(LocalBus(), idle_seconds=3600)
    session, other = sessions.open("owner", "sse"), sessions.open("owner", "sse")
    writer = psycopg2.connect(url)  # another process, in the middle of queueing the first answer
    try:
        with writer.cursor() as cursor:
            cursor.execute(APPEND_IN_TURN, (session.id, '{"n": 1}', 0.0, MESSAGE_LOCKS, session.id))
        second = threading.Thread(target=sessions.post, args=(session.id, {"n": 2}))
        second.start()
        wait_for(lambda: waiting_for_a_stream_turn(url), timeout=10, what="the second answer to wait for the first")
        sessions.post(other.id, {"n": "other"})  # another session's stream does not wait
        writer.commit()
    finally:
        writer.close()
    second.join(10)
    with db.connection_context():
        ids = dict(db.execute_sql("SELECT body, id FROM mcp_message").fetchall())
    assert ids['{"n":2}'] > ids['{"n":"other"}'], "the second answer was numbered only once its turn came"
    assert [m["n"] for m in received(session, 2)] == [1, 2]


def test_answers_queued_from_many_threads_at_once_all_reach_the_stream(url):
    sessions = SharedSessions(LocalBus(), idle_seconds=3600)
    session = sessions.open("owner", "sse")
    threads, per_thread = 8, 40
    start = threading.Barrier(threads)

    def answer(t: int) -> None:
        start.wait()
        for n in range(per_thread):
            sessions.post(session.id, {"t": t, "n": n})

    posters = [threading.Thread(target=answer, args=(t,)) for t in range(threads)]
    for poster in posters:
        poster.start()
    got = received(session, threads * per_thread)
    for poster in posters:
        poster.join(10)
    assert len(got) == threads * per_thread, f"{threads * per_thread - len(got)} answers never reached the stream"
    for t in range(threads):
        assert [m["n"] for m in got if m["t"] == t] == list(range(per_thread)), "each sender's answers arrive in its order"


def test_a_session_keeps_its_newest_finished_answers_for_resumption_and_forgets_older_ones(url):
    sessions = SharedSessions(LocalBus(), idle_seconds=3600)
    session = sessions.open("owner", "http")
    replays = SharedReplays(sessions, session.id)
    answers = []
    for n in range(MAX_FINISHED + 2):
        replay = replays.open()
        replay.add([{"jsonrpc": "2.0", "id": n, "result": {}}], last=True)
        answers.append(replay.event_id(0))
    running = replays.open()  # opening an answer stream forgets the oldest finished ones
    assert replays.find(running.event_id(0)) is not None
    kept = [event_id for event_id in answers if replays.find(event_id) is not None]
    assert kept == answers[-MAX_FINISHED:]
    with db.connection_context():
        assert db.execute_sql("SELECT count(*) FROM mcp_message").fetchone()[0] == MAX_FINISHED, "their messages went with them"
