"""The one-statement writes used on PostgreSQL write all or nothing, by the state they were read in."""

from __future__ import annotations

import pytest

from migrations import upgrade
from tests import database
from web import sql
from web.models import RUNNING, SUCCEEDED, Command, CommandEvent, CommandOutput, db, event, open_database

pytestmark = pytest.mark.skipif(not database.PG_BIN_DIRS, reason="needs PostgreSQL (Debian: apt-get install postgresql)")


@pytest.fixture
def command():
    open_database(database.cluster().create_database())
    with db.connection_context():
        upgrade(db.obj)
        row = Command(id="c" * 32, machine="box", tool="run_shell_command", arguments={"command": "echo hi"},
                      state=RUNNING, timeout_seconds=5, created_at=1.0)
        sql.insert(row)
    assert sql.writes_in_with(Command)
    return row


def finish(command: Command) -> bool:
    command.state, command.exit_code = SUCCEEDED, 0
    output = CommandOutput(command_id=command.id, stream="stdout", offset=0, length=3, data=b"hi\n")
    return sql.update_then_insert(command, "state = ?", (RUNNING,), [output, event(command.id, RUNNING, SUCCEEDED, "agent", "result")])


def test_the_change_and_its_rows_are_written_together_when_the_row_is_as_read(command):
    with db.connection_context():
        assert finish(command)
        stored = sql.get(Command, command.id)
        assert (stored.state, stored.exit_code) == (SUCCEEDED, 0)
        assert [bytes(row.data) for row in CommandOutput.select()] == [b"hi\n"]
        assert [(e.from_state, e.to_state, e.detail) for e in CommandEvent.select()] == [(RUNNING, SUCCEEDED, "result")]


def test_nothing_is_written_when_another_process_changed_the_row_since_it_was_read(command):
    with db.connection_context():
        Command.update(state="cancelled").where(Command.id == command.id).execute()  # the other process
        assert not finish(command)
        assert sql.get(Command, command.id).state == "cancelled"
        assert CommandOutput.select().count() == 0 and CommandEvent.select().count() == 0
