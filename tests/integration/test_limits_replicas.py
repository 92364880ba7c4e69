"""Rate limits, window roll-over and the default tier across two budgetd replicas on one PostgreSQL.

Both processes read the time from one ``BUDGETD_CLOCK_FILE`` that the test writes, so the whole
burst falls into one rate window, and the test moves both across a budget window boundary at the
same instant instead of sleeping until it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from budgetd.v1 import budget_service_pb2 as budget_pb
from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.support.client import ADMIN, Stubs
from tests.support.postgres import temporary_database
from tests.support.processes import BudgetdProcess, run_migrate

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

US = 1_000_000
CALLS = 200
RPM = 37
# Customers created on first use get this tier, which fits this many calls of 1000 nanos.
DEFAULT_TIER = "default-tier"
DEFAULT_FITS = 3
# Just before a calendar day ends (UTC), on a whole second.
BOUNDARY = int(datetime(2024, 3, 14, tzinfo=UTC).timestamp()) * US
DAY_BEFORE = BOUNDARY - 24 * 3600 * US


@dataclass
class Cluster:
    stubs: list[Stubs]
    clock_file: Path

    def set_time(self, now_us: int) -> None:
        """Move both replicas' clock; atomically, so no replica reads a half-written file."""
        staging = self.clock_file.with_suffix(".tmp")
        staging.write_text(str(now_us))
        os.replace(staging, self.clock_file)

    def stub(self, i: int) -> Stubs:
        return self.stubs[i % len(self.stubs)]

    def create(self, user_id: str, limits: res.BudgetLimits) -> None:
        self.stubs[0].customers.CreateCustomer(
            customer_pb.CreateCustomerRequest(
                customer=res.Customer(user_id=user_id, limits=limits)
            ),
            metadata=ADMIN,
        )

    def ledger(self, customer_id: str) -> list[res.LedgerEntry]:
        entries: list[res.LedgerEntry] = []
        token = ""
        while True:
            page = self.stubs[-1].spend.ListLedgerEntries(
                spend_pb.ListLedgerEntriesRequest(
                    customer_id=customer_id, page_size=1000, page_token=token
                ),
                metadata=ADMIN,
            )
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                return entries


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two replicas on one PostgreSQL, on one clock file; shared by this module's tests."""
    root = tmp_path_factory.mktemp("replicas")
    clock_file = root / "clock"
    clock_file.write_text(str(DAY_BEFORE))
    with temporary_database() as url:
        run_migrate(url)
        processes = [
            BudgetdProcess(
                url,
                root / f"budgetd-{i}.log",
                BUDGETD_CLOCK_FILE=str(clock_file),
                BUDGETD_DEFAULT_BUDGET_ID=DEFAULT_TIER,
            )
            for i in range(2)
        ]
        stubs: list[Stubs] = []
        try:
            for process in processes:
                process.start()
            stubs = [Stubs.connect(p.address) for p in processes]
            stubs[0].budgets.CreateBudget(
                budget_pb.CreateBudgetRequest(
                    budget=res.Budget(
                        budget_id=DEFAULT_TIER,
                        limits=res.BudgetLimits(max_budget_nanos=DEFAULT_FITS * 1000),
                    )
                ),
                metadata=ADMIN,
            )
            yield Cluster(stubs, clock_file)
        finally:
            for stub in stubs:
                stub.close()
            for process in processes:
                process.stop()


def test_rpm_admits_exactly_the_limit_under_200_concurrent_calls(cluster: Cluster) -> None:
    start = BOUNDARY - 10 * 3600 * US  # any whole second, away from the other test's times
    cluster.set_time(start)
    customer = f"rpm-{uuid.uuid4().hex[:8]}"
    cluster.create(customer, res.BudgetLimits(rpm_limit=RPM))

    def authorize(i: int) -> spend_pb.AuthorizeResponse:
        return cluster.stub(i).spend.Authorize(
            spend_pb.AuthorizeRequest(
                customer_id=customer, estimated_cost_nanos=1, request_id=f"rpm-{i}"
            ),
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=64) as pool:
        decisions = list(pool.map(authorize, range(CALLS)))

    admitted = [d for d in decisions if d.allowed]
    refused = [d for d in decisions if not d.allowed]
    assert len(admitted) == RPM
    assert {d.denial_reason for d in refused} == {spend_pb.DENIAL_REASON_RATE_LIMITED}
    # Every request counted in this second: the window frees it 61 s later.
    assert {d.retry_after.ToMicroseconds() for d in refused} == {61 * US}

    # A minute and a second later (for both replicas) the limit admits again, exactly as many.
    cluster.set_time(start + 61 * US)
    with ThreadPoolExecutor(max_workers=64) as pool:
        later = list(pool.map(authorize, range(CALLS, 2 * CALLS)))
    assert sum(d.allowed for d in later) == RPM


