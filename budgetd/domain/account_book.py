"""Opening a customer's account for a transaction: lock, create on first use, roll the window.

Every operation on money goes through here first, so they all follow one rule: the customer's
row is locked before anything else of the customer is read or written (see
``budgetd.domain.accounts``), and what they see is the window that contains now.
"""

from __future__ import annotations

from sqlalchemy import Connection

from budgetd.domain.accounts import Account, ModelAccount, as_of, model_cap, roll, window_rule
from budgetd.errors import FailedPrecondition, NotFound
from budgetd.store.budgets import BudgetRepository
from budgetd.store.customers import CustomerRepository
from budgetd.store.model_spend import ModelSpendRepository


class AccountBook:
    """Opens customers' accounts under their row lock, in their current window."""

    def __init__(self, *, default_budget_id: str | None, time_zone: str) -> None:
        self._default_budget_id = default_budget_id
        self._zone = time_zone
        self._customers = CustomerRepository()
        self._budgets = BudgetRepository()
        self._models = ModelSpendRepository()

    def open(self, conn: Connection, customer_id: str, now: int) -> Account:
        """The customer's locked account, created on first use as LiteLLM upserts customers.

        A window that rolled over is written back at once, so the roll (and the anchor of a
        first call) holds even when the call is then refused.
        """
        account = self._customers.lock(conn, user_id=customer_id)
        if account is None:
            # A concurrent creator wins silently, and the lock below waits for it.
            self._customers.insert_if_absent(
                conn, customer_id, budget_id=self._default_tier(conn), now_us=now
            )
            account = self._customers.lock(conn, user_id=customer_id)
            assert account is not None
        current = self.current(account, now)
        if current is not account:
            self._customers.save(conn, current)
        return current

    def open_pk(self, conn: Connection, customer_pk: int, now: int) -> Account:
        """The locked account of a customer named by its key (a reservation's customer)."""
        account = self._customers.lock(conn, customer_pk=customer_pk)
        if account is None:
            raise NotFound("the reservation's customer was deleted")
        return self.current(account, now)

    def read(self, conn: Connection, customer_id: str) -> Account | None:
        """The account as stored, without a lock: for checks and reports, never for writes."""
        return self._customers.lock(conn, user_id=customer_id, for_update=False)

    def reported(self, account: Account, now: int) -> Account:
        """How ``account`` reads at ``now``, without starting a window no call has started."""
        limits = account.limits
        return as_of(account, window_rule(limits.budget_duration, limits, self._zone), now)

    def current(self, account: Account, now: int) -> Account:
        """``account`` in the window that contains ``now``."""
        limits = account.limits
        return roll(account, window_rule(limits.budget_duration, limits, self._zone), now)

    def model_account(
        self, conn: Connection, account: Account, model: str, now: int
    ) -> ModelAccount | None:
        """The customer's account on a model with a model_max_budget cap, in its window."""
        cap = model_cap(account.limits, model)
        if cap is None:
            return None
        rule = window_rule(cap.budget_duration, account.limits, self._zone)
        return roll(self._models.get(conn, account.customer_pk, model), rule, now)

    def save(self, conn: Connection, account: Account) -> None:
        """Write a locked account back."""
        self._customers.save(conn, account)

    def save_model(self, conn: Connection, account: ModelAccount) -> None:
        """Write a model account back."""
        self._models.save(conn, account)

    def _default_tier(self, conn: Connection) -> str | None:
        tier = self._default_budget_id
        if tier is not None and self._budgets.get_tier(conn, tier) is None:
            # Refuse rather than create an unlimited customer the operator meant to limit.
            raise FailedPrecondition(
                f"the default budget {tier!r} (BUDGETD_DEFAULT_BUDGET_ID) does not exist"
            )
        return tier
