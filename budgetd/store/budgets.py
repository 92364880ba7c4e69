"""Repository of budgets: pricing tiers and customers' private limits."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from budgetd.domain.limits import limits_json
from budgetd.domain.records import Budget, BudgetLimits, ModelBudget
from budgetd.store.schema import budgets, customers


def limits_to_columns(limits: BudgetLimits) -> dict[str, Any]:
    """The column values that store a set of limits."""
    columns = limits_json(limits)
    # The two structured limits are JSON text columns.
    for name in ("model_max_budget", "allowed_models"):
        columns[name] = json.dumps(columns[name], separators=(",", ":"))
    return columns


def limits_from_row(row: Mapping[Any, Any]) -> BudgetLimits:
    """Limits from a row holding the budget columns (None when the budget row is absent)."""
    raw_caps: dict[str, dict[str, Any]] = json.loads(row["model_max_budget"] or "{}")
    return BudgetLimits(
        max_budget_nanos=row["max_budget_nanos"],
        soft_budget_nanos=row["soft_budget_nanos"],
        tpm_limit=row["tpm_limit"],
        rpm_limit=row["rpm_limit"],
        max_parallel_requests=row["max_parallel_requests"],
        budget_duration=row["budget_duration"] or "",
        model_max_budget={model: ModelBudget(**cap) for model, cap in raw_caps.items()},
        window_alignment=row["window_alignment"] or "",
        time_zone=row["time_zone"] or "",
        allowed_models=tuple(json.loads(row["allowed_models"] or "[]")),
    )


LIMIT_COLUMNS = (
    budgets.c.max_budget_nanos,
    budgets.c.soft_budget_nanos,
    budgets.c.tpm_limit,
    budgets.c.rpm_limit,
    budgets.c.max_parallel_requests,
    budgets.c.budget_duration,
    budgets.c.model_max_budget,
    budgets.c.window_alignment,
    budgets.c.time_zone,
    budgets.c.allowed_models,
)

_customer_count = (
    select(func.count())
    .where(customers.c.budget_id == budgets.c.budget_id)
    .correlate(budgets)
    .scalar_subquery()
    .label("customer_count")
)
_SELECT_TIER = select(budgets, _customer_count)


def _tier(row: Row[Any]) -> Budget:
    m = row._mapping
    return Budget(
        budget_id=m["budget_id"],
        limits=limits_from_row(m),
        customer_count=m["customer_count"],
        created_us=m["created_us"],
        updated_us=m["updated_us"],
    )


class BudgetRepository:
    """Statements on the budgets table."""

    def insert(
        self,
        conn: Connection,
        budget_id: str,
        limits: BudgetLimits,
        *,
        now_us: int,
        is_private: bool = False,
        request_id: str | None = None,
    ) -> None:
        """Insert a budget; raises IntegrityError when the id is taken."""
        conn.execute(
            insert(budgets).values(
                budget_id=budget_id,
                is_private=is_private,
                create_request_id=request_id,
                created_us=now_us,
                updated_us=now_us,
                **limits_to_columns(limits),
            )
        )

    def get_tier(self, conn: Connection, budget_id: str) -> Budget | None:
        """A pricing tier (never a private budget)."""
        row = conn.execute(
            _SELECT_TIER.where(budgets.c.budget_id == budget_id, budgets.c.is_private.is_(False))
        ).one_or_none()
        return _tier(row) if row else None

    def create_request_id(self, conn: Connection, budget_id: str) -> str | None:
        """The request_id a budget was created with, for idempotent retries."""
        return conn.execute(
            select(budgets.c.create_request_id).where(budgets.c.budget_id == budget_id)
        ).scalar_one_or_none()

    def set_limits(
        self, conn: Connection, budget_id: str, limits: BudgetLimits, *, now_us: int
    ) -> bool:
        """Replace a budget's limits; False when it does not exist."""
        result = conn.execute(
            update(budgets)
            .where(budgets.c.budget_id == budget_id)
            .values(updated_us=now_us, **limits_to_columns(limits))
        )
        return result.rowcount == 1

    def delete(self, conn: Connection, budget_id: str) -> None:
        """Delete a budget row (the caller checks that nobody uses it)."""
        conn.execute(delete(budgets).where(budgets.c.budget_id == budget_id))

    def list_tiers(self, conn: Connection, after: str, limit: int) -> Sequence[Budget]:
        """Tiers ordered by id, starting after ``after``."""
        rows = conn.execute(
            _SELECT_TIER.where(budgets.c.is_private.is_(False), budgets.c.budget_id > after)
            .order_by(budgets.c.budget_id)
            .limit(limit)
        ).all()
        return [_tier(row) for row in rows]
