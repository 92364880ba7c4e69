"""Customers: who they are, which tier or own limits they have, and whether they are blocked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from budgetd.clock import Clock
from budgetd.domain.accounts import as_of, window_rule
from budgetd.domain.actors import INTERNAL, Actor
from budgetd.domain.audit import AuditTrail
from budgetd.domain.limits import LimitsPatch, check_limits
from budgetd.domain.paging import decode_token, encode_token
from budgetd.domain.records import BudgetLimits, Customer, Page
from budgetd.errors import AlreadyExists, InvalidArgument, NotFound
from budgetd.store.budgets import BudgetRepository
from budgetd.store.customers import CustomerRepository
from budgetd.store.database import Database
from budgetd.validation import (
    check_page_size,
    check_region,
    check_text,
    optional_id,
    require_id,
)

# Private budgets get ids no operator would type; they never show in tier listings.
PRIVATE_BUDGET_PREFIX = "~own/"
MAX_METADATA_BYTES = 16_384
# Fields of a customer an update may name (its limits are patched through ``limits``).
UPDATABLE = frozenset(
    {"alias", "blocked", "budget_id", "allowed_model_region", "default_model", "metadata"}
)


@dataclass(frozen=True, slots=True)
class NewCustomer:
    """What CreateCustomer may set."""

    user_id: str
    alias: str | None = None
    blocked: bool = False
    budget_id: str | None = None
    limits: BudgetLimits | None = None
    allowed_model_region: str | None = None
    default_model: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CustomerChanges:
    """An update: exactly the named fields change, to whatever value they carry."""

    values: Mapping[str, Any] = field(default_factory=dict)  # keys from UPDATABLE
    limits: LimitsPatch | None = None

    def __post_init__(self) -> None:
        unknown = set(self.values) - UPDATABLE
        if unknown:
            raise InvalidArgument("update_mask", f"cannot update {sorted(unknown)[0]!r}")
        if not self.values and self.limits is None:
            raise InvalidArgument("update_mask", "names no field to update")


class CustomerService:
    """Create, read, change, block and delete customers."""

    def __init__(self, db: Database, clock: Clock, time_zone: str = "UTC") -> None:
        self._db = db
        self._clock = clock
        self._zone = time_zone
        self._customers = CustomerRepository()
        self._budgets = BudgetRepository()
        self._audit = AuditTrail()

    def create(
        self, new: NewCustomer, request_id: str = "", *, actor: Actor = INTERNAL
    ) -> Customer:
        """Create a customer on a tier, with its own limits, or with neither (unlimited)."""
        user_id = require_id(new.user_id, "customer.user_id")
        request = optional_id(request_id, "request_id")
        values = _checked_values(
            {
                "alias": new.alias,
                "blocked": new.blocked,
                "allowed_model_region": new.allowed_model_region,
                "default_model": new.default_model,
                "metadata": new.metadata,
            }
        )
        tier = optional_id(new.budget_id or "", "customer.budget_id")
        if tier is not None and new.limits is not None:
            raise InvalidArgument("customer.limits", "cannot be combined with budget_id")
        now = self._clock.now_us()
        try:
            with self._db.write() as conn:
                if tier is not None:
                    self._require_tier(conn, tier, "customer.budget_id")
                    values["budget_id"] = tier
                elif new.limits is not None:
                    values["budget_id"] = self._create_private(
                        conn, check_limits(new.limits, "customer.limits"), now
                    )
                self._customers.insert(
                    conn, {"user_id": user_id, "create_request_id": request, **values}, now_us=now
                )
                created = self._customers.get(conn, user_id)
                assert created is not None
                self._audit.customer(conn, actor, "customer.create", None, created, now)
        except sa_exc.IntegrityError as exc:
            with self._db.write() as conn:
                first = self._customers.get(conn, user_id)
                if (
                    request
                    and first
                    and self._customers.create_request_id(conn, user_id) == request
                ):
                    return self._current(first)
            raise AlreadyExists(f"customer {user_id!r} already exists") from exc
        return self._current(created)

    def get(self, user_id: str) -> Customer:
        """A customer with its spend and limits."""
        require_id(user_id, "user_id")
        with self._db.read() as conn:
            customer = self._customers.get(conn, user_id)
        if customer is None:
            raise NotFound(f"customer {user_id!r} not found")
        return self._current(customer)

    def update(
        self, user_id: str, changes: CustomerChanges, *, actor: Actor = INTERNAL
    ) -> Customer:
        """Apply exactly the given changes; ``blocked=False`` or a 0 budget are set as given."""
        require_id(user_id, "customer.user_id")
        values = _checked_values(dict(changes.values))
        moving_to_tier = "budget_id" in values and values["budget_id"] is not None
        if moving_to_tier and changes.limits is not None:
            raise InvalidArgument("customer.limits", "cannot be combined with budget_id")
        now = self._clock.now_us()
        with self._db.write() as conn:
            current = self._customers.get(conn, user_id)
            if current is None:
                raise NotFound(f"customer {user_id!r} not found")
            _, linked = self._customers.find_budget_id(conn, user_id)
            private = linked if current.own_limits is not None else None
            target = linked
            if "budget_id" in values:
                target = values.pop("budget_id")
                if target is not None:
                    self._require_tier(conn, target, "customer.budget_id")
            if changes.limits is not None:
                limits = check_limits(
                    changes.limits.apply(current.own_limits or BudgetLimits()), "customer.limits"
                )
                if private is not None:
                    self._budgets.set_limits(conn, private, limits, now_us=now)
                    target = private
                else:
                    target = self._create_private(conn, limits, now)
            if target != linked:
                values["budget_id"] = target
            self._customers.update(conn, [user_id], values, now_us=now)
            if private is not None and target != private:
                self._budgets.delete(conn, private)
            updated = self._customers.get(conn, user_id)
            assert updated is not None
            self._audit.customer_updated(conn, actor, current, updated, now)
        return self._current(updated)

    def delete(self, user_ids: Sequence[str], *, actor: Actor = INTERNAL) -> int:
        """Delete all the named customers, or none if any is unknown. Ledger entries stay."""
        ids = self._checked_ids(user_ids)
        now = self._clock.now_us()
        with self._db.write() as conn:
            for customer in self._require_all(conn, ids):
                self._audit.customer(conn, actor, "customer.delete", customer, None, now)
            for budget_id in self._customers.delete(conn, ids):
                if budget_id and budget_id.startswith(PRIVATE_BUDGET_PREFIX):
                    self._budgets.delete(conn, budget_id)
        return len(ids)

    def set_blocked(
        self, user_ids: Sequence[str], blocked: bool, *, actor: Actor = INTERNAL
    ) -> list[Customer]:
        """Block or unblock all the named customers, or none if any is unknown."""
        ids = self._checked_ids(user_ids)
        now = self._clock.now_us()
        action = "customer.block" if blocked else "customer.unblock"
        with self._db.write() as conn:
            before = {c.user_id: c for c in self._require_all(conn, ids)}
            self._customers.update(conn, ids, {"blocked": blocked}, now_us=now)
            customers = self._customers.get_many(conn, ids)
            for customer in customers:
                self._audit.customer(conn, actor, action, before[customer.user_id], customer, now)
        return [self._current(c) for c in customers]

    def list(self, page_size: int, page_token: str, budget_id: str = "") -> Page[Customer]:
        """Customers ordered by user_id, optionally only those on one tier."""
        size = check_page_size(page_size)
        tier = optional_id(budget_id, "budget_id")
        after = decode_token(page_token, str)
        with self._db.read() as conn:
            items = self._customers.list(conn, str(after or ""), size + 1, tier)
        more = len(items) > size
        items = [self._current(c) for c in items[:size]]
        return Page(items, encode_token(items[-1].user_id) if more else "")

    def _current(self, customer: Customer) -> Customer:
        """The customer as of now: after its window ended, nothing is spent or reserved."""
        limits = customer.effective_limits
        rule = window_rule(limits.budget_duration, limits, self._zone)
        return as_of(customer, rule, self._clock.now_us())

    def _create_private(self, conn: Connection, limits: BudgetLimits, now: int) -> str:
        budget_id = PRIVATE_BUDGET_PREFIX + uuid.uuid4().hex
        self._budgets.insert(conn, budget_id, limits, now_us=now, is_private=True)
        return budget_id

    def _require_tier(self, conn: Connection, budget_id: str, field_name: str) -> None:
        if self._budgets.get_tier(conn, budget_id) is None:
            raise NotFound(f"{field_name}: budget {budget_id!r} not found")

    def _require_all(self, conn: Connection, ids: Sequence[str]) -> Sequence[Customer]:
        """The named customers in user_id order; NotFound when any is unknown."""
        customers = self._customers.get_many(conn, ids)
        found = {c.user_id for c in customers}
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"customer {missing[0]!r} not found; nothing was changed")
        return customers

    @staticmethod
    def _checked_ids(user_ids: Sequence[str]) -> Sequence[str]:
        if not user_ids:
            raise InvalidArgument("user_ids", "is required")
        if len(user_ids) > 1000:
            raise InvalidArgument("user_ids", "names more than 1000 customers")
        for index, user_id in enumerate(user_ids):
            require_id(user_id, f"user_ids[{index}]")
        return sorted(set(user_ids))


def _checked_values(values: dict[str, Any]) -> dict[str, Any]:
    """Validate updatable fields and turn them into column values."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        field_name = f"customer.{name}"
        if name == "alias":
            out[name] = None if value is None else check_text(value, field_name)
        elif name == "default_model":
            out[name] = optional_id(value or "", field_name)
        elif name == "allowed_model_region":
            out[name] = check_region(value, field_name) if value else None
        elif name == "metadata":
            encoded = json.dumps(dict(value or {}), separators=(",", ":"), sort_keys=True)
            if len(encoded) > MAX_METADATA_BYTES:
                raise InvalidArgument(field_name, f"is larger than {MAX_METADATA_BYTES} bytes")
            out["metadata_json"] = encoded
        elif name == "blocked":
            out[name] = bool(value)
        elif name == "budget_id":
            out[name] = optional_id(value or "", field_name)
    return out
