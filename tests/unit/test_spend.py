"""SpendService on a real database (SQLite and PostgreSQL): reserve, settle, release, expire."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
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

from budgetd.clock import ManualClock
from budgetd.domain.budgets import BudgetService
from budgetd.domain.customers import CustomerService, NewCustomer
from budgetd.domain.paging import encode_token
from budgetd.domain.records import BudgetLimits, Charge, Decision, DenialReason, LedgerEntry
from budgetd.domain.spend import CallEstimate, SpendPolicy, SpendReport, SpendService
from budgetd.errors import FailedPrecondition, InvalidArgument, NotFound
from budgetd.pricing import ModelPrice, PriceTable, TokenUsage
from budgetd.store import migrate
from budgetd.store.customers import CustomerRepository
from budgetd.store.database import Database
from budgetd.store.holds import HoldRepository

MINI = "gpt-4o-mini"
POLICY = SpendPolicy()  # the defaults of budgetd.settings.Settings
TTL_S = POLICY.hold_ttl_us / 1_000_000
USD = 1_000_000_000


def mini_cost(input_tokens: int = 0, output_tokens: int = 0, cached: int = 0) -> int:
    price = PriceTable().get(MINI)
    assert price is not None
    return price.cost_nanos(TokenUsage(input_tokens, output_tokens, cached))


@dataclass
class Domain:
    db: Database
    clock: ManualClock
    customers: CustomerService
    budgets: BudgetService
    spend: SpendService

    def own(self, user_id: str, max_budget: int | None) -> None:
        """A customer with its own max_budget (None: no limits at all)."""
        limits = None if max_budget is None else BudgetLimits(max_budget_nanos=max_budget)
        self.customers.create(NewCustomer(user_id, limits=limits))

    def authorize(self, customer_id: str, **kwargs: Any) -> Decision:
        kwargs.setdefault("model", "")
        return self.spend.authorize(CallEstimate(customer_id=customer_id, **kwargs))

    def charge(self, request_id: str, **kwargs: Any) -> Charge:
        return self.spend.record_spend(SpendReport(request_id=request_id, **kwargs))

    def release(self, reservation_id: str | None) -> int:
        assert reservation_id is not None
        return self.spend.release(reservation_id)

    def ledger(self, user_id: str) -> list[LedgerEntry]:
        """Every ledger entry of a customer, newest first, through the paginated API."""
        entries: list[LedgerEntry] = []
        token = ""
        while True:
            page = self.spend.ledger(user_id, 2, token)
            entries.extend(page.items)
            token = page.next_page_token
            if not token:
                return entries

    def open_total(self, user_id: str) -> int:
        with self.db.read() as conn:
            pk = CustomerRepository().pk_of(conn, user_id)
            assert pk is not None
            return HoldRepository().open_total(conn, pk)

    def balance(self, user_id: str) -> tuple[int, int]:
        """(spend, reserved) of a customer."""
        customer = self.customers.get(user_id)
        return customer.spend_nanos, customer.reserved_nanos

    def check_books(self, user_id: str) -> None:
        """spend == ledger sum, reserved == open holds, spend_after is a running sum."""
        customer = self.customers.get(user_id)
        entries = self.ledger(user_id)
        assert customer.spend_nanos == sum(e.cost_nanos for e in entries)
        assert customer.reserved_nanos == self.open_total(user_id)
        assert customer.reserved_nanos >= 0
        running = 0
        for entry in reversed(entries):
            running += entry.cost_nanos
            assert entry.spend_after_nanos == running
        assert self.spend.summary(user_id).ledger_entry_count == len(entries)


def make_domain(
    db: Database,
    clock: ManualClock,
    prices: PriceTable | None = None,
    policy: SpendPolicy = POLICY,
) -> Domain:
    # As budgetd.app.build wires them.
    return Domain(
        db=db,
        clock=clock,
        customers=CustomerService(db, clock),
        budgets=BudgetService(db, clock),
        spend=SpendService(db, prices or PriceTable(), clock, policy),
    )


@pytest.fixture
def d(db: Database, clock: ManualClock) -> Domain:
    return make_domain(db, clock)


# -- Estimates ---------------------------------------------------------------------------------


def test_allowed_authorize_reserves_exactly_the_estimate(d: Domain) -> None:
    d.own("alice", 10 * USD)
    expected = mini_cost(1000, 500)
    assert expected > 0

    decision = d.authorize("alice", model=MINI, input_tokens=1000, max_output_tokens=500)

    assert decision.allowed and decision.denial_reason is None
    assert decision.reservation_id
    assert decision.held_nanos == expected
    assert decision.spend_nanos == 0
    assert decision.reserved_nanos == expected
    assert decision.max_budget_nanos == 10 * USD
    assert decision.remaining_nanos == 10 * USD - expected
    assert decision.reservation_expire_us == d.clock.now_us() + POLICY.hold_ttl_us
    assert d.balance("alice") == (0, expected)
    assert d.open_total("alice") == expected
    summary = d.spend.summary("alice")
    assert (summary.spend_nanos, summary.reserved_nanos) == (0, expected)
    assert summary.remaining_nanos == 10 * USD - expected


def test_input_characters_are_estimated_at_three_per_token_rounded_up(d: Domain) -> None:
    # 1000 characters -> ceil(1000 / 3) = 334 tokens, one token (150 nanos) more than floor.
    held = d.authorize("c", model=MINI, input_characters=1000, max_output_tokens=10).held_nanos
    assert held == mini_cost(math.ceil(1000 / 3), 10)
    assert held != mini_cost(1000 // 3, 10)
    # 999 characters are exactly 333 tokens.
    held = d.authorize("c", model=MINI, input_characters=999, max_output_tokens=10).held_nanos
    assert held == mini_cost(333, 10)
    # input_tokens wins over input_characters.
    held = d.authorize(
        "c", model=MINI, input_tokens=7, input_characters=10_000, max_output_tokens=10
    ).held_nanos
    assert held == mini_cost(7, 10)


def test_chars_per_token_comes_from_the_policy(db: Database, clock: ManualClock) -> None:
    d = make_domain(db, clock, policy=SpendPolicy(chars_per_token=4))
    held = d.authorize("c", model=MINI, input_characters=1001, max_output_tokens=0).held_nanos
    assert held == mini_cost(251, 0)


def test_output_defaults_to_the_models_known_limit(d: Domain) -> None:
    price = PriceTable().get(MINI)
    assert price is not None and price.max_output_tokens
    held = d.authorize("c", model=MINI, input_tokens=100).held_nanos
    assert held == mini_cost(100, price.max_output_tokens)


def test_output_defaults_to_the_servers_default_when_the_model_has_none(
    db: Database, clock: ManualClock
) -> None:
    house = ModelPrice("house-model", 1_000_000, 3_000_000, 1_000_000, max_output_tokens=None)
    d = make_domain(
        db,
        clock,
        prices=PriceTable(overrides={"house-model": house}),
        policy=SpendPolicy(default_max_output_tokens=1000),
    )
    held = d.authorize("c", model="house-model", input_tokens=500).held_nanos
    assert held == house.cost_nanos(TokenUsage(500, 1000))  # 500 + 3000 nanos
    assert held == 3500


def test_explicit_estimate_replaces_pricing(d: Domain) -> None:
    d.own("c", 1000)
    decision = d.authorize("c", model="no-such-model", estimated_cost_nanos=600, input_tokens=10**9)
    assert decision.allowed and decision.held_nanos == 600
    decision = d.authorize("c", model="", estimated_cost_nanos=400)
    assert decision.allowed and decision.held_nanos == 400
    assert d.balance("c") == (0, 1000)


# -- Customers created on first use ----------------------------------------------------------


def test_unknown_customer_is_created_by_authorize(d: Domain) -> None:
    with pytest.raises(NotFound):
        d.customers.get("newcomer")
    decision = d.authorize("newcomer", model=MINI, input_tokens=10, max_output_tokens=10)
    assert decision.allowed
    assert decision.max_budget_nanos is None and decision.remaining_nanos is None
    customer = d.customers.get("newcomer")
    assert customer.reserved_nanos == decision.held_nanos == mini_cost(10, 10)
    assert customer.max_budget_nanos is None and customer.budget_id is None
    assert not customer.blocked


def test_unknown_customer_is_created_by_record_spend(d: Domain) -> None:
    charge = d.charge("r-1", customer_id="walk-in", model=MINI, usage=TokenUsage(100, 20))
    assert charge.entry.cost_nanos == mini_cost(100, 20)
    assert charge.remaining_nanos is None
    customer = d.customers.get("walk-in")
    assert (customer.spend_nanos, customer.reserved_nanos) == (mini_cost(100, 20), 0)
    assert [e.request_id for e in d.ledger("walk-in")] == ["r-1"]


# -- Decisions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        {"model": MINI, "input_tokens": 1, "max_output_tokens": 1},
        {"estimated_cost_nanos": 1},
        {"estimated_cost_nanos": 0},
        {"model": MINI, "input_tokens": 0, "max_output_tokens": 0},
    ],
    ids=["priced", "one-nano", "zero-estimate", "zero-tokens"],
)
def test_max_budget_zero_denies_every_call(d: Domain, call: dict[str, Any]) -> None:
    d.own("broke", 0)
    decision = d.authorize("broke", **call)
    assert not decision.allowed
    assert decision.denial_reason is DenialReason.BUDGET_EXCEEDED
    assert decision.reservation_id is None and decision.held_nanos == 0
    assert decision.max_budget_nanos == 0 and decision.remaining_nanos == 0
    assert d.balance("broke") == (0, 0)
    assert d.open_total("broke") == 0


def test_no_budget_means_allowed_and_metered(d: Domain) -> None:
    d.own("free", None)
    decision = d.authorize("free", estimated_cost_nanos=10**15)
    assert decision.allowed and decision.max_budget_nanos is None
    assert decision.remaining_nanos is None
    charge = d.charge(
        "r", reservation_id=decision.reservation_id, model=MINI, usage=TokenUsage(1000, 1000)
    )
    assert charge.remaining_nanos is None
    assert d.balance("free") == (mini_cost(1000, 1000), 0)
    d.check_books("free")


def test_blocked_customer_is_denied(d: Domain) -> None:
    d.own("mallory", None)  # unlimited, so only the block can deny
    d.customers.set_blocked(["mallory"], True)
    decision = d.authorize("mallory", estimated_cost_nanos=1)
    assert not decision.allowed
    assert decision.denial_reason is DenialReason.BLOCKED
    assert "blocked" in decision.message and decision.reservation_id is None
    assert d.balance("mallory") == (0, 0)
    d.customers.set_blocked(["mallory"], False)
    assert d.authorize("mallory", estimated_cost_nanos=1).allowed


def test_admits_exactly_at_the_budget_and_denies_one_nano_over(d: Domain) -> None:
    d.own("edge", 1000)
    d.charge("spent", customer_id="edge", cost_nanos=300)
    assert d.authorize("edge", estimated_cost_nanos=200).allowed

    over = d.authorize("edge", estimated_cost_nanos=501)  # 300 + 200 + 501 = 1001
    assert not over.allowed and over.denial_reason is DenialReason.BUDGET_EXCEEDED
    assert (over.spend_nanos, over.reserved_nanos, over.max_budget_nanos) == (300, 200, 1000)
    assert over.remaining_nanos == 500
    for number in ("spend=300", "reserved=200", "estimate=501", "max_budget=1000"):
        assert number in over.message

    exact = d.authorize("edge", estimated_cost_nanos=500)  # 300 + 200 + 500 = 1000
    assert exact.allowed and exact.reserved_nanos == 700 and exact.remaining_nanos == 0
    assert not d.authorize("edge", estimated_cost_nanos=1).allowed
    assert d.balance("edge") == (300, 700)


def test_a_tier_budget_applies_to_each_customer_separately(d: Domain) -> None:
    d.budgets.create("tier", BudgetLimits(max_budget_nanos=100))
    d.customers.create(NewCustomer("a", budget_id="tier"))
    d.customers.create(NewCustomer("b", budget_id="tier"))
    assert d.authorize("a", estimated_cost_nanos=100).allowed
    assert d.authorize("b", estimated_cost_nanos=100).allowed
    assert not d.authorize("a", estimated_cost_nanos=1).allowed


# -- RecordSpend -----------------------------------------------------------------------------


def test_record_spend_settles_the_hold(d: Domain) -> None:
    d.own("alice", USD)
    hold = d.authorize("alice", model=MINI, input_tokens=2000, max_output_tokens=1000)
    d.clock.advance(3)
    usage = TokenUsage(input_tokens=1800, output_tokens=250, cached_input_tokens=1000)
    actual = mini_cost(1800, 250, 1000)
    assert actual < hold.held_nanos

    charge = d.charge(
        "req-1", customer_id="alice", reservation_id=hold.reservation_id, model=MINI, usage=usage
    )

    entry = charge.entry
    assert entry.cost_nanos == actual
    assert entry.spend_after_nanos == actual
    assert (entry.user_id, entry.request_id, entry.reservation_id) == (
        "alice",
        "req-1",
        hold.reservation_id,
    )
    assert (entry.model, entry.input_tokens, entry.output_tokens, entry.cached_input_tokens) == (
        MINI,
        1800,
        250,
        1000,
    )
    assert entry.created_us == d.clock.now_us()
    assert charge.reserved_nanos == 0
    assert charge.remaining_nanos == USD - actual
    assert d.balance("alice") == (actual, 0)
    assert d.open_total("alice") == 0
    assert d.ledger("alice") == [entry]
    # The hold is settled: releasing it returns nothing.
    assert d.release(hold.reservation_id) == 0
    assert d.balance("alice") == (actual, 0)


def test_record_spend_may_name_only_the_reservation(d: Domain) -> None:
    hold = d.authorize("bob", estimated_cost_nanos=50)
    charge = d.charge("r", reservation_id=hold.reservation_id, cost_nanos=70)
    assert charge.entry.user_id == "bob" and charge.entry.cost_nanos == 70
    assert d.balance("bob") == (70, 0)


def test_record_spend_is_idempotent_on_request_id(d: Domain) -> None:
    d.own("alice", USD)
    hold = d.authorize("alice", estimated_cost_nanos=1000)
    first = d.charge("once", reservation_id=hold.reservation_id, cost_nanos=600)
    # A retry, even one that (wrongly) carries other numbers, returns the first result.
    again = d.charge("once", reservation_id=hold.reservation_id, cost_nanos=600)
    other = d.charge("once", customer_id="alice", cost_nanos=999)
    assert again.entry == first.entry == other.entry
    assert again.remaining_nanos == first.remaining_nanos == USD - 600
    assert d.balance("alice") == (600, 0)
    assert len(d.ledger("alice")) == 1
    d.check_books("alice")


def test_authorize_is_idempotent_on_request_id(d: Domain) -> None:
    d.own("alice", 10_000)
    first = d.authorize("alice", estimated_cost_nanos=1000, request_id="call-1")
    again = d.authorize("alice", estimated_cost_nanos=1000, request_id="call-1")
    assert first.allowed and again.allowed
    assert again.reservation_id == first.reservation_id
    assert again.held_nanos == first.held_nanos == 1000
    assert d.balance("alice") == (0, 1000)
    assert d.open_total("alice") == 1000
    # Another request_id is another call; the same id of another customer too.
    second = d.authorize("alice", estimated_cost_nanos=1000, request_id="call-2")
    assert second.reservation_id != first.reservation_id
    other = d.authorize("bob", estimated_cost_nanos=1000, request_id="call-1")
    assert other.allowed and other.reservation_id != first.reservation_id
    assert d.balance("alice") == (0, 2000)


def test_authorize_retry_returns_the_reservation_even_when_the_budget_is_now_full(
    d: Domain,
) -> None:
    d.own("alice", 1000)
    first = d.authorize("alice", estimated_cost_nanos=1000, request_id="call-1")
    assert first.allowed
    # The budget is exactly used up by this very reservation; the retry must not be denied.
    again = d.authorize("alice", estimated_cost_nanos=1000, request_id="call-1")
    assert again.allowed, again.message
    assert again.reservation_id == first.reservation_id
    d.customers.set_blocked(["alice"], True)
    blocked = d.authorize("alice", estimated_cost_nanos=1000, request_id="call-1")
    assert blocked.allowed and blocked.reservation_id == first.reservation_id
    assert d.balance("alice") == (0, 1000)


def test_record_spend_checks_the_reservation_belongs_to_the_customer(d: Domain) -> None:
    hold = d.authorize("alice", estimated_cost_nanos=100)
    d.own("bob", None)
    with pytest.raises(InvalidArgument) as error:
        d.charge("r", customer_id="bob", reservation_id=hold.reservation_id, cost_nanos=10)
    assert error.value.field == "customer_id"
    # Nothing changed: the hold is still open and nobody was charged.
    assert d.balance("alice") == (0, 100) and d.balance("bob") == (0, 0)
    assert d.release(hold.reservation_id) == 100


# -- Release, unknown and double settlement ---------------------------------------------------


def test_release_returns_the_hold_and_is_idempotent(d: Domain) -> None:
    d.own("alice", 1000)
    hold = d.authorize("alice", estimated_cost_nanos=800)
    assert not d.authorize("alice", estimated_cost_nanos=800).allowed
    assert d.release(hold.reservation_id) == 800
    assert d.balance("alice") == (0, 0)
    assert d.release(hold.reservation_id) == 0
    assert d.balance("alice") == (0, 0)
    assert d.ledger("alice") == []
    assert d.authorize("alice", estimated_cost_nanos=800).allowed


def test_unknown_reservation_is_not_found(d: Domain) -> None:
    d.own("alice", None)
    with pytest.raises(NotFound, match="no-such-hold"):
        d.release("no-such-hold")
    with pytest.raises(NotFound, match="no-such-hold"):
        d.charge("r", customer_id="alice", reservation_id="no-such-hold", cost_nanos=5)
    assert d.balance("alice") == (0, 0)
    assert d.ledger("alice") == []
    # The failed request_id was not consumed.
    assert d.charge("r", customer_id="alice", cost_nanos=5).entry.cost_nanos == 5


def test_settling_a_hold_twice_with_different_request_ids_fails(d: Domain) -> None:
    hold = d.authorize("alice", estimated_cost_nanos=100)
    d.charge("first", reservation_id=hold.reservation_id, cost_nanos=90)
    with pytest.raises(FailedPrecondition, match="already settled"):
        d.charge("second", reservation_id=hold.reservation_id, cost_nanos=90)
    assert d.balance("alice") == (90, 0)
    assert [e.request_id for e in d.ledger("alice")] == ["first"]


def test_a_released_hold_can_still_be_charged_once(d: Domain) -> None:
    hold = d.authorize("alice", estimated_cost_nanos=100)
    assert d.release(hold.reservation_id) == 100
    # The call did happen after all: the charge is recorded, nothing more is released.
    charge = d.charge("late", reservation_id=hold.reservation_id, cost_nanos=40)
    assert charge.entry.cost_nanos == 40 and charge.reserved_nanos == 0
    assert d.balance("alice") == (40, 0)
    with pytest.raises(FailedPrecondition):
        d.charge("later", reservation_id=hold.reservation_id, cost_nanos=40)
    d.check_books("alice")


# -- Expiry ----------------------------------------------------------------------------------


def test_expired_hold_no_longer_blocks(d: Domain) -> None:
    d.own("alice", 1000)
    stale = d.authorize("alice", estimated_cost_nanos=800)
    assert not d.authorize("alice", estimated_cost_nanos=800).allowed
    d.clock.advance(TTL_S - 1)
    assert not d.authorize("alice", estimated_cost_nanos=800).allowed
    d.clock.advance(2)
    fresh = d.authorize("alice", estimated_cost_nanos=800)
    assert fresh.allowed and fresh.reserved_nanos == 800
    assert d.balance("alice") == (0, 800)
    assert d.open_total("alice") == 800
    # The stale hold was expired, so releasing it returns nothing.
    assert d.release(stale.reservation_id) == 0
    assert d.balance("alice") == (0, 800)


def test_expire_due_releases_expired_holds(d: Domain) -> None:
    d.own("alice", 1000)
    d.authorize("alice", estimated_cost_nanos=300)
    d.authorize("bob", estimated_cost_nanos=400)
    d.clock.advance(TTL_S / 2)
    young = d.authorize("alice", estimated_cost_nanos=200)
    assert d.spend.expire_due() == 0
    d.clock.advance(TTL_S / 2)
    assert d.spend.expire_due() == 2
    assert d.balance("alice") == (0, 200) and d.balance("bob") == (0, 0)
    assert d.open_total("alice") == 200
    assert d.spend.expire_due() == 0
    assert d.release(young.reservation_id) == 200
    d.check_books("alice")
    d.check_books("bob")


def test_record_spend_on_an_expired_hold_still_charges(d: Domain) -> None:
    d.own("alice", 1000)
    hold = d.authorize("alice", estimated_cost_nanos=500)
    d.clock.advance(TTL_S + 1)
    assert d.spend.expire_due() == 1
    assert d.balance("alice") == (0, 0)
    charge = d.charge("late", reservation_id=hold.reservation_id, cost_nanos=450)
    # Charged, and the hold was not released a second time (reserved is not -500).
    assert charge.entry.cost_nanos == 450 and charge.reserved_nanos == 0
    assert d.balance("alice") == (450, 0)
    assert d.release(hold.reservation_id) == 0
    assert d.balance("alice") == (450, 0)
    d.check_books("alice")


def test_record_spend_on_an_expired_but_unswept_hold_releases_it_once(d: Domain) -> None:
    d.own("alice", 1000)
    hold = d.authorize("alice", estimated_cost_nanos=500)
    d.clock.advance(TTL_S + 1)
    d.charge("late", reservation_id=hold.reservation_id, cost_nanos=450)
    assert d.balance("alice") == (450, 0)
    assert d.spend.expire_due() == 0
    assert d.balance("alice") == (450, 0)
    d.check_books("alice")


# -- Prices and validation -------------------------------------------------------------------


def test_unpriced_model_fails_naming_the_model(d: Domain) -> None:
    with pytest.raises(FailedPrecondition, match="no-such-model-v9"):
        d.authorize("alice", model="no-such-model-v9", input_tokens=1)
    with pytest.raises(NotFound):
        d.customers.get("alice")  # nothing was created
    d.own("bob", None)
    with pytest.raises(FailedPrecondition, match="no-such-model-v9"):
        d.charge("r", customer_id="bob", model="no-such-model-v9", usage=TokenUsage(1, 1))
    assert d.ledger("bob") == []
    assert d.balance("bob") == (0, 0)


LONG_ID = "x" * 257
BAD_INPUTS: list[tuple[str, Callable[[Domain, str], Any], str]] = [
    ("neg-input", lambda d, h: d.authorize("victim", model=MINI, input_tokens=-1), "input_tokens"),
    (
        "neg-chars",
        lambda d, h: d.authorize("victim", model=MINI, input_characters=-5),
        "input_characters",
    ),
    (
        "neg-output",
        lambda d, h: d.authorize("victim", model=MINI, max_output_tokens=-1),
        "max_output_tokens",
    ),
    (
        "neg-estimate",
        lambda d, h: d.authorize("victim", estimated_cost_nanos=-1),
        "estimated_cost_nanos",
    ),
    ("no-model", lambda d, h: d.authorize("victim", input_tokens=1), "model"),
    (
        "long-model",
        lambda d, h: d.authorize("victim", model="m" * 257, estimated_cost_nanos=1),
        "model",
    ),
    (
        "ctrl-model",
        lambda d, h: d.authorize("victim", model="gpt\n4", estimated_cost_nanos=1),
        "model",
    ),
    ("empty-customer", lambda d, h: d.authorize("", estimated_cost_nanos=1), "customer_id"),
    ("long-customer", lambda d, h: d.authorize(LONG_ID, estimated_cost_nanos=1), "customer_id"),
    ("nul-customer", lambda d, h: d.authorize("vic\x00tim", estimated_cost_nanos=1), "customer_id"),
    ("del-customer", lambda d, h: d.authorize("victim\x7f", estimated_cost_nanos=1), "customer_id"),
    (
        "long-request",
        lambda d, h: d.authorize("victim", estimated_cost_nanos=1, request_id=LONG_ID),
        "request_id",
    ),
    (
        "tab-request",
        lambda d, h: d.authorize("victim", estimated_cost_nanos=1, request_id="a\tb"),
        "request_id",
    ),
    (
        "spend-no-request",
        lambda d, h: d.charge("", customer_id="victim", cost_nanos=1),
        "request_id",
    ),
    (
        "spend-long-request",
        lambda d, h: d.charge(LONG_ID, reservation_id=h, cost_nanos=1),
        "request_id",
    ),
    (
        "spend-neg-input",
        lambda d, h: d.charge("r", reservation_id=h, model=MINI, usage=TokenUsage(-1, 0, 0)),
        "usage.input_tokens",
    ),
    (
        "spend-neg-output",
        lambda d, h: d.charge("r", reservation_id=h, model=MINI, usage=TokenUsage(1, -1, 0)),
        "usage.output_tokens",
    ),
    (
        "spend-neg-cached",
        lambda d, h: d.charge("r", reservation_id=h, model=MINI, usage=TokenUsage(1, 1, -1)),
        "usage.cached_input_tokens",
    ),
    (
        "spend-cached-over-input",
        lambda d, h: d.charge("r", reservation_id=h, model=MINI, usage=TokenUsage(10, 1, 11)),
        "usage.cached_input_tokens",
    ),
    ("spend-neg-cost", lambda d, h: d.charge("r", reservation_id=h, cost_nanos=-1), "cost_nanos"),
    ("spend-nobody", lambda d, h: d.charge("r", cost_nanos=1), "customer_id"),
    ("spend-no-model", lambda d, h: d.charge("r", reservation_id=h), "model"),
    (
        "spend-ctrl-model",
        lambda d, h: d.charge("r", reservation_id=h, model="a\rb", cost_nanos=1),
        "model",
    ),
    (
        "spend-long-customer",
        lambda d, h: d.charge("r", customer_id=LONG_ID, cost_nanos=1),
        "customer_id",
    ),
    (
        "spend-long-reservation",
        lambda d, h: d.charge("r", reservation_id=LONG_ID, cost_nanos=1),
        "reservation_id",
    ),
    ("release-empty", lambda d, h: d.release(""), "reservation_id"),
    ("release-ctrl", lambda d, h: d.release("a\x1bb"), "reservation_id"),
    ("ledger-page-size", lambda d, h: d.spend.ledger("victim", -1, ""), "page_size"),
    ("ledger-page-size-big", lambda d, h: d.spend.ledger("victim", 1001, ""), "page_size"),
    ("ledger-token", lambda d, h: d.spend.ledger("victim", 10, "not a token!"), "page_token"),
    ("summary-empty", lambda d, h: d.spend.summary(""), "customer_id"),
]


def test_bad_input_names_the_field_and_changes_nothing(d: Domain) -> None:
    # One database for every case (cheap on PostgreSQL); each case must leave it untouched.
    d.own("victim", 10 * USD)
    hold = d.authorize("victim", estimated_cost_nanos=1000).reservation_id
    assert hold is not None
    d.charge("seed", customer_id="victim", cost_nanos=10)

    def snapshot() -> Any:
        customers = d.customers.list(1000, "").items
        return [(c.user_id, c.spend_nanos, c.reserved_nanos) for c in customers], d.ledger("victim")

    before = snapshot()
    wrong: list[str] = []
    for name, call, field in BAD_INPUTS:
        try:
            call(d, hold)
        except InvalidArgument as error:
            if error.field != field or not str(error).startswith(f"{field}:"):
                wrong.append(f"{name}: names {error.field!r}: {error}")
        except Exception as error:  # collect every wrong case
            wrong.append(f"{name}: {type(error).__name__}: {str(error)[:120]}")
        else:
            wrong.append(f"{name}: accepted")
        if snapshot() != before:
            wrong.append(f"{name}: changed the database")
            before = snapshot()
    assert wrong == []
    assert d.open_total("victim") == 1000


def test_ids_of_the_longest_allowed_length_are_accepted(d: Domain) -> None:
    user_id = "ü" * 256  # 256 characters, 512 bytes
    request_id = "🙂" * 256
    decision = d.authorize(user_id, estimated_cost_nanos=5, request_id=request_id)
    assert decision.allowed
    charge = d.charge(request_id, reservation_id=decision.reservation_id, cost_nanos=5)
    assert charge.entry.user_id == user_id and charge.entry.request_id == request_id


@pytest.mark.parametrize(
    "weird",
    [
        "Robert'); DROP TABLE customers;--",
        "客户-ü-🙂",
        "' OR '1'='1",
        '"; DELETE FROM ledger_entries; --',
        "100%_match\\",
        "  spaced  ",
    ],
)
def test_odd_ids_are_stored_verbatim(d: Domain, weird: str) -> None:
    d.own("bystander", None)
    decision = d.authorize(weird, model=MINI, input_tokens=1, max_output_tokens=1, request_id=weird)
    assert decision.allowed
    again = d.authorize(weird, model=MINI, input_tokens=1, max_output_tokens=1, request_id=weird)
    assert again.reservation_id == decision.reservation_id
    charge = d.charge(
        weird, customer_id=weird, reservation_id=decision.reservation_id, cost_nanos=3
    )
    assert (charge.entry.user_id, charge.entry.request_id) == (weird, weird)
    assert d.customers.get(weird).user_id == weird
    assert [e.request_id for e in d.ledger(weird)] == [weird]
    assert d.spend.summary(weird).spend_nanos == 3
    listed = {c.user_id for c in d.customers.list(1000, "").items}
    assert listed == {"bystander", weird}
    assert d.charge("other", customer_id="bystander", cost_nanos=1).entry.spend_after_nanos == 1


# -- Ledger ----------------------------------------------------------------------------------


def test_ledger_pages_newest_first(d: Domain) -> None:
    for n in range(1, 6):
        d.charge(f"r{n}", customer_id="alice", cost_nanos=n)
        d.charge(f"noise{n}", customer_id="bob", cost_nanos=100)

    first = d.spend.ledger("alice", 2, "")
    assert [e.cost_nanos for e in first.items] == [5, 4] and first.next_page_token
    second = d.spend.ledger("alice", 2, first.next_page_token)
    assert [e.cost_nanos for e in second.items] == [3, 2] and second.next_page_token
    third = d.spend.ledger("alice", 2, second.next_page_token)
    assert [e.cost_nanos for e in third.items] == [1] and third.next_page_token == ""

    everything = d.spend.ledger("alice", 0, "")  # 0 means the default page size
    assert [e.request_id for e in everything.items] == ["r5", "r4", "r3", "r2", "r1"]
    assert everything.next_page_token == ""
    ids = [e.entry_id for e in everything.items]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert [e.spend_after_nanos for e in everything.items] == [15, 10, 6, 3, 1]
    exact = d.spend.ledger("alice", 5, "")
    assert len(exact.items) == 5 and exact.next_page_token == ""
    assert d.spend.summary("alice").ledger_entry_count == 5


def test_ledger_rejects_tokens_it_did_not_issue(d: Domain) -> None:
    d.charge("r", customer_id="alice", cost_nanos=1)
    for token in ["garbage", "!!!", encode_token("a-user-id"), encode_token(True), "eyJ4IjoxfQ"]:
        with pytest.raises(InvalidArgument) as error:
            d.spend.ledger("alice", 10, token)
        assert error.value.field == "page_token", token


def test_queries_of_an_unknown_customer_are_not_found(d: Domain) -> None:
    with pytest.raises(NotFound, match="ghost"):
        d.spend.ledger("ghost", 10, "")
    with pytest.raises(NotFound, match="ghost"):
        d.spend.summary("ghost")


def test_spend_equals_the_ledger_after_a_mixed_sequence(d: Domain) -> None:
    d.own("alice", 50_000_000)
    a = d.authorize("alice", model=MINI, input_tokens=1000, max_output_tokens=200, request_id="a")
    b = d.authorize("alice", model=MINI, input_characters=3000, max_output_tokens=100)
    c = d.authorize("alice", estimated_cost_nanos=7777)
    e = d.authorize("alice", estimated_cost_nanos=1234)
    d.charge("ra", reservation_id=a.reservation_id, model=MINI, usage=TokenUsage(900, 150, 300))
    d.charge("ra", reservation_id=a.reservation_id, model=MINI, usage=TokenUsage(900, 150, 300))
    d.release(b.reservation_id)
    d.release(b.reservation_id)
    d.charge("direct", customer_id="alice", model=MINI, usage=TokenUsage(10, 10))
    with pytest.raises(FailedPrecondition):
        d.charge("twice", reservation_id=a.reservation_id, cost_nanos=1)
    d.clock.advance(TTL_S + 1)
    d.spend.expire_due()
    d.charge("rc", reservation_id=c.reservation_id, cost_nanos=8000)  # more than estimated
    f = d.authorize("alice", estimated_cost_nanos=10, request_id="f")
    d.authorize("alice", estimated_cost_nanos=10, request_id="f")
    d.charge("re", reservation_id=e.reservation_id, cost_nanos=0)
    d.charge("zero", customer_id="alice", cost_nanos=0)

    spend, reserved = d.balance("alice")
    assert spend == mini_cost(900, 150, 300) + mini_cost(10, 10) + 8000
    assert reserved == f.held_nanos == 10
    d.check_books("alice")
    assert len(d.ledger("alice")) == 5


# -- Property: random interleavings keep the books ----------------------------------------------


def test_random_interleavings_keep_the_books(sqlite_url: str) -> None:
    db = Database.connect(sqlite_url, pool_size=4)
    migrate.upgrade(db)
    clock = ManualClock()
    domain = make_domain(db, clock)
    try:

        class Bound(BooksMachine):
            d = domain

        run_state_machine_as_test(
            Bound,
            settings=hypothesis_settings(
                max_examples=30,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        db.dispose()


class BooksMachine(RuleBasedStateMachine):
    """One fresh customer per example, so examples share the database without interfering."""

    holds = Bundle("holds")

    d: Domain  # set by a subclass bound to the test's database

    def __init__(self) -> None:
        super().__init__()
        self.user = f"prop-{uuid.uuid4()}"
        self.max_budget = 0
        self.estimates: dict[str, int] = {}
        self.settled: set[str] = set()
        # Charging more than estimated, or charging a hold after it expired (never lose a charge)
        # may legitimately push spend past the budget; the cap holds only without them.
        self.may_overspend = False

    @initialize(max_budget=st.integers(0, 5_000))
    def create(self, max_budget: int) -> None:
        self.max_budget = max_budget
        self.d.own(self.user, max_budget)

    @rule(target=holds, estimate=st.integers(0, 1_500), request=st.sampled_from(["", "x", "y"]))
    def authorize(self, estimate: int, request: str) -> str:
        spend, reserved = self.d.balance(self.user)
        decision = self.d.authorize(self.user, estimated_cost_nanos=estimate, request_id=request)
        if decision.allowed and decision.reservation_id in self.estimates:
            assert request  # only a retry returns a known reservation
            return decision.reservation_id
        if decision.allowed:
            assert self.max_budget > 0
            assert decision.held_nanos == estimate
            assert decision.reservation_id is not None
            self.estimates[decision.reservation_id] = estimate
            return decision.reservation_id
        assert decision.denial_reason is DenialReason.BUDGET_EXCEEDED
        # Denied only when the estimate did not fit (expired holds may have freed room since),
        # or always when max_budget is 0.
        assert self.max_budget == 0 or spend + reserved + estimate > self.max_budget
        return ""

    @rule(hold=holds, fraction=st.sampled_from([0, 1, 2, 3, 4]), over=st.booleans())
    def settle(self, hold: str, fraction: int, over: bool) -> None:
        if not hold:
            return
        estimate = self.estimates[hold]
        cost = estimate * fraction // 4 + (7 if over else 0)
        request_id = f"{self.user}/{hold}"
        before = self.d.open_total(self.user)
        try:
            self.d.charge(request_id, reservation_id=hold, cost_nanos=cost)
        except FailedPrecondition:
            assert hold in self.settled
            return
        if hold in self.settled:
            return  # a replay of the same request_id
        self.settled.add(hold)
        if over:
            self.may_overspend = True
        if self.d.open_total(self.user) == before:
            self.may_overspend = True  # it had expired or been released: charged outside budget

    @rule(hold=consumes(holds))
    def release(self, hold: str) -> None:
        if hold:
            released = self.d.release(hold)
            assert released in (0, self.estimates[hold])

    @rule(seconds=st.sampled_from([1.0, TTL_S / 2, TTL_S + 1]), sweep=st.booleans())
    def advance(self, seconds: float, sweep: bool) -> None:
        self.d.clock.advance(seconds)
        if sweep:
            self.d.spend.expire_due()

    @invariant()
    def books_balance(self) -> None:
        customer = self.d.customers.get(self.user)
        spend, reserved = customer.spend_nanos, customer.reserved_nanos
        assert spend == sum(e.cost_nanos for e in self.d.ledger(self.user))
        assert reserved == self.d.open_total(self.user)
        assert reserved >= 0
        if not self.may_overspend:
            assert spend + reserved <= self.max_budget
