"""State every server process shares: MCP sessions, their outgoing messages and resumable answer
streams, throttle counts, and the request a command answers (for `notifications/cancelled`)."""

from peewee import BigAutoField, BooleanField, CharField, DoubleField, Model, TextField
from playhouse.migrate import migrate


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db

    class McpSession(Base):
        id = CharField(max_length=32, primary_key=True)
        credential = CharField(max_length=64)
        transport = CharField(max_length=8)
        protocol_version = CharField(max_length=16, null=True)
        client_info = TextField(null=True)
        initialized = BooleanField(default=False)
        log_level = CharField(max_length=16, null=True)
        created_at = DoubleField()
        last_active_at = DoubleField(index=True)
        stream_held_at = DoubleField(null=True)
        closed_at = DoubleField(null=True)

        class Meta:
            table_name = "mcp_session"
            indexes = ((("credential", "last_active_at"), False),)

    class McpStream(Base):
        id = CharField(max_length=32, primary_key=True)
        session_id = CharField(max_length=32, index=True)
        owner = CharField(max_length=32, default="")
        request = TextField(null=True)
        done = BooleanField(default=False)
        created_at = DoubleField()

        class Meta:
            table_name = "mcp_stream"

    class McpMessage(Base):
        id = BigAutoField()
        stream_id = CharField(max_length=32)
        body = TextField()
        created_at = DoubleField()

        class Meta:
            table_name = "mcp_message"
            indexes = ((("stream_id", "id"), False),)

    class ThrottleHit(Base):
        scope = CharField(max_length=32)
        key = CharField(max_length=64)
        at = DoubleField()

        class Meta:
            table_name = "throttle_hit"
            indexes = ((("scope", "key", "at"), False),)

    db.create_tables([McpSession, McpStream, McpMessage, ThrottleHit])
    migrate(
        migrator.add_column("command", "request_id", CharField(max_length=200, null=True)),
        migrator.add_index("command", ("session_id", "request_id"), False),
    )
