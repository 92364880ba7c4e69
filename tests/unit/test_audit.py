"""The audit trail on a real database (SQLite and PostgreSQL): every management change is
recorded with its actor and the target's settings before and after, in the change's own
transaction, so a refused change leaves no entry."""

from __future__ import annotations

import pytest

from budgetd.clock import ManualClock
from budgetd.domain.actors import INTERNAL, Actor, fingerprint
from budgetd.domain.audit import AuditService
from budgetd.domain.budgets import BudgetService
from budgetd.domain.customers import CustomerChanges, CustomerService, NewCustomer
from budgetd.domain.limits import LimitsPatch
from budgetd.domain.records import AuditEntry, BudgetLimits, ModelBudget
from budgetd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from budgetd.store.database import Database

ALICE = Actor(fingerprint("alice's key", "key"), via=fingerprint("the admin token", "token"))
BOB = Actor(fingerprint("bob's token", "token"))
GOLD = BudgetLimits(
    max_budget_nanos=5_000_000_000,
    budget_duration="30d",
    model_max_budget={"gpt-4o": ModelBudget(max_budget_nanos=1_000)},
    allowed_models=("gpt-4o", "gpt-4o-mini"),
)


@pytest.fixture
def customers(db: Database, clock: ManualClock) -> CustomerService:
    return CustomerService(db, clock)


@pytest.fixture
def budgets(db: Database, clock: ManualClock) -> BudgetService:
    return BudgetService(db, clock)


@pytest.fixture
def audit(db: Database) -> AuditService:
    return AuditService(db)


def trail(audit: AuditService, **filters: str) -> list[AuditEntry]:
    """Every entry matching the filters, newest first, over all pages."""
    entries: list[AuditEntry] = []
    token = ""
    while True:
        page = audit.list(2, token, **filters)
        entries.extend(page.items)
        token = page.next_page_token
        if not token:
            return entries


