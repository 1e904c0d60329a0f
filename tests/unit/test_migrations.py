"""Migrations on a real SQLite file: a fresh database gets every migration, a second run none."""

from __future__ import annotations

import subprocess

from migrations import applied, available, upgrade
from tests.harness import PYTHON, ROOT, base_env
from web.models import MODELS, open_database


def test_every_migration_has_a_number_of_its_own():
    # Two migrations with one number: the runner records the first and silently skips the second.
    numbers = [number for number, _ in available()]
    duplicated = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not duplicated, f"migration numbers used twice: {duplicated}; renumber the newer one"


def test_a_fresh_database_gets_every_migration_and_a_second_run_applies_none(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'fresh.db'}")
    with database.connection_context():
        first = upgrade(database)
        second = upgrade(database)
        assert first == [name for _, name in available()]
        assert second == []
        assert applied(database) == {number for number, _ in available()}
        for model in MODELS:
            assert model.table_exists(), model.__name__


def test_the_migrated_schema_has_every_column_the_models_use(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'cols.db'}")
    with database.connection_context():
        upgrade(database)
        for model in MODELS:
            columns = {c.name for c in database.get_columns(model._meta.table_name)}
            assert {f.column_name for f in model._meta.sorted_fields} <= columns, model.__name__


def test_the_migration_command_is_safe_to_run_twice(tmp_path):
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}")
    runs = [subprocess.run([PYTHON, "-m", "migrations"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0]
    assert f"applied {len(available())}" in runs[0].stdout
    assert "applied 0 (database already current)" in runs[1].stdout
    status = subprocess.run([PYTHON, "-m", "migrations", "--status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "pending" not in status.stdout and status.stdout.count("applied") == len(available())
