"""Outages fail fast and heal by themselves; SIGTERM drains the calls in flight.

PostgreSQL is made unreachable by a TCP proxy between budgetd and the server (the machine's
PostgreSQL keeps running for everyone else): ``block`` holds every byte (a partition: nothing
answers), ``drop`` closes every connection (the server stopped).
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from budgetd.errors import Unavailable
from budgetd.store.database import Database
from budgetd.v1 import spend_service_pb2 as spend_pb
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc
from tests.support.client import ADMIN, Stubs
from tests.support.processes import BudgetdProcess, run_migrate
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

DEADLINE_S = 1.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _proxied(url: str, proxy: TcpProxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of this test's PostgreSQL database (schema migrated directly)."""
    run_migrate(postgres_url)
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest.fixture
def daemon(postgres_url: str, proxy: TcpProxy, tmp_path: Path) -> Iterator[BudgetdProcess]:
    """budgetd on PostgreSQL through the proxy, with fewer RPC threads than calls at once."""
    process = BudgetdProcess(
        _proxied(postgres_url, proxy),
        tmp_path / "budgetd.log",
        BUDGETD_WORKERS="4",
        BUDGETD_STORE_CHECK_INTERVAL_SECONDS="0.5",
    ).start()
    try:
        yield process
    finally:
        proxy.resume()
        process.stop()


def _timed(call: Callable[..., Any], request: Any) -> tuple[grpc.StatusCode, float]:
    """The status code of one call with DEADLINE_S, and how long it took."""
    started = time.monotonic()
    try:
        call(request, timeout=DEADLINE_S)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
    return code, time.monotonic() - started


def _wait_for_health(daemon: BudgetdProcess, want: int, timeout: float) -> float:
    """Seconds until the daemon's overall health is ``want``."""
    started = time.monotonic()
    with daemon.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - started < timeout:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == want:
                return time.monotonic() - started
            time.sleep(0.05)
    raise AssertionError(f"health did not become {want} within {timeout}s")


def _authorize(customer: str, request_id: str) -> spend_pb.AuthorizeRequest:
    return spend_pb.AuthorizeRequest(
        customer_id=customer, estimated_cost_nanos=1000, request_id=request_id
    )


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["block", "drop"])
def test_an_outage_fails_fast_and_heals_without_a_restart(
    daemon: BudgetdProcess, proxy: TcpProxy, mode: str
) -> None:
    stubs = Stubs.connect(daemon.address)
    customer = f"outage-{mode}"
    held = stubs.spend.Authorize(_authorize(customer, "before"), timeout=5)
    assert held.allowed
    charge = spend_pb.RecordSpendRequest(
        request_id="charge-1", reservation_id=held.reservation_id, cost_nanos=4321
    )
    assert daemon.proc is not None
    pid = daemon.proc.pid

    getattr(proxy, mode)()
    # Three times as many calls at once as budgetd has RPC threads: each ends within its
    # deadline (budgetd answers UNAVAILABLE, or the client's deadline passes first).
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(
            pool.map(
                lambda i: _timed(stubs.spend.Authorize, _authorize(customer, f"d{i}")), range(12)
            )
        )
    for code, elapsed in outcomes:
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert elapsed < 2 * DEADLINE_S
    # The charge of the call admitted before the outage fails too (or its answer is lost).
    code, elapsed = _timed(stubs.spend.RecordSpend, charge)
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert elapsed < 2 * DEADLINE_S

    # Health says so, and from then on calls are refused at once: no call waits for the
    # database, so no RPC thread is stuck (a stuck pool would make these time out instead).
    _wait_for_health(daemon, NOT_SERVING, timeout=10)
    for i in range(8):
        code, elapsed = _timed(stubs.spend.Authorize, _authorize(customer, f"fast-{i}"))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert elapsed < DEADLINE_S / 2

    # The database is back: health and calls recover in the same process.
    proxy.resume()
    _wait_for_health(daemon, SERVING, timeout=15)
    assert daemon.proc.poll() is None
    assert daemon.proc.pid == pid
    after = stubs.spend.Authorize(_authorize(customer, "after"), timeout=DEADLINE_S)
    assert after.allowed
    stubs.spend.ReleaseReservation(
        spend_pb.ReleaseReservationRequest(reservation_id=after.reservation_id), timeout=5
    )

    # The gateway retries the charge with the same request_id: recorded exactly once, whether
    # or not the attempt during the outage reached the database.
    first = stubs.spend.RecordSpend(charge, timeout=5)
    again = stubs.spend.RecordSpend(charge, timeout=5)
    assert again.entry.entry_id == first.entry.entry_id
    assert stubs.ledger_sum(customer) == (1, 4321)
    summary = stubs.spend.GetSpend(
        spend_pb.GetSpendRequest(customer_id=customer), metadata=ADMIN, timeout=5
    )
    assert summary.spend_nanos == 4321
    stubs.close()


@pytest.mark.postgres
def test_a_unit_of_work_ends_with_its_deadline_when_the_database_hangs(
    postgres_url: str, proxy: TcpProxy
) -> None:
    """In-process: a statement the database never answers ends at the store timeout, and the
    pool replaces the connection once the database answers again."""
    db = Database.connect(_proxied(postgres_url, proxy), pool_size=2, timeout_s=0.5)
    try:
        with db.read() as conn:
            # The server bounds each statement and lock wait too.
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "500ms"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "500ms"
        started = time.monotonic()
        with pytest.raises(Unavailable), db.read() as conn:
            proxy.block()
            conn.exec_driver_sql("SELECT 1")
        assert time.monotonic() - started < 1.0
        # A new connection waits libpq's minimum connect timeout (2 s) at most.
        started = time.monotonic()
        with pytest.raises(Unavailable), db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert time.monotonic() - started < 2.5
        proxy.resume()
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        proxy.resume()
        db.dispose()


def _refused_within(address: str, seconds: float) -> bool:
    """Whether a new call to ``address`` is refused (UNAVAILABLE) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with grpc.insecure_channel(address) as channel:
            try:
                spend_grpc.SpendServiceStub(channel).Authorize(
                    _authorize("late", "late"), timeout=0.5
                )
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    return True
        time.sleep(0.05)
    return False


def test_sigterm_drains_calls_in_flight(sqlite_url: str, tmp_path: Path) -> None:
    daemon = BudgetdProcess(sqlite_url, tmp_path / "budgetd.log").start()
    lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        stubs = Stubs.connect(daemon.address)
        assert stubs.spend.Authorize(_authorize("warm", "warm"), timeout=5).allowed
        # Hold SQLite's write lock: budgetd's writers wait for it, so calls stay in flight.
        lock.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(6) as pool:
            in_flight = [
                pool.submit(stubs.spend.Authorize, _authorize(f"c{i}", f"r{i}"), timeout=30)
                for i in range(6)
            ]
            time.sleep(0.5)
            assert not any(call.done() for call in in_flight)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGTERM)
            # New calls are refused once SIGTERM arrived ...
            assert _refused_within(daemon.address, seconds=5)
            assert not any(call.done() for call in in_flight)
            lock.execute("ROLLBACK")
            # ... while the calls in flight complete.
            answers = [call.result(timeout=20) for call in in_flight]
        assert all(answer.allowed for answer in answers)
        assert daemon.proc.wait(20) == 0
        stubs.close()
    finally:
        lock.close()
        daemon.stop()
