"""Soft-budget alerts reach a real HTTP receiver once per window, and never hold up a call.

budgetd runs as a real process with ``BUDGETD_SOFT_BUDGET_WEBHOOK_URL`` pointing at a stdlib
HTTP server in this process. Its clock is a ``BUDGETD_CLOCK_FILE`` the test moves, so a retry's
backoff elapses without sleeping through it. Waits poll with a deadline.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from budgetd.store.database import Database
from budgetd.store.schema import alerts
from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.support.client import ADMIN, Stubs
from tests.support.processes import BudgetdProcess, free_port

pytestmark = pytest.mark.e2e

US = 1_000_000
START = 1_710_324_000 * US  # 2024-03-13 10:00:00 UTC
DEADLINE_S = 10.0


@dataclass
class Receiver:
    """An HTTP server that records every POST body and answers with ``statuses`` in turn."""

    statuses: list[int] = field(default_factory=lambda: [200])
    hold: threading.Event | None = None  # when set up, every answer waits for it
    bodies: list[dict[str, Any]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, body: bytes) -> int:
        if self.hold is not None:
            self.hold.wait(DEADLINE_S)
        with self.lock:
            self.bodies.append(json.loads(body))
            status = self.statuses[min(len(self.answered), len(self.statuses) - 1)]
            self.answered.append(status)
            return status


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status = state.handle(body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()


@dataclass
class Daemon:
    stubs: Stubs
    db: Database
    clock_file: Path

    def set_time(self, now_us: int) -> None:
        staging = self.clock_file.with_suffix(".tmp")
        staging.write_text(str(now_us))
        os.replace(staging, self.clock_file)

    def customer(self, soft: int, max_budget: int) -> str:
        user_id = f"soft-{uuid.uuid4().hex[:8]}"
        self.stubs.customers.CreateCustomer(
            customer_pb.CreateCustomerRequest(
                customer=res.Customer(
                    user_id=user_id,
                    limits=res.BudgetLimits(
                        max_budget_nanos=max_budget,
                        soft_budget_nanos=soft,
                        budget_duration="1d",
                        window_alignment=res.WINDOW_ALIGNMENT_CALENDAR,
                    ),
                )
            ),
            metadata=ADMIN,
        )
        return user_id

    def spend(self, user_id: str, cost: int) -> spend_pb.RecordSpendResponse:
        decision = self.stubs.spend.Authorize(
            spend_pb.AuthorizeRequest(customer_id=user_id, estimated_cost_nanos=cost), timeout=5
        )
        assert decision.allowed, decision
        return self.stubs.spend.RecordSpend(
            spend_pb.RecordSpendRequest(
                request_id=str(uuid.uuid4()),
                reservation_id=decision.reservation_id,
                cost_nanos=cost,
            ),
            timeout=5,
        )

    def alert_rows(self) -> list[tuple[int, int | None, int]]:
        """(attempts, delivered_us, next_attempt_us) of every alert."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(alerts.c.attempts, alerts.c.delivered_us, alerts.c.next_attempt_us)
            ).all()
        return [(row[0], row[1], row[2]) for row in rows]


def start_daemon(tmp_path: Path, webhook_url: str) -> tuple[BudgetdProcess, Daemon]:
    url = f"sqlite:///{tmp_path / 'budgetd.db'}"
    clock_file = tmp_path / "clock"
    clock_file.write_text(str(START))
    process = BudgetdProcess(
        url,
        tmp_path / "budgetd.log",
        BUDGETD_CLOCK_FILE=str(clock_file),
        BUDGETD_SOFT_BUDGET_WEBHOOK_URL=webhook_url,
        BUDGETD_ALERT_INTERVAL_SECONDS="0.1",
        BUDGETD_EXPIRY_INTERVAL_SECONDS="0.1",
    ).start()
    return process, Daemon(Stubs.connect(process.address), Database.connect(url), clock_file)


@pytest.fixture
def daemon_for(tmp_path: Path) -> Iterator[Callable[[str], Daemon]]:
    started: list[tuple[BudgetdProcess, Daemon]] = []

    def start(webhook_url: str) -> Daemon:
        started.append(start_daemon(tmp_path, webhook_url))
        return started[-1][1]

    try:
        yield start
    finally:
        for process, daemon in started:
            daemon.stubs.close()
            daemon.db.dispose()
            process.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def all_delivered(daemon: Daemon, count: int) -> Callable[[], bool]:
    def check() -> bool:
        rows = daemon.alert_rows()
        return len(rows) == count and all(delivered is not None for _, delivered, _ in rows)

    return check


