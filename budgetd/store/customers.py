"""Repository of customers, including the atomic reserve and charge statements."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from budgetd.domain.records import BudgetLimits, Customer
from budgetd.store.budgets import LIMIT_COLUMNS, limits_from_row
from budgetd.store.schema import budgets, customers

_SELECT_CUSTOMER = select(customers, budgets.c.is_private, *LIMIT_COLUMNS).select_from(
    customers.outerjoin(budgets, customers.c.budget_id == budgets.c.budget_id)
)

# The budget in force for the customer row being updated: NULL when it has none.
_MAX_BUDGET = (
    select(budgets.c.max_budget_nanos)
    .where(budgets.c.budget_id == customers.c.budget_id)
    .scalar_subquery()
)


@dataclass(frozen=True, slots=True)
class Balance:
    """A customer's money state as one statement left it."""

    customer_pk: int
    user_id: str
    spend_nanos: int
    reserved_nanos: int
    max_budget_nanos: int | None


@dataclass(frozen=True, slots=True)
class Standing:
    """What Authorize needs to explain a refusal."""

    customer_pk: int
    blocked: bool
    balance: Balance


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
    )


def _balance(conn: Connection, row: Any) -> Balance:
    # The budget is read by its own statement: SQLite renders RETURNING without table names,
    # so a correlated subquery there would compare budgets.budget_id with itself.
    max_budget = None
    if row[4] is not None:
        max_budget = conn.execute(
            select(budgets.c.max_budget_nanos).where(budgets.c.budget_id == row[4])
        ).scalar_one_or_none()
    return Balance(row[0], row[1], row[2], row[3], max_budget)


class CustomerRepository:
    """Statements on the customers table."""

    def insert(self, conn: Connection, values: dict[str, Any], *, now_us: int) -> None:
        """Insert a customer; raises IntegrityError when the user_id is taken."""
        conn.execute(insert(customers).values(created_us=now_us, updated_us=now_us, **values))

    def insert_if_absent(self, conn: Connection, user_id: str, *, now_us: int) -> None:
        """Create a customer on first use; a concurrent creator wins silently."""
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(customers)
            .values(user_id=user_id, created_us=now_us, updated_us=now_us)
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

    def reserve(self, conn: Connection, user_id: str, amount_nanos: int) -> Balance | None:
        """Add a hold to the customer's reservations iff it fits its budget and it is not
        blocked; None otherwise.

        The check and the increment are one UPDATE, so the database decides atomically: on
        PostgreSQL a concurrent reserve waits for the row lock and re-checks the new values.
        """
        row = conn.execute(
            update(customers)
            .where(
                customers.c.user_id == user_id,
                customers.c.blocked.is_(False),
                or_(
                    _MAX_BUDGET.is_(None),
                    and_(
                        # A max_budget of 0 denies every call, a zero estimate included.
                        _MAX_BUDGET > 0,
                        customers.c.spend_nanos + customers.c.reserved_nanos + amount_nanos
                        <= _MAX_BUDGET,
                    ),
                ),
            )
            .values(reserved_nanos=customers.c.reserved_nanos + amount_nanos)
            .returning(
                customers.c.id,
                customers.c.user_id,
                customers.c.spend_nanos,
                customers.c.reserved_nanos,
                customers.c.budget_id,
            )
        ).one_or_none()
        return _balance(conn, row) if row else None

    def standing(self, conn: Connection, user_id: str) -> Standing | None:
        """The customer's state, to explain why a reserve did not fit."""
        row = conn.execute(
            select(
                customers.c.id,
                customers.c.user_id,
                customers.c.spend_nanos,
                customers.c.reserved_nanos,
                _MAX_BUDGET,
                customers.c.blocked,
            ).where(customers.c.user_id == user_id)
        ).one_or_none()
        if row is None:
            return None
        return Standing(
            customer_pk=row[0],
            blocked=row[5],
            balance=Balance(row[0], row[1], row[2], row[3], row[4]),
        )

    def pk_of(self, conn: Connection, user_id: str) -> int | None:
        """The surrogate key of a customer."""
        return conn.execute(
            select(customers.c.id).where(customers.c.user_id == user_id)
        ).scalar_one_or_none()

    def apply(
        self, conn: Connection, customer_pk: int, *, charge_nanos: int, release_nanos: int
    ) -> Balance:
        """Add a charge to spend and take a released hold off reservations, atomically."""
        row = conn.execute(
            update(customers)
            .where(customers.c.id == customer_pk)
            .values(
                spend_nanos=customers.c.spend_nanos + charge_nanos,
                reserved_nanos=customers.c.reserved_nanos - release_nanos,
            )
            .returning(
                customers.c.id,
                customers.c.user_id,
                customers.c.spend_nanos,
                customers.c.reserved_nanos,
                customers.c.budget_id,
            )
        ).one()
        return _balance(conn, row)
