"""The first schema: machines, relayed commands and the tool-call audit trail."""

from peewee import BooleanField, CharField, DoubleField, IntegerField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db

    class Machine(Base):
        name = CharField(max_length=64, unique=True)
        hostname = CharField(max_length=255, default="")
        os = CharField(max_length=255, default="")
        agent_version = CharField(max_length=64, default="")
        roots = TextField(default="[]")
        registered_at = DoubleField()
        last_seen_at = DoubleField()
        token_generation = IntegerField(default=0)

        class Meta:
            table_name = "machine"

    class Command(Base):
        id = CharField(max_length=32, primary_key=True)
        machine = CharField(max_length=64, index=True)
        tool = CharField(max_length=64)
        arguments = TextField()
        state = CharField(max_length=16, index=True)
        timeout_seconds = DoubleField()
        session_id = CharField(max_length=64, default="")
        created_at = DoubleField()
        leased_at = DoubleField(null=True)
        lease_expires_at = DoubleField(null=True)
        lease_count = IntegerField(default=0)
        started_at = DoubleField(null=True)
        finished_at = DoubleField(null=True)
        result = TextField(null=True)
        exit_code = IntegerField(null=True)
        error_code = CharField(max_length=64, null=True)
        error_message = TextField(null=True)

        class Meta:
            table_name = "command"

    class ToolCall(Base):
        created_at = DoubleField(index=True)
        finished_at = DoubleField(null=True)
        session_id = CharField(max_length=64, default="")
        transport = CharField(max_length=16, default="")
        machine = CharField(max_length=64, default="", index=True)
        tool = CharField(max_length=64, default="")
        arguments = TextField(default="{}")
        status = CharField(max_length=16, default="pending")
        is_error = BooleanField(default=False)
        error_code = CharField(max_length=64, null=True)
        message = TextField(default="")
        exit_code = IntegerField(null=True)
        output_bytes = IntegerField(null=True)
        duration_ms = DoubleField(null=True)
        command_id = CharField(max_length=32, null=True)

        class Meta:
            table_name = "tool_call"

    db.create_tables([Machine, Command, ToolCall])
