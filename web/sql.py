"""Row reads and writes for the per-call path, their SQL text built once per statement shape.

Peewee's query builder assembles a statement's SQL in Python every time it runs: 50-190 µs for a
one-row insert or a read by primary key, several times what SQLite takes to execute it, and a relayed
call runs about a dozen such statements (scripts/bench.py). These helpers keep the text of each shape
(model and columns) and hand it to the same database: values go through each field's own `db_value`
and rows come back through `Model.raw`, so types and JSON columns convert exactly as with the query
builder. SQL is written with `?` placeholders and turned into the database's own style (`%s` for
PostgreSQL). Everything off the per-call path uses peewee's query builder as usual.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar

from peewee import AutoField, Model, PostgresqlDatabase

M = TypeVar("M", bound=Model)


@functools.lru_cache(maxsize=512)
def _styled(text: str, param: str) -> str:
    return text if param == "?" else text.replace("?", param)


def _database(model: type[Model]):
    database = model._meta.database
    return getattr(database, "obj", database)  # the database behind a DatabaseProxy


def writes_in_with(model: type[Model]) -> bool:
    """Whether `model`'s database takes INSERT and UPDATE inside WITH (PostgreSQL), so that a change
    and what it implies are one statement, and one round trip, rather than a transaction of several."""
    return isinstance(_database(model), PostgresqlDatabase)


def execute(model: type[Model], text: str, params: Sequence[Any] = ()):
    """Run one statement on `model`'s database; returns the cursor."""
    database = _database(model)
    return database.execute_sql(_styled(text, database.param), params)


