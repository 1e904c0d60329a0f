"""The dashboard's history on 100 000 commands: keyset pages come from an index (no sort of the table)
with each filter, page after page, and the pages chain without gaps or repeats."""

from __future__ import annotations

import time

import pytest

from migrations import upgrade
from tests import database
from web.console import queries
from web.models import Command, SqliteDatabase, db, open_database

ROWS = 100_000
MACHINES = ("laptop", "desktop", "build")
STATES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """One database of 100 000 commands for the whole module (filling it takes a few seconds)."""
    open_database(database.fresh_url(tmp_path_factory.mktemp("history")))
    with db.connection_context():
        upgrade(db.obj)
    t0 = time.time() - ROWS
    columns = ("id", "machine", "tool", "arguments", "state", "timeout_seconds", "session_id", "created_at", "lease_count", "finished_at")
    mark = db.obj.param
    insert = f"INSERT INTO command ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    rows = [
        (f"{i:032x}", MACHINES[i % 3], "run_shell_command" if i % 10 else "read_file", '{"command":"echo %d"}' % i,
         STATES[i % 5], 30.0, "", t0 + i, 1, t0 + i + 0.5)
        for i in range(ROWS)
    ]
    with db.connection_context(), db.atomic():
        db.cursor().executemany(insert, rows)
        if isinstance(db.obj, SqliteDatabase):
            db.execute_sql("ANALYZE")
        else:
            db.execute_sql("ANALYZE command")
    return t0


def plan(filters: queries.Filters) -> str:
    """The database's plan for the history page query with `filters`."""
    captured = []
    original = db.obj.execute_sql

    def capture(sql, params=None, *args, **kwargs):
        if sql.lstrip().upper().startswith("SELECT") and '"command"' in sql and not captured:
            captured.append((sql, params))
        return original(sql, params, *args, **kwargs)

    db.obj.execute_sql = capture
    try:
        queries.history(filters)
    finally:
        db.obj.execute_sql = original
    sql, params = captured[0]
    with db.connection_context():
        rows = db.execute_sql("EXPLAIN QUERY PLAN " + sql if isinstance(db.obj, SqliteDatabase) else "EXPLAIN " + sql, params).fetchall()
    return "\n".join(" ".join(str(c) for c in row) for row in rows)


@pytest.mark.parametrize("filters", [
    queries.Filters(),
    queries.Filters(machine="build"),
    queries.Filters(state="failed"),
    queries.Filters(tool="read_file"),
    queries.Filters(text="echo 99"),
], ids=["none", "machine", "state", "tool", "text"])
def test_a_history_page_is_read_from_an_index_not_a_sort(history, filters):
    filters.before = (history + ROWS // 2, "f" * 32)  # a page deep in the table
    text = plan(filters)
    assert "TEMP B-TREE" not in text and "Sort" not in text, text
    rows, cursor = queries.history(filters)
    assert rows and cursor


def test_pages_chain_newest_first_without_gaps(history):
    filters = queries.Filters(machine="laptop")
    seen = []
    for _ in range(3):
        rows, cursor = queries.history(filters)
        seen += [r.id for r in rows]
        stamp, _, command_id = cursor.partition("_")
        filters.before = (float(stamp), command_id)
    expected = [f"{i:032x}" for i in range(ROWS - 1, -1, -1) if i % 3 == 0][: len(seen)]
    assert seen == expected
