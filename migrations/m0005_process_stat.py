"""Per-process figures for /metrics: each server process writes its held polls, open streams and
counted failures here every few seconds, so a scrape answered by any process sums them all."""

from peewee import CharField, DoubleField, Model, TextField


def up(migrator, db):
    class ProcessStat(Model):
        process = CharField(max_length=128, primary_key=True)
        started_at = DoubleField()
        updated_at = DoubleField(index=True)
        gauges = TextField()
        counters = TextField()

        class Meta:
            table_name = "process_stat"
            database = db

    db.create_tables([ProcessStat])