def scalar(model: type[Model], text: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row a statement on `model`'s database returns."""
    return execute(model, text, params).fetchall()[0][0]


def select(model: type[M], text: str, params: Sequence[Any] = ()) -> list[M]:
    """Rows of `model` from a statement returning its columns (SELECT, or a write with RETURNING),
    built as Model.raw builds them (each field's python_value, nothing marked changed) without its
    per-query look-up of the columns."""
    cursor = execute(model, text, params)
    readers = _readers(model, tuple(column[0] for column in cursor.description))
    rows = []
    for values in cursor.fetchall():
        instance = model(__no_default__=1)
        instance.__data__ = {name: value if value is None else read(value) for (name, read), value in zip(readers, values)}
        rows.append(instance)
    return rows


@functools.lru_cache(maxsize=256)
def _readers(model: type[Model], names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """(field name, python_value) per column a statement returns."""
    columns = model._meta.columns
    return tuple((columns[name].name, columns[name].python_value) for name in names)


@functools.lru_cache(maxsize=None)
def columns(model: type[Model]) -> str:
    """Every column of `model`, quoted, in field order: for SELECT and RETURNING lists."""
    return ", ".join(f'"{field.column_name}"' for field in model._meta.sorted_fields)


def get(model: type[M], key: Any) -> M | None:
    """The row with primary key `key`, or None."""
    meta = model._meta
    text = f'SELECT {columns(model)} FROM "{meta.table_name}" WHERE "{meta.primary_key.column_name}" = ?'
    rows = select(model, text, (meta.primary_key.db_value(key),))
    return rows[0] if rows else None


@functools.lru_cache(maxsize=256)
def _insert_text(model: type[Model], names: tuple[str, ...], returning: str | None) -> str:
    fields = model._meta.fields
    listed = ", ".join(f'"{fields[name].column_name}"' for name in names)
    text = f'INSERT INTO "{model._meta.table_name}" ({listed}) VALUES ({", ".join("?" for _ in names)})'
    return text + (f' RETURNING "{returning}"' if returning else "")


def insert(instance: Model) -> None:
    """INSERT the fields `instance` has values for (its defaults included); an auto-increment key
    left unset is read back into it. The instance is then clean, as after Model.create."""
    meta = instance._meta
    key = meta.primary_key
    data = instance.__data__
    auto = isinstance(key, AutoField) and data.get(key.name) is None
    names = tuple(name for name in data if not (auto and name == key.name))
    fields = meta.fields
    text = _insert_text(type(instance), names, key.column_name if auto else None)
    cursor = execute(type(instance), text, [fields[name].db_value(data[name]) for name in names])
    if auto:
        data[key.name] = cursor.fetchall()[0][0]
    instance._dirty.clear()


def insert_text(instance: Model) -> tuple[str, list[Any]]:
    """The INSERT of `instance` (its key set) and its parameters, to be part of a larger statement."""
    data, fields = instance.__data__, instance._meta.fields
    names = tuple(data)
    return _insert_text(type(instance), names, None), [fields[name].db_value(data[name]) for name in names]


def insert_together(instances: Sequence[Model]) -> None:
    """INSERT rows with keys already set, all or none. On PostgreSQL they go as one message of several
    statements, which the server runs as one transaction: one round trip instead of a BEGIN, one per
    row and a COMMIT. (SQLite runs one statement per call, in a transaction that costs no round trip.)"""
    statements = [insert_text(instance) for instance in instances]
    for instance in instances:
        instance._dirty.clear()
    database = _database(type(instances[0]))
    if isinstance(database, PostgresqlDatabase):
        text = "; ".join(text for text, _ in statements)
        database.execute_sql(_styled(text, database.param), [value for _, values in statements for value in values])
        return
    with database.atomic():
        for text, values in statements:
            database.execute_sql(text, values)


@functools.lru_cache(maxsize=256)
def _update_text(model: type[Model], names: tuple[str, ...]) -> str:
    fields = model._meta.fields
    assignments = ", ".join(f'"{fields[name].column_name}" = ?' for name in names)
    return f'UPDATE "{model._meta.table_name}" SET {assignments} WHERE "{model._meta.primary_key.column_name}" = ?'


def update(instance: Model) -> None:
    """UPDATE the fields of `instance` changed since it was read or written (Model.save with
    only_save_dirty), by primary key."""
    if not instance._dirty:
        return
    meta = instance._meta
    names = tuple(sorted(instance._dirty))
    data = instance.__data__
    fields = meta.fields
    params = [fields[name].db_value(data.get(name)) for name in names]
    params.append(meta.primary_key.db_value(data[meta.primary_key.name]))
    execute(type(instance), _update_text(type(instance), names), params)
    instance._dirty.clear()


def update_then_insert(instance: Model, guard: str, guard_params: Sequence[Any], rows: Sequence[Model]) -> bool:
    """PostgreSQL only (see `writes_in_with`): in one statement, UPDATE the changed fields of
    `instance` by primary key where `guard` (SQL on its table) still holds, and INSERT `rows` (keys
    unset, filled in by the database) only if it did. Returns whether it did: False means another
    process changed the row since it was read, and nothing was written."""
    meta = instance._meta
    names = tuple(sorted(instance._dirty))
    data, fields = instance.__data__, meta.fields
    params: list[Any] = [fields[name].db_value(data.get(name)) for name in names]
    params.append(meta.primary_key.db_value(data[meta.primary_key.name]))
    params.extend(guard_params)
    parts = [f"WITH changed AS ({_update_text(type(instance), names)} AND {guard} RETURNING 1)"]
    for n, row in enumerate(rows):
        row_names = tuple(name for name in row.__data__ if name != row._meta.primary_key.name)
        listed = ", ".join(f'"{row._meta.fields[name].column_name}"' for name in row_names)
        values = ", ".join("?" for _ in row_names)
        parts.append(f', r{n} AS (INSERT INTO "{row._meta.table_name}" ({listed}) SELECT {values} FROM changed)')
        params.extend(row._meta.fields[name].db_value(row.__data__[name]) for name in row_names)
    parts.append(" SELECT count(*) FROM changed")
    done = scalar(type(instance), "".join(parts), params) == 1
    if done:
        instance._dirty.clear()
    return done
