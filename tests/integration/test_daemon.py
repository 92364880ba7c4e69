"""The daemon as operators run it: health, reflection, auth, metrics, restarts and SIGTERM."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.support.client import ADMIN, Stubs
from tests.support.processes import ADMIN_TOKEN, BudgetdProcess, free_port, run_migrate

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(database_url: str, tmp_path: Path) -> Iterator[BudgetdProcess]:
    """A real budgetd on each backend (PostgreSQL migrated first, as operators must)."""
    if database_url.startswith("postgresql"):
        run_migrate(database_url)
    process = BudgetdProcess(database_url, tmp_path / "budgetd.log").start()
    try:
        yield process
    finally:
        process.stop()


def test_health_and_reflection_list_every_service(daemon: BudgetdProcess) -> None:
    with grpc.insecure_channel(daemon.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "budgetd.v1.SpendService", "budgetd.v1.CustomerService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {
        "budgetd.v1.SpendService",
        "budgetd.v1.CustomerService",
        "budgetd.v1.BudgetService",
        "grpc.health.v1.Health",
    } <= names


def test_management_needs_the_admin_token(daemon: BudgetdProcess) -> None:
    stubs = Stubs.connect(daemon.address)
    request = customer_pb.CreateCustomerRequest(customer=res.Customer(user_id="guarded"))
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", ADMIN_TOKEN),)):
        with pytest.raises(grpc.RpcError) as caught:
            stubs.customers.CreateCustomer(request, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert ADMIN_TOKEN not in (caught.value.details() or "")
    created = stubs.customers.CreateCustomer(request, metadata=ADMIN)
    assert created.customer.user_id == "guarded"
    stubs.close()


def test_bad_input_names_the_field_and_changes_nothing(daemon: BudgetdProcess) -> None:
    stubs = Stubs.connect(daemon.address)
    bad = [
        spend_pb.AuthorizeRequest(customer_id="", model="gpt-4o-mini"),
        spend_pb.AuthorizeRequest(customer_id="x" * 257, model="gpt-4o-mini"),
        spend_pb.AuthorizeRequest(customer_id="tab\there", model="gpt-4o-mini"),
        spend_pb.AuthorizeRequest(customer_id="c", model="gpt-4o-mini", input_tokens=-1),
        spend_pb.AuthorizeRequest(customer_id="c", estimated_cost_nanos=-5),
    ]
    fields = ["customer_id", "customer_id", "customer_id", "input_tokens", "estimated_cost_nanos"]
    for request, field in zip(bad, fields, strict=True):
        with pytest.raises(grpc.RpcError) as caught:
            stubs.spend.Authorize(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (caught.value.details() or "")
    listed = stubs.customers.ListCustomers(customer_pb.ListCustomersRequest(), metadata=ADMIN)
    assert list(listed.customers) == []
    stubs.close()


def test_an_acknowledged_charge_survives_kill_9(daemon: BudgetdProcess) -> None:
    stubs = Stubs.connect(daemon.address)
    customer = f"crash-{uuid.uuid4().hex[:6]}"
    decision = stubs.spend.Authorize(
        spend_pb.AuthorizeRequest(customer_id=customer, estimated_cost_nanos=1000)
    )
    charge = stubs.spend.RecordSpend(
        spend_pb.RecordSpendRequest(
            request_id="survivor", reservation_id=decision.reservation_id, cost_nanos=777
        )
    )
    stubs.close()
    daemon.kill()
    daemon.start()
    stubs = Stubs.connect(daemon.address)
    summary = stubs.spend.GetSpend(spend_pb.GetSpendRequest(customer_id=customer), metadata=ADMIN)
    assert summary.spend_nanos == charge.spend_nanos == 777
    assert summary.reserved_nanos == 0
    # The retry a gateway sends after the crash is answered from the ledger, not charged again.
    again = stubs.spend.RecordSpend(
        spend_pb.RecordSpendRequest(
            request_id="survivor", reservation_id=decision.reservation_id, cost_nanos=777
        )
    )
    assert again.entry.entry_id == charge.entry.entry_id
    assert stubs.ledger_sum(customer) == (1, 777)
    stubs.close()


def test_sigterm_stops_cleanly(daemon: BudgetdProcess) -> None:
    assert daemon.stop() == 0


def test_metrics_count_calls_and_decisions(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    process = BudgetdProcess(
        sqlite_url, tmp_path / "budgetd.log", BUDGETD_METRICS_ADDR=f"127.0.0.1:{port}"
    ).start()
    try:
        stubs = Stubs.connect(process.address)
        stubs.spend.Authorize(spend_pb.AuthorizeRequest(customer_id="m", estimated_cost_nanos=1))
        stubs.close()
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        process.stop()
    assert 'budgetd_authorize_decisions_total{outcome="ALLOWED"} 1.0' in text
    assert (
        'budgetd_grpc_calls_total{code="OK",method="/budgetd.v1.SpendService/Authorize"} 1.0'
        in text
    )
    assert "budgetd_store_transaction_seconds_count" in text
    assert ADMIN_TOKEN not in (tmp_path / "budgetd.log").read_text()


def test_postgres_serve_refuses_an_unmigrated_schema(postgres_url: str, tmp_path: Path) -> None:
    process = BudgetdProcess(postgres_url, tmp_path / "budgetd.log")
    with pytest.raises(RuntimeError, match="budgetd migrate"):
        process.start(timeout=15)
