"""Repository of customers: management reads and writes, and the locked account of a call."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, insert, select, update

from budgetd.domain.accounts import Account
from budgetd.domain.records import BudgetLimits, Customer
from budgetd.store import upserts
from budgetd.store.budgets import LIMIT_COLUMNS, limits_from_row
from budgetd.store.prepared import Prepared
from budgetd.store.schema import budgets, customers

_CUSTOMER_JOIN = customers.outerjoin(budgets, customers.c.budget_id == budgets.c.budget_id)
_SELECT_ACCOUNT = select(
    customers.c.id,
    customers.c.user_id,
    customers.c.blocked,
    customers.c.budget_id,
    customers.c.spend_nanos,
    customers.c.reserved_nanos,
    customers.c.open_holds,
    customers.c.window_start_us,
    customers.c.window_end_us,
    customers.c.window_anchor_us,
    customers.c.soft_alert_window_us,
    customers.c.allowed_model_region,
    customers.c.default_model,
    *LIMIT_COLUMNS,
).select_from(_CUSTOMER_JOIN)
# The hot path's statements are built once with bind parameters: building them per call
# (coercing literals, computing cache keys) cost more than running them.
_READ_BY_USER = _SELECT_ACCOUNT.where(customers.c.user_id == bindparam("user_id"))
_READ_BY_PK = _SELECT_ACCOUNT.where(customers.c.id == bindparam("customer_pk"))
_LOCK_BY_USER = Prepared(_READ_BY_USER.with_for_update(of=customers))
_LOCK_BY_PK = Prepared(_READ_BY_PK.with_for_update(of=customers))
_UNLOCKED_BY_USER = Prepared(_READ_BY_USER)
_UNLOCKED_BY_PK = Prepared(_READ_BY_PK)
_SAVE_ACCOUNT = Prepared(
    update(customers)
    .where(customers.c.id == bindparam("pk"))
    .values(
        {
            name: bindparam(name)
            for name in (
                "spend_nanos",
                "reserved_nanos",
                "open_holds",
                "window_start_us",
                "window_end_us",
                "window_anchor_us",
                "soft_alert_window_us",
            )
        }
    )
)
_SELECT_CUSTOMER = select(customers, budgets.c.is_private, *LIMIT_COLUMNS).select_from(
    customers.outerjoin(budgets, customers.c.budget_id == budgets.c.budget_id)
)


def _customer(row: Row[Any]) -> Customer:
    m = row._mapping
    has_budget = m["budget_id"] is not None
    limits = limits_from_row(m) if has_budget else BudgetLimits()
    private = bool(m["is_private"])
    return Customer(
        user_id=m["user_id"],
        alias=m["alias"],
        blocked=m["blocked"],
        budget_id=m["budget_id"] if has_budget and not private else None,
        own_limits=limits if private else None,
        effective_limits=limits,
        spend_nanos=m["spend_nanos"],
        reserved_nanos=m["reserved_nanos"],
        allowed_model_region=m["allowed_model_region"],
        default_model=m["default_model"],
        metadata=json.loads(m["metadata_json"]),
        created_us=m["created_us"],
        updated_us=m["updated_us"],
        window_start_us=m["window_start_us"],
        window_end_us=m["window_end_us"],
        window_anchor_us=m["window_anchor_us"],
    )


class CustomerRepository:
    """Statements on the customers table."""

    def insert(self, conn: Connection, values: dict[str, Any], *, now_us: int) -> None:
        """Insert a customer; raises IntegrityError when the user_id is taken."""
        conn.execute(insert(customers).values(created_us=now_us, updated_us=now_us, **values))

    def insert_if_absent(
        self, conn: Connection, user_id: str, *, budget_id: str | None, now_us: int
    ) -> None:
        """Create a customer on first use; a concurrent creator wins silently."""
        conn.execute(
            upserts.insert(conn, customers)
            .values(user_id=user_id, budget_id=budget_id, created_us=now_us, updated_us=now_us)
            .on_conflict_do_nothing(index_elements=[customers.c.user_id])
        )

    def get(self, conn: Connection, user_id: str) -> Customer | None:
        """A customer with the limits in force."""
        row = conn.execute(_SELECT_CUSTOMER.where(customers.c.user_id == user_id)).one_or_none()
        return _customer(row) if row else None

    def get_many(self, conn: Connection, user_ids: Sequence[str]) -> list[Customer]:
        """The named customers that exist, in user_id order."""
        rows = conn.execute(
            _SELECT_CUSTOMER.where(customers.c.user_id.in_(user_ids)).order_by(customers.c.user_id)
        ).all()
        return [_customer(row) for row in rows]

    def find_budget_id(self, conn: Connection, user_id: str) -> tuple[bool, str | None]:
        """(exists, budget_id) of a customer; budget_id may name a private budget."""
        row = conn.execute(
            select(customers.c.budget_id).where(customers.c.user_id == user_id)
        ).one_or_none()
        return (row is not None, row[0] if row else None)

    def create_request_id(self, conn: Connection, user_id: str) -> str | None:
        """The request_id a customer was created with, for idempotent retries."""
        return conn.execute(
            select(customers.c.create_request_id).where(customers.c.user_id == user_id)
        ).scalar_one_or_none()

    def update(
        self, conn: Connection, user_ids: Sequence[str], values: dict[str, Any], *, now_us: int
    ) -> int:
        """Set columns on the named customers; returns how many rows changed."""
        result = conn.execute(
            update(customers)
            .where(customers.c.user_id.in_(user_ids))
            .values(updated_us=now_us, **values)
        )
        return result.rowcount

    def delete(self, conn: Connection, user_ids: Sequence[str]) -> list[str | None]:
        """Delete customers; returns the budget_id each had (to drop private budgets)."""
        rows = conn.execute(
            delete(customers)
            .where(customers.c.user_id.in_(user_ids))
            .returning(customers.c.budget_id)
        ).all()
        return [row[0] for row in rows]

    def list(
        self, conn: Connection, after: str, limit: int, budget_id: str | None
    ) -> list[Customer]:
        """Customers ordered by user_id, starting after ``after``."""
        stmt = _SELECT_CUSTOMER.where(customers.c.user_id > after)
        if budget_id is not None:
            stmt = stmt.where(customers.c.budget_id == budget_id)
        rows = conn.execute(stmt.order_by(customers.c.user_id).limit(limit)).all()
        return [_customer(row) for row in rows]

    def lock(
        self,
        conn: Connection,
        *,
        user_id: str | None = None,
        customer_pk: int | None = None,
        for_update: bool = True,
    ) -> Account | None:
        """Load a customer's account and hold its row lock until the transaction ends.

        ``FOR UPDATE`` on PostgreSQL; SQLite's write transaction already excludes other writers.
        With ``for_update=False``, a plain read for reporting.
        """
        if user_id is not None:
            stmt = _LOCK_BY_USER if for_update else _UNLOCKED_BY_USER
            m = stmt.row(conn, {"user_id": user_id})
        else:
            stmt = _LOCK_BY_PK if for_update else _UNLOCKED_BY_PK
            m = stmt.row(conn, {"customer_pk": customer_pk})
        if m is None:
            return None
        return Account(
            customer_pk=m["id"],
            user_id=m["user_id"],
            blocked=bool(m["blocked"]),
            spend_nanos=m["spend_nanos"],
            reserved_nanos=m["reserved_nanos"],
            open_holds=m["open_holds"],
            window_start_us=m["window_start_us"],
            window_end_us=m["window_end_us"],
            window_anchor_us=m["window_anchor_us"],
            soft_alert_window_us=m["soft_alert_window_us"],
            allowed_model_region=m["allowed_model_region"],
            default_model=m["default_model"],
            limits=limits_from_row(m) if m["budget_id"] is not None else BudgetLimits(),
        )

    def save(self, conn: Connection, account: Account) -> None:
        """Write back the counters of a locked account."""
        _SAVE_ACCOUNT.run(
            conn,
            {
                "pk": account.customer_pk,
                "spend_nanos": account.spend_nanos,
                "reserved_nanos": account.reserved_nanos,
                "open_holds": account.open_holds,
                "window_start_us": account.window_start_us,
                "window_end_us": account.window_end_us,
                "window_anchor_us": account.window_anchor_us,
                "soft_alert_window_us": account.soft_alert_window_us,
            },
        )

    def pk_of(self, conn: Connection, user_id: str) -> int | None:
        """The surrogate key of a customer."""
        return conn.execute(
            select(customers.c.id).where(customers.c.user_id == user_id)
        ).scalar_one_or_none()
