"""A machine name is bound to a key only its agent holds: the server keeps the key's SHA-256."""

from peewee import CharField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(migrator.add_column("machine", "key_hash", CharField(max_length=64, null=True)))
