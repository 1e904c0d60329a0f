"""Which server process holds a session's GET stream, next to when it last said so.

A claim (`stream_held_at`) is taken over once it is two keep-alives old: a process that died (kill -9,
out of memory) never releases it, and its client's next GET /mcp was refused as "already open" for
up to 30 s. With the holder named, another process asks whether that process is alive (web/bus.py)
and takes the stream over at once when it is not.
"""

from peewee import CharField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(migrator.add_column("mcp_session", "stream_holder", CharField(max_length=32, null=True)))
