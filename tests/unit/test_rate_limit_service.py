"""budgetd's rate limit service: the pure answers, the domain on a real database, and the
ShouldRateLimit servicer in-process (no Envoy)."""

from __future__ import annotations

import json
from typing import NoReturn

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from budgetd.api.server import ENVOY_SERVICE_NAMES, envoy_registrations
from budgetd.app import build
from budgetd.clock import ManualClock
from budgetd.domain.accounts import Account
from budgetd.domain.admission import RateUsage
from budgetd.domain.budgets import BudgetService
from budgetd.domain.customers import CustomerService, NewCustomer
from budgetd.domain.rate_limits import (
    Allowance,
    RateLimitService,
    budget_allowance,
    rate_reset_after_us,
    token_allowance,
)
from budgetd.domain.records import BudgetLimits, DenialReason
from budgetd.domain.spend import CallEstimate, SpendPolicy, SpendService
from budgetd.envoy import ratelimit
from budgetd.envoy.ratelimit import (
    RateLimitOptions,
    RateLimitServicer,
    customer_of,
    descriptor_status,
    hits_of,
)
from budgetd.errors import FailedPrecondition, InvalidArgument, Unavailable
from budgetd.pricing import PriceTable
from budgetd.settings import Settings
from budgetd.store.database import Database

US = 1_000_000
USD = 1_000_000_000
OK = rls_pb2.RateLimitResponse.OK
OVER = rls_pb2.RateLimitResponse.OVER_LIMIT
NOW = ManualClock().now_us()  # on a second boundary


# -- pure parts --------------------------------------------------------------------------------


def account(**limits: object) -> Account:
    blocked = bool(limits.pop("blocked", False))
    spend = int(limits.pop("spend", 0))  # type: ignore[call-overload]
    window_end = limits.pop("window_end_us", None)
    return Account(
        customer_pk=1,
        user_id="alice",
        blocked=blocked,
        spend_nanos=spend,
        reserved_nanos=0,
        open_holds=0,
        window_start_us=None,
        window_end_us=window_end,  # type: ignore[arg-type]
        window_anchor_us=None,
        soft_alert_window_us=None,
        allowed_model_region=None,
        default_model=None,
        limits=BudgetLimits(**limits),  # type: ignore[arg-type]
    )


