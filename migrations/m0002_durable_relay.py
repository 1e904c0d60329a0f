"""The durable relay: start deadlines, heartbeats, cancellation, streamed output and the transition log."""

from peewee import BlobField, CharField, DoubleField, IntegerField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db

    class CommandOutput(Base):
        command_id = CharField(max_length=32)
        stream = CharField(max_length=8)
        offset = IntegerField()
        length = IntegerField()
        data = BlobField()
        created_at = DoubleField()

        class Meta:
            table_name = "command_output"
            indexes = ((("command_id", "stream", "offset"), True),)

    class CommandEvent(Base):
        command_id = CharField(max_length=32, index=True)
        at = DoubleField()
        from_state = CharField(max_length=16, default="")
        to_state = CharField(max_length=16)
        actor = CharField(max_length=16)
        detail = TextField(default="")

        class Meta:
            table_name = "command_event"

    db.create_tables([CommandOutput, CommandEvent])
    from playhouse.migrate import migrate

    migrate(
        migrator.add_column("command", "start_by_at", DoubleField(null=True)),
        migrator.add_column("command", "heartbeat_at", DoubleField(null=True)),
        migrator.add_column("command", "cancel_requested_at", DoubleField(null=True)),
        migrator.add_column("command", "output", TextField(null=True)),
    )
