"""Schema migrations with Alembic, driven from code (no alembic.ini needed at run time).

Alembic is imported only to migrate (or to read its script directory): the serving process
checks its schema against :data:`HEAD_REVISION` with one plain query and, on a current
schema, never loads Alembic and its script modules (several MB of memory for its lifetime).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from budgetd.store.database import Database

if TYPE_CHECKING:
    from alembic.config import Config

# The revision of the newest file in migrations/versions; a new migration updates it
# (tests/unit/test_migrations.py checks it against Alembic's script head).
HEAD_REVISION = "0003"
_SCRIPTS = Path(__file__).parent / "migrations"
# Alembic's default version table, as migrations/env.py leaves it.
_VERSION_TABLE = "alembic_version"
# Any fixed number: replicas migrating at once queue on this PostgreSQL advisory lock.
_ADVISORY_LOCK = 0x6275646765746400


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head_revision() -> str:
    """The newest revision in the migration scripts, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at; None for an empty database."""
    with db.engine.connect() as conn:
        if not inspect(conn).has_table(_VERSION_TABLE):
            return None
        # More than one row (branched heads) raises, as Alembic's own check does.
        revision: str | None = conn.execute(
            text(f"SELECT version_num FROM {_VERSION_TABLE}")
        ).scalar_one_or_none()
        return revision


def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision, holding a lock against concurrent migrators."""
    from alembic import command

    config = _config()
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Serving connections bound every statement and lock wait (budgetd.store.postgres);
            # a migration may take its time, and waits for another replica's migration.
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SET LOCAL lock_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def is_current(db: Database) -> bool:
    """Whether the schema is at the newest revision (without loading Alembic)."""
    return current_revision(db) == HEAD_REVISION
