"""The shim dies or stops, or budgetd is down: every answered call is still charged, once.

- kill -9 of the shim between the upstream's answer and RecordSpend (the TESTS-ONLY hook
  ``SHIM_TEST_PAUSE_BEFORE_RECORD`` holds the call there): the next shim on the same outbox file
  delivers the charge, exactly once.
- ``--fail-open`` with budgetd down: the call is served, its charge waits in the outbox and
  reaches the ledger (once, without a reservation) when budgetd is back.
- SIGTERM: a stream in flight runs to its end, the shim exits, and the charge budgetd could not
  take stays in the outbox file until the next start delivers it.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ANSWER_TOKENS, Stack, unique
from tests.support.crash import (
    call_body,
    cost_nanos,
    expected_prompt_tokens,
    ledger,
    pending,
    pending_charges,
    shim_client,
    spend,
    start_shim,
    stream_usage,
    wait_for,
)
from tests.support.processes import BudgetdProcess, free_port

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_shim_killed_before_record_spend_charges_once_after_restart(
    stack: Stack, tmp_path: Path, stream: bool
) -> None:
    customer = unique("crash-shim")
    outbox = tmp_path / "outbox.db"
    pause = tmp_path / "paused"
    shim = start_shim(
        stack.upstream_url,
        stack.budgetd_addr,
        outbox,
        tmp_path / "shim-1.log",
        SHIM_TEST_PAUSE_BEFORE_RECORD=str(pause),
    )
    body = call_body(customer, stream=stream)
    try:
        with shim_client(shim) as client, ThreadPoolExecutor(1) as pool:
            answer = pool.submit(client.post, "/chat/completions", json=body)
            wait_for(pause.exists, 10, "the call to pause after its outbox write")
            shim.kill()
            with pytest.raises(httpx.HTTPError):
                answer.result(timeout=10)
    finally:
        shim.kill()
    request_id = pause.read_text()
    assert request_id
    rows = pending_charges(outbox)
    assert [row.request_id for row in rows] == [request_id]
    expected = cost_nanos(
        {"prompt_tokens": expected_prompt_tokens(body), "completion_tokens": ANSWER_TOKENS}
    )
    assert rows[0].cost_nanos == expected
    # Not charged yet; the call's reservation is still held.
    assert ledger(stack.budgetd_addr, customer) == []
    assert spend(stack.budgetd_addr, customer).reserved_nanos > 0

    restarted = start_shim(stack.upstream_url, stack.budgetd_addr, outbox, tmp_path / "shim-2.log")
    try:
        wait_for(lambda: not pending(outbox), 15, "the restarted shim to deliver the outbox")
        entries = ledger(stack.budgetd_addr, customer)
        assert [(e.request_id, e.cost_nanos) for e in entries] == [(request_id, expected)]
        assert entries[0].reservation_id == rows[0].reservation_id
        assert entries[0].reservation_id  # it settled the call's own reservation
        after = spend(stack.budgetd_addr, customer)
        assert (after.spend_nanos, after.reserved_nanos) == (expected, 0)
        # And nothing more arrives: a restart delivers what was left, once.
        restarted.stop()
        again = start_shim(stack.upstream_url, stack.budgetd_addr, outbox, tmp_path / "shim-3.log")
        again.stop()
        assert len(ledger(stack.budgetd_addr, customer)) == 1
    finally:
        restarted.stop()


def test_fail_open_charge_reaches_the_ledger_once_budgetd_is_back(
    stack: Stack, tmp_path: Path
) -> None:
    customer = unique("crash-fail-open")
    outbox = tmp_path / "outbox.db"
    port = free_port()  # budgetd will listen here, but not yet
    shim = start_shim(
        stack.upstream_url, f"127.0.0.1:{port}", outbox, tmp_path / "shim.log", "--fail-open"
    )
    budgetd = BudgetdProcess(f"sqlite:///{tmp_path / 'budgetd.db'}", tmp_path / "budgetd.log")
    try:
        with shim_client(shim) as client:
            answer = client.post("/chat/completions", json=call_body(customer))
        assert answer.status_code == 200, answer.text
        expected = cost_nanos(answer.json()["usage"])
        [queued] = pending_charges(outbox)
        assert (queued.customer_id, queued.reservation_id, queued.cost_nanos) == (
            customer,
            "",
            expected,
        )
        assert "served without a reservation" in (tmp_path / "shim.log").read_text()

        budgetd.start(port=port)
        wait_for(lambda: not pending(outbox), 20, "the outbox to drain once budgetd is up")
        entries = ledger(budgetd.address, customer)
        assert [(e.request_id, e.reservation_id, e.cost_nanos) for e in entries] == [
            (queued.request_id, "", expected)
        ]
        assert spend(budgetd.address, customer).spend_nanos == expected
    finally:
        shim.stop()
        budgetd.stop()


def test_sigterm_finishes_the_stream_in_flight_and_keeps_the_undelivered_charge(
    stack: Stack, tmp_path: Path
) -> None:
    customer = unique("crash-sigterm")
    outbox = tmp_path / "outbox.db"
    budgetd = BudgetdProcess(f"sqlite:///{tmp_path / 'budgetd.db'}", tmp_path / "budgetd.log")
    budgetd.start()
    shim = start_shim(stack.upstream_url, budgetd.address, outbox, tmp_path / "shim.log")
    try:
        first_chunk = threading.Event()

        def stream_call() -> tuple[int, str]:
            with (
                shim_client(shim) as client,
                client.stream(
                    "POST", "/chat/completions", json=call_body(customer, stream=True)
                ) as answer,
            ):
                text = ""
                for piece in answer.iter_text():
                    text += piece
                    first_chunk.set()
                return answer.status_code, text

        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(stream_call)
            assert first_chunk.wait(10)
            # budgetd goes away, then the shim is asked to stop, both mid-stream.
            budgetd.kill()
            assert shim.proc is not None
            shim.proc.send_signal(signal.SIGTERM)
            status, text = call.result(timeout=20)
        # A graceful exit (uvicorn re-raises the SIGTERM it handled once it has shut down).
        assert shim.proc.wait(15) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in (tmp_path / "shim.log").read_text()
        assert status == 200
        expected = cost_nanos(stream_usage(text))  # the stream ran to its [DONE]
        rows = pending_charges(outbox)
        assert [row.cost_nanos for row in rows] == [expected]

        budgetd.start(port=budgetd.port)
        shim = start_shim(stack.upstream_url, budgetd.address, outbox, tmp_path / "shim-2.log")
        wait_for(lambda: not pending(outbox), 15, "the next shim to deliver the outbox")
        entries = ledger(budgetd.address, customer)
        assert [(e.request_id, e.cost_nanos) for e in entries] == [(rows[0].request_id, expected)]
        after = spend(budgetd.address, customer)
        assert (after.spend_nanos, after.reserved_nanos) == (expected, 0)
    finally:
        shim.stop()
        budgetd.stop()