def test_a_boundary_crossed_by_both_replicas_at_once_resets_once(cluster: Cluster) -> None:
    cluster.set_time(BOUNDARY - 10 * US)
    customer = f"roll-{uuid.uuid4().hex[:8]}"
    cluster.create(
        customer,
        res.BudgetLimits(
            max_budget_nanos=10**12,
            budget_duration="1d",
            window_alignment=res.WINDOW_ALIGNMENT_CALENDAR,
        ),
    )
    stub = cluster.stubs[0].spend

    # Yesterday: five settled charges and three calls still in flight at the boundary.
    for i in range(5):
        decision = stub.Authorize(
            spend_pb.AuthorizeRequest(customer_id=customer, estimated_cost_nanos=1000)
        )
        stub.RecordSpend(
            spend_pb.RecordSpendRequest(
                request_id=f"old-{i}", reservation_id=decision.reservation_id, cost_nanos=1000
            )
        )
    in_flight = [
        stub.Authorize(spend_pb.AuthorizeRequest(customer_id=customer, estimated_cost_nanos=500))
        for _ in range(3)
    ]
    assert (
        stub.GetSpend(spend_pb.GetSpendRequest(customer_id=customer), metadata=ADMIN).spend_nanos
        == 5000
    )

    # Both replicas cross midnight at the same instant; the first calls race to roll over.
    cluster.set_time(BOUNDARY + 1)
    costs = [100 + i for i in range(120)]

    def call(i: int) -> int:
        spend = cluster.stub(i).spend
        decision = spend.Authorize(
            spend_pb.AuthorizeRequest(
                customer_id=customer, estimated_cost_nanos=costs[i], request_id=f"new-{i}"
            ),
            timeout=30,
        )
        assert decision.allowed, decision
        assert decision.window_end_time.ToMicroseconds() == BOUNDARY + 24 * 3600 * US
        charge = cluster.stub(i + 1).spend.RecordSpend(
            spend_pb.RecordSpendRequest(
                request_id=f"charge-new-{i}",
                reservation_id=decision.reservation_id,
                cost_nanos=costs[i],
            ),
            timeout=30,
        )
        return int(charge.charged_nanos)

    def settle_old(i: int) -> int:
        charge = cluster.stub(i).spend.RecordSpend(
            spend_pb.RecordSpendRequest(
                request_id=f"charge-old-{i}",
                reservation_id=in_flight[i].reservation_id,
                cost_nanos=400,
            ),
            timeout=30,
        )
        return int(charge.entry.window_start_time.ToMicroseconds())

    with ThreadPoolExecutor(max_workers=48) as pool:
        new_charges = pool.map(call, range(len(costs)))
        old_windows = pool.map(settle_old, range(len(in_flight)))
        assert sum(new_charges) == sum(costs)
        # Calls that started yesterday are charged to yesterday.
        assert set(old_windows) == {DAY_BEFORE}

    summary = stub.GetSpend(spend_pb.GetSpendRequest(customer_id=customer), metadata=ADMIN)
    assert summary.window_start_time.ToMicroseconds() == BOUNDARY
    assert summary.reserved_nanos == 0
    entries = cluster.ledger(customer)
    today = [e for e in entries if e.window_start_time.ToMicroseconds() == BOUNDARY]
    yesterday = [e for e in entries if e.window_start_time.ToMicroseconds() == DAY_BEFORE]
    assert len(today) == len(costs) and len(yesterday) == 5 + len(in_flight)
    # Not one of today's charges was wiped by a second reset.
    assert summary.spend_nanos == sum(e.cost_nanos for e in today) == sum(costs)
    assert sum(e.cost_nanos for e in yesterday) == 5000 + 400 * len(in_flight)
    # spend_after is a running sum within the new window: the last charge saw all of them.
    assert max(e.spend_after_nanos for e in today) == sum(costs)


def test_concurrent_first_calls_of_a_new_customer_share_the_default_tier(cluster: Cluster) -> None:
    # LiteLLM #40095: 8 concurrent first calls of an unknown customer spent 264,000x the
    # default budget. Here 64 first calls race over both replicas to create the customer.
    cluster.set_time(BOUNDARY - 5 * 3600 * US)
    customer = f"first-{uuid.uuid4().hex[:8]}"

    def authorize(i: int) -> spend_pb.AuthorizeResponse:
        return cluster.stub(i).spend.Authorize(
            spend_pb.AuthorizeRequest(customer_id=customer, estimated_cost_nanos=1000),
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=64) as pool:
        decisions = list(pool.map(authorize, range(64)))
    assert sum(d.allowed for d in decisions) == DEFAULT_FITS
    assert {d.denial_reason for d in decisions if not d.allowed} == {
        spend_pb.DENIAL_REASON_BUDGET_EXCEEDED
    }
    created = (
        cluster.stubs[1]
        .customers.GetCustomer(customer_pb.GetCustomerRequest(user_id=customer), metadata=ADMIN)
        .customer
    )
    assert created.budget_id == DEFAULT_TIER
    assert created.reserved_nanos == DEFAULT_FITS * 1000
