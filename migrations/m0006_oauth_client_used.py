"""OAuth clients remember when they were first used (an approved consent), so clients registered and
never used can be purged after a day: registration needs no credential, and without the purge anyone
could fill the table."""

from peewee import DoubleField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(
        migrator.add_column("oauth_client", "used_at", DoubleField(null=True)),
        migrator.add_index("oauth_client", ("created_at",), False),
    )
