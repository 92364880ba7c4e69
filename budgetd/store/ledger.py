"""Repository of the ledger: one row per settled charge, never updated."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select

from budgetd.domain.records import LedgerEntry
from budgetd.store.prepared import Prepared
from budgetd.store.schema import ledger

_SELECT_ENTRY = select(
    ledger.c.entry_id,
    ledger.c.user_id,
    ledger.c.request_id,
    ledger.c.hold_id.label("reservation_id"),
    ledger.c.model,
    ledger.c.input_tokens,
    ledger.c.output_tokens,
    ledger.c.cached_input_tokens,
    ledger.c.cost_nanos,
    ledger.c.spend_after_nanos,
    ledger.c.created_us,
    ledger.c.window_start_us,
)


# RecordSpend's statements, built once with bind parameters (see budgetd.store.holds).
_APPEND_COLUMNS = (
    "customer_pk",
    "user_id",
    "request_id",
    "hold_id",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_nanos",
    "spend_after_nanos",
    "created_us",
    "window_start_us",
)
_APPEND = Prepared(
    insert(ledger)
    .values({name: bindparam(name) for name in _APPEND_COLUMNS})
    .returning(ledger.c.entry_id)
)
_GET_BY_REQUEST = Prepared(
    select(ledger.c.customer_pk, *_SELECT_ENTRY.selected_columns).where(
        ledger.c.request_id == bindparam("request_id")
    )
)


def _entry(row: Mapping[Any, Any]) -> LedgerEntry:
    return LedgerEntry(**{name: row[name] for name in LedgerEntry.__slots__})


class LedgerRepository:
    """Statements on the ledger_entries table."""

    def append(self, conn: Connection, *, customer_pk: int, entry: LedgerEntry) -> LedgerEntry:
        """Append an entry; IntegrityError when its request_id was recorded before."""
        appended = _APPEND.row(
            conn,
            {
                "customer_pk": customer_pk,
                "user_id": entry.user_id,
                "request_id": entry.request_id,
                "hold_id": entry.reservation_id,
                "model": entry.model,
                "input_tokens": entry.input_tokens,
                "output_tokens": entry.output_tokens,
                "cached_input_tokens": entry.cached_input_tokens,
                "cost_nanos": entry.cost_nanos,
                "spend_after_nanos": entry.spend_after_nanos,
                "created_us": entry.created_us,
                "window_start_us": entry.window_start_us,
            },
        )
        assert appended is not None
        return dataclasses.replace(entry, entry_id=appended["entry_id"])

    def get_by_request(self, conn: Connection, request_id: str) -> tuple[int, LedgerEntry] | None:
        """(customer_pk, entry) recorded for a request_id."""
        row = _GET_BY_REQUEST.row(conn, {"request_id": request_id})
        return (row["customer_pk"], _entry(row)) if row else None

    def list(
        self, conn: Connection, customer_pk: int, before_entry_id: int | None, limit: int
    ) -> list[LedgerEntry]:
        """A customer's entries, newest first."""
        stmt = _SELECT_ENTRY.where(ledger.c.customer_pk == customer_pk)
        if before_entry_id is not None:
            stmt = stmt.where(ledger.c.entry_id < before_entry_id)
        rows = conn.execute(stmt.order_by(ledger.c.entry_id.desc()).limit(limit)).all()
        return [_entry(row._mapping) for row in rows]

    def count(self, conn: Connection, customer_pk: int) -> int:
        """How many entries a customer has, in every window."""
        return int(
            conn.execute(
                select(func.count()).where(ledger.c.customer_pk == customer_pk)
            ).scalar_one()
        )
