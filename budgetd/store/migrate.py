"""Schema migrations with Alembic, driven from code (no alembic.ini needed at run time)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from budgetd.store.database import Database

_SCRIPTS = Path(__file__).parent / "migrations"
# Any fixed number: replicas migrating at once queue on this PostgreSQL advisory lock.
_ADVISORY_LOCK = 0x6275646765746400


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head_revision() -> str:
    """The newest revision this build knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at; None for an empty database."""
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision, holding a lock against concurrent migrators."""
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
    """Whether the schema is at the newest revision."""
    return current_revision(db) == head_revision()
