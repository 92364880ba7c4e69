"""Never overspend, never charge twice: concurrent calls against real budgetd processes."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from budgetd.pricing import PriceTable, TokenUsage
from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.support.client import ADMIN, Stubs
from tests.support.processes import BudgetdProcess, run_migrate

pytestmark = pytest.mark.e2e

MODEL = "gpt-4o-mini"
INPUT_TOKENS = 1200
MAX_OUTPUT = 300
CALLS = 200
FITS = 37  # the budget fits exactly this many estimated calls


@pytest.fixture
def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[BudgetdProcess]]:
    """One budgetd on SQLite, or two budgetd replicas sharing one PostgreSQL database."""
    if request.param == "sqlite":
        url = str(request.getfixturevalue("sqlite_url"))
        count = 1
    else:
        url = str(request.getfixturevalue("postgres_url"))
        run_migrate(url)
        count = 2
    processes = [BudgetdProcess(url, tmp_path / f"budgetd-{i}.log") for i in range(count)]
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.stop()


BACKENDS = pytest.mark.parametrize(
    "replicas", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _estimate() -> int:
    price = PriceTable().get(MODEL)
    assert price is not None
    return price.cost_nanos(TokenUsage(input_tokens=INPUT_TOKENS, output_tokens=MAX_OUTPUT))


@BACKENDS
def test_exactly_the_calls_that_fit_are_admitted_and_the_ledger_adds_up(
    replicas: list[BudgetdProcess],
) -> None:
    stubs = [Stubs.connect(p.address) for p in replicas]
    customer = f"concurrent-{uuid.uuid4().hex[:8]}"
    estimate = _estimate()
    max_budget = FITS * estimate
    stubs[0].customers.CreateCustomer(
        customer_pb.CreateCustomerRequest(
            customer=res.Customer(
                user_id=customer, limits=res.BudgetLimits(max_budget_nanos=max_budget)
            )
        ),
        metadata=ADMIN,
    )

    def authorize(i: int) -> spend_pb.AuthorizeResponse:
        return stubs[i % len(stubs)].spend.Authorize(
            spend_pb.AuthorizeRequest(
                customer_id=customer,
                model=MODEL,
                input_tokens=INPUT_TOKENS,
                max_output_tokens=MAX_OUTPUT,
                request_id=f"auth-{i}",
            ),
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=64) as pool:
        decisions = list(pool.map(authorize, range(CALLS)))

    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == FITS
    assert all(
        d.denial_reason == spend_pb.DENIAL_REASON_BUDGET_EXCEEDED
        for d in decisions
        if not d.allowed
    )
    assert all(d.held_nanos == estimate for d in admitted)

    rng = random.Random(7)
    price = PriceTable().get(MODEL)
    assert price is not None
    expected_spend = 0

    def settle(args: tuple[int, spend_pb.AuthorizeResponse, int]) -> spend_pb.RecordSpendResponse:
        i, decision, output_tokens = args
        return stubs[i % len(stubs)].spend.RecordSpend(
            spend_pb.RecordSpendRequest(
                request_id=f"spend-{i}",
                reservation_id=decision.reservation_id,
                model=MODEL,
                usage=spend_pb.Usage(input_tokens=INPUT_TOKENS, output_tokens=output_tokens),
            ),
            timeout=30,
        )

    work = [(i, d, rng.randint(0, MAX_OUTPUT)) for i, d in enumerate(admitted)]
    for _, _, output_tokens in work:
        expected_spend += price.cost_nanos(
            TokenUsage(input_tokens=INPUT_TOKENS, output_tokens=output_tokens)
        )
    with ThreadPoolExecutor(max_workers=32) as pool:
        charges = list(pool.map(settle, work))

    summary = stubs[0].spend.GetSpend(
        spend_pb.GetSpendRequest(customer_id=customer), metadata=ADMIN
    )
    entries, ledger_total = stubs[-1].ledger_sum(customer)
    assert entries == FITS
    assert summary.spend_nanos == ledger_total == expected_spend
    assert summary.reserved_nanos == 0
    assert summary.spend_nanos <= max_budget
    assert max(c.spend_nanos for c in charges) == summary.spend_nanos
    for stub in stubs:
        stub.close()


@BACKENDS
def test_the_same_record_spend_sent_five_times_at_once_charges_once(
    replicas: list[BudgetdProcess],
) -> None:
    stubs = [Stubs.connect(p.address) for p in replicas]
    customer = f"retry-{uuid.uuid4().hex[:8]}"
    decision = stubs[0].spend.Authorize(
        spend_pb.AuthorizeRequest(
            customer_id=customer, model=MODEL, input_tokens=10, max_output_tokens=10
        )
    )
    assert decision.allowed
    request = spend_pb.RecordSpendRequest(
        request_id=f"once-{uuid.uuid4()}",
        reservation_id=decision.reservation_id,
        model=MODEL,
        usage=spend_pb.Usage(input_tokens=10, output_tokens=7),
    )
    with ThreadPoolExecutor(max_workers=5) as pool:
        replies = list(
            pool.map(
                lambda i: stubs[i % len(stubs)].spend.RecordSpend(request, timeout=30), range(5)
            )
        )

    assert len({r.entry.entry_id for r in replies}) == 1
    assert len({r.spend_nanos for r in replies}) == 1
    entries, total = stubs[0].ledger_sum(customer)
    assert entries == 1
    assert total == replies[0].charged_nanos == replies[0].spend_nanos
    summary = stubs[0].spend.GetSpend(
        spend_pb.GetSpendRequest(customer_id=customer), metadata=ADMIN
    )
    assert summary.spend_nanos == total
    assert summary.reserved_nanos == 0
    for stub in stubs:
        stub.close()
