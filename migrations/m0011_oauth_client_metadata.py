"""OAuth clients known by a Client ID Metadata Document (their client_id is an https URL): the URL, and
until when the fetched document may be used before it is fetched again."""

from peewee import CharField, DoubleField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(
        migrator.add_column("oauth_client", "metadata_url", CharField(max_length=2000, null=True)),
        migrator.add_column("oauth_client", "metadata_expires_at", DoubleField(null=True)),
    )
