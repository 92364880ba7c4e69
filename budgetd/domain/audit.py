"""The audit trail: who changed which customer or tier, when, and from what to what.

``AuditTrail`` is called by the management services inside the transaction of the change, so a
change and its record commit together or not at all. ``AuditService`` lists the records.
Recorded: customers created, updated, moved between tiers (``customer.change_tier``: the tier
changed, including onto or off a tier), deleted, blocked and unblocked; tiers created, updated
and deleted. Not recorded: customers created on first use by a call (that is traffic, not
management) and retries that change nothing (an idempotent create's replay).
"""

from __future__ import annotations

from typing import Any, get_args

from sqlalchemy import Connection

from budgetd.domain.actors import Actor
from budgetd.domain.audit_actions import AuditAction
from budgetd.domain.limits import limits_json
from budgetd.domain.paging import decode_token, encode_token
from budgetd.domain.records import AuditEntry, Budget, Customer, Page
from budgetd.errors import InvalidArgument
from budgetd.store.audit import AuditRepository
from budgetd.store.database import Database
from budgetd.validation import check_page_size, optional_id

CUSTOMER = "customer"
BUDGET = "budget"
TARGET_TYPES = frozenset({CUSTOMER, BUDGET})
ACTIONS = frozenset(get_args(AuditAction))


def customer_state(customer: Customer) -> dict[str, Any]:
    """What management sets on a customer (not its spend, which calls change)."""
    return {
        "alias": customer.alias,
        "blocked": customer.blocked,
        "budget_id": customer.budget_id,
        "limits": None if customer.own_limits is None else limits_json(customer.own_limits),
        "allowed_model_region": customer.allowed_model_region,
        "default_model": customer.default_model,
        "metadata": dict(customer.metadata),
    }


def budget_state(budget: Budget) -> dict[str, Any]:
    """What management sets on a tier."""
    return {"limits": limits_json(budget.limits)}


class AuditTrail:
    """Writes audit entries inside the caller's transaction."""

    def __init__(self) -> None:
        self._entries = AuditRepository()

    def customer(
        self,
        conn: Connection,
        actor: Actor,
        action: str,
        before: Customer | None,
        after: Customer | None,
        now_us: int,
    ) -> None:
        """Record a change of one customer."""
        target = after or before
        assert target is not None
        self._append(
            conn,
            actor,
            action,
            CUSTOMER,
            target.user_id,
            None if before is None else customer_state(before),
            None if after is None else customer_state(after),
            now_us,
        )

    def customer_updated(
        self, conn: Connection, actor: Actor, before: Customer, after: Customer, now_us: int
    ) -> None:
        """Record an update; one that changed the customer's tier is a tier change."""
        action = (
            "customer.change_tier" if before.budget_id != after.budget_id else "customer.update"
        )
        self.customer(conn, actor, action, before, after, now_us)

    def budget(
        self,
        conn: Connection,
        actor: Actor,
        action: str,
        before: Budget | None,
        after: Budget | None,
        now_us: int,
    ) -> None:
        """Record a change of one tier."""
        target = after or before
        assert target is not None
        self._append(
            conn,
            actor,
            action,
            BUDGET,
            target.budget_id,
            None if before is None else budget_state(before),
            None if after is None else budget_state(after),
            now_us,
        )

    def _append(
        self,
        conn: Connection,
        actor: Actor,
        action: str,
        target_type: str,
        target_id: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        now_us: int,
    ) -> None:
        assert action in ACTIONS, action
        self._entries.append(
            conn,
            AuditEntry(
                entry_id=0,
                created_us=now_us,
                actor=actor.principal,
                via=actor.via,
                action=action,
                target_type=target_type,
                target_id=target_id,
                before=before,
                after=after,
            ),
        )


class AuditService:
    """Lists the audit trail, newest first."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._entries = AuditRepository()

    def list(
        self,
        page_size: int,
        page_token: str,
        *,
        target_type: str = "",
        target_id: str = "",
        action: str = "",
    ) -> Page[AuditEntry]:
        """One page of entries matching every filter given (empty means any)."""
        size = check_page_size(page_size)
        before = decode_token(page_token, int)
        if target_type and target_type not in TARGET_TYPES:
            raise InvalidArgument("target_type", f"must be one of {sorted(TARGET_TYPES)}")
        if action and action not in ACTIONS:
            raise InvalidArgument("action", f"must be one of {sorted(ACTIONS)}")
        target = optional_id(target_id, "target_id")
        with self._db.read() as conn:
            items = self._entries.list(
                conn,
                before_entry_id=before,  # type: ignore[arg-type]
                limit=size + 1,
                target_type=target_type or None,
                target_id=target,
                action=action or None,
            )
        more = len(items) > size
        items = items[:size]
        return Page(items, encode_token(items[-1].entry_id) if more else "")
