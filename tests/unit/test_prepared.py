"""Hot-path statements run on the DBAPI cursor behave as ``Connection.execute`` would."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, exc, insert, select

from budgetd.store.database import Database
from budgetd.store.prepared import Prepared
from budgetd.store.schema import customers

_INSERT = Prepared(
    insert(customers).values(
        user_id=bindparam("user_id"),
        blocked=False,
        metadata_json="{}",
        spend_nanos=0,
        reserved_nanos=0,
        open_holds=0,
        created_us=bindparam("now"),
        updated_us=bindparam("now"),
    )
)
_BY_USER = Prepared(
    select(customers.c.id, customers.c.user_id, customers.c.blocked).where(
        customers.c.user_id == bindparam("user_id")
    )
)


def test_rows_come_back_by_column_name(db: Database) -> None:
    with db.write() as conn:
        _INSERT.run(conn, {"user_id": "ada", "now": 1})
        row = _BY_USER.row(conn, {"user_id": "ada"})
        assert _BY_USER.row(conn, {"user_id": "nobody"}) is None
    assert row is not None
    assert row["user_id"] == "ada"
    assert isinstance(row["id"], int)
    assert not row["blocked"]


def test_driver_errors_surface_as_sqlalchemys_and_undo_only_the_unit(db: Database) -> None:
    with db.write() as conn:
        _INSERT.run(conn, {"user_id": "ada", "now": 1})
    with pytest.raises(exc.IntegrityError), db.write() as conn:
        _INSERT.run(conn, {"user_id": "ada", "now": 2})
    # The connection is still usable for the next unit.
    with db.write() as conn:
        _INSERT.run(conn, {"user_id": "bob", "now": 3})
    with db.read() as conn:
        names = conn.execute(select(customers.c.user_id).order_by(customers.c.user_id)).all()
    assert [name for (name,) in names] == ["ada", "bob"]


def test_a_statement_whose_columns_share_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="distinct names"):
        Prepared(select(customers.c.user_id, customers.c.user_id.label("user_id")))


def test_a_write_leaving_a_default_to_sqlalchemy_is_refused(db: Database) -> None:
    # SQLAlchemy fills such defaults in per execution; run on the driver, they would be missing.
    partial = Prepared(insert(customers).values(user_id=bindparam("user_id")))
    with pytest.raises(ValueError, match="blocked"), db.write() as conn:
        partial.run(conn, {"user_id": "ada"})