def test_every_management_change_is_recorded_with_actor_and_before_after(
    customers: CustomerService, budgets: BudgetService, audit: AuditService, clock: ManualClock
) -> None:
    budgets.create("gold", GOLD, actor=ALICE)
    clock.advance(1)
    customers.create(NewCustomer("c1", alias="first", budget_id="gold"), actor=ALICE)
    customers.update("c1", CustomerChanges({"alias": "renamed"}), actor=BOB)
    own = LimitsPatch(BudgetLimits(max_budget_nanos=7), frozenset({"max_budget_nanos"}))
    customers.update("c1", CustomerChanges({"budget_id": None}, limits=own), actor=BOB)
    customers.set_blocked(["c1"], True, actor=ALICE)
    customers.set_blocked(["c1"], False, actor=ALICE)
    budgets.update("gold", LimitsPatch(BudgetLimits(rpm_limit=5), frozenset({"rpm_limit"})))
    customers.delete(["c1"], actor=BOB)
    budgets.delete("gold", actor=BOB)

    entries = list(reversed(trail(audit)))
    assert [(e.action, e.target_type, e.target_id) for e in entries] == [
        ("budget.create", "budget", "gold"),
        ("customer.create", "customer", "c1"),
        ("customer.update", "customer", "c1"),
        ("customer.change_tier", "customer", "c1"),
        ("customer.block", "customer", "c1"),
        ("customer.unblock", "customer", "c1"),
        ("budget.update", "budget", "gold"),
        ("customer.delete", "customer", "c1"),
        ("budget.delete", "budget", "gold"),
    ]
    assert [(e.actor, e.via) for e in entries] == [
        (ALICE.principal, ALICE.via),
        (ALICE.principal, ALICE.via),
        (BOB.principal, None),
        (BOB.principal, None),
        (ALICE.principal, ALICE.via),
        (ALICE.principal, ALICE.via),
        (INTERNAL.principal, None),
        (BOB.principal, None),
        (BOB.principal, None),
    ]
    ids = [e.entry_id for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert entries[0].created_us < entries[1].created_us  # the clock moved between them

    created_tier, created, renamed, moved, blocked, unblocked, tier_update, deleted, gone = entries
    assert created_tier.before is None
    assert created_tier.after is not None
    assert created_tier.after["limits"]["max_budget_nanos"] == 5_000_000_000
    assert created_tier.after["limits"]["model_max_budget"] == {
        "gpt-4o": {
            "max_budget_nanos": 1_000,
            "budget_duration": "",
            "tpm_limit": None,
            "rpm_limit": None,
        }
    }
    assert created_tier.after["limits"]["allowed_models"] == ["gpt-4o", "gpt-4o-mini"]
    assert created.before is None
    assert created.after is not None
    assert created.after["alias"] == "first" and created.after["budget_id"] == "gold"
    assert renamed.before == created.after
    assert renamed.after == {**created.after, "alias": "renamed"}
    assert moved.before == renamed.after
    assert moved.after is not None
    assert moved.after["budget_id"] is None
    assert moved.after["limits"]["max_budget_nanos"] == 7
    assert blocked.before is not None and blocked.after is not None
    assert (blocked.before["blocked"], blocked.after["blocked"]) == (False, True)
    assert unblocked.before == blocked.after
    assert unblocked.after == blocked.before
    assert tier_update.before is not None and tier_update.after is not None
    assert tier_update.before["limits"]["rpm_limit"] is None
    assert tier_update.after["limits"]["rpm_limit"] == 5
    assert deleted.before == unblocked.after and deleted.after is None
    assert gone.before == tier_update.after and gone.after is None


def test_a_change_that_fails_records_nothing(
    customers: CustomerService, budgets: BudgetService, audit: AuditService
) -> None:
    budgets.create("silver", GOLD)
    customers.create(NewCustomer("on-silver", budget_id="silver"))
    before = trail(audit)
    with pytest.raises(FailedPrecondition):
        budgets.delete("silver", actor=BOB)  # a customer is on it
    with pytest.raises(NotFound):
        customers.set_blocked(["on-silver", "nobody"], True, actor=BOB)
    with pytest.raises(NotFound):
        customers.delete(["on-silver", "nobody"], actor=BOB)
    with pytest.raises(AlreadyExists):
        customers.create(NewCustomer("on-silver"), actor=BOB)
    with pytest.raises(InvalidArgument):
        customers.update("on-silver", CustomerChanges({"allowed_model_region": "mars"}), actor=BOB)
    with pytest.raises(NotFound):
        customers.update("on-silver", CustomerChanges({"budget_id": "no-such-tier"}), actor=BOB)
    assert trail(audit) == before


def test_an_idempotent_retry_records_the_create_once(
    customers: CustomerService, budgets: BudgetService, audit: AuditService
) -> None:
    customers.create(NewCustomer("retried"), request_id="r-1", actor=BOB)
    customers.create(NewCustomer("retried"), request_id="r-1", actor=BOB)
    budgets.create("retried-tier", GOLD, request_id="r-2", actor=BOB)
    budgets.create("retried-tier", GOLD, request_id="r-2", actor=BOB)
    assert [e.action for e in trail(audit)] == ["budget.create", "customer.create"]


def test_a_batch_records_one_entry_per_customer(
    customers: CustomerService, audit: AuditService
) -> None:
    for user_id in ("b-1", "b-2", "b-3"):
        customers.create(NewCustomer(user_id))
    customers.set_blocked(["b-3", "b-1", "b-1"], True, actor=BOB)
    customers.delete(["b-1", "b-2", "b-3"], actor=BOB)
    blocks = trail(audit, action="customer.block")
    assert sorted(e.target_id for e in blocks) == ["b-1", "b-3"]
    deletes = trail(audit, action="customer.delete")
    assert sorted(e.target_id for e in deletes) == ["b-1", "b-2", "b-3"]
    assert {e.before["blocked"] for e in deletes if e.before} == {True, False}


def test_filters_and_pages(
    customers: CustomerService, budgets: BudgetService, audit: AuditService
) -> None:
    # A tier and a customer may share an id; target_type tells them apart.
    budgets.create("same", GOLD)
    customers.create(NewCustomer("same"))
    for n in range(5):
        customers.update("same", CustomerChanges({"alias": f"a{n}"}))
    customers.create(NewCustomer("other"))

    assert len(trail(audit, target_id="same")) == 7
    assert len(trail(audit, target_id="same", target_type="customer")) == 6
    assert [e.action for e in trail(audit, target_type="budget")] == ["budget.create"]
    updates = trail(audit, target_id="same", action="customer.update")
    assert [e.after["alias"] for e in updates if e.after] == ["a4", "a3", "a2", "a1", "a0"]
    assert trail(audit, target_id="nobody") == []

    first = audit.list(3, "")
    second = audit.list(3, first.next_page_token)
    assert first.next_page_token and second.next_page_token
    everything = [e.entry_id for e in trail(audit)]
    assert [e.entry_id for e in (*first.items, *second.items)] == everything[:6]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"target_type": "tier"}, "target_type"),
        ({"action": "customer.drop"}, "action"),
        ({"target_id": "bad\x00id"}, "target_id"),
    ],
)
def test_unknown_filters_are_refused(audit: AuditService, filters: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        audit.list(10, "", **filters)
    assert refused.value.field == field


def test_ids_are_stored_verbatim_in_the_trail(
    customers: CustomerService, audit: AuditService
) -> None:
    weird = '\'; DROP TABLE audit_entries;-- "ünï" 🚀'
    customers.create(NewCustomer(weird, alias=weird, metadata={weird: weird}), actor=BOB)
    (entry,) = trail(audit, target_id=weird)
    assert entry.target_id == weird
    assert entry.after is not None
    assert entry.after["alias"] == weird and entry.after["metadata"] == {weird: weird}
