"""Budget windows and limits in the domain, on SQLite and PostgreSQL.

Windows roll lazily at the boundary inside the call that crosses it; rpm/tpm count over a rolling
minute; parallel calls are unsettled reservations; soft budgets alert once per window through the
``alerts`` outbox; per-model caps have windows of their own; customers created on first use get
the default tier; models and regions may be restricted. The clock is moved by hand: nothing here
sleeps.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from budgetd.clock import ManualClock
from budgetd.domain.admission import RATE_BUCKETS
from budgetd.domain.budgets import BudgetService
from budgetd.domain.customers import CustomerChanges, CustomerService, NewCustomer
from budgetd.domain.limits import LimitsPatch
from budgetd.domain.records import (
    BudgetLimits,
    Charge,
    Customer,
    Decision,
    DenialReason,
    LedgerEntry,
    ModelBudget,
)
from budgetd.domain.spend import CallEstimate, SpendPolicy, SpendReport, SpendService
from budgetd.errors import FailedPrecondition
from budgetd.pricing import PriceTable, TokenUsage
from budgetd.store import migrate
from budgetd.store.customers import CustomerRepository
from budgetd.store.database import Database
from budgetd.store.schema import HOLD_OPEN, alerts, holds, model_spend, rate_buckets

US = 1_000_000
MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MINI = "gpt-4o-mini"
OTHER = "gpt-4o"
POLICY = SpendPolicy()
TTL_US = POLICY.hold_ttl_us


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * US


# Wednesday 2024-03-13 10:00:00 UTC, on a whole second.
START = at(2024, 3, 13, 10)
MIDNIGHT = at(2024, 3, 14)


class Clock(ManualClock):
    """A manual clock that can also be set to an exact microsecond."""

    def set(self, now_us: int) -> None:
        self._now = now_us

    def advance_us(self, micros: int) -> None:
        self._now += micros


@dataclass
class Domain:
    db: Database
    clock: Clock
    customers: CustomerService
    budgets: BudgetService
    spend: SpendService

    def own(self, user_id: str, limits: BudgetLimits, **fields: Any) -> Customer:
        return self.customers.create(NewCustomer(user_id, limits=limits, **fields))

    def tier(self, budget_id: str, limits: BudgetLimits) -> None:
        self.budgets.create(budget_id, limits)

    def authorize(self, customer_id: str, cost: int | None = None, **kwargs: Any) -> Decision:
        if cost is not None:
            kwargs["estimated_cost_nanos"] = cost
        return self.spend.authorize(CallEstimate(customer_id=customer_id, **kwargs))

    def charge(self, request_id: str, **kwargs: Any) -> Charge:
        return self.spend.record_spend(SpendReport(request_id=request_id, **kwargs))

    def settle(self, decision: Decision, cost: int, **kwargs: Any) -> Charge:
        assert decision.allowed and decision.reservation_id
        return self.charge(
            f"settle-{decision.reservation_id}",
            reservation_id=decision.reservation_id,
            cost_nanos=cost,
            **kwargs,
        )

    def spent(self, user_id: str, cost: int) -> Charge:
        """Authorize and settle one call of exactly ``cost``."""
        return self.settle(self.authorize(user_id, cost), cost)

    def ledger(self, user_id: str) -> list[LedgerEntry]:
        return list(self.spend.ledger(user_id, 1000, "").items)

    def pk(self, user_id: str) -> int:
        with self.db.read() as conn:
            pk = CustomerRepository().pk_of(conn, user_id)
        assert pk is not None
        return pk

    def open_holds(self, user_id: str) -> list[tuple[int, int | None]]:
        """(amount, window_start_us) of a customer's open holds."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(holds.c.amount_nanos, holds.c.window_start_us).where(
                    holds.c.customer_pk == self.pk(user_id), holds.c.state == HOLD_OPEN
                )
            ).all()
        return [(row[0], row[1]) for row in rows]

    def alerts(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(select(alerts.c.kind, alerts.c.payload)).all()
        return [{"kind": row[0], **json.loads(row[1])} for row in rows]

    def alerts_of(self, user_id: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts() if a["customer_id"] == user_id]

    def rate_totals(self, user_id: str, scope: str = "") -> tuple[int, int]:
        """(requests, tokens) in the customer's rate buckets of one scope, every second."""
        with self.db.read() as conn:
            row = conn.execute(
                select(
                    func.coalesce(func.sum(rate_buckets.c.requests), 0),
                    func.coalesce(func.sum(rate_buckets.c.tokens), 0),
                ).where(
                    rate_buckets.c.customer_pk == self.pk(user_id), rate_buckets.c.scope == scope
                )
            ).one()
        return int(row[0]), int(row[1])

    def check_window_books(self, user_id: str) -> Customer:
        """spend == the ledger of the current window; reserved == its open holds."""
        customer = self.customers.get(user_id)
        window = customer.window_start_us
        entries = [e for e in self.ledger(user_id) if e.window_start_us == window]
        assert customer.spend_nanos == sum(e.cost_nanos for e in entries)
        in_window = [amount for amount, start in self.open_holds(user_id) if start == window]
        assert customer.reserved_nanos == sum(in_window)
        assert customer.spend_nanos >= 0 and customer.reserved_nanos >= 0
        return customer


def make_domain(db: Database, clock: Clock, policy: SpendPolicy = POLICY) -> Domain:
    return Domain(
        db=db,
        clock=clock,
        customers=CustomerService(db, clock, policy.time_zone),
        budgets=BudgetService(db, clock),
        spend=SpendService(db, PriceTable(), clock, policy),
    )


@pytest.fixture
def d(db: Database) -> Domain:
    return make_domain(db, Clock(START))


def user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


# -- budget windows ------------------------------------------------------------------------------


def test_a_calendar_day_resets_spend_exactly_at_midnight_with_no_job(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(max_budget_nanos=1000, budget_duration="1d", window_alignment="calendar"))
    first = d.authorize(c, 600)
    assert first.window_end_us == MIDNIGHT
    d.settle(first, 600)
    assert d.authorize(c, 500).denial_reason is DenialReason.BUDGET_EXCEEDED

    d.clock.set(MIDNIGHT - 1)
    late = d.authorize(c, 500)
    assert late.denial_reason is DenialReason.BUDGET_EXCEEDED
    assert late.spend_nanos == 600

    d.clock.set(MIDNIGHT)
    fresh = d.authorize(c, 1000)
    assert fresh.allowed
    assert (fresh.spend_nanos, fresh.reserved_nanos) == (0, 1000)
    assert fresh.window_end_us == MIDNIGHT + DAY
    d.settle(fresh, 900)

    customer = d.check_window_books(c)
    assert customer.spend_nanos == 900
    assert (customer.window_start_us, customer.window_end_us) == (MIDNIGHT, MIDNIGHT + DAY)
    entries = d.ledger(c)
    assert [e.window_start_us for e in entries] == [MIDNIGHT, at(2024, 3, 13)]
    assert sum(e.cost_nanos for e in entries) == 1500  # the ledger keeps every window
    assert d.spend.summary(c).ledger_entry_count == 2


def test_reports_show_the_new_window_before_any_call_crosses_it(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(max_budget_nanos=1000, budget_duration="1d", window_alignment="calendar"))
    d.spent(c, 700)
    d.clock.set(MIDNIGHT + 5 * HOUR)
    customer = d.customers.get(c)
    assert (customer.spend_nanos, customer.window_start_us) == (0, MIDNIGHT)
    summary = d.spend.summary(c)
    assert (summary.spend_nanos, summary.window_start_us) == (0, MIDNIGHT)
    assert summary.remaining_nanos == 1000


def test_an_anniversary_window_starts_at_the_first_call(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(max_budget_nanos=1000, budget_duration="30s"))
    d.clock.set(START + 7 * US + 123)
    anchor = d.clock.now_us()
    d.spent(c, 1000)
    assert d.customers.get(c).window_start_us == anchor
    d.clock.set(anchor + 30 * US - 1)
    assert d.authorize(c, 1).denial_reason is DenialReason.BUDGET_EXCEEDED
    d.clock.set(anchor + 30 * US)
    decision = d.authorize(c, 1000)
    assert decision.allowed and decision.spend_nanos == 0
    assert decision.window_end_us == anchor + 60 * US
    # Windows keep following the anchor, whenever the next call comes.
    d.clock.set(anchor + 95 * US)
    assert d.authorize(c, 1).window_end_us == anchor + 120 * US


def test_a_hold_taken_before_the_boundary_is_charged_to_its_old_window(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(max_budget_nanos=1000, budget_duration="1d", window_alignment="calendar"))
    d.spent(c, 100)
    old = d.authorize(c, 800)
    d.clock.set(MIDNIGHT)
    new = d.authorize(c, 300)
    assert new.allowed and (new.spend_nanos, new.reserved_nanos) == (0, 300)

    charge = d.settle(old, 750)
    assert charge.entry.window_start_us == at(2024, 3, 13)
    customer = d.check_window_books(c)
    assert (customer.spend_nanos, customer.reserved_nanos) == (0, 300)

    d.settle(new, 250)
    customer = d.check_window_books(c)
    assert (customer.spend_nanos, customer.reserved_nanos) == (250, 0)
    # The old window's books: 100 + 750, all in entries tagged with it.
    old_entries = [e for e in d.ledger(c) if e.window_start_us == at(2024, 3, 13)]
    assert sum(e.cost_nanos for e in old_entries) == 850


def test_holds_of_an_old_window_released_or_expired_leave_the_new_window_alone(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(max_budget_nanos=1000, budget_duration="1h", window_alignment="calendar"))
    released = d.authorize(c, 400)
    d.authorize(c, 400)  # left to expire
    d.clock.set(START + HOUR)
    current = d.authorize(c, 700)
    assert current.allowed
    assert d.spend.release(released.reservation_id or "") == 400
    d.clock.set(START + HOUR + TTL_US)  # the expiring hold is past its TTL
    d.spend.expire_due()
    customer = d.check_window_books(c)
    assert customer.reserved_nanos == 0  # the current window's hold expired too
    assert d.open_holds(c) == []


def test_changing_a_tiers_budget_duration_starts_a_new_window(d: Domain) -> None:
    c = user()
    tier = f"t-{uuid.uuid4().hex[:8]}"
    d.tier(
        tier, BudgetLimits(max_budget_nanos=1000, budget_duration="1d", window_alignment="calendar")
    )
    d.customers.create(NewCustomer(c, budget_id=tier))
    d.spent(c, 900)
    assert d.authorize(c, 200).denial_reason is DenialReason.BUDGET_EXCEEDED

    d.budgets.update(tier, LimitsPatch(BudgetLimits(budget_duration="1mo"), {"budget_duration"}))
    changed_at = d.clock.now_us()
    decision = d.authorize(c, 200)
    assert decision.allowed and decision.spend_nanos == 0
    assert decision.window_end_us == at(2024, 4, 1)
    d.settle(decision, 200)
    customer = d.check_window_books(c)
    # The month began before the day window did, so the new window begins at the change:
    # its books stay apart from the day window's.
    assert (customer.window_start_us, customer.spend_nanos) == (changed_at, 200)


def test_a_duration_change_to_a_window_with_the_same_start_keeps_the_books(d: Domain) -> None:
    c = user()
    tier = f"t-{uuid.uuid4().hex[:8]}"
    d.tier(tier, BudgetLimits(max_budget_nanos=1000, budget_duration="1d"))
    d.customers.create(NewCustomer(c, budget_id=tier))
    d.spent(c, 900)
    d.clock.advance_us(HOUR)
    d.budgets.update(tier, LimitsPatch(BudgetLimits(budget_duration="7d"), {"budget_duration"}))
    d.spent(c, 50)
    d.check_window_books(c)


def test_removing_the_duration_stops_resets(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(max_budget_nanos=1000, budget_duration="1d", window_alignment="calendar"))
    d.spent(c, 300)
    d.customers.update(
        c,
        CustomerChanges(limits=LimitsPatch(BudgetLimits(budget_duration=""), {"budget_duration"})),
    )
    d.spent(c, 400)
    d.clock.set(MIDNIGHT + 3 * DAY)
    customer = d.check_window_books(c)
    assert customer.window_start_us is None and customer.window_end_us is None
    assert customer.spend_nanos == 400


def test_a_calendar_window_uses_the_budgets_time_zone(d: Domain) -> None:
    c = user()
    limits = BudgetLimits(
        max_budget_nanos=1000,
        budget_duration="1d",
        window_alignment="calendar",
        time_zone="Asia/Tokyo",
    )
    d.own(c, limits)
    decision = d.authorize(c, 1)
    # 10:00 UTC is 19:00 in Tokyo; its midnight is 15:00 UTC.
    assert decision.window_end_us == at(2024, 3, 13, 15)


def test_the_servers_time_zone_applies_when_the_budget_names_none(db: Database) -> None:
    d = make_domain(db, Clock(START), SpendPolicy(time_zone="America/New_York"))
    c = user()
    d.own(c, BudgetLimits(max_budget_nanos=1000, budget_duration="1d", window_alignment="calendar"))
    # New York is UTC-4 on 2024-03-13 (DST began on Mar 10): midnight is 04:00 UTC.
    assert d.authorize(c, 1).window_end_us == at(2024, 3, 14, 4)
    assert d.customers.get(c).window_end_us == at(2024, 3, 14, 4)


# -- rate limits ---------------------------------------------------------------------------------


def test_rpm_admits_exactly_rpm_calls_then_again_61_seconds_later(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(rpm_limit=3))
    admitted = [d.authorize(c, 1) for _ in range(3)]
    assert all(a.allowed for a in admitted)
    refused = d.authorize(c, 1)
    assert refused.denial_reason is DenialReason.RATE_LIMITED
    assert refused.denied_by == "rpm_limit"
    assert "rpm_limit=3" in refused.message
    assert refused.retry_after_us == RATE_BUCKETS * US
    # Refusals do not count, settling does not give requests back.
    for decision in admitted:
        d.settle(decision, 1)
    d.clock.set(START + 60 * US)
    late = d.authorize(c, 1)
    assert late.denial_reason is DenialReason.RATE_LIMITED
    assert late.retry_after_us == US
    d.clock.set(START + 61 * US)
    assert [d.authorize(c, 1).allowed for _ in range(4)] == [True, True, True, False]


def test_rpm_is_a_rolling_window_not_a_fixed_minute(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(rpm_limit=2))
    assert d.authorize(c, 1).allowed
    d.clock.set(START + 30 * US + 500_000)
    assert d.authorize(c, 1).allowed
    d.clock.set(START + 45 * US)
    refused = d.authorize(c, 1)
    assert refused.denial_reason is DenialReason.RATE_LIMITED
    # The oldest counted request leaves the window 61 seconds after its second.
    assert refused.retry_after_us == 16 * US
    d.clock.set(START + 61 * US)
    assert d.authorize(c, 1).allowed
    assert d.authorize(c, 1).denial_reason is DenialReason.RATE_LIMITED


def test_tpm_counts_the_estimate_then_the_actual_usage(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(tpm_limit=1000))
    first = d.authorize(c, model=MINI, input_tokens=300, max_output_tokens=300)
    assert first.allowed
    assert d.rate_totals(c) == (1, 600)
    refused = d.authorize(c, model=MINI, input_tokens=300, max_output_tokens=300)
    assert refused.denial_reason is DenialReason.RATE_LIMITED
    assert "tpm_limit=1000" in refused.message
    assert refused.retry_after_us is not None and refused.retry_after_us > 0

    # The call used 200 tokens: corrected down, the room comes back.
    d.charge("tpm-1", reservation_id=first.reservation_id, model=MINI, usage=TokenUsage(150, 50))
    assert d.rate_totals(c) == (1, 200)
    second = d.authorize(c, model=MINI, input_tokens=400, max_output_tokens=400)
    assert second.allowed
    assert d.rate_totals(c) == (2, 1000)

    # A released call used nothing: its estimate leaves the window.
    d.spend.release(second.reservation_id or "")
    assert d.rate_totals(c) == (2, 200)
    assert d.authorize(c, model=MINI, input_tokens=400, max_output_tokens=400).allowed


def test_tpm_corrects_upwards_when_the_call_used_more(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(tpm_limit=1000))
    first = d.authorize(c, model=MINI, input_tokens=100, max_output_tokens=100)
    d.charge("up", reservation_id=first.reservation_id, model=MINI, usage=TokenUsage(100, 800))
    assert d.rate_totals(c) == (1, 900)
    assert (
        d.authorize(c, model=MINI, input_tokens=100, max_output_tokens=100).denial_reason
        is DenialReason.RATE_LIMITED
    )


def test_a_call_bigger_than_the_tpm_limit_is_refused_outright(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(tpm_limit=100))
    refused = d.authorize(c, model=MINI, input_tokens=80, max_output_tokens=80)
    assert refused.denial_reason is DenialReason.RATE_LIMITED
    assert "exceed tpm_limit=100" in refused.message


def test_tpm_of_calls_naming_no_model_is_corrected_once(d: Domain) -> None:
    # A call priced by the gateway (estimated_cost_nanos) may name no model, as Envoy's
    # default estimate does. Its model scope and the customer scope are both "": the
    # correction must not be applied twice (it drove the bucket negative).
    c = user()
    d.own(c, BudgetLimits(tpm_limit=1000))
    settled = d.authorize(c, 10, input_tokens=300, max_output_tokens=300)
    released = d.authorize(c, 10, input_tokens=100, max_output_tokens=100)
    assert d.rate_totals(c) == (2, 800)
    d.charge(
        "no-model", reservation_id=settled.reservation_id, cost_nanos=10, usage=TokenUsage(100, 100)
    )
    assert d.rate_totals(c) == (2, 400)
    d.spend.release(released.reservation_id or "")
    assert d.rate_totals(c) == (2, 200)


def test_a_charge_without_a_reservation_counts_in_the_rate_window(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(rpm_limit=2, tpm_limit=1000))
    d.charge("direct", customer_id=c, model=MINI, usage=TokenUsage(500, 400))
    assert d.rate_totals(c) == (1, 900)
    refused = d.authorize(c, model=MINI, input_tokens=100, max_output_tokens=100)
    assert refused.denial_reason is DenialReason.RATE_LIMITED


def test_rate_limits_come_from_the_tier(d: Domain) -> None:
    tier = f"t-{uuid.uuid4().hex[:8]}"
    d.tier(tier, BudgetLimits(rpm_limit=1))
    a, b = user(), user()
    for c in (a, b):
        d.customers.create(NewCustomer(c, budget_id=tier))
    # Each customer on the tier has its own minute.
    assert d.authorize(a, 1).allowed and d.authorize(b, 1).allowed
    assert d.authorize(a, 1).denial_reason is DenialReason.RATE_LIMITED


def test_old_rate_buckets_are_pruned_by_the_sweeper(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(rpm_limit=5))
    d.authorize(c, 1)
    d.clock.set(START + 120 * US)
    d.spend.expire_due()
    assert d.rate_totals(c) == (0, 0)


# -- parallel requests ---------------------------------------------------------------------------


def test_max_parallel_requests_counts_unsettled_reservations(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(max_parallel_requests=2))
    first, second = d.authorize(c, 1), d.authorize(c, 1)
    refused = d.authorize(c, 1)
    assert refused.denial_reason is DenialReason.PARALLEL_LIMIT
    assert "max_parallel_requests=2" in refused.message
    assert refused.retry_after_us is not None and refused.retry_after_us > 0

    d.settle(first, 1)
    third = d.authorize(c, 1)
    assert third.allowed
    assert d.authorize(c, 1).denial_reason is DenialReason.PARALLEL_LIMIT
    d.spend.release(second.reservation_id or "")
    assert d.authorize(c, 1).allowed


def test_expired_holds_stop_counting_as_in_flight(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(max_parallel_requests=1))
    stale = d.authorize(c, 1)
    assert d.authorize(c, 1).denial_reason is DenialReason.PARALLEL_LIMIT
    d.clock.set(START + TTL_US)
    # Authorize expires the stale hold that stands in its way.
    fresh = d.authorize(c, 1)
    assert fresh.allowed
    # Settling the expired hold later charges it but frees no second slot.
    d.settle(stale, 1)
    assert d.authorize(c, 1).denial_reason is DenialReason.PARALLEL_LIMIT
    # The sweeper expires too.
    d.clock.set(START + 2 * TTL_US)
    d.spend.expire_due()
    assert d.authorize(c, 1).allowed


def test_parallel_calls_span_windows(d: Domain) -> None:
    c = user()
    d.own(
        c,
        BudgetLimits(max_parallel_requests=1, budget_duration="1m", window_alignment="calendar"),
    )
    old = d.authorize(c, 1)
    d.clock.set(START + MINUTE)  # a new window, the hold well inside its TTL
    # A call from yesterday still in flight is still in flight.
    assert d.authorize(c, 1).denial_reason is DenialReason.PARALLEL_LIMIT
    d.settle(old, 1)
    assert d.authorize(c, 1).allowed


# -- soft budget ---------------------------------------------------------------------------------


def test_soft_budget_flags_and_alerts_once_per_window(d: Domain) -> None:
    c = user()
    limits = BudgetLimits(
        max_budget_nanos=2000,
        soft_budget_nanos=500,
        budget_duration="1d",
        window_alignment="calendar",
    )
    d.own(c, limits)
    d.spent(c, 300)
    assert not d.customers.get(c).soft_budget_exceeded
    assert d.alerts_of(c) == []

    crossing = d.authorize(c, 300)
    assert crossing.allowed  # a soft budget never refuses
    d.settle(crossing, 300)
    assert d.customers.get(c).soft_budget_exceeded
    d.spent(c, 100)
    d.spent(c, 100)
    sent = d.alerts_of(c)
    assert len(sent) == 1
    assert sent[0]["kind"] == "soft_budget_exceeded"
    assert sent[0]["spend_nanos"] == 600
    assert sent[0]["soft_budget_nanos"] == 500
    assert sent[0]["max_budget_nanos"] == 2000
    assert sent[0]["window_start_us"] == at(2024, 3, 13)

    # The next window starts below the soft budget and may alert again, once.
    d.clock.set(MIDNIGHT)
    assert not d.customers.get(c).soft_budget_exceeded
    d.spent(c, 499)
    assert len(d.alerts_of(c)) == 1
    d.spent(c, 1)
    d.spent(c, 1)
    assert d.customers.get(c).soft_budget_exceeded
    sent = d.alerts_of(c)
    assert len(sent) == 2
    assert (sent[1]["spend_nanos"], sent[1]["window_start_us"]) == (500, MIDNIGHT)


def test_soft_budget_without_a_window_alerts_once_ever(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(soft_budget_nanos=10))
    for _ in range(3):
        d.spent(c, 6)
    assert len(d.alerts_of(c)) == 1
    assert d.customers.get(c).soft_budget_exceeded


def test_a_late_charge_to_an_old_window_does_not_alert_in_the_new_one(d: Domain) -> None:
    c = user()
    d.own(
        c,
        BudgetLimits(soft_budget_nanos=100, budget_duration="1d", window_alignment="calendar"),
    )
    old = d.authorize(c, 1)
    d.clock.set(MIDNIGHT)
    d.settle(old, 1000)
    assert d.alerts_of(c) == []
    assert not d.customers.get(c).soft_budget_exceeded


# -- model_max_budget ----------------------------------------------------------------------------


def test_a_model_cap_refuses_that_model_inside_the_budget(d: Domain) -> None:
    c = user()
    caps = {MINI: ModelBudget(max_budget_nanos=1000)}
    d.own(c, BudgetLimits(max_budget_nanos=10_000, model_max_budget=caps))
    mini = d.authorize(c, 700, model=MINI)
    assert mini.allowed
    refused = d.authorize(c, 400, model=MINI)
    assert refused.denial_reason is DenialReason.BUDGET_EXCEEDED
    assert refused.denied_by == "model_max_budget.max_budget"
    assert MINI in refused.message
    # Other models still have the customer's budget.
    assert d.authorize(c, 5000, model=OTHER).allowed
    d.settle(mini, 600, model=MINI)
    assert d.authorize(c, 400, model=MINI).allowed
    assert d.authorize(c, 1, model=MINI).denial_reason is DenialReason.BUDGET_EXCEEDED


def test_a_model_cap_has_its_own_window(d: Domain) -> None:
    c = user()
    caps = {MINI: ModelBudget(max_budget_nanos=1000, budget_duration="1h")}
    d.own(c, BudgetLimits(max_budget_nanos=10_000, model_max_budget=caps))
    d.settle(d.authorize(c, 1000, model=MINI), 1000, model=MINI)
    assert d.authorize(c, 1, model=MINI).denial_reason is DenialReason.BUDGET_EXCEEDED
    d.clock.set(START + HOUR)
    again = d.authorize(c, 1000, model=MINI)
    assert again.allowed
    assert again.spend_nanos == 1000  # the customer's budget never resets


def test_a_model_cap_is_charged_when_the_settlement_names_no_model(d: Domain) -> None:
    # RecordSpend with reservation_id and cost_nanos may omit the model; the hold knows it.
    c = user()
    caps = {MINI: ModelBudget(max_budget_nanos=1000)}
    d.own(c, BudgetLimits(max_budget_nanos=10_000, model_max_budget=caps))
    for _ in range(3):
        decision = d.authorize(c, 400, model=MINI)
        if not decision.allowed:
            break
        charge = d.settle(decision, 400)
        assert charge.entry.model == MINI
    assert decision.denial_reason is DenialReason.BUDGET_EXCEEDED
    with d.db.read() as conn:
        spent = conn.execute(
            select(model_spend.c.spend_nanos).where(model_spend.c.model == MINI)
        ).scalar_one()
    assert spent == 800


def test_a_model_cap_has_its_own_rate_limits(d: Domain) -> None:
    c = user()
    caps = {MINI: ModelBudget(rpm_limit=1, tpm_limit=10_000)}
    d.own(c, BudgetLimits(model_max_budget=caps))
    assert d.authorize(c, 1, model=MINI).allowed
    refused = d.authorize(c, 1, model=MINI)
    assert refused.denial_reason is DenialReason.RATE_LIMITED
    assert MINI in refused.message
    assert d.authorize(c, 1, model=OTHER).allowed
    d.clock.set(START + 61 * US)
    assert d.authorize(c, 1, model=MINI).allowed


# -- default tier for customers created on first use ---------------------------------------------


@pytest.fixture
def tiered(db: Database) -> Iterator[Domain]:
    d = make_domain(db, Clock(START), SpendPolicy(default_budget_id="free"))
    d.tier("free", BudgetLimits(max_budget_nanos=1000, rpm_limit=100))
    yield d


def test_customers_created_by_authorize_get_the_default_tier_from_the_first_call(
    tiered: Domain,
) -> None:
    c = user()
    refused = tiered.authorize(c, 1001)
    assert refused.denial_reason is DenialReason.BUDGET_EXCEEDED
    assert refused.max_budget_nanos == 1000
    assert tiered.customers.get(c).budget_id == "free"
    assert tiered.authorize(c, 1000).allowed


def test_customers_created_by_record_spend_get_the_default_tier(tiered: Domain) -> None:
    c = user()
    charge = tiered.charge("first", customer_id=c, cost_nanos=900)
    assert charge.max_budget_nanos == 1000
    assert tiered.customers.get(c).budget_id == "free"
    assert tiered.authorize(c, 101).denial_reason is DenialReason.BUDGET_EXCEEDED


def test_existing_customers_keep_what_they_have(tiered: Domain) -> None:
    c = user()
    tiered.customers.create(NewCustomer(c))
    assert tiered.authorize(c, 10**9).allowed
    assert tiered.customers.get(c).budget_id is None


def test_concurrent_first_calls_share_the_default_budget(tiered: Domain) -> None:
    # LiteLLM #40095: 8 concurrent first calls of an unknown customer each got a fresh budget.
    c = user()
    with ThreadPoolExecutor(8) as pool:
        decisions = list(pool.map(lambda _: tiered.authorize(c, 400), range(8)))
    assert sum(d.allowed for d in decisions) == 2
    assert tiered.customers.get(c).reserved_nanos == 800


def test_a_missing_default_tier_is_a_failed_precondition_and_creates_nobody(
    db: Database,
) -> None:
    d = make_domain(db, Clock(START), SpendPolicy(default_budget_id="nope"))
    c = user()
    with pytest.raises(FailedPrecondition, match="nope"):
        d.authorize(c, 1)
    with pytest.raises(FailedPrecondition, match="nope"):
        d.charge("x", customer_id=c, cost_nanos=1)
    with d.db.read() as conn:
        assert CustomerRepository().pk_of(conn, c) is None


# -- models and regions --------------------------------------------------------------------------


def test_allowed_models_refuse_other_models_naming_them(d: Domain) -> None:
    tier = f"t-{uuid.uuid4().hex[:8]}"
    d.tier(tier, BudgetLimits(allowed_models=(OTHER, "mistral-small-latest")))
    c = user()
    d.customers.create(NewCustomer(c, budget_id=tier))
    refused = d.authorize(c, 1, model=MINI)
    assert refused.denial_reason is DenialReason.MODEL_NOT_ALLOWED
    assert MINI in refused.message and OTHER in refused.message
    assert refused.model == MINI
    assert d.authorize(c, 1, model=OTHER).allowed


def test_allowed_model_region_is_checked_against_the_calls_region(d: Domain) -> None:
    c = user()
    d.customers.create(NewCustomer(c, allowed_model_region="eu"))
    refused = d.authorize(c, 1, model=MINI, model_region="us")
    assert refused.denial_reason is DenialReason.MODEL_NOT_ALLOWED
    assert "'eu'" in refused.message and "'us'" in refused.message
    unknown = d.authorize(c, 1, model=MINI)
    assert unknown.denial_reason is DenialReason.MODEL_NOT_ALLOWED
    assert d.authorize(c, 1, model=MINI, model_region="eu").allowed
    # Customers without a region restriction may use any region.
    assert d.authorize(user(), 1, model=MINI, model_region="us").allowed


def test_default_model_fills_in_a_call_naming_none(d: Domain) -> None:
    c = user()
    d.customers.create(NewCustomer(c, default_model=MINI))
    decision = d.authorize(c, input_tokens=1000, max_output_tokens=100)
    assert decision.allowed and decision.model == MINI
    price = PriceTable().get(MINI)
    assert price is not None
    assert decision.held_nanos == price.cost_nanos(TokenUsage(1000, 100))
    # A call naming a model keeps it.
    assert d.authorize(c, 1, model=OTHER).model == OTHER


def test_the_default_model_is_subject_to_allowed_models(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(allowed_models=(OTHER,)), default_model=MINI)
    refused = d.authorize(c, 1)
    assert refused.denial_reason is DenialReason.MODEL_NOT_ALLOWED
    assert refused.model == MINI


def test_blocked_comes_before_every_other_refusal(d: Domain) -> None:
    c = user()
    d.own(c, BudgetLimits(max_budget_nanos=0, rpm_limit=0, allowed_models=(OTHER,)))
    d.customers.set_blocked([c], True)
    assert d.authorize(c, 1, model=MINI).denial_reason is DenialReason.BLOCKED


# -- property: random interleavings across windows keep the books --------------------------------


def test_random_interleavings_across_windows_keep_the_books(sqlite_url: str) -> None:
    db = Database.connect(sqlite_url, pool_size=4)
    migrate.upgrade(db)
    domain = make_domain(db, Clock(START), SpendPolicy(hold_ttl_us=90 * US))
    try:

        class Bound(WindowBooks):
            d = domain

        run_state_machine_as_test(
            Bound,
            settings=hypothesis_settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        db.dispose()


class WindowBooks(RuleBasedStateMachine):
    """A customer with a short window, rate and parallel limits; the clock crosses windows.

    Besides balanced books in every window, a window's spend plus its holds never exceeds
    max_budget, except in a window that took a charge no reservation covered (a direct charge,
    or the settlement of a hold that had expired): those are recorded, never refused.
    """

    holds = Bundle("holds")
    d: Domain

    def __init__(self) -> None:
        super().__init__()
        self.user = user()
        self.estimates: dict[str, int] = {}
        self.max_budget = 0
        self.settled: set[str] = set()
        # Windows (by start) that took a charge outside any reservation.
        self.uncovered: set[int | None] = set()

    @initialize(
        duration=st.sampled_from(["30s", "1m", "2m"]),
        alignment=st.sampled_from(["anniversary", "calendar"]),
        max_budget=st.integers(0, 3000),
    )
    def create(self, duration: str, alignment: str, max_budget: int) -> None:
        self.max_budget = max_budget
        self.d.own(
            self.user,
            BudgetLimits(
                max_budget_nanos=max_budget,
                soft_budget_nanos=max_budget // 2,
                tpm_limit=5000,
                rpm_limit=20,
                max_parallel_requests=4,
                budget_duration=duration,
                window_alignment=alignment,
                model_max_budget={MINI: ModelBudget(max_budget_nanos=1000, budget_duration="1m")},
            ),
        )

    @rule(
        target=holds,
        estimate=st.integers(0, 1200),
        tokens=st.integers(0, 1500),
        model=st.sampled_from(["", MINI]),
    )
    def authorize(self, estimate: int, tokens: int, model: str) -> str:
        decision = self.d.authorize(
            self.user, estimate, model=model, input_tokens=tokens, max_output_tokens=0
        )
        if not decision.allowed:
            assert decision.denial_reason is not None
            return ""
        assert decision.reservation_id is not None
        self.estimates[decision.reservation_id] = estimate
        self.within_budget()  # an admitted call fits, holds included
        return decision.reservation_id

    @rule(hold=holds, fraction=st.sampled_from([0, 1, 2]), tokens=st.integers(0, 1500))
    def settle(self, hold: str, fraction: int, tokens: int) -> None:
        if not hold:
            return
        cost = self.estimates[hold] * fraction // 2
        with self.d.db.read() as conn:
            state, window = conn.execute(
                select(holds.c.state, holds.c.window_start_us).where(holds.c.hold_id == hold)
            ).one()
        # A second settlement of a hold (another request_id) is refused; a replay is not.
        with contextlib.suppress(FailedPrecondition):
            self.d.charge(
                f"{self.user}/{hold}",
                reservation_id=hold,
                cost_nanos=cost,
                usage=TokenUsage(tokens, 0),
            )
            if state != HOLD_OPEN and hold not in self.settled and cost:
                self.uncovered.add(window)  # it had expired: charged to its window anyway
            self.settled.add(hold)

    @rule(hold=consumes(holds))
    def release(self, hold: str) -> None:
        if hold:
            self.d.spend.release(hold)

    @rule(cost=st.integers(0, 500))
    def direct_charge(self, cost: int) -> None:
        self.d.charge(f"direct-{uuid.uuid4()}", customer_id=self.user, cost_nanos=cost)
        if cost:
            self.uncovered.add(self.d.customers.get(self.user).window_start_us)

    @rule(seconds=st.sampled_from([1, 17, 29, 30, 59, 60, 61, 95]), sweep=st.booleans())
    def advance(self, seconds: int, sweep: bool) -> None:
        self.d.clock.advance_us(seconds * US)
        if sweep:
            self.d.spend.expire_due()

    @rule(before=st.booleans())
    def to_the_boundary(self, before: bool) -> None:
        """Land exactly on the current window's end, or one microsecond before it."""
        end = self.d.customers.get(self.user).window_end_us
        if end is not None and end - before > self.d.clock.now_us():
            self.d.clock.set(end - before)

    @invariant()
    def books_balance(self) -> None:
        customer = self.d.check_window_books(self.user)
        open_count = len(self.d.open_holds(self.user))
        with self.d.db.read() as conn:
            account = CustomerRepository().lock(conn, user_id=self.user, for_update=False)
            negative_rates = conn.execute(
                select(func.count()).where(
                    (rate_buckets.c.tokens < 0) | (rate_buckets.c.requests < 0)
                )
            ).scalar_one()
            negative_models = conn.execute(
                select(func.count()).where(
                    (model_spend.c.spend_nanos < 0) | (model_spend.c.reserved_nanos < 0)
                )
            ).scalar_one()
        assert account is not None
        assert account.open_holds == open_count
        assert negative_rates == 0
        assert negative_models == 0
        assert customer.spend_nanos >= 0
        self.within_budget()

    def within_budget(self) -> None:
        """spend + holds <= max_budget in the current window, unless it took uncovered charges."""
        customer = self.d.customers.get(self.user)
        if customer.window_start_us in self.uncovered:
            return
        assert customer.spend_nanos + customer.reserved_nanos <= self.max_budget, (
            customer.spend_nanos,
            customer.reserved_nanos,
            self.max_budget,
        )
