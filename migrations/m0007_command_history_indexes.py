"""Page the dashboard's history newest first, fast at any depth and with any one filter.

The history is read by keyset on (created_at, id) (web/console/queries.py). Without an index on
created_at, every page sorted the whole table: at 100 000 commands, ~60 ms a page on SQLite. With
(created_at, id), a page is an index walk of 51 rows; (machine, created_at, id) serves the machine filter the
same way, and (state, created_at, id) the state filter. The last replaces the index on state alone, of which
it is a prefix (the sweeper's and the metrics' "state IN (...)" use it as before), so a command's
transitions update no more indexes than before.
"""

from playhouse.migrate import migrate


def up(migrator, db):
    migrate(
        migrator.drop_index("command", "command_state"),
        migrator.add_index("command", ("state", "created_at", "id"), False),
        migrator.add_index("command", ("created_at", "id"), False),
        migrator.add_index("command", ("machine", "created_at", "id"), False),
    )
