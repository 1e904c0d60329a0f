"""Upgrading a database made by the first release keeps every row, and the server then serves it.

The database is built at m0001 with the first release's schema, filled with the kinds of rows that
release wrote, then upgraded by `python -m migrations` exactly as the Procfile's release step runs it.
Runs on SQLite, or PostgreSQL with CODE_REMOTE_TEST_DATABASE=postgresql.
"""

from __future__ import annotations

import json
import subprocess

import requests
from peewee import Table
from playhouse.db_url import connect

from migrations import applied, available, upgrade
from tests import database
from tests.harness import PYTHON, ROOT, Server, base_env

NOW = 1_790_000_000.25

MACHINES = [
    {"id": 1, "name": "laptop", "hostname": "laptop.local", "os": "Darwin 24.1 (arm64)", "agent_version": "0.1.0",
     "roots": json.dumps(["/Users/al", "/tmp"]), "registered_at": NOW - 86400, "last_seen_at": NOW - 5, "token_generation": 2},
    {"id": 2, "name": "build-01", "hostname": "build-01", "os": "Linux 6.1 (x86_64)", "agent_version": "0.1.0",
     "roots": "[]", "registered_at": NOW - 3600, "last_seen_at": NOW - 4000, "token_generation": 0},
]
COMMON = {"session_id": "s1", "lease_count": 0, "leased_at": None, "lease_expires_at": None, "started_at": None,
          "finished_at": None, "result": None, "exit_code": None, "error_code": None, "error_message": None}
COMMANDS = [
    {**COMMON, "id": "a" * 32, "machine": "laptop", "tool": "run_shell_command", "arguments": json.dumps({"command": "echo héllo"}),
     "state": "succeeded", "timeout_seconds": 30.0, "created_at": NOW - 60, "leased_at": NOW - 59.9, "lease_expires_at": NOW - 29.9,
     "lease_count": 1, "started_at": NOW - 59.8, "finished_at": NOW - 59.5, "exit_code": 0,
     "result": json.dumps({"stdout": "héllo\n", "stderr": "", "exit_code": 0, "timed_out": False}, ensure_ascii=False)},
    {**COMMON, "id": "b" * 32, "machine": "laptop", "tool": "read_file", "arguments": json.dumps({"path": "/etc/shadow"}),
     "state": "failed", "timeout_seconds": 30.0, "created_at": NOW - 50, "lease_count": 1, "started_at": NOW - 49, "finished_at": NOW - 49,
     "error_code": "path_outside_roots", "error_message": "/etc/shadow is outside the allowed roots"},
    {**COMMON, "id": "c" * 32, "machine": "build-01", "tool": "run_shell_command", "arguments": json.dumps({"command": "make"}),
     "state": "expired", "timeout_seconds": 600.0, "created_at": NOW - 40, "finished_at": NOW - 30,
     "error_code": "not_started", "error_message": "the agent did not start the command before the deadline"},
    {**COMMON, "id": "d" * 32, "machine": "laptop", "tool": "run_shell_command", "arguments": json.dumps({"command": "sleep 9"}),
     "state": "timed_out", "timeout_seconds": 1.0, "created_at": NOW - 20, "lease_count": 2, "started_at": NOW - 19, "finished_at": NOW - 17,
     "exit_code": 143, "result": json.dumps({"stdout": "", "stderr": "", "exit_code": 143, "timed_out": True})},
]
TOOL_CALLS = [
    {"id": 1, "created_at": NOW - 60, "finished_at": NOW - 59.5, "session_id": "s1", "transport": "sse", "machine": "laptop",
     "tool": "run_shell_command", "arguments": json.dumps({"command": "echo héllo"}, ensure_ascii=False), "status": "succeeded",
     "is_error": False, "error_code": None, "message": "", "exit_code": 0, "output_bytes": 7, "duration_ms": 512.5, "command_id": "a" * 32},
    {"id": 2, "created_at": NOW - 50, "finished_at": NOW - 49, "session_id": "s1", "transport": "sse", "machine": "laptop",
     "tool": "read_file", "arguments": json.dumps({"path": "/etc/shadow"}), "status": "failed", "is_error": True,
     "error_code": "path_outside_roots", "message": "/etc/shadow is outside the allowed roots", "exit_code": None,
     "output_bytes": None, "duration_ms": 20.0, "command_id": "b" * 32},
    {"id": 3, "created_at": NOW - 45, "finished_at": NOW - 45, "session_id": "s2", "transport": "sse", "machine": "",
     "tool": "no_such_tool", "arguments": "{}", "status": "refused", "is_error": True, "error_code": "unknown_tool",
     "message": "unknown tool", "exit_code": None, "output_bytes": None, "duration_ms": 0.5, "command_id": None},
]
ROWS = {"machine": (MACHINES, "id"), "command": (COMMANDS, "id"), "tool_call": (TOOL_CALLS, "id")}


def _rows(db, table: str, key: str) -> dict:
    """Every row of `table`, every column, keyed by `key`."""
    cursor = db.execute_sql(f"SELECT * FROM {table}")
    names = [column[0] for column in cursor.description]
    return {row[key]: row for row in (dict(zip(names, values)) for values in cursor.fetchall())}


def test_upgrading_a_first_release_database_keeps_every_row_and_serves_it(tmp_path):
    url = database.fresh_url(tmp_path)
    old = connect(url)
    with old.connection_context():
        assert upgrade(old, to=1) == ["m0001_initial"]
        for table, (rows, _) in ROWS.items():
            Table(table, columns=list(rows[0])).bind(old).insert(rows).execute()
        if url.startswith("postgresql"):  # explicit ids were inserted: move the sequences past them
            for table in ("machine", "tool_call"):
                old.execute_sql(f"SELECT setval('{table}_id_seq', (SELECT MAX(id) FROM {table}))")
    old.close()

    env = base_env(DATABASE_URL=url)
    first = subprocess.run([PYTHON, "-m", "migrations"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    pending = [name for number, name in available() if number > 1]
    assert f"applied {len(pending)}" in first.stdout
    again = subprocess.run([PYTHON, "-m", "migrations"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "database already current" in again.stdout

    upgraded = connect(url)
    with upgraded.connection_context():
        assert applied(upgraded) == {number for number, _ in available()}
        for table, (rows, key) in ROWS.items():
            now_rows = _rows(upgraded, table, key)
            assert sorted(now_rows) == sorted(row[key] for row in rows), table
            for row in rows:
                stored = now_rows[row[key]]
                for column, value in row.items():
                    assert stored[column] == value, f"{table} {row[key]} {column}: {stored[column]!r} != {value!r}"
    upgraded.close()

    # The current server reads the upgraded rows through its own models.
    server = Server(tmp_path / "server")
    server.database_url = server.env["DATABASE_URL"] = url
    server.start()
    try:
        machines = server.machines()
        assert set(machines) == {"laptop", "build-01"}
        assert machines["laptop"]["allowed_roots"] == ["/Users/al", "/tmp"]
        audit = {row["tool"]: row for row in server.audit()}
        assert set(audit) == {"run_shell_command", "read_file", "no_such_tool"}
        register = requests.post(server.url + "/api/agent/register", headers=server.headers(),
                                 json={"machine": "new-box"}, timeout=10)
        assert register.status_code == 200, register.text
        assert set(server.machines()) == {"laptop", "build-01", "new-box"}
    finally:
        server.stop()
