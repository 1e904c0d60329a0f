"""OAuth 2.1: dynamically registered clients, and codes and tokens stored as hashes."""

from peewee import CharField, DoubleField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db

    class OAuthClient(Base):
        client_id = CharField(max_length=64, primary_key=True)
        client_name = CharField(max_length=200, default="")
        redirect_uris = TextField(default="[]")
        token_endpoint_auth_method = CharField(max_length=32, default="none")
        secret_hash = CharField(max_length=64, null=True)
        created_at = DoubleField()

        class Meta:
            table_name = "oauth_client"

    class OAuthGrant(Base):
        token_hash = CharField(max_length=64, primary_key=True)
        kind = CharField(max_length=16)
        family = CharField(max_length=32, index=True)
        client_id = CharField(max_length=64, index=True)
        resource = CharField(max_length=512)
        scope = CharField(max_length=200, default="")
        redirect_uri = TextField(default="")
        code_challenge = CharField(max_length=128, default="")
        created_at = DoubleField()
        expires_at = DoubleField()
        used_at = DoubleField(null=True)
        revoked_at = DoubleField(null=True)

        class Meta:
            table_name = "oauth_grant"

    db.create_tables([OAuthClient, OAuthGrant])