def test_crossing_the_soft_budget_twice_in_a_window_posts_one_alert(
    receiver: Receiver, daemon_for: Callable[[str], Daemon]
) -> None:
    daemon = daemon_for(receiver.url)
    user_id = daemon.customer(soft=500, max_budget=2000)
    daemon.spend(user_id, 300)
    daemon.spend(user_id, 300)  # crosses 500
    daemon.spend(user_id, 100)  # still over: no second alert
    daemon.spend(user_id, 400)

    wait_for(all_delivered(daemon, 1), "the alert to be delivered")
    assert receiver.bodies == [
        {
            "type": "soft_budget_exceeded",
            "customer_id": user_id,
            "spend_nanos": 600,
            "soft_budget_nanos": 500,
            "max_budget_nanos": 2000,
            "window_start_us": START - 10 * 3600 * US,
            "window_end_us": START + 14 * 3600 * US,
        }
    ]
    customer = daemon.stubs.customers.GetCustomer(
        customer_pb.GetCustomerRequest(user_id=user_id), metadata=ADMIN
    ).customer
    assert customer.soft_budget_exceeded

    # The next day is a new window: the flag clears, and crossing again alerts again, once.
    daemon.set_time(START + 14 * 3600 * US)
    customer = daemon.stubs.customers.GetCustomer(
        customer_pb.GetCustomerRequest(user_id=user_id), metadata=ADMIN
    ).customer
    assert not customer.soft_budget_exceeded
    daemon.spend(user_id, 700)
    daemon.spend(user_id, 10)
    wait_for(all_delivered(daemon, 2), "the second window's alert")
    assert len(receiver.bodies) == 2
    assert receiver.bodies[1]["spend_nanos"] == 700


def test_a_refused_alert_is_retried_and_delivered_once(
    receiver: Receiver, daemon_for: Callable[[str], Daemon]
) -> None:
    receiver.statuses = [500, 200]
    daemon = daemon_for(receiver.url)
    user_id = daemon.customer(soft=100, max_budget=1000)
    assert daemon.spend(user_id, 150).spend_nanos == 150  # the call itself is unaffected

    # The first attempt is refused and a retry scheduled with backoff (on budgetd's clock).
    def retry_scheduled() -> bool:
        rows = daemon.alert_rows()
        return (
            len(rows) == 1
            and rows[0][0] == 1
            and rows[0][1] is None
            and START < rows[0][2] <= START + 10 * US  # the backoff, not the 30 s lease
        )

    wait_for(retry_scheduled, "the retry to be scheduled")
    assert receiver.answered == [500]
    daemon.set_time(daemon.alert_rows()[0][2])  # the backoff has elapsed
    wait_for(all_delivered(daemon, 1), "the retry to be delivered")
    assert receiver.answered == [500, 200]
    assert receiver.bodies[0] == receiver.bodies[1]
    assert receiver.bodies[0]["customer_id"] == user_id


def test_an_unreachable_webhook_never_fails_the_calls(
    daemon_for: Callable[[str], Daemon],
) -> None:
    daemon = daemon_for(f"http://127.0.0.1:{free_port()}/nobody-listens")
    user_id = daemon.customer(soft=10, max_budget=10_000)
    daemon.spend(user_id, 20)
    wait_for(lambda: daemon.alert_rows()[0][0] >= 1, "a failed delivery attempt")
    for _ in range(20):
        started = time.monotonic()
        charge = daemon.spend(user_id, 20)
        assert time.monotonic() - started < 1.0
    assert charge.spend_nanos == 21 * 20
    rows = daemon.alert_rows()
    assert len(rows) == 1 and rows[0][1] is None  # still pending, never delivered


def test_a_webhook_that_hangs_never_slows_the_calls(
    receiver: Receiver, daemon_for: Callable[[str], Daemon]
) -> None:
    receiver.hold = threading.Event()
    daemon = daemon_for(receiver.url)
    user_id = daemon.customer(soft=10, max_budget=10_000)
    daemon.spend(user_id, 20)
    # The sender is now stuck in its POST; calls keep their usual speed meanwhile.
    wait_for(lambda: daemon.alert_rows()[0][0] >= 1, "the sender to start posting")
    slowest = 0.0
    for _ in range(20):
        started = time.monotonic()
        daemon.spend(user_id, 20)
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 1.0
    assert receiver.bodies == []

    # Nor does it hold up the other background job: a hold past its TTL is swept meanwhile
    # (well before the webhook's 5 s client timeout would free a shared thread).
    stale = daemon.stubs.spend.Authorize(
        spend_pb.AuthorizeRequest(customer_id=user_id, estimated_cost_nanos=7), timeout=5
    )
    assert stale.allowed
    daemon.set_time(START + 3600 * US)  # past the 600 s hold TTL

    def swept() -> bool:
        summary = daemon.stubs.spend.GetSpend(
            spend_pb.GetSpendRequest(customer_id=user_id), metadata=ADMIN
        )
        return summary.reserved_nanos == 0

    wait_for(swept, "the stale hold to be expired by the sweeper", timeout=3.0)
    receiver.hold.set()
    wait_for(all_delivered(daemon, 1), "the held alert to be delivered")
    assert len(receiver.bodies) == 1
