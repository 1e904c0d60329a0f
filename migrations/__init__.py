"""Numbered, forward-only schema migrations.

Each module `mNNNN_name.py` in this package defines `up(migrator, db)`. Applied migrations are recorded
in the `schema_migration` table, so running the runner again applies only what is new:

    python -m migrations            # apply pending migrations to $DATABASE_URL
    python -m migrations --status   # list applied and pending migrations

Migrations describe the schema as it was when they were written; they never import `web.models`,
whose classes describe only the newest schema.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time

from peewee import CharField, DoubleField, IntegerField, Model
from playhouse.migrate import SchemaMigrator

log = logging.getLogger(__name__)


def available() -> list[tuple[int, str]]:
    """Every migration in this package as (number, module name), in order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("m") and info.name[1:5].isdigit():
            found.append((int(info.name[1:5]), info.name))
    return sorted(found)


def _history_model(database):
    class SchemaMigration(Model):
        version = IntegerField(primary_key=True)
        name = CharField(max_length=128)
        applied_at = DoubleField()

        class Meta:
            table_name = "schema_migration"

    SchemaMigration.bind(database)
    return SchemaMigration


def applied(database) -> set[int]:
    history = _history_model(database)
    if not history.table_exists():
        return set()
    return {row.version for row in history.select(history.version)}


def upgrade(database, *, to: int | None = None) -> list[str]:
    """Apply every pending migration (up to number `to`), each in its own transaction; return the names applied."""
    history = _history_model(database)
    database.create_tables([history], safe=True)
    done = applied(database)
    migrator = SchemaMigrator.from_database(database)
    names = []
    for number, name in available():
        if number in done or (to is not None and number > to):
            continue
        module = importlib.import_module(f"{__name__}.{name}")
        with database.atomic():
            module.up(migrator, database)
            history.create(version=number, name=name, applied_at=time.time())
        log.info("applied migration %s", name)
        names.append(name)
    return names