def test_a_check_is_over_when_nothing_is_left_a_charge_when_it_went_beyond() -> None:
    full = RateUsage(requests=0, tokens=100, oldest_second=NOW // US)
    beyond = RateUsage(requests=0, tokens=101, oldest_second=NOW // US)
    limited = account(tpm_limit=100)

    assert token_allowance(limited, full, 0, NOW).over
    assert not token_allowance(limited, full, 40, NOW).over  # the charge landed on the limit
    assert token_allowance(limited, beyond, 40, NOW).over
    assert token_allowance(limited, beyond, 40, NOW).remaining == 0
    assert not token_allowance(limited, RateUsage(0, 99, NOW // US), 0, NOW).over


def test_without_a_tpm_limit_there_is_no_limit_and_nothing_charged() -> None:
    answer = token_allowance(account(), RateUsage(0, 0, None), 50, NOW)

    assert answer == Allowance("alice", over=False, limit=None, used=0)
    assert answer.remaining is None


def test_a_blocked_customer_is_always_over() -> None:
    assert token_allowance(account(blocked=True), RateUsage(0, 0, None), 0, NOW).over
    assert budget_allowance(account(blocked=True), 0, NOW).over


def test_the_window_resets_when_its_oldest_second_leaves_it() -> None:
    second = NOW // US
    assert rate_reset_after_us(RateUsage(1, 5, second), NOW) == 61 * US
    assert rate_reset_after_us(RateUsage(1, 5, second), NOW + 60 * US + 1) == US - 1
    # Never zero or negative: a hint to come back, not "now".
    assert rate_reset_after_us(RateUsage(1, 5, second - 61), NOW) == 1000
    assert rate_reset_after_us(RateUsage(0, 0, None), NOW) is None


def test_a_budget_of_zero_refuses_every_check() -> None:
    assert budget_allowance(account(max_budget_nanos=0), 0, NOW).over
    assert not budget_allowance(account(max_budget_nanos=10, spend=9), 0, NOW).over
    assert budget_allowance(account(max_budget_nanos=10, spend=10), 0, NOW).over
    assert not budget_allowance(account(max_budget_nanos=10, spend=10), 3, NOW).over
    assert budget_allowance(account(max_budget_nanos=10, spend=11), 3, NOW).over
    assert not budget_allowance(account(), 0, NOW).over


def test_the_budget_resets_when_its_window_ends() -> None:
    windowed = account(max_budget_nanos=10, window_end_us=NOW + 90 * US)
    assert budget_allowance(windowed, 0, NOW).reset_after_us == 90 * US
    assert budget_allowance(account(max_budget_nanos=10), 0, NOW).reset_after_us is None


def descriptor(
    *entries: tuple[str, str], hits: int | None = None
) -> ratelimit_pb2.RateLimitDescriptor:
    d = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries]
    )
    if hits is not None:
        d.hits_addend.value = hits
    return d


def test_the_customer_is_the_first_configured_key_found() -> None:
    d = descriptor(("model", "m"), ("generic_key", "g"), ("customer_id", "alice"))

    assert customer_of(d, ("customer_id",)) == "alice"
    assert customer_of(d, ("user", "generic_key", "customer_id")) == "g"
    assert customer_of(d, ("user",)) is None
    assert customer_of(descriptor(("customer_id", "")), ("customer_id",)) is None


def test_a_descriptors_own_addend_wins_over_the_requests() -> None:
    request = rls_pb2.RateLimitRequest(hits_addend=7)

    assert hits_of(descriptor(("customer_id", "a"), hits=0), request) == 0
    assert hits_of(descriptor(("customer_id", "a"), hits=30), request) == 30
    assert hits_of(descriptor(("customer_id", "a")), request) == 7
    # Not set at all: 0, check only (the protocol's "1" is not a charge budgetd would make).
    assert hits_of(descriptor(("customer_id", "a")), rls_pb2.RateLimitRequest()) == 0


def test_a_status_reports_the_tpm_limit_per_minute_and_caps_at_uint32() -> None:
    tokens = descriptor_status(
        Allowance("a", over=False, limit=100, used=30, reset_after_us=1_500_000), "tokens"
    )
    assert tokens.code == OK
    assert tokens.current_limit.requests_per_unit == 100
    assert tokens.current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.MINUTE
    assert tokens.limit_remaining == 70
    assert (tokens.duration_until_reset.seconds, tokens.duration_until_reset.nanos) == (
        1,
        500_000_000,
    )

    money = descriptor_status(Allowance("a", over=False, limit=10 * USD, used=0), "nanos")
    assert not money.HasField("current_limit")  # a budget is not a rate per unit of time
    assert money.limit_remaining == 2**32 - 1
    assert not money.HasField("duration_until_reset")


# -- the domain and the servicer on a real database ------------------------------------------


class Aborted(Exception):
    """What the stand-in context raises on abort, as grpc's does."""


class Context:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def abort(self, code: grpc.StatusCode, detail: str) -> NoReturn:
        self.aborted = (code, detail)
        raise Aborted(detail)


class Rig:
    """The domain as budgetd.app.build wires it, and a servicer in each unit."""

    def __init__(self, db: Database, clock: ManualClock, policy: SpendPolicy) -> None:
        self.db = db
        self.clock = clock
        self.customers = CustomerService(db, clock)
        self.budgets = BudgetService(db, clock)
        self.spend = SpendService(db, PriceTable(), clock, policy)
        self.limits = RateLimitService(db, clock, self.spend, policy)
        self.tokens = RateLimitServicer(self.limits, RateLimitOptions())
        self.nanos = RateLimitServicer(self.limits, RateLimitOptions(unit="nanos"))

    def customer(self, user_id: str, **limits: object) -> str:
        blocked = bool(limits.pop("blocked", False))
        self.customers.create(
            NewCustomer(user_id, blocked=blocked, limits=BudgetLimits(**limits))  # type: ignore[arg-type]
        )
        return user_id

    def ask(
        self,
        *descriptors: ratelimit_pb2.RateLimitDescriptor,
        unit: str = "tokens",
        hits_addend: int = 0,
    ) -> rls_pb2.RateLimitResponse:
        servicer = self.nanos if unit == "nanos" else self.tokens
        request = rls_pb2.RateLimitRequest(
            domain="budgetd", descriptors=list(descriptors), hits_addend=hits_addend
        )
        return servicer.ShouldRateLimit(request, Context())  # type: ignore[arg-type]


@pytest.fixture
def rig(db: Database, clock: ManualClock) -> Rig:
    return Rig(db, clock, SpendPolicy())


def customer(user_id: str, hits: int | None = 0) -> ratelimit_pb2.RateLimitDescriptor:
    return descriptor(("customer_id", user_id), hits=hits)


def error_of(response: rls_pb2.RateLimitResponse) -> dict[str, object]:
    headers = {h.key: h.value for h in response.response_headers_to_add}
    assert headers["content-type"] == "application/json"
    return dict(json.loads(response.raw_body)["error"])


def test_tokens_charged_fill_the_window_until_checks_are_refused(rig: Rig) -> None:
    rig.customer("alice", tpm_limit=100)

    first = rig.ask(customer("alice"))
    assert first.overall_code == OK
    assert first.statuses[0].limit_remaining == 100
    assert first.statuses[0].current_limit.requests_per_unit == 100
    assert not first.statuses[0].HasField("duration_until_reset")  # nothing counted yet
    assert not first.raw_body

    assert rig.ask(customer("alice", 60)).statuses[0].limit_remaining == 40
    rig.clock.advance(10)
    charged = rig.ask(customer("alice", 50))  # after the fact: counted, even beyond the limit
    assert charged.overall_code == OVER
    assert charged.statuses[0].limit_remaining == 0
    assert dict(charged.dynamic_metadata) == {
        "customer_id": "alice",
        "unit": "tokens",
        "remaining": "0",
        "charged": "50",
    }

    refused = rig.ask(customer("alice"))
    assert refused.overall_code == OVER
    assert refused.statuses[0].duration_until_reset.seconds == 51  # the first charge's second
    error = error_of(refused)
    assert (error["type"], error["code"]) == ("rate_limit_exceeded", "rate_limit_exceeded")
    assert "used 110 tokens" in str(error["message"])
    assert {h.key: h.value for h in refused.response_headers_to_add}["retry-after"] == "51"

    rig.clock.advance(51)  # the 60 tokens leave the window, the 50 stay
    assert rig.ask(customer("alice")).statuses[0].limit_remaining == 50
    rig.clock.advance(10)
    assert rig.ask(customer("alice")).statuses[0].limit_remaining == 100


def test_tokens_charged_here_count_against_authorize_too(rig: Rig) -> None:
    rig.customer("alice", tpm_limit=100)
    rig.ask(customer("alice", 95))

    decision = rig.spend.authorize(
        CallEstimate(customer_id="alice", estimated_cost_nanos=1, input_tokens=10)
    )

    assert decision.denial_reason is DenialReason.RATE_LIMITED


def test_the_request_level_addend_charges_descriptors_without_their_own(rig: Rig) -> None:
    rig.customer("alice", tpm_limit=100)

    rig.ask(customer("alice", hits=None), hits_addend=30)

    assert rig.ask(customer("alice")).statuses[0].limit_remaining == 70


def test_a_customer_without_a_tpm_limit_is_ok_and_its_tokens_are_not_counted(rig: Rig) -> None:
    rig.customer("bob", max_budget_nanos=USD)

    response = rig.ask(customer("bob", 500))

    assert response.overall_code == OK
    assert not response.statuses[0].HasField("current_limit")
    assert "remaining" not in response.dynamic_metadata


def test_descriptors_are_answered_in_order_and_any_over_refuses_the_call(rig: Rig) -> None:
    rig.customer("alice", tpm_limit=10)
    rig.customer("bob", tpm_limit=10)
    rig.ask(customer("bob", 10))

    response = rig.ask(descriptor(("path", "/v1")), customer("alice"), customer("bob"))

    assert [s.code for s in response.statuses] == [OK, OK, OVER]
    assert response.overall_code == OVER
    assert "'bob'" in str(error_of(response)["message"])
    assert rig.ask(descriptor(("path", "/v1"))).overall_code == OK


def test_unknown_customers_are_created_on_the_default_tier(
    db: Database, clock: ManualClock
) -> None:
    rig = Rig(db, clock, SpendPolicy(default_budget_id="free"))
    rig.budgets.create("free", BudgetLimits(tpm_limit=20))

    rig.ask(customer("newcomer", 25))

    assert rig.customers.get("newcomer").budget_id == "free"
    assert rig.ask(customer("newcomer")).overall_code == OVER


def test_a_missing_default_tier_is_an_error_not_a_free_pass(
    db: Database, clock: ManualClock
) -> None:
    rig = Rig(db, clock, SpendPolicy(default_budget_id="missing"))

    with pytest.raises(FailedPrecondition):
        rig.limits.tokens("newcomer", 0)
    context = Context()
    with pytest.raises(Aborted):
        rig.tokens.ShouldRateLimit(
            rls_pb2.RateLimitRequest(descriptors=[customer("newcomer")]),
            context,  # type: ignore[arg-type]
        )
    assert context.aborted is not None
    assert context.aborted[0] is grpc.StatusCode.FAILED_PRECONDITION


def test_a_blocked_customer_is_refused(rig: Rig) -> None:
    rig.customer("eve", blocked=True)

    response = rig.ask(customer("eve"))

    assert response.overall_code == OVER
    assert error_of(response)["code"] == "customer_blocked"


def test_an_unusable_customer_id_or_addend_is_refused_not_passed(rig: Rig) -> None:
    response = rig.ask(customer("bad\x00id"))
    assert response.overall_code == OVER
    assert error_of(response)["code"] == "invalid_argument"

    rig.customer("alice", tpm_limit=100)
    assert rig.ask(customer("alice", 2_000_000_000)).overall_code == OVER
    assert rig.ask(customer("alice")).statuses[0].limit_remaining == 100
    with pytest.raises(InvalidArgument):
        rig.limits.tokens("x" * 300, 0)


def test_a_budget_charge_is_a_ledger_entry_and_a_check_asks_for_budget_left(rig: Rig) -> None:
    rig.customer("alice", max_budget_nanos=10 * USD, budget_duration="1d")

    check = rig.ask(customer("alice"), unit="nanos")
    assert check.overall_code == OK
    assert check.statuses[0].limit_remaining == 2**32 - 1
    assert check.dynamic_metadata["remaining"] == str(10 * USD)
    assert check.statuses[0].duration_until_reset.seconds == 86_400

    charge = rig.ask(customer("alice", 4 * USD), unit="nanos")
    assert charge.overall_code == OK
    assert charge.dynamic_metadata["remaining"] == str(6 * USD)
    [entry] = rig.spend.ledger("alice", 10, "").items
    assert entry.cost_nanos == 4 * USD
    assert entry.request_id.startswith("envoy-ratelimit-")
    assert rig.spend.summary("alice").spend_nanos == 4 * USD

    over = rig.ask(customer("alice", 7 * USD), unit="nanos")
    assert over.overall_code == OVER  # charged all the same: the money was spent
    assert rig.spend.summary("alice").spend_nanos == 11 * USD
    refused = rig.ask(customer("alice"), unit="nanos")
    assert refused.overall_code == OVER
    assert error_of(refused)["code"] == "budget_exceeded"

    rig.clock.advance(86_400)  # a new day: a new window, nothing spent
    assert rig.ask(customer("alice"), unit="nanos").overall_code == OK


def test_a_budget_check_of_an_unlimited_customer_is_ok(rig: Rig) -> None:
    rig.customer("bob")

    response = rig.ask(customer("bob"), unit="nanos")

    assert response.overall_code == OK
    assert not response.statuses[0].HasField("current_limit")
    assert rig.ask(customer("stranger"), unit="nanos").overall_code == OK


class Down:
    """A rate limit domain whose store is unreachable."""

    def tokens(self, customer_id: str, hits: int) -> Allowance:
        raise Unavailable("store unavailable: connection refused")

    budget = tokens


def test_a_store_failure_is_an_rpc_error_for_envoys_failure_mode() -> None:
    servicer = RateLimitServicer(Down(), RateLimitOptions())  # type: ignore[arg-type]
    context = Context()

    with pytest.raises(Aborted):
        servicer.ShouldRateLimit(
            rls_pb2.RateLimitRequest(descriptors=[customer("alice")]),
            context,  # type: ignore[arg-type]
        )

    assert context.aborted is not None
    assert context.aborted[0] is grpc.StatusCode.UNAVAILABLE


def test_options_and_registration_come_from_settings(sqlite_url: str) -> None:
    settings = Settings(
        database_url=sqlite_url,
        ratelimit_unit="nanos",
        ratelimit_descriptor_keys=" user , customer_id ,",
    )
    options = RateLimitOptions.from_settings(settings)
    assert options == RateLimitOptions(descriptor_keys=("user", "customer_id"), unit="nanos")

    assert ratelimit.DESCRIPTOR.full_name in ENVOY_SERVICE_NAMES
    app = build(settings)
    try:
        names = [reg.descriptor.full_name for reg in envoy_registrations(app, settings)]
    finally:
        app.db.dispose()
    assert "envoy.service.ratelimit.v3.RateLimitService" in names
