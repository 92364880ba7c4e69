"""``/audit/logs``: budgetd's audit trail of management changes (master key only).

LiteLLM's proxy has no such route; the shape is ours::

    {"entries": [{"id": 7, "created_at": "2026-01-02T03:04:05.000006+00:00",
                  "actor": "key:1f2e…", "via": "token:9a8b…", "action": "customer.update",
                  "target_type": "customer", "target_id": "alice",
                  "before": {...} | null, "after": {...} | null}, ...],
     "next_page_token": "…"}                              # "" on the last page

Newest first. ``actor`` is the fingerprint of the key the change was made with (the first 16 hex
digits of its SHA-256), never the key; ``via`` is the credential that vouched for it toward
budgetd (the shim's admin token). ``before``/``after`` are the target's settings as budgetd
recorded them, amounts in integer nano-USD (``*_nanos``). Filters: ``target_id``,
``target_type`` (``customer`` or ``budget``), ``action``; pages: ``page_size`` and
``page_token``.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from budgetd.domain.audit_actions import AuditAction
from budgetd.v1 import audit_service_pb2 as audit_pb
from proxy_shim.litellm_schema import MAX_ID_LENGTH
from proxy_shim.state import Admin

router = APIRouter(tags=["audit"])

# budgetd's actions, as a Literal so the OpenAPI schema lists them.
Action = AuditAction
TargetType = Literal["customer", "budget"]


class AuditLogEntry(BaseModel):
    """One management change."""

    id: int
    created_at: str
    actor: str
    via: str | None
    action: str
    target_type: TargetType
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditLogPage(BaseModel):
    """A page of the audit trail, newest first; ``next_page_token`` is empty on the last."""

    entries: list[AuditLogEntry]
    next_page_token: str


@router.get("/audit/logs", response_model=AuditLogPage)
async def audit_logs(
    state: Admin,
    target_id: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)] = None,
    target_type: TargetType | None = None,
    action: Action | None = None,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_token: Annotated[str, Query(max_length=1024)] = "",
) -> AuditLogPage:
    """Who changed which customer or tier, when, and from what to what."""
    reply = await state.budgetd.audit_entries(
        audit_pb.ListAuditEntriesRequest(
            page_size=page_size,
            page_token=page_token,
            target_id=target_id or "",
            target_type=target_type or "",
            action=action or "",
        )
    )
    return AuditLogPage(
        entries=[_entry(e) for e in reply.audit_entries],
        next_page_token=reply.next_page_token,
    )


def _entry(entry: audit_pb.AuditEntry) -> AuditLogEntry:
    return AuditLogEntry(
        id=entry.entry_id,
        created_at=entry.create_time.ToDatetime(tzinfo=UTC).isoformat(),
        actor=entry.actor,
        via=entry.via or None,
        action=entry.action,
        target_type=entry.target_type,  # type: ignore[arg-type]
        target_id=entry.target_id,
        before=json.loads(entry.before_json) if entry.before_json else None,
        after=json.loads(entry.after_json) if entry.after_json else None,
    )
