"""Apply pending migrations to the database named by DATABASE_URL (run before the server starts)."""

from __future__ import annotations

import argparse
import sys

from migrations import applied, available, upgrade
from web.config import database_url_from_env
from web.models import open_database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrations", description=__doc__)
    parser.add_argument("--status", action="store_true", help="list migrations without applying any")
    args = parser.parse_args(argv)
    database = open_database(database_url_from_env())
    with database.connection_context():
        if args.status:
            done = applied(database)
            for number, name in available():
                print(f"{'applied' if number in done else 'pending'}  {name}")
            return 0
        names = upgrade(database)
    print(f"migrations: applied {len(names)} ({', '.join(names) or 'database already current'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
