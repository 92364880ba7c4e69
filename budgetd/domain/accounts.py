"""A customer's money state as one transaction sees it under the customer's row lock.

Authorize, RecordSpend, release and expiry each lock the customer row, bring its window up to
``now`` (a window that ended starts the next one with nothing spent or reserved), decide in
Python and write back before committing. The lock makes the read-decide-write atomic: on
PostgreSQL a second replica waits at the lock and then sees the first one's result, so a window
rolls over once and two calls never both take the last of a budget. On SQLite the transaction
holds the database's write lock from its first statement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

from budgetd.domain.records import BudgetLimits, Customer, ModelBudget
from budgetd.domain.windows import Alignment, Duration, WindowRule, zone


@dataclass(frozen=True, slots=True)
class Account:
    """A customer's counters and the limits in force."""

    customer_pk: int
    user_id: str
    blocked: bool
    spend_nanos: int
    reserved_nanos: int
    open_holds: int
    window_start_us: int | None
    window_end_us: int | None
    window_anchor_us: int | None
    soft_alert_window_us: int | None
    allowed_model_region: str | None
    default_model: str | None
    limits: BudgetLimits


@dataclass(frozen=True, slots=True)
class ModelAccount:
    """A customer's spend on one model that has a model_max_budget cap."""

    customer_pk: int
    model: str
    spend_nanos: int
    reserved_nanos: int
    window_start_us: int | None
    window_end_us: int | None
    window_anchor_us: int | None


Windowed = TypeVar("Windowed", Account, ModelAccount, Customer)


def window_rule(duration: str, limits: BudgetLimits, default_zone: str) -> WindowRule | None:
    """The windows of a budget with this duration; None when it never resets."""
    if not duration:
        return None
    alignment = (
        Alignment.CALENDAR if limits.window_alignment == "calendar" else Alignment.ANNIVERSARY
    )
    return WindowRule(Duration.parse(duration), alignment, zone(limits.time_zone or default_zone))


def roll(state: Windowed, rule: WindowRule | None, now_us: int) -> Windowed:
    """``state`` in the window that contains ``now_us``.

    Reservations taken in an earlier window are settled against that window, so they leave the
    new window's ``reserved`` too. A change of rule (a duration set, removed or changed) also
    starts a new window, which keeps "window spend == sum of that window's ledger" true.
    """
    if rule is None:
        if state.window_start_us is None:
            return state
        return dataclasses.replace(
            state, spend_nanos=0, reserved_nanos=0, window_start_us=None, window_end_us=None
        )
    anchor = state.window_anchor_us if state.window_anchor_us is not None else now_us
    start, end = rule.window_at(now_us, anchor)
    stored = state.window_start_us
    if stored is not None and end == state.window_end_us and start <= stored <= now_us:
        return state  # the same window (it may have begun late, after a rule change)
    if stored is not None and start <= stored:
        # A rule change whose window starts where (or before) the stored one did: the new
        # window begins now, so its ledger entries and its alert are told apart from the old.
        start = max(now_us, stored + 1)
    return dataclasses.replace(
        state,
        spend_nanos=0,
        reserved_nanos=0,
        window_start_us=start,
        window_end_us=end,
        window_anchor_us=anchor,
    )


def as_of(state: Windowed, rule: WindowRule | None, now_us: int) -> Windowed:
    """How counters read at ``now_us``, for reports.

    Unlike :func:`roll` it does not start an anniversary window that no call has started yet.
    """
    if (
        rule is not None
        and rule.alignment is Alignment.ANNIVERSARY
        and state.window_anchor_us is None
    ):
        return state
    return roll(state, rule, now_us)


def model_cap(limits: BudgetLimits, model: str) -> ModelBudget | None:
    """The model_max_budget entry of a model, if it has one."""
    return limits.model_max_budget.get(model)
