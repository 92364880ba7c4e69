"""The Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from budgetd.store import migrate
from budgetd.store.database import Database
from budgetd.store.schema import metadata


def test_migrated_schema_matches_the_declared_tables(db: Database) -> None:
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
    assert migrate.is_current(db)


def test_upgrading_twice_is_harmless(db: Database) -> None:
    migrate.upgrade(db)
    assert migrate.current_revision(db) == migrate.head_revision()


def test_head_revision_constant_is_alembics_head() -> None:
    # The serving process compares against the constant so as not to load Alembic: a new
    # migration must update it.
    assert migrate.head_revision() == migrate.HEAD_REVISION


def test_current_revision_reads_what_alembic_reads(database_url: str) -> None:
    db = Database.connect(database_url, pool_size=2)
    try:
        assert migrate.current_revision(db) is None
        assert not migrate.is_current(db)
        migrate.upgrade(db)
        with db.engine.connect() as conn:
            alembics = MigrationContext.configure(conn).get_current_revision()
        assert migrate.current_revision(db) == alembics == migrate.HEAD_REVISION
        assert migrate.is_current(db)
    finally:
        db.dispose()
