"""Repository of the audit trail: appended in a change's transaction, listed newest first."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, insert, select

from budgetd.domain.records import AuditEntry
from budgetd.store.schema import audit_entries


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _entry(row: Row[Any]) -> AuditEntry:
    m = row._mapping
    return AuditEntry(
        entry_id=m["entry_id"],
        created_us=m["created_us"],
        actor=m["actor"],
        via=m["via"],
        action=m["action"],
        target_type=m["target_type"],
        target_id=m["target_id"],
        before=None if m["before_json"] is None else json.loads(m["before_json"]),
        after=None if m["after_json"] is None else json.loads(m["after_json"]),
    )


class AuditRepository:
    """Statements on the audit_entries table."""

    def append(self, conn: Connection, entry: AuditEntry) -> None:
        """Record a change in the caller's transaction (``entry_id`` is assigned here)."""
        conn.execute(
            insert(audit_entries).values(
                created_us=entry.created_us,
                actor=entry.actor,
                via=entry.via,
                action=entry.action,
                target_type=entry.target_type,
                target_id=entry.target_id,
                before_json=_json(entry.before),
                after_json=_json(entry.after),
            )
        )

    def list(
        self,
        conn: Connection,
        *,
        before_entry_id: int | None,
        limit: int,
        target_type: str | None = None,
        target_id: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        """Entries newest first, before ``before_entry_id``, matching every filter given."""
        stmt = select(audit_entries)
        if before_entry_id is not None:
            stmt = stmt.where(audit_entries.c.entry_id < before_entry_id)
        if target_type is not None:
            stmt = stmt.where(audit_entries.c.target_type == target_type)
        if target_id is not None:
            stmt = stmt.where(audit_entries.c.target_id == target_id)
        if action is not None:
            stmt = stmt.where(audit_entries.c.action == action)
        rows = conn.execute(stmt.order_by(audit_entries.c.entry_id.desc()).limit(limit)).all()
        return [_entry(row) for row in rows]
