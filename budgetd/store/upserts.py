"""INSERT ... ON CONFLICT (upserts) in the dialect of the connection at hand.

SQLAlchemy builds ON CONFLICT only with a dialect's own ``insert``. Each dialect module is
imported on first use, so a daemon on SQLite never loads ``sqlalchemy.dialects.postgresql``
(about 2 MB of memory for the process's lifetime).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Table

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert


def insert(conn: Connection, table: Table) -> PostgresInsert | SqliteInsert:
    """An INSERT into ``table`` that takes ``on_conflict_do_*`` on ``conn``'s database."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)
