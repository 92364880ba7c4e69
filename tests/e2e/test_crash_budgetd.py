"""kill -9 of budgetd during a burst of calls through the shim, on SQLite and on PostgreSQL.

40 calls (half streamed, half not) from 8 clients; budgetd is killed once about half have been
answered, and restarted (SQLite: on the same file). After the shim's outbox has drained:

- every call the client saw answered 200 is in the ledger exactly once: as many entries as
  answers, and the same costs, computed here from each answer's ``usage`` at the model's price;
- spend == the ledger's sum;
- no hold outlives its TTL (budgetd runs with a 2 s TTL and a 0.25 s sweep): reserved == 0.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack, unique
from tests.support.crash import (
    call_body,
    cost_nanos,
    ledger,
    pending,
    shim_client,
    spend,
    start_shim,
    stream_usage,
    wait_for,
)
from tests.support.processes import BudgetdProcess, run_migrate

pytestmark = pytest.mark.e2e

CALLS = 40
CLIENTS = 8
HOLD_TTL_SECONDS = 2


def test_budgetd_killed_mid_burst_every_answered_call_is_charged_once(
    stack: Stack, tmp_path: Path, database_url: str
) -> None:
    if database_url.startswith("postgresql"):
        run_migrate(database_url)
    budgetd = BudgetdProcess(
        database_url,
        tmp_path / "budgetd.log",
        BUDGETD_HOLD_TTL_SECONDS=str(HOLD_TTL_SECONDS),
        BUDGETD_EXPIRY_INTERVAL_SECONDS="0.25",
    ).start()
    outbox = tmp_path / "outbox.db"
    shim = start_shim(stack.upstream_url, budgetd.address, outbox, tmp_path / "shim.log")
    customer = unique("burst")
    try:
        with shim_client(shim) as client:
            created = client.post("/customer/new", json={"user_id": customer, "max_budget": 100})
            assert created.status_code == 200, created.text

            answered: list[dict[str, Any]] = []
            refused: list[int] = []
            lock = threading.Lock()
            half = threading.Event()

            def one(i: int) -> None:
                stream = i % 2 == 0
                body = call_body(customer, stream=stream, text=f"call {i} " + "x" * (i * 7))
                reply = client.post("/chat/completions", json=body)
                with lock:
                    if reply.status_code != 200:
                        refused.append(reply.status_code)
                        return
                    answered.append(stream_usage(reply.text) if stream else reply.json()["usage"])
                    if len(answered) >= CALLS // 2:
                        half.set()

            with ThreadPoolExecutor(CLIENTS) as pool:
                calls = [pool.submit(one, i) for i in range(CALLS)]
                assert half.wait(30), "half of the calls were never answered"
                budgetd.kill()
                for call in calls:
                    call.result(timeout=30)

        # Calls that reached budgetd after the kill were refused (fail closed), nothing else.
        assert set(refused) <= {503}, refused
        assert refused, "the kill came after the last call"
        assert len(answered) + len(refused) == CALLS
        # Streams in flight at the kill were answered, their charges queued in the outbox.
        queued = len(pending(outbox))
        assert queued >= 1

        budgetd.start(port=budgetd.port)
        wait_for(lambda: not pending(outbox), 30, "the shim's outbox to drain")

        entries = ledger(budgetd.address, customer)
        expected = sorted(cost_nanos(usage) for usage in answered)
        assert len(entries) == len(answered)
        assert len({e.request_id for e in entries}) == len(entries)
        assert sorted(e.cost_nanos for e in entries) == expected
        total = sum(expected)

        def settled() -> bool:
            now = spend(budgetd.address, customer)
            return now.reserved_nanos == 0

        wait_for(settled, HOLD_TTL_SECONDS + 5, "every hold to be settled, released or expired")
        final = spend(budgetd.address, customer)
        assert final.spend_nanos == total == sum(e.cost_nanos for e in entries)
        assert final.ledger_entry_count == len(answered)
    finally:
        shim.stop()
        budgetd.stop()
