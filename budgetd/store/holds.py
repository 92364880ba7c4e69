"""Repository of holds: amounts reserved by Authorize until settled, released or expired."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from budgetd.store.prepared import Prepared
from budgetd.store.schema import HOLD_EXPIRED, HOLD_OPEN, holds


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation as stored."""

    hold_id: str
    customer_pk: int
    request_id: str | None
    model: str
    amount_nanos: int
    state: str
    created_us: int
    expires_us: int
    window_start_us: int | None = None
    model_window_start_us: int | None = None
    tokens: int = 0
    rate_second: int | None = None


def _hold(row: Mapping[Any, Any]) -> Hold:
    return Hold(**{name: row[name] for name in Hold.__slots__})


_SELECT_HOLD = select(
    holds.c.hold_id,
    holds.c.customer_pk,
    holds.c.request_id,
    holds.c.model,
    holds.c.amount_nanos,
    holds.c.state,
    holds.c.created_us,
    holds.c.expires_us,
    holds.c.window_start_us,
    holds.c.model_window_start_us,
    holds.c.tokens,
    holds.c.rate_second,
)


# The hot path's statements, built once with bind parameters: building them per call
# (coercing literals, computing cache keys) cost more than running them.
_INSERT_HOLD = Prepared(insert(holds).values({name: bindparam(name) for name in Hold.__slots__}))
_GET_HOLD = Prepared(_SELECT_HOLD.where(holds.c.hold_id == bindparam("hold_id")))
_GET_BY_REQUEST = Prepared(
    _SELECT_HOLD.where(
        holds.c.customer_pk == bindparam("customer_pk"),
        holds.c.request_id == bindparam("request_id"),
    )
)
_CLOSE_HOLD = Prepared(
    update(holds)
    .where(holds.c.hold_id == bindparam("id"), holds.c.state == bindparam("from_state"))
    .values(state=bindparam("to_state"), closed_us=bindparam("now_us"))
    .returning(*_SELECT_HOLD.selected_columns)
)


class HoldRepository:
    """Statements on the holds table."""

    def insert(self, conn: Connection, hold: Hold) -> None:
        """Store an open hold; IntegrityError when (customer, request_id) was seen before."""
        _INSERT_HOLD.run(conn, {name: getattr(hold, name) for name in Hold.__slots__})

    def get(self, conn: Connection, hold_id: str) -> Hold | None:
        """A hold by id."""
        row = _GET_HOLD.row(conn, {"hold_id": hold_id})
        return _hold(row) if row else None

    def get_by_request(self, conn: Connection, customer_pk: int, request_id: str) -> Hold | None:
        """The hold an earlier Authorize with this request_id took."""
        row = _GET_BY_REQUEST.row(conn, {"customer_pk": customer_pk, "request_id": request_id})
        return _hold(row) if row else None

    def close(
        self, conn: Connection, hold_id: str, *, from_state: str, to_state: str, now_us: int
    ) -> Hold | None:
        """Move a hold from one state to another; None when it was not in ``from_state``.

        A conditional UPDATE, so of two racing settlers exactly one moves it.
        """
        row = _CLOSE_HOLD.row(
            conn, {"id": hold_id, "from_state": from_state, "to_state": to_state, "now_us": now_us}
        )
        return _hold(row) if row else None

    def expire(self, conn: Connection, customer_pk: int, *, now_us: int) -> list[Hold]:
        """Expire a customer's open holds past their time; returns them."""
        rows = conn.execute(
            update(holds)
            .where(
                holds.c.customer_pk == customer_pk,
                holds.c.state == HOLD_OPEN,
                holds.c.expires_us <= now_us,
            )
            .values(state=HOLD_EXPIRED, closed_us=now_us)
            .returning(*_SELECT_HOLD.selected_columns)
        ).all()
        return [_hold(row._mapping) for row in rows]

    def customers_with_expired(self, conn: Connection, *, now_us: int, limit: int) -> list[int]:
        """Customers that have open holds past their time."""
        rows = conn.execute(
            select(holds.c.customer_pk)
            .where(holds.c.state == HOLD_OPEN, holds.c.expires_us <= now_us)
            .distinct()
            .limit(limit)
        ).all()
        return [row[0] for row in rows]

    def open_total(self, conn: Connection, customer_pk: int) -> int:
        """Sum of a customer's open holds (for consistency checks)."""
        total = conn.execute(
            select(func.coalesce(func.sum(holds.c.amount_nanos), 0)).where(
                holds.c.customer_pk == customer_pk, holds.c.state == HOLD_OPEN
            )
        ).scalar_one()
        return int(total)
