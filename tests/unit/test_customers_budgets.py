"""CustomerService and BudgetService on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from budgetd.clock import ManualClock
from budgetd.domain.budgets import BudgetService
from budgetd.domain.customers import (
    PRIVATE_BUDGET_PREFIX,
    CustomerChanges,
    CustomerService,
    NewCustomer,
)
from budgetd.domain.limits import LimitsPatch
from budgetd.domain.paging import encode_token
from budgetd.domain.records import BudgetLimits, ModelBudget
from budgetd.domain.spend import SpendReport, SpendService
from budgetd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from budgetd.pricing import PriceTable
from budgetd.store.database import Database
from budgetd.store.schema import budgets as budgets_table
from budgetd.store.schema import ledger as ledger_table

GOLD = BudgetLimits(
    max_budget_nanos=5_000_000_000,
    soft_budget_nanos=4_000_000_000,
    tpm_limit=100_000,
    rpm_limit=60,
    max_parallel_requests=4,
    budget_duration="30d",
    model_max_budget={"gpt-4o": ModelBudget(max_budget_nanos=1_000, budget_duration="1d")},
)
OWN = BudgetLimits(max_budget_nanos=777, tpm_limit=10, budget_duration="1h")


@pytest.fixture
def customers(db: Database, clock: ManualClock) -> CustomerService:
    return CustomerService(db, clock)


@pytest.fixture
def budgets(db: Database, clock: ManualClock) -> BudgetService:
    return BudgetService(db, clock)


def budget_rows(db: Database) -> dict[str, bool]:
    """Every budget row, tier or private: budget_id -> is_private."""
    with db.read() as conn:
        rows = conn.execute(select(budgets_table.c.budget_id, budgets_table.c.is_private)).all()
    return {row[0]: bool(row[1]) for row in rows}


def private_rows(db: Database) -> set[str]:
    return {budget_id for budget_id, private in budget_rows(db).items() if private}


def all_tiers(budgets: BudgetService) -> list[str]:
    return [b.budget_id for b in budgets.list(1000, "").items]


def all_customers(customers: CustomerService, budget_id: str = "") -> list[str]:
    return [c.user_id for c in customers.list(1000, "", budget_id).items]


def state(customers: CustomerService, budgets: BudgetService, db: Database) -> Any:
    """Everything an atomic operation must leave unchanged when it fails."""
    return (
        list(customers.list(1000, "").items),
        list(budgets.list(1000, "").items),
        budget_rows(db),
    )


# -- Create ----------------------------------------------------------------------------------


def test_create_with_own_limits(
    customers: CustomerService, budgets: BudgetService, db: Database, clock: ManualClock
) -> None:
    created = customers.create(
        NewCustomer(
            "alice",
            alias="Alice",
            limits=GOLD,
            allowed_model_region="eu",
            default_model="gpt-4o-mini",
            metadata={"plan": "pro", "seats": 3},
        )
    )
    assert created.own_limits == GOLD and created.effective_limits == GOLD
    assert created.budget_id is None
    assert created.max_budget_nanos == GOLD.max_budget_nanos
    assert created.remaining_nanos == GOLD.max_budget_nanos
    assert (created.alias, created.allowed_model_region, created.default_model) == (
        "Alice",
        "eu",
        "gpt-4o-mini",
    )
    assert created.metadata == {"plan": "pro", "seats": 3}
    assert created.created_us == created.updated_us == clock.now_us()
    assert not created.blocked and created.spend_nanos == created.reserved_nanos == 0
    assert customers.get("alice") == created
    # The limits live in a private budget that is never a tier.
    assert len(private_rows(db)) == 1
    assert next(iter(private_rows(db))).startswith(PRIVATE_BUDGET_PREFIX)
    assert all_tiers(budgets) == []


def test_create_on_a_tier(customers: CustomerService, budgets: BudgetService) -> None:
    budgets.create("gold", GOLD)
    created = customers.create(NewCustomer("bob", budget_id="gold"))
    assert created.budget_id == "gold"
    assert created.own_limits is None
    assert created.effective_limits == GOLD
    assert budgets.get("gold").customer_count == 1
    assert all_customers(customers, "gold") == ["bob"]


def test_create_with_neither_is_unlimited(customers: CustomerService, db: Database) -> None:
    created = customers.create(NewCustomer("carol"))
    assert created.budget_id is None and created.own_limits is None
    assert created.effective_limits == BudgetLimits()
    assert created.max_budget_nanos is None and created.remaining_nanos is None
    assert created.metadata == {} and created.alias is None
    assert budget_rows(db) == {}


def test_create_with_a_zero_budget_keeps_the_zero(customers: CustomerService) -> None:
    created = customers.create(NewCustomer("zero", limits=BudgetLimits(max_budget_nanos=0)))
    assert created.own_limits == BudgetLimits(max_budget_nanos=0)
    assert created.max_budget_nanos == 0 and created.remaining_nanos == 0


def test_create_with_budget_id_and_limits_is_invalid(
    customers: CustomerService, budgets: BudgetService, db: Database
) -> None:
    budgets.create("gold", GOLD)
    before = state(customers, budgets, db)
    with pytest.raises(InvalidArgument) as error:
        customers.create(NewCustomer("dave", budget_id="gold", limits=OWN))
    assert error.value.field == "customer.limits"
    assert state(customers, budgets, db) == before


def test_create_on_an_unknown_tier_is_not_found(
    customers: CustomerService, budgets: BudgetService, db: Database
) -> None:
    with pytest.raises(NotFound, match="platinum"):
        customers.create(NewCustomer("dave", budget_id="platinum"))
    with pytest.raises(NotFound):
        customers.get("dave")
    assert budget_rows(db) == {}


@pytest.mark.parametrize(
    ("new", "field"),
    [
        (NewCustomer(""), "customer.user_id"),
        (NewCustomer("x" * 257), "customer.user_id"),
        (NewCustomer("a\nb"), "customer.user_id"),
        (NewCustomer("ok", alias="bell\x07"), "customer.alias"),
        (NewCustomer("ok", allowed_model_region="mars"), "customer.allowed_model_region"),
        (NewCustomer("ok", default_model="m" * 257), "customer.default_model"),
        (NewCustomer("ok", budget_id="t\x00"), "customer.budget_id"),
        (
            NewCustomer("ok", limits=BudgetLimits(max_budget_nanos=-1)),
            "customer.limits.max_budget_nanos",
        ),
        (NewCustomer("ok", limits=BudgetLimits(rpm_limit=-1)), "customer.limits.rpm_limit"),
        (
            NewCustomer("ok", limits=BudgetLimits(budget_duration="2 weeks")),
            "customer.limits.budget_duration",
        ),
        (NewCustomer("ok", metadata={"blob": "x" * 20_000}), "customer.metadata"),
    ],
    ids=[
        "empty-id",
        "long-id",
        "ctrl-id",
        "ctrl-alias",
        "region",
        "long-model",
        "ctrl-tier",
        "neg-budget",
        "neg-rpm",
        "duration",
        "metadata",
    ],
)
def test_create_validates_every_field(
    customers: CustomerService, db: Database, new: NewCustomer, field: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        customers.create(new)
    assert error.value.field == field
    assert all_customers(customers) == []
    assert budget_rows(db) == {}


def test_duplicate_create_already_exists_but_a_retry_returns_the_first(
    customers: CustomerService, budgets: BudgetService, db: Database, clock: ManualClock
) -> None:
    first = customers.create(NewCustomer("erin", alias="first", limits=OWN), request_id="req-1")
    clock.advance(5)
    # A retry (even one carrying other values) returns what the first attempt created.
    retry = customers.create(NewCustomer("erin", alias="second", limits=GOLD), request_id="req-1")
    assert retry == first
    with pytest.raises(AlreadyExists, match="erin"):
        customers.create(NewCustomer("erin"), request_id="req-2")
    with pytest.raises(AlreadyExists, match="erin"):
        customers.create(NewCustomer("erin", limits=OWN))
    # The failed attempts left no private budget behind.
    assert len(private_rows(db)) == 1
    assert customers.get("erin") == first


def test_a_customer_created_without_request_id_is_not_a_retry(customers: CustomerService) -> None:
    customers.create(NewCustomer("frank"))
    with pytest.raises(AlreadyExists):
        customers.create(NewCustomer("frank"), request_id="req-1")


@pytest.mark.parametrize(
    "weird", ["Robert'); DROP TABLE customers;--", "客户-ü-🙂", "' OR 1=1 --", "%_\\"]
)
def test_odd_ids_are_stored_verbatim(
    customers: CustomerService, budgets: BudgetService, weird: str
) -> None:
    budgets.create(weird, OWN, request_id=weird)
    created = customers.create(NewCustomer(weird, alias=weird, budget_id=weird), request_id=weird)
    assert (created.user_id, created.alias, created.budget_id) == (weird, weird, weird)
    assert customers.get(weird) == created
    assert budgets.get(weird).customer_count == 1
    assert all_customers(customers, weird) == [weird]
    assert customers.create(NewCustomer(weird), request_id=weird) == created
    customers.create(NewCustomer("bystander"))
    assert sorted(all_customers(customers)) == sorted(["bystander", weird])


# -- Update ----------------------------------------------------------------------------------


def test_update_changes_only_the_named_fields(
    customers: CustomerService, clock: ManualClock
) -> None:
    original = customers.create(
        NewCustomer(
            "gina",
            alias="Gina",
            blocked=True,
            limits=OWN,
            allowed_model_region="eu",
            default_model="gpt-4o",
            metadata={"k": "v"},
        )
    )
    clock.advance(10)

    unblocked = customers.update("gina", CustomerChanges({"blocked": False}))
    assert unblocked.blocked is False
    assert unblocked.updated_us == clock.now_us() > original.updated_us
    expected = dataclasses.replace(original, blocked=False, updated_us=unblocked.updated_us)
    assert unblocked == expected

    cleared = customers.update(
        "gina",
        CustomerChanges({"alias": None, "allowed_model_region": None, "metadata": {}}),
    )
    assert (cleared.alias, cleared.allowed_model_region, cleared.metadata) == (None, None, {})
    assert cleared.default_model == "gpt-4o" and cleared.own_limits == OWN

    renamed = customers.update("gina", CustomerChanges({"alias": "G", "default_model": "m2"}))
    assert (renamed.alias, renamed.default_model) == ("G", "m2")
    assert customers.get("gina") == renamed


def test_update_sets_a_zero_budget_and_leaves_other_limits(customers: CustomerService) -> None:
    customers.create(NewCustomer("hank", limits=OWN))
    patch = LimitsPatch(BudgetLimits(max_budget_nanos=0, tpm_limit=999), {"max_budget_nanos"})
    updated = customers.update("hank", CustomerChanges(limits=patch))
    assert updated.own_limits == BudgetLimits(
        max_budget_nanos=0, tpm_limit=OWN.tpm_limit, budget_duration=OWN.budget_duration
    )
    assert updated.max_budget_nanos == 0
    # A whole-limits patch replaces every field; unset ones become "no limit".
    whole = customers.update("hank", CustomerChanges(limits=LimitsPatch(BudgetLimits(rpm_limit=5))))
    assert whole.own_limits == BudgetLimits(rpm_limit=5)
    assert whole.max_budget_nanos is None


def test_update_with_no_field_or_an_unknown_field_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as error:
        CustomerChanges()
    assert error.value.field == "update_mask"
    for name in ("user_id", "spend_nanos", "reserved_nanos", "metadata_json"):
        with pytest.raises(InvalidArgument) as error:
            CustomerChanges({name: 1})
        assert error.value.field == "update_mask" and name in str(error.value)
    with pytest.raises(InvalidArgument) as error:
        LimitsPatch(BudgetLimits(), {"max_budget"})
    assert error.value.field == "update_mask"


def test_update_failures_change_nothing(
    customers: CustomerService, budgets: BudgetService, db: Database
) -> None:
    budgets.create("gold", GOLD)
    customers.create(NewCustomer("ivy", alias="Ivy", limits=OWN))
    before = state(customers, budgets, db)
    cases: list[tuple[str, CustomerChanges, type[Exception], str | None]] = [
        ("ghost", CustomerChanges({"alias": "x"}), NotFound, None),
        ("ivy", CustomerChanges({"budget_id": "nope"}), NotFound, None),
        (
            "ivy",
            CustomerChanges({"budget_id": "gold"}, LimitsPatch(OWN)),
            InvalidArgument,
            "customer.limits",
        ),
        ("ivy", CustomerChanges({"allowed_model_region": "mars"}), InvalidArgument, None),
        (
            "ivy",
            CustomerChanges(limits=LimitsPatch(BudgetLimits(tpm_limit=-1))),
            InvalidArgument,
            "customer.limits.tpm_limit",
        ),
        ("", CustomerChanges({"alias": "x"}), InvalidArgument, "customer.user_id"),
    ]
    for user_id, changes, kind, field in cases:
        with pytest.raises(kind) as error:
            customers.update(user_id, changes)
        if field is not None:
            assert getattr(error.value, "field", None) == field
        assert state(customers, budgets, db) == before, (user_id, changes)


def test_moving_between_tier_own_limits_and_none(
    customers: CustomerService, budgets: BudgetService, db: Database
) -> None:
    budgets.create("gold", GOLD)
    budgets.create("silver", OWN)
    customers.create(NewCustomer("jack", budget_id="gold"))
    assert private_rows(db) == set()

    # Tier -> own limits: a private budget appears, the tier loses a customer.
    own = customers.update("jack", CustomerChanges(limits=LimitsPatch(BudgetLimits(rpm_limit=7))))
    assert own.budget_id is None and own.own_limits == BudgetLimits(rpm_limit=7)
    assert own.effective_limits == BudgetLimits(rpm_limit=7)
    assert budgets.get("gold").customer_count == 0
    (private,) = private_rows(db)
    assert all_tiers(budgets) == ["gold", "silver"]

    # Own -> own (a partial patch): the same private budget is changed in place.
    patched = customers.update(
        "jack",
        CustomerChanges(limits=LimitsPatch(BudgetLimits(max_budget_nanos=9), {"max_budget_nanos"})),
    )
    assert patched.own_limits == BudgetLimits(max_budget_nanos=9, rpm_limit=7)
    assert private_rows(db) == {private}

    # Own -> tier: the private budget is dropped.
    tiered = customers.update("jack", CustomerChanges({"budget_id": "silver"}))
    assert tiered.budget_id == "silver" and tiered.own_limits is None
    assert tiered.effective_limits == OWN
    assert private_rows(db) == set()
    assert budgets.get("silver").customer_count == 1

    # Tier -> own -> none: nothing private remains, and the customer is unlimited.
    customers.update("jack", CustomerChanges(limits=LimitsPatch(OWN)))
    assert len(private_rows(db)) == 1
    assert budgets.get("silver").customer_count == 0
    unlimited = customers.update("jack", CustomerChanges({"budget_id": None}))
    assert unlimited.budget_id is None and unlimited.own_limits is None
    assert unlimited.max_budget_nanos is None
    assert private_rows(db) == set()
    assert all_tiers(budgets) == ["gold", "silver"]
    assert set(budget_rows(db)) == {"gold", "silver"}


def test_a_private_budget_is_not_a_tier(
    customers: CustomerService, budgets: BudgetService, db: Database
) -> None:
    customers.create(NewCustomer("kate", limits=OWN))
    (private,) = private_rows(db)
    with pytest.raises(NotFound):
        budgets.get(private)
    with pytest.raises(NotFound):
        customers.create(NewCustomer("leo", budget_id=private))
    with pytest.raises(NotFound):
        customers.update("kate", CustomerChanges({"budget_id": private}))
    with pytest.raises(NotFound):
        budgets.delete(private)
    with pytest.raises(InvalidArgument) as error:
        budgets.create(PRIVATE_BUDGET_PREFIX + "my-tier", OWN)
    assert error.value.field == "budget.budget_id"
    assert private_rows(db) == {private}
    assert customers.get("kate").own_limits == OWN


# -- Block, unblock, delete ------------------------------------------------------------------


def test_block_and_unblock_are_atomic(
    customers: CustomerService, budgets: BudgetService, db: Database
) -> None:
    for user_id in ("c", "a", "b"):
        customers.create(NewCustomer(user_id))
    blocked = customers.set_blocked(["c", "a", "a"], True)
    assert [(c.user_id, c.blocked) for c in blocked] == [("a", True), ("c", True)]
    assert not customers.get("b").blocked

    before = state(customers, budgets, db)
    with pytest.raises(NotFound, match="zed"):
        customers.set_blocked(["b", "zed"], True)
    with pytest.raises(NotFound, match="zed"):
        customers.set_blocked(["a", "zed"], False)
    assert state(customers, budgets, db) == before

    unblocked = customers.set_blocked(["a"], False)
    assert [(c.user_id, c.blocked) for c in unblocked] == [("a", False)]
    assert customers.get("c").blocked

    with pytest.raises(InvalidArgument) as error:
        customers.set_blocked([], True)
    assert error.value.field == "user_ids"
    with pytest.raises(InvalidArgument) as error:
        customers.set_blocked(["a", ""], True)
    assert error.value.field == "user_ids[1]"
    with pytest.raises(InvalidArgument) as error:
        customers.set_blocked([f"u{i}" for i in range(1001)], True)
    assert error.value.field == "user_ids"


def test_batch_delete_is_atomic_and_drops_private_budgets(
    customers: CustomerService, budgets: BudgetService, db: Database
) -> None:
    budgets.create("gold", GOLD)
    customers.create(NewCustomer("mia", limits=OWN))
    customers.create(NewCustomer("ned", budget_id="gold"))
    customers.create(NewCustomer("oli"))
    before = state(customers, budgets, db)
    with pytest.raises(NotFound, match="ghost"):
        customers.delete(["mia", "ned", "ghost"])
    assert state(customers, budgets, db) == before

    assert customers.delete(["mia", "ned", "mia"]) == 2
    assert all_customers(customers) == ["oli"]
    assert private_rows(db) == set()
    assert budgets.get("gold").customer_count == 0
    with pytest.raises(NotFound):
        customers.get("mia")
    with pytest.raises(NotFound):
        customers.delete(["mia"])
    # The id is free again.
    assert customers.create(NewCustomer("mia")).own_limits is None


def test_deleted_customers_keep_their_ledger_but_a_new_one_starts_afresh(
    db: Database, clock: ManualClock, customers: CustomerService
) -> None:
    spend = SpendService(db, PriceTable(), clock)
    spend.record_spend(SpendReport("r1", customer_id="pat", cost_nanos=500))
    customers.delete(["pat"])
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(ledger_table)).scalar_one() == 1
    for user_id in ("quinn", "pat"):  # another customer, then the same id again
        customers.create(NewCustomer(user_id))
        assert customers.get(user_id).spend_nanos == 0
        assert spend.summary(user_id).ledger_entry_count == 0
        assert spend.ledger(user_id, 10, "").items == []


# -- Tiers -----------------------------------------------------------------------------------


def test_create_get_and_validate_tiers(budgets: BudgetService, clock: ManualClock) -> None:
    gold = budgets.create("gold", GOLD)
    assert (gold.budget_id, gold.limits, gold.customer_count) == ("gold", GOLD, 0)
    assert gold.created_us == gold.updated_us == clock.now_us()
    assert budgets.get("gold") == gold
    with pytest.raises(NotFound, match="tin"):
        budgets.get("tin")
    for budget_id, limits, field in [
        ("", OWN, "budget.budget_id"),
        ("t" * 257, OWN, "budget.budget_id"),
        ("tab\tbed", OWN, "budget.budget_id"),
        ("x", BudgetLimits(soft_budget_nanos=-5), "budget.limits.soft_budget_nanos"),
        ("x", BudgetLimits(max_parallel_requests=-1), "budget.limits.max_parallel_requests"),
        ("x", BudgetLimits(budget_duration="0d"), "budget.limits.budget_duration"),
        (
            "x",
            BudgetLimits(model_max_budget={"m": ModelBudget(max_budget_nanos=-1)}),
            "budget.limits.model_max_budget[m].max_budget_nanos",
        ),
        (
            "x",
            BudgetLimits(model_max_budget={"": ModelBudget()}),
            "budget.limits.model_max_budget key",
        ),
    ]:
        with pytest.raises(InvalidArgument) as error:
            budgets.create(budget_id, limits)
        assert error.value.field == field
    assert all_tiers(budgets) == ["gold"]


def test_duplicate_tier_already_exists_but_a_retry_returns_the_first(
    budgets: BudgetService, clock: ManualClock
) -> None:
    first = budgets.create("gold", GOLD, request_id="req-1")
    clock.advance(1)
    assert budgets.create("gold", OWN, request_id="req-1") == first
    with pytest.raises(AlreadyExists, match="gold"):
        budgets.create("gold", OWN, request_id="req-2")
    with pytest.raises(AlreadyExists):
        budgets.create("gold", GOLD)
    assert budgets.get("gold") == first


def test_update_tier_changes_named_limits_for_all_its_customers(
    budgets: BudgetService, customers: CustomerService, clock: ManualClock
) -> None:
    budgets.create("gold", GOLD)
    customers.create(NewCustomer("a", budget_id="gold"))
    clock.advance(1)
    updated = budgets.update(
        "gold", LimitsPatch(BudgetLimits(max_budget_nanos=0, rpm_limit=1), {"max_budget_nanos"})
    )
    assert updated.limits == dataclasses.replace(GOLD, max_budget_nanos=0)
    assert updated.updated_us == clock.now_us() > updated.created_us
    assert updated.customer_count == 1
    assert customers.get("a").max_budget_nanos == 0
    whole = budgets.update("gold", LimitsPatch(BudgetLimits(tpm_limit=3)))
    assert whole.limits == BudgetLimits(tpm_limit=3)
    with pytest.raises(NotFound):
        budgets.update("tin", LimitsPatch(OWN))
    with pytest.raises(InvalidArgument) as error:
        budgets.update("gold", LimitsPatch(BudgetLimits(rpm_limit=-1), {"rpm_limit"}))
    assert error.value.field == "budget.limits.rpm_limit"
    assert budgets.get("gold").limits == BudgetLimits(tpm_limit=3)


def test_delete_tier_in_use_fails_until_its_customers_move(
    budgets: BudgetService, customers: CustomerService
) -> None:
    gold = budgets.create("gold", GOLD)
    budgets.create("silver", OWN)
    customers.create(NewCustomer("a", budget_id="gold"))
    customers.create(NewCustomer("b", budget_id="gold"))
    with pytest.raises(FailedPrecondition, match="2 customer"):
        budgets.delete("gold")
    customers.update("a", CustomerChanges({"budget_id": "silver"}))
    with pytest.raises(FailedPrecondition, match="1 customer"):
        budgets.delete("gold")
    customers.delete(["b"])
    assert budgets.delete("gold") == gold
    with pytest.raises(NotFound):
        budgets.get("gold")
    with pytest.raises(NotFound):
        budgets.delete("gold")
    assert all_tiers(budgets) == ["silver"]
    assert customers.get("a").budget_id == "silver"


def test_deleting_a_customer_never_deletes_its_tier(
    budgets: BudgetService, customers: CustomerService
) -> None:
    budgets.create("gold", GOLD)
    customers.create(NewCustomer("a", budget_id="gold"))
    customers.delete(["a"])
    assert budgets.get("gold").customer_count == 0


# -- Listings --------------------------------------------------------------------------------


def _pages(fetch: Callable[[int, str], tuple[list[str], str]], size: int) -> list[list[str]]:
    """Every page of a listing, following next_page_token to the end."""
    pages: list[list[str]] = []
    token = ""
    while True:
        items, token = fetch(size, token)
        pages.append(items)
        if not token:
            return pages


def test_list_customers_pages_in_user_id_order_and_filters_by_tier(
    customers: CustomerService, budgets: BudgetService
) -> None:
    budgets.create("gold", GOLD)
    budgets.create("silver", OWN)
    tiers = {"e": "gold", "a": None, "d": "gold", "b": "silver", "c": "gold", "f": None}
    for user_id, tier in tiers.items():
        customers.create(NewCustomer(user_id, budget_id=tier))
    customers.create(NewCustomer("g", limits=OWN))

    def fetch(budget_id: str) -> Callable[[int, str], tuple[list[str], str]]:
        def page(size: int, token: str) -> tuple[list[str], str]:
            result = customers.list(size, token, budget_id)
            return [c.user_id for c in result.items], result.next_page_token

        return page

    assert _pages(fetch(""), 3) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert _pages(fetch(""), 7) == [["a", "b", "c", "d", "e", "f", "g"]]
    assert _pages(fetch("gold"), 2) == [["c", "d"], ["e"]]
    assert _pages(fetch("silver"), 0) == [["b"]]
    assert _pages(fetch("tin"), 5) == [[]]
    with pytest.raises(InvalidArgument) as error:
        customers.list(10, "@@not-a-token@@")
    assert error.value.field == "page_token"
    with pytest.raises(InvalidArgument) as error:
        customers.list(10, encode_token(5))  # a ledger token
    assert error.value.field == "page_token"
    with pytest.raises(InvalidArgument) as error:
        customers.list(1001, "")
    assert error.value.field == "page_size"


def test_list_tiers_pages_and_counts_customers(
    customers: CustomerService, budgets: BudgetService
) -> None:
    for budget_id in ("delta", "alpha", "charlie", "bravo"):
        budgets.create(budget_id, OWN)
    customers.create(NewCustomer("x", budget_id="bravo"))
    customers.create(NewCustomer("y", budget_id="bravo"))
    customers.create(NewCustomer("z", budget_id="delta"))
    customers.create(NewCustomer("own", limits=GOLD))  # a private budget, never listed

    def page(size: int, token: str) -> tuple[list[str], str]:
        result = budgets.list(size, token)
        return [b.budget_id for b in result.items], result.next_page_token

    assert _pages(page, 3) == [["alpha", "bravo", "charlie"], ["delta"]]
    assert _pages(page, 2) == [["alpha", "bravo"], ["charlie", "delta"]]
    counts = {b.budget_id: b.customer_count for b in budgets.list(0, "").items}
    assert counts == {"alpha": 0, "bravo": 2, "charlie": 0, "delta": 1}
    with pytest.raises(InvalidArgument) as error:
        budgets.list(2, "garbage")
    assert error.value.field == "page_token"
    with pytest.raises(InvalidArgument) as error:
        budgets.list(-1, "")
    assert error.value.field == "page_size"
