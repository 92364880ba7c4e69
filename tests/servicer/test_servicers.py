"""The gRPC servicers in-process (grpc_testing): auth, status mapping, field masks, presence."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import grpc_testing  # type: ignore[import-untyped]
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from budgetd.api.auth import AdminAuth
from budgetd.api.server import BUDGETS, CUSTOMERS, SPEND, registrations
from budgetd.api.spend_servicer import ADMIN_METHODS as SPEND_ADMIN_METHODS
from budgetd.app import Budgetd
from budgetd.clock import ManualClock
from budgetd.domain.audit import AuditService
from budgetd.domain.budgets import BudgetService
from budgetd.domain.customers import CustomerService
from budgetd.domain.rate_limits import RateLimitService
from budgetd.domain.spend import SpendService
from budgetd.money import MAX_NANOS
from budgetd.pricing import PriceTable
from budgetd.store import migrate
from budgetd.store.database import Database
from budgetd.v1 import budget_service_pb2 as budget_pb
from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb

TOKEN = "tok"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
OK = grpc.StatusCode.OK
METHODS = {
    method.name: method for service in (SPEND, CUSTOMERS, BUDGETS) for method in service.methods
}


@dataclass(frozen=True)
class Result:
    response: Any
    code: grpc.StatusCode
    details: str


class Client:
    """Calls a grpc_testing server the way a gateway or an operator would."""

    def __init__(self, server: grpc_testing.Server) -> None:
        self._server = server

    def call(
        self, method: str, request: Message, metadata: tuple[tuple[str, str], ...] = AUTH
    ) -> Result:
        rpc = self._server.invoke_unary_unary(METHODS[method], metadata, request, None)
        response, _trailing, code, details = rpc.termination()
        return Result(response, code, details or "")

    def ok(self, method: str, request: Message, **kwargs: Any) -> Any:
        result = self.call(method, request, **kwargs)
        assert result.code is OK, f"{method}: {result.code.name}: {result.details}"
        return result.response

    # Shorthands for the setup of a test.

    def tier(self, budget_id: str, **limits: Any) -> res.Budget:
        budget = res.Budget(budget_id=budget_id, limits=res.BudgetLimits(**limits))
        created: res.Budget = self.ok(
            "CreateBudget", budget_pb.CreateBudgetRequest(budget=budget)
        ).budget
        return created

    def customer(self, user_id: str, **fields: Any) -> res.Customer:
        customer = res.Customer(user_id=user_id, **fields)
        request = customer_pb.CreateCustomerRequest(customer=customer)
        created: res.Customer = self.ok("CreateCustomer", request).customer
        return created

    def authorize(self, customer_id: str, **fields: Any) -> spend_pb.AuthorizeResponse:
        request = spend_pb.AuthorizeRequest(customer_id=customer_id, **fields)
        decision: spend_pb.AuthorizeResponse = self.ok("Authorize", request, metadata=())
        return decision


def build_app(db: Database, clock: ManualClock) -> Budgetd:
    # As budgetd.app.build wires it, with the test's database and clock.
    spend = SpendService(db, PriceTable(), clock)
    return Budgetd(
        db=db,
        customers=CustomerService(db, clock),
        budgets=BudgetService(db, clock),
        spend=spend,
        rate_limits=RateLimitService(db, clock, spend),
        audit=AuditService(db),
    )


def make_server(app: Budgetd, auth: AdminAuth) -> grpc_testing.Server:
    regs = registrations(app, auth)
    return grpc_testing.server_from_dictionary(
        {reg.descriptor: reg.servicer for reg in regs}, grpc_testing.strict_real_time()
    )


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    db = Database.connect(sqlite_url, pool_size=4)
    migrate.upgrade(db)
    yield db
    db.dispose()


@pytest.fixture
def app(sqlite_db: Database, clock: ManualClock) -> Budgetd:
    return build_app(sqlite_db, clock)


@pytest.fixture
def client(app: Budgetd) -> Client:
    return Client(make_server(app, AdminAuth(TOKEN)))


# -- Authentication --------------------------------------------------------------------------


def _own(max_budget: int) -> res.BudgetLimits:
    return res.BudgetLimits(max_budget_nanos=max_budget)


def _mask(*paths: str) -> FieldMask:
    return FieldMask(paths=list(paths))


# A valid request for every method that needs the admin token, against the setup below.
ADMIN_REQUESTS: dict[str, Callable[[], Message]] = {
    "CreateCustomer": lambda: customer_pb.CreateCustomerRequest(
        customer=res.Customer(user_id="newcomer")
    ),
    "GetCustomer": lambda: customer_pb.GetCustomerRequest(user_id="alice"),
    "UpdateCustomer": lambda: customer_pb.UpdateCustomerRequest(
        customer=res.Customer(user_id="alice", alias="Alice"), update_mask=_mask("alias")
    ),
    "DeleteCustomer": lambda: customer_pb.DeleteCustomerRequest(user_id="doomed"),
    "BatchDeleteCustomers": lambda: customer_pb.BatchDeleteCustomersRequest(
        user_ids=["doomed", "doomed-too"]
    ),
    "ListCustomers": lambda: customer_pb.ListCustomersRequest(),
    "BlockCustomers": lambda: customer_pb.BlockCustomersRequest(user_ids=["alice"]),
    "UnblockCustomers": lambda: customer_pb.UnblockCustomersRequest(user_ids=["alice"]),
    "CreateBudget": lambda: budget_pb.CreateBudgetRequest(budget=res.Budget(budget_id="new-tier")),
    "GetBudget": lambda: budget_pb.GetBudgetRequest(budget_id="gold"),
    "UpdateBudget": lambda: budget_pb.UpdateBudgetRequest(
        budget=res.Budget(budget_id="gold", limits=_own(5)),
        update_mask=_mask("limits.max_budget_nanos"),
    ),
    "DeleteBudget": lambda: budget_pb.DeleteBudgetRequest(budget_id="spare"),
    "ListBudgets": lambda: budget_pb.ListBudgetsRequest(),
    "GetSpend": lambda: spend_pb.GetSpendRequest(customer_id="alice"),
    "ListLedgerEntries": lambda: spend_pb.ListLedgerEntriesRequest(customer_id="alice"),
}


def _seed(client: Client) -> None:
    client.tier("gold", max_budget_nanos=1_000)
    client.tier("spare")
    client.customer("alice", limits=_own(10_000))
    client.customer("bob", budget_id="gold")
    client.customer("doomed")
    client.customer("doomed-too")


def test_every_management_rpc_is_listed_here() -> None:
    management = {m.name for m in CUSTOMERS.methods} | {m.name for m in BUDGETS.methods}
    assert set(ADMIN_REQUESTS) == management | SPEND_ADMIN_METHODS
    assert sorted(SPEND_ADMIN_METHODS) == ["GetSpend", "ListLedgerEntries"]


@pytest.mark.parametrize("method", sorted(ADMIN_REQUESTS))
def test_management_rpcs_need_the_admin_token(client: Client, method: str) -> None:
    _seed(client)
    request = ADMIN_REQUESTS[method]()
    for metadata in [
        (),
        (("authorization", "Bearer wrong"),),
        (("authorization", TOKEN),),  # no "Bearer " scheme
        (("authorization", f"Bearer {TOKEN}x"),),
        (("authorization", f"bearer {TOKEN}"),),
        (("x-api-key", TOKEN),),
    ]:
        result = client.call(method, request, metadata=metadata)
        assert result.code is grpc.StatusCode.UNAUTHENTICATED, metadata
        assert "admin token" in result.details
    # Nothing was done by the refused calls: the real one still succeeds (creates, deletes...).
    result = client.call(method, request)
    assert result.code is OK, result.details


def test_the_token_may_come_with_other_metadata(client: Client) -> None:
    metadata = (("x-request-id", "abc"), ("authorization", f"Bearer {TOKEN}"))
    assert client.call("ListBudgets", budget_pb.ListBudgetsRequest(), metadata=metadata).code is OK


def test_the_hot_path_needs_no_token(client: Client) -> None:
    decision = client.authorize("alice", estimated_cost_nanos=100, request_id="call-1")
    assert decision.allowed
    charge = client.ok(
        "RecordSpend",
        spend_pb.RecordSpendRequest(
            request_id="rec-1", reservation_id=decision.reservation_id, cost_nanos=60
        ),
        metadata=(),
    )
    assert charge.charged_nanos == 60
    other = client.authorize("alice", estimated_cost_nanos=40)
    released = client.ok(
        "ReleaseReservation",
        spend_pb.ReleaseReservationRequest(reservation_id=other.reservation_id),
        metadata=(("authorization", "Bearer wrong"),),  # a bad token does not matter here
    )
    assert released.released_nanos == 40


def test_without_a_configured_token_everyone_is_admitted(app: Budgetd) -> None:
    client = Client(make_server(app, AdminAuth(None)))
    created = client.ok(
        "CreateBudget", budget_pb.CreateBudgetRequest(budget=res.Budget(budget_id="t")), metadata=()
    )
    assert created.budget.budget_id == "t"


# -- Status mapping --------------------------------------------------------------------------


def test_domain_errors_map_to_status_codes_naming_the_field(client: Client) -> None:
    _seed(client)
    hold = client.authorize("alice", estimated_cost_nanos=10)
    client.ok(
        "RecordSpend",
        spend_pb.RecordSpendRequest(
            request_id="first", reservation_id=hold.reservation_id, cost_nanos=5
        ),
    )
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    not_found = grpc.StatusCode.NOT_FOUND
    exists = grpc.StatusCode.ALREADY_EXISTS
    precondition = grpc.StatusCode.FAILED_PRECONDITION
    cases: list[tuple[str, Message, grpc.StatusCode, str]] = [
        ("Authorize", spend_pb.AuthorizeRequest(estimated_cost_nanos=1), invalid, "customer_id"),
        (
            "Authorize",
            spend_pb.AuthorizeRequest(customer_id="a", model="gpt-4o-mini", input_tokens=-1),
            invalid,
            "input_tokens",
        ),
        (
            "Authorize",
            spend_pb.AuthorizeRequest(customer_id="a", estimated_cost_nanos=-1),
            invalid,
            "estimated_cost_nanos",
        ),
        ("Authorize", spend_pb.AuthorizeRequest(customer_id="a"), invalid, "model"),
        (
            "Authorize",
            spend_pb.AuthorizeRequest(customer_id="a", model="no-such-model-v9"),
            precondition,
            "no-such-model-v9",
        ),
        (
            "RecordSpend",
            spend_pb.RecordSpendRequest(customer_id="alice", cost_nanos=1),
            invalid,
            "request_id",
        ),
        (
            "RecordSpend",
            spend_pb.RecordSpendRequest(
                request_id="r",
                customer_id="alice",
                model="gpt-4o-mini",
                usage=spend_pb.Usage(input_tokens=-3),
            ),
            invalid,
            "usage.input_tokens",
        ),
        (
            "RecordSpend",
            spend_pb.RecordSpendRequest(
                request_id="r",
                customer_id="alice",
                model="gpt-4o-mini",
                usage=spend_pb.Usage(input_tokens=1, cached_input_tokens=2),
            ),
            invalid,
            "usage.cached_input_tokens",
        ),
        (
            "RecordSpend",
            spend_pb.RecordSpendRequest(request_id="r", customer_id="alice", cost_nanos=-1),
            invalid,
            "cost_nanos",
        ),
        (
            "RecordSpend",
            spend_pb.RecordSpendRequest(request_id="r", reservation_id="nope", cost_nanos=1),
            not_found,
            "nope",
        ),
        (
            "RecordSpend",
            spend_pb.RecordSpendRequest(
                request_id="second", reservation_id=hold.reservation_id, cost_nanos=1
            ),
            precondition,
            "already settled",
        ),
        ("ReleaseReservation", spend_pb.ReleaseReservationRequest(), invalid, "reservation_id"),
        (
            "ReleaseReservation",
            spend_pb.ReleaseReservationRequest(reservation_id="nope"),
            not_found,
            "nope",
        ),
        ("GetSpend", spend_pb.GetSpendRequest(customer_id="ghost"), not_found, "ghost"),
        ("GetSpend", spend_pb.GetSpendRequest(), invalid, "customer_id"),
        (
            "ListLedgerEntries",
            spend_pb.ListLedgerEntriesRequest(customer_id="alice", page_token="junk"),
            invalid,
            "page_token",
        ),
        (
            "ListLedgerEntries",
            spend_pb.ListLedgerEntriesRequest(customer_id="alice", page_size=1001),
            invalid,
            "page_size",
        ),
        (
            "CreateCustomer",
            customer_pb.CreateCustomerRequest(customer=res.Customer()),
            invalid,
            "customer.user_id",
        ),
        (
            "CreateCustomer",
            customer_pb.CreateCustomerRequest(
                customer=res.Customer(user_id="x", budget_id="gold", limits=_own(1))
            ),
            invalid,
            "customer.limits",
        ),
        (
            "CreateCustomer",
            customer_pb.CreateCustomerRequest(customer=res.Customer(user_id="x", limits=_own(-1))),
            invalid,
            "customer.limits.max_budget_nanos",
        ),
        (
            "CreateCustomer",
            customer_pb.CreateCustomerRequest(
                customer=res.Customer(user_id="x", allowed_model_region="mars")
            ),
            invalid,
            "customer.allowed_model_region",
        ),
        (
            "CreateCustomer",
            customer_pb.CreateCustomerRequest(customer=res.Customer(user_id="x", budget_id="tin")),
            not_found,
            "tin",
        ),
        (
            "CreateCustomer",
            customer_pb.CreateCustomerRequest(customer=res.Customer(user_id="alice")),
            exists,
            "alice",
        ),
        ("GetCustomer", customer_pb.GetCustomerRequest(user_id="ghost"), not_found, "ghost"),
        ("GetCustomer", customer_pb.GetCustomerRequest(user_id="a\x00b"), invalid, "user_id"),
        ("DeleteCustomer", customer_pb.DeleteCustomerRequest(user_id="ghost"), not_found, "ghost"),
        (
            "BatchDeleteCustomers",
            customer_pb.BatchDeleteCustomersRequest(user_ids=["alice", "ghost"]),
            not_found,
            "ghost",
        ),
        ("BlockCustomers", customer_pb.BlockCustomersRequest(), invalid, "user_ids"),
        (
            "UnblockCustomers",
            customer_pb.UnblockCustomersRequest(user_ids=["alice", ""]),
            invalid,
            "user_ids[1]",
        ),
        (
            "ListCustomers",
            customer_pb.ListCustomersRequest(page_size=-1),
            invalid,
            "page_size",
        ),
        (
            "CreateBudget",
            budget_pb.CreateBudgetRequest(budget=res.Budget(budget_id="gold")),
            exists,
            "gold",
        ),
        (
            "CreateBudget",
            budget_pb.CreateBudgetRequest(budget=res.Budget()),
            invalid,
            "budget.budget_id",
        ),
        (
            "CreateBudget",
            budget_pb.CreateBudgetRequest(
                budget=res.Budget(budget_id="x", limits=res.BudgetLimits(budget_duration="1y"))
            ),
            invalid,
            "budget.limits.budget_duration",
        ),
        ("GetBudget", budget_pb.GetBudgetRequest(budget_id="tin"), not_found, "tin"),
        (
            "UpdateBudget",
            budget_pb.UpdateBudgetRequest(budget=res.Budget(budget_id="gold")),
            invalid,
            "update_mask",
        ),
        (
            "UpdateBudget",
            budget_pb.UpdateBudgetRequest(
                budget=res.Budget(budget_id="gold"), update_mask=_mask("customer_count")
            ),
            invalid,
            "update_mask",
        ),
        (
            "UpdateBudget",
            budget_pb.UpdateBudgetRequest(
                budget=res.Budget(budget_id="tin"), update_mask=_mask("limits")
            ),
            not_found,
            "tin",
        ),
        ("DeleteBudget", budget_pb.DeleteBudgetRequest(budget_id="gold"), precondition, "gold"),
        ("DeleteBudget", budget_pb.DeleteBudgetRequest(budget_id="tin"), not_found, "tin"),
        ("ListBudgets", budget_pb.ListBudgetsRequest(page_token="junk"), invalid, "page_token"),
    ]
    wrong = []
    for method, request, code, fragment in cases:
        result = client.call(method, request)
        if result.code is not code or fragment not in result.details:
            wrong.append(f"{method}({request}): {result.code.name}: {result.details!r}")
    assert wrong == []
    # The refused calls changed nothing.
    assert client.ok("GetSpend", spend_pb.GetSpendRequest(customer_id="alice")).spend_nanos == 5
    listed = client.ok("ListCustomers", customer_pb.ListCustomersRequest()).customers
    assert [c.user_id for c in listed] == ["alice", "bob", "doomed", "doomed-too"]


def test_invalid_argument_details_start_with_the_field(client: Client) -> None:
    result = client.call("Authorize", spend_pb.AuthorizeRequest(customer_id="x" * 257), ())
    assert result.code is grpc.StatusCode.INVALID_ARGUMENT
    assert result.details.startswith("customer_id: ")


# -- Decisions -------------------------------------------------------------------------------


def test_a_denial_is_an_ok_response_with_a_reason(client: Client) -> None:
    client.customer("broke", limits=_own(0))
    denied = client.authorize("broke", model="gpt-4o-mini", input_tokens=10, max_output_tokens=10)
    assert not denied.allowed
    assert denied.denial_reason == spend_pb.DENIAL_REASON_BUDGET_EXCEEDED
    assert "budget exceeded" in denied.message
    assert denied.reservation_id == "" and denied.held_nanos == 0
    assert denied.HasField("max_budget_nanos") and denied.max_budget_nanos == 0
    assert denied.HasField("remaining_nanos") and denied.remaining_nanos == 0
    assert not denied.HasField("reservation_expire_time")
    assert not denied.HasField("retry_after")

    client.customer("mallory", blocked=True)
    blocked = client.authorize("mallory", estimated_cost_nanos=1)
    assert not blocked.allowed
    assert blocked.denial_reason == spend_pb.DENIAL_REASON_BLOCKED
    assert spend_pb.DenialReason.Name(blocked.denial_reason) == "DENIAL_REASON_BLOCKED"


def test_an_allowed_call_carries_its_reservation(client: Client, clock: ManualClock) -> None:
    client.customer("alice", limits=_own(1_000))
    allowed = client.authorize("alice", estimated_cost_nanos=300)
    assert allowed.allowed and allowed.denial_reason == spend_pb.DENIAL_REASON_UNSPECIFIED
    assert allowed.reservation_id and allowed.held_nanos == 300
    assert (allowed.spend_nanos, allowed.reserved_nanos, allowed.remaining_nanos) == (0, 300, 700)
    expected_expiry = clock.now_us() + 600 * 1_000_000
    assert allowed.reservation_expire_time.ToMicroseconds() == expected_expiry


# -- UpdateCustomer and its mask -------------------------------------------------------------


def _update(client: Client, customer: res.Customer, *paths: str) -> Result:
    request = customer_pb.UpdateCustomerRequest(customer=customer, update_mask=_mask(*paths))
    return client.call("UpdateCustomer", request)


def test_update_customer_needs_a_mask_of_known_paths(client: Client) -> None:
    before = client.customer("alice", alias="Alice", limits=_own(100))
    for paths in [(), ("nope",), ("user_id",), ("spend_nanos",), ("limits.nope",), ("limits.",)]:
        result = _update(client, res.Customer(user_id="alice", alias="changed"), *paths)
        assert result.code is grpc.StatusCode.INVALID_ARGUMENT, paths
        assert "update_mask" in result.details, paths
    after = client.ok("GetCustomer", customer_pb.GetCustomerRequest(user_id="alice")).customer
    assert after == before


def test_update_customer_changes_exactly_the_masked_fields(
    client: Client, clock: ManualClock
) -> None:
    client.customer("alice", alias="Alice", blocked=True, limits=_own(100))
    clock.advance(1)
    # Only "blocked" is named: the alias in the message is ignored, blocked=false is applied.
    result = _update(client, res.Customer(user_id="alice", alias="ignored"), "blocked")
    assert result.code is OK, result.details
    updated = result.response.customer
    assert updated.blocked is False and updated.alias == "Alice"
    assert updated.limits.max_budget_nanos == 100
    assert client.authorize("alice", estimated_cost_nanos=1).allowed

    # An unset optional under the mask clears it.
    cleared = _update(client, res.Customer(user_id="alice"), "alias").response.customer
    assert not cleared.HasField("alias")


def test_update_customer_to_a_zero_budget_then_every_call_is_denied(client: Client) -> None:
    client.customer("alice", limits=res.BudgetLimits(max_budget_nanos=5_000, rpm_limit=9))
    assert client.authorize("alice", estimated_cost_nanos=1).allowed
    result = _update(
        client, res.Customer(user_id="alice", limits=_own(0)), "limits.max_budget_nanos"
    )
    assert result.code is OK, result.details
    limits = result.response.customer.limits
    assert limits.HasField("max_budget_nanos") and limits.max_budget_nanos == 0
    assert limits.rpm_limit == 9  # not in the mask
    denied = client.authorize("alice", estimated_cost_nanos=0)
    assert not denied.allowed
    assert denied.denial_reason == spend_pb.DENIAL_REASON_BUDGET_EXCEEDED


def test_update_customer_moves_between_tier_and_own_limits(client: Client) -> None:
    client.tier("gold", max_budget_nanos=10)
    client.customer("alice", budget_id="gold")
    own = _update(client, res.Customer(user_id="alice", limits=_own(77)), "limits").response
    assert not own.customer.HasField("budget_id")
    assert own.customer.limits.max_budget_nanos == 77
    assert own.customer.effective_limits.max_budget_nanos == 77
    tiered = _update(client, res.Customer(user_id="alice", budget_id="gold"), "budget_id")
    assert tiered.code is OK, tiered.details
    customer = tiered.response.customer
    assert customer.budget_id == "gold" and not customer.HasField("limits")
    assert customer.effective_limits.max_budget_nanos == 10
    tiers = client.ok("ListBudgets", budget_pb.ListBudgetsRequest()).budgets
    assert [(b.budget_id, b.customer_count) for b in tiers] == [("gold", 1)]
    both = _update(
        client,
        res.Customer(user_id="alice", budget_id="gold", limits=_own(1)),
        "budget_id",
        "limits",
    )
    assert both.code is grpc.StatusCode.INVALID_ARGUMENT and "customer.limits" in both.details


def test_update_budget_mask(client: Client) -> None:
    client.tier("gold", max_budget_nanos=10, rpm_limit=5)
    request = budget_pb.UpdateBudgetRequest(
        budget=res.Budget(
            budget_id="gold", limits=res.BudgetLimits(max_budget_nanos=0, rpm_limit=1)
        ),
        update_mask=_mask("limits.max_budget_nanos"),
    )
    limits = client.ok("UpdateBudget", request).budget.limits
    assert limits.HasField("max_budget_nanos") and limits.max_budget_nanos == 0
    assert limits.rpm_limit == 5


# -- Presence and exact money ----------------------------------------------------------------


def test_remaining_is_absent_for_unlimited_customers(client: Client) -> None:
    client.customer("free")
    decision = client.authorize("free", estimated_cost_nanos=10)
    assert decision.allowed
    assert not decision.HasField("max_budget_nanos")
    assert not decision.HasField("remaining_nanos")
    charge = client.ok(
        "RecordSpend",
        spend_pb.RecordSpendRequest(
            request_id="r", reservation_id=decision.reservation_id, cost_nanos=4
        ),
    )
    assert not charge.HasField("remaining_nanos")
    summary = client.ok("GetSpend", spend_pb.GetSpendRequest(customer_id="free"))
    assert not summary.HasField("max_budget_nanos") and not summary.HasField("remaining_nanos")
    assert (summary.spend_nanos, summary.reserved_nanos, summary.ledger_entry_count) == (4, 0, 1)
    customer = client.ok("GetCustomer", customer_pb.GetCustomerRequest(user_id="free")).customer
    assert not customer.HasField("limits") and not customer.HasField("budget_id")
    assert not customer.effective_limits.HasField("max_budget_nanos")
    assert not customer.HasField("alias")


def test_remaining_is_present_for_budgeted_customers(client: Client) -> None:
    client.tier("gold", max_budget_nanos=100)
    client.customer("bob", budget_id="gold")
    decision = client.authorize("bob", estimated_cost_nanos=100)  # uses it all: remaining 0
    assert decision.HasField("max_budget_nanos") and decision.max_budget_nanos == 100
    assert decision.HasField("remaining_nanos") and decision.remaining_nanos == 0
    charge = client.ok(
        "RecordSpend",
        spend_pb.RecordSpendRequest(
            request_id="r", reservation_id=decision.reservation_id, cost_nanos=30
        ),
    )
    assert charge.HasField("remaining_nanos") and charge.remaining_nanos == 70
    assert charge.entry.spend_after_nanos == charge.spend_nanos == 30
    summary = client.ok("GetSpend", spend_pb.GetSpendRequest(customer_id="bob"))
    assert summary.HasField("remaining_nanos") and summary.remaining_nanos == 70
    customer = client.ok("GetCustomer", customer_pb.GetCustomerRequest(user_id="bob")).customer
    assert customer.HasField("budget_id") and not customer.HasField("limits")
    assert customer.effective_limits.max_budget_nanos == 100


def test_money_is_exact_int64_nanos(client: Client) -> None:
    max_budget = MAX_NANOS - 1_234  # about 9.2e18: beyond a double's 53-bit precision
    assert float(max_budget) != max_budget
    created = client.customer("whale", limits=_own(max_budget))
    assert created.limits.max_budget_nanos == max_budget
    got = client.ok("GetCustomer", customer_pb.GetCustomerRequest(user_id="whale")).customer
    assert got.limits.max_budget_nanos == got.effective_limits.max_budget_nanos == max_budget

    estimate = 9_000_000_000_000_000_001
    decision = client.authorize("whale", estimated_cost_nanos=estimate)
    assert decision.allowed and decision.held_nanos == estimate
    assert decision.remaining_nanos == max_budget - estimate
    cost = 8_999_999_999_999_999_999
    charge = client.ok(
        "RecordSpend",
        spend_pb.RecordSpendRequest(
            request_id="big", reservation_id=decision.reservation_id, cost_nanos=cost
        ),
    )
    assert charge.charged_nanos == charge.spend_nanos == charge.entry.cost_nanos == cost
    assert charge.remaining_nanos == max_budget - cost
    summary = client.ok("GetSpend", spend_pb.GetSpendRequest(customer_id="whale"))
    assert (summary.spend_nanos, summary.max_budget_nanos) == (cost, max_budget)
    entries = client.ok(
        "ListLedgerEntries", spend_pb.ListLedgerEntriesRequest(customer_id="whale")
    ).entries
    assert [e.cost_nanos for e in entries] == [cost]

    tier = client.tier("top", max_budget_nanos=MAX_NANOS)
    assert tier.limits.max_budget_nanos == MAX_NANOS
    fetched = client.ok("GetBudget", budget_pb.GetBudgetRequest(budget_id="top")).budget
    assert fetched.limits.max_budget_nanos == MAX_NANOS


# -- Listings and the remaining RPCs ---------------------------------------------------------


def test_ledger_entries_page_newest_first(client: Client) -> None:
    for n in range(1, 4):
        client.ok(
            "RecordSpend",
            spend_pb.RecordSpendRequest(request_id=f"r{n}", customer_id="alice", cost_nanos=n),
        )
    first = client.ok(
        "ListLedgerEntries", spend_pb.ListLedgerEntriesRequest(customer_id="alice", page_size=2)
    )
    assert [e.request_id for e in first.entries] == ["r3", "r2"] and first.next_page_token
    second = client.ok(
        "ListLedgerEntries",
        spend_pb.ListLedgerEntriesRequest(
            customer_id="alice", page_size=2, page_token=first.next_page_token
        ),
    )
    assert [e.request_id for e in second.entries] == ["r1"] and second.next_page_token == ""
    entry = second.entries[0]
    assert (entry.user_id, entry.cost_nanos, entry.spend_after_nanos) == ("alice", 1, 1)
    assert entry.reservation_id == "" and entry.entry_id > 0


def test_customer_listing_block_and_delete(client: Client) -> None:
    client.tier("gold")
    for user_id in ("c", "a", "b"):
        client.customer(user_id, budget_id="gold")
    client.customer("z")
    page = client.ok(
        "ListCustomers", customer_pb.ListCustomersRequest(page_size=2, budget_id="gold")
    )
    assert [c.user_id for c in page.customers] == ["a", "b"] and page.next_page_token
    rest = client.ok(
        "ListCustomers",
        customer_pb.ListCustomersRequest(
            page_size=2, budget_id="gold", page_token=page.next_page_token
        ),
    )
    assert [c.user_id for c in rest.customers] == ["c"] and rest.next_page_token == ""

    blocked = client.ok("BlockCustomers", customer_pb.BlockCustomersRequest(user_ids=["b", "a"]))
    assert [(c.user_id, c.blocked) for c in blocked.customers] == [("a", True), ("b", True)]
    refused = client.call(
        "UnblockCustomers", customer_pb.UnblockCustomersRequest(user_ids=["a", "q"])
    )
    assert refused.code is grpc.StatusCode.NOT_FOUND
    assert client.authorize("a", estimated_cost_nanos=1).denial_reason == (
        spend_pb.DENIAL_REASON_BLOCKED
    )

    deleted = client.ok(
        "BatchDeleteCustomers", customer_pb.BatchDeleteCustomersRequest(user_ids=["a", "b", "c"])
    )
    assert deleted.deleted_count == 3
    budget = client.ok("GetBudget", budget_pb.GetBudgetRequest(budget_id="gold")).budget
    assert budget.customer_count == 0
    gone = client.ok("DeleteBudget", budget_pb.DeleteBudgetRequest(budget_id="gold")).budget
    assert gone.budget_id == "gold"


def test_create_retries_with_the_same_request_id_return_the_first(client: Client) -> None:
    request = customer_pb.CreateCustomerRequest(
        customer=res.Customer(user_id="alice", alias="A"), request_id="req-1"
    )
    first = client.ok("CreateCustomer", request)
    assert client.ok("CreateCustomer", request) == first
    budget = budget_pb.CreateBudgetRequest(budget=res.Budget(budget_id="t"), request_id="req-2")
    assert client.ok("CreateBudget", budget) == client.ok("CreateBudget", budget)


def test_metadata_round_trips(client: Client) -> None:
    customer = res.Customer(user_id="meta")
    customer.metadata.update({"plan": "pro", "seats": 3, "tags": ["a", "b"], "nested": {"x": True}})
    created = client.ok("CreateCustomer", customer_pb.CreateCustomerRequest(customer=customer))
    assert created.customer.metadata == customer.metadata
