"""Index the audit rows that carry an error code, for the dashboard's refused machine keys.

The Machines page lists the agents refused a machine's name lately (error_code machine_key_mismatch,
web/console/queries.py: refused_keys). Without an index that is a scan of every audit row of the last
week. A partial index (SQLite and PostgreSQL both have them) holds only the rows with an error code,
a small part of the table, so a successful tool call's insert does not write it.
"""


def up(migrator, db):
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS tool_call_error_code_created_at ON tool_call (error_code, created_at) "
        "WHERE error_code IS NOT NULL"
    )
