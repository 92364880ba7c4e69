"""Pricing tiers: limits that every customer on the tier has separately."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from budgetd.clock import Clock
from budgetd.domain.actors import INTERNAL, Actor
from budgetd.domain.audit import AuditTrail
from budgetd.domain.customers import PRIVATE_BUDGET_PREFIX
from budgetd.domain.limits import LimitsPatch, check_limits
from budgetd.domain.paging import decode_token, encode_token
from budgetd.domain.records import Budget, BudgetLimits, Page
from budgetd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from budgetd.store.budgets import BudgetRepository
from budgetd.store.customers import CustomerRepository
from budgetd.store.database import Database
from budgetd.validation import check_page_size, optional_id, require_id


class BudgetService:
    """Create, read, change and delete pricing tiers."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._budgets = BudgetRepository()
        self._customers = CustomerRepository()
        self._audit = AuditTrail()

    def create(
        self,
        budget_id: str,
        limits: BudgetLimits,
        request_id: str = "",
        *,
        actor: Actor = INTERNAL,
    ) -> Budget:
        """Create a tier. A retry with the same request_id returns the tier created first."""
        require_id(budget_id, "budget.budget_id")
        if budget_id.startswith(PRIVATE_BUDGET_PREFIX):
            # Reserved for customers' own limits, which are deleted with their customer.
            raise InvalidArgument(
                "budget.budget_id", f"must not start with {PRIVATE_BUDGET_PREFIX!r}"
            )
        check_limits(limits, "budget.limits")
        request = optional_id(request_id, "request_id")
        now = self._clock.now_us()
        try:
            with self._db.write() as conn:
                self._budgets.insert(conn, budget_id, limits, now_us=now, request_id=request)
                created = self._budgets.get_tier(conn, budget_id)
                assert created is not None
                self._audit.budget(conn, actor, "budget.create", None, created, now)
        except sa_exc.IntegrityError as exc:
            with self._db.write() as conn:
                first = self._budgets.get_tier(conn, budget_id)
                if (
                    request
                    and first
                    and self._budgets.create_request_id(conn, budget_id) == request
                ):
                    return first
            raise AlreadyExists(f"budget {budget_id!r} already exists") from exc
        return created

    def get(self, budget_id: str) -> Budget:
        """A tier by id."""
        require_id(budget_id, "budget_id")
        with self._db.read() as conn:
            budget = self._budgets.get_tier(conn, budget_id)
        if budget is None:
            raise NotFound(f"budget {budget_id!r} not found")
        return budget

    def update(self, budget_id: str, patch: LimitsPatch, *, actor: Actor = INTERNAL) -> Budget:
        """Change some of a tier's limits."""
        require_id(budget_id, "budget.budget_id")
        now = self._clock.now_us()
        with self._db.write() as conn:
            current = self._budgets.get_tier(conn, budget_id)
            if current is None:
                raise NotFound(f"budget {budget_id!r} not found")
            limits = check_limits(patch.apply(current.limits), "budget.limits")
            self._budgets.set_limits(conn, budget_id, limits, now_us=now)
            updated = self._budgets.get_tier(conn, budget_id)
            assert updated is not None
            self._audit.budget(conn, actor, "budget.update", current, updated, now)
        return updated

    def delete(self, budget_id: str, *, actor: Actor = INTERNAL) -> Budget:
        """Delete a tier nobody is on; returns it as it was."""
        require_id(budget_id, "budget_id")
        now = self._clock.now_us()
        try:
            with self._db.write() as conn:
                current = self._budgets.get_tier(conn, budget_id)
                if current is None:
                    raise NotFound(f"budget {budget_id!r} not found")
                if current.customer_count:
                    raise _in_use(budget_id, current.customer_count)
                self._budgets.delete(conn, budget_id)
                self._audit.budget(conn, actor, "budget.delete", current, None, now)
        except sa_exc.IntegrityError as exc:
            # A customer joined the tier between the count and the delete.
            raise _in_use(budget_id, None) from exc
        return current

    def list(self, page_size: int, page_token: str) -> Page[Budget]:
        """Tiers ordered by id."""
        size = check_page_size(page_size)
        after = decode_token(page_token, str)
        with self._db.read() as conn:
            items = self._budgets.list_tiers(conn, str(after or ""), size + 1)
        more = len(items) > size
        items = items[:size]
        return Page(items, encode_token(items[-1].budget_id) if more else "")


def _in_use(budget_id: str, count: int | None) -> FailedPrecondition:
    users = f"{count} customer(s)" if count else "customers"
    return FailedPrecondition(
        f"budget {budget_id!r} is used by {users}; move them to another tier first"
    )
