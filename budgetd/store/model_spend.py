"""Repository of per-model spend under model_max_budget caps."""

from __future__ import annotations

from sqlalchemy import Connection, select

from budgetd.domain.accounts import ModelAccount
from budgetd.store import upserts
from budgetd.store.schema import model_spend


class ModelSpendRepository:
    """Statements on the model_spend table; the caller holds the customer's row lock."""

    def get(self, conn: Connection, customer_pk: int, model: str) -> ModelAccount:
        """A customer's account on one model; a fresh one when it has none yet."""
        row = conn.execute(
            select(
                model_spend.c.spend_nanos,
                model_spend.c.reserved_nanos,
                model_spend.c.window_start_us,
                model_spend.c.window_end_us,
                model_spend.c.window_anchor_us,
            ).where(model_spend.c.customer_pk == customer_pk, model_spend.c.model == model)
        ).one_or_none()
        if row is None:
            return ModelAccount(customer_pk, model, 0, 0, None, None, None)
        return ModelAccount(customer_pk, model, *row)

    def save(self, conn: Connection, account: ModelAccount) -> None:
        """Write an account back, creating its row on first use."""
        values = {
            "spend_nanos": account.spend_nanos,
            "reserved_nanos": account.reserved_nanos,
            "window_start_us": account.window_start_us,
            "window_end_us": account.window_end_us,
            "window_anchor_us": account.window_anchor_us,
        }
        conn.execute(
            upserts.insert(conn, model_spend)
            .values(customer_pk=account.customer_pk, model=account.model, **values)
            .on_conflict_do_update(
                index_elements=[model_spend.c.customer_pk, model_spend.c.model], set_=values
            )
        )
