"""The shim's durable charge outbox, against a fake budgetd: write, deliver, back off, resume."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from budgetd.pricing import TokenUsage
from budgetd.v1 import spend_service_pb2 as spend_pb
from proxy_shim.errors import BudgetdUnavailable, InternalError, NotFound, UnprocessableField
from proxy_shim.outbox import (
    DEAD,
    Charge,
    Outbox,
    OutboxFile,
    Release,
    _Writer,
    backoff,
    new_request_id,
    read_rows,
)


class FakeBudgetd:
    """RecordSpend and ReleaseReservation as budgetd answers them, idempotent on request_id.

    ``fail`` is raised by every call while set; ``lose_answers`` commits the charge and then
    raises (the answer lost on the way back, as when budgetd dies right after its commit).
    """

    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.lose_answers = False
        self.unknown_reservations: set[str] = set()
        self.requests: list[spend_pb.RecordSpendRequest] = []
        self.ledger: dict[str, spend_pb.RecordSpendRequest] = {}
        self.released: list[str] = []

    async def record_spend(
        self, request: spend_pb.RecordSpendRequest
    ) -> spend_pb.RecordSpendResponse:
        self.requests.append(request)
        if self.fail is not None:
            raise self.fail
        if request.request_id not in self.ledger:
            if request.reservation_id in self.unknown_reservations:
                raise NotFound(f"reservation {request.reservation_id!r} not found")
            self.ledger[request.request_id] = request
        if self.lose_answers:
            raise BudgetdUnavailable("budgetd is unavailable: DEADLINE_EXCEEDED")
        charged = self.ledger[request.request_id].cost_nanos
        return spend_pb.RecordSpendResponse(
            charged_nanos=charged, spend_nanos=sum(r.cost_nanos for r in self.ledger.values())
        )

    async def release(self, reservation_id: str) -> int:
        if self.fail is not None:
            raise self.fail
        if reservation_id in self.unknown_reservations:
            raise NotFound("no such reservation")
        self.released.append(reservation_id)
        return 1


DOWN = BudgetdUnavailable("budgetd is unavailable: UNAVAILABLE")


def charge(cost: int = 1_000, reservation: str = "res-1", customer: str = "alice") -> Charge:
    return Charge(
        request_id=new_request_id(),
        customer_id=customer,
        model="gpt-4o-mini",
        usage=TokenUsage(input_tokens=10, output_tokens=20, cached_input_tokens=3),
        cost_nanos=cost,
        reservation_id=reservation,
    )


def run(
    tmp_path: Path,
    budgetd: FakeBudgetd,
    body: Callable[[Outbox], Awaitable[Any]],
    *,
    sender: bool = True,
    **options: Any,
) -> Any:
    """Open an outbox on tmp_path/outbox.db, run ``body``, close it."""

    async def main() -> Any:
        options.setdefault("grace_seconds", 0.05)
        options.setdefault("base_backoff", 0.01)
        options.setdefault("max_backoff", 0.05)
        outbox = Outbox(tmp_path / "outbox.db", budgetd, **options)
        await outbox.open()
        if sender:
            outbox.start_sender()
        try:
            return await body(outbox)
        finally:
            await outbox.close()

    return asyncio.run(main())


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_a_charge_is_on_disk_before_charge_returns_and_gone_once_delivered(
    tmp_path: Path,
) -> None:
    budgetd = FakeBudgetd()
    budgetd.fail = DOWN
    item = charge()

    async def body(outbox: Outbox) -> None:
        reply = await outbox.charge(item)
        assert reply is None
        # Durable: another connection (another process) sees the row, every field intact.
        [row] = read_rows(outbox.path)
        assert row.item == item
        assert outbox.pending == 1
        budgetd.fail = None
        await until(lambda: outbox.pending == 0)

    run(tmp_path, budgetd, body)
    assert read_rows(tmp_path / "outbox.db") == []
    assert list(budgetd.ledger) == [item.request_id]
    # Every attempt carried the request_id chosen before the write.
    assert {r.request_id for r in budgetd.requests} == {item.request_id}
    assert len(budgetd.requests) >= 2


def test_the_normal_case_is_one_immediate_record_spend(tmp_path: Path) -> None:
    budgetd = FakeBudgetd()
    item = charge(cost=1234)

    async def body(outbox: Outbox) -> spend_pb.RecordSpendResponse | None:
        reply = await outbox.charge(item)
        await until(lambda: outbox.pending == 0)
        return reply

    reply = run(tmp_path, budgetd, body)
    assert reply is not None and reply.charged_nanos == 1234
    assert len(budgetd.requests) == 1
    request = budgetd.requests[0]
    assert (request.request_id, request.customer_id, request.reservation_id) == (
        item.request_id,
        "alice",
        "res-1",
    )
    assert (request.usage.input_tokens, request.usage.output_tokens) == (10, 20)
    assert request.usage.cached_input_tokens == 3
    assert read_rows(tmp_path / "outbox.db") == []


def test_the_file_is_wal_and_synchronous_full(tmp_path: Path) -> None:
    run(tmp_path, FakeBudgetd(), lambda outbox: outbox.charge(charge()), sender=False)
    conn = sqlite3.connect(tmp_path / "outbox.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    # synchronous is per connection: the outbox's own connection is checked here.
    file = OutboxFile(tmp_path / "outbox.db")
    try:
        assert file.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        file.close()


def test_a_lost_answer_is_resent_with_the_same_request_id_and_charged_once(
    tmp_path: Path,
) -> None:
    budgetd = FakeBudgetd()
    budgetd.lose_answers = True
    item = charge(cost=777)

    async def body(outbox: Outbox) -> None:
        assert await outbox.charge(item) is None  # budgetd committed, but we never heard
        await until(lambda: len(budgetd.requests) >= 3)
        budgetd.lose_answers = False
        await until(lambda: outbox.pending == 0)

    run(tmp_path, budgetd, body)
    assert list(budgetd.ledger) == [item.request_id]
    assert sum(r.cost_nanos for r in budgetd.ledger.values()) == 777


def test_retries_back_off_exponentially_with_jitter() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        nominal = min(10.0, 0.25 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = backoff(attempt, 0.25, 10.0, rng)
            assert nominal / 2 <= delay <= nominal
    assert backoff(10_000, 0.25, 10.0) <= 10.0  # no overflow for a very long outage
    # Jitter spreads retries out.
    assert len({round(backoff(3, 0.25, 10.0, rng), 6) for _ in range(20)}) > 10


def test_the_sender_backs_off_while_budgetd_is_down(tmp_path: Path) -> None:
    budgetd = FakeBudgetd()
    budgetd.fail = DOWN

    async def body(outbox: Outbox) -> None:
        await outbox.charge(charge())
        await asyncio.sleep(1.0)
        # base 0.05, cap 0.4: with backoff, a second of outage is a handful of attempts,
        # not hundreds.
        attempts = len(budgetd.requests)
        assert 3 <= attempts <= 12, attempts
        [row] = read_rows(outbox.path)
        assert row.attempts >= 2

    run(tmp_path, budgetd, body, grace_seconds=0.0, base_backoff=0.05, max_backoff=0.4)


def test_a_new_start_resumes_what_a_dead_process_left(tmp_path: Path) -> None:
    items = [charge(cost=100 + i, reservation=f"res-{i}") for i in range(5)]
    down = FakeBudgetd()
    down.fail = DOWN

    async def write(outbox: Outbox) -> None:
        for item in items:
            await outbox.charge(item)
        await outbox.release("res-released")

    # The first process never reaches budgetd; its sender is not even running (as if killed).
    run(tmp_path, down, write, sender=False, grace_seconds=3600)
    assert len(read_rows(tmp_path / "outbox.db")) == 6

    up = FakeBudgetd()

    async def resume(outbox: Outbox) -> None:
        assert outbox.pending == 6
        # Due at once, whatever schedule the previous process had set (an hour's grace here).
        await until(lambda: outbox.pending == 0, timeout=5)

    run(tmp_path, up, resume, grace_seconds=3600)
    assert sorted(up.ledger) == sorted(i.request_id for i in items)
    assert {r.request_id: r.cost_nanos for r in up.ledger.values()} == {
        i.request_id: i.cost_nanos for i in items
    }
    assert up.released == ["res-released"]
    assert read_rows(tmp_path / "outbox.db") == []


def test_an_invalid_charge_is_kept_dead_and_not_retried(tmp_path: Path) -> None:
    budgetd = FakeBudgetd()
    budgetd.fail = UnprocessableField("cost_nanos: must not be negative", param="cost_nanos")

    async def body(outbox: Outbox) -> None:
        await outbox.charge(charge())
        await until(lambda: outbox.pending == 0)
        await asyncio.sleep(0.2)

    run(tmp_path, budgetd, body)
    assert len(budgetd.requests) == 1
    [row] = read_rows(tmp_path / "outbox.db", state=DEAD)
    assert read_rows(tmp_path / "outbox.db") == []
    assert row.attempts == 0


def test_other_errors_are_retried_never_dropped(tmp_path: Path) -> None:
    budgetd = FakeBudgetd()
    budgetd.fail = InternalError("budgetd failed: INTERNAL")

    async def body(outbox: Outbox) -> None:
        await outbox.charge(charge())
        await until(lambda: len(budgetd.requests) >= 3)
        assert outbox.pending == 1
        budgetd.fail = None
        await until(lambda: outbox.pending == 0)

    run(tmp_path, budgetd, body)
    assert len(budgetd.ledger) == 1


def test_a_charge_for_an_unknown_reservation_is_charged_to_the_customer(
    tmp_path: Path,
) -> None:
    budgetd = FakeBudgetd()
    budgetd.unknown_reservations.add("gone")
    item = charge(reservation="gone")

    async def body(outbox: Outbox) -> spend_pb.RecordSpendResponse | None:
        reply = await outbox.charge(item)
        await until(lambda: outbox.pending == 0)
        return reply

    assert run(tmp_path, budgetd, body) is not None
    [stored] = budgetd.ledger.values()
    assert (stored.request_id, stored.reservation_id, stored.customer_id) == (
        item.request_id,
        "",
        "alice",
    )


def test_fail_open_charges_skip_the_immediate_attempt_and_are_sent_soon(
    tmp_path: Path,
) -> None:
    budgetd = FakeBudgetd()
    item = charge(reservation="")

    async def body(outbox: Outbox) -> None:
        assert await outbox.charge(item, try_now=False) is None
        assert budgetd.requests == []
        await until(lambda: outbox.pending == 0, timeout=2)

    run(tmp_path, budgetd, body, grace_seconds=3600)
    [stored] = budgetd.ledger.values()
    assert (stored.reservation_id, stored.customer_id) == ("", "alice")


def test_releases_are_queued_only_when_budgetd_is_unreachable(tmp_path: Path) -> None:
    budgetd = FakeBudgetd()
    budgetd.unknown_reservations.add("expired")

    async def body(outbox: Outbox) -> None:
        await outbox.release("r-1")
        await outbox.release("expired")  # nothing to release: done
        assert outbox.pending == 0
        budgetd.fail = DOWN
        await outbox.release("r-2")
        assert [row.item for row in read_rows(outbox.path)] == [Release("r-2")]
        budgetd.fail = None
        await until(lambda: outbox.pending == 0)

    run(tmp_path, budgetd, body)
    assert budgetd.released == ["r-1", "r-2"]


def test_concurrent_charges_share_commits_and_all_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    budgetd = FakeBudgetd()
    budgetd.fail = DOWN
    items = [charge(cost=i + 1) for i in range(300)]
    batches: list[int] = []
    commit = _Writer._commit

    def counting(file: OutboxFile, batch: list[Any]) -> None:
        batches.append(len(batch))
        commit(file, batch)

    monkeypatch.setattr(_Writer, "_commit", staticmethod(counting))

    async def body(outbox: Outbox) -> None:
        await asyncio.gather(*(outbox.charge(item) for item in items))

    run(tmp_path, budgetd, body, sender=False, grace_seconds=3600)
    rows = [row.item for row in read_rows(tmp_path / "outbox.db")]
    assert sorted(r.cost_nanos for r in rows if isinstance(r, Charge)) == list(range(1, 301))
    # Group commit: the 300 writes took fewer commits (fsyncs) than writes.
    assert len(batches) < len(items)
    assert max(batches) > 1


def test_flush_gives_up_after_its_timeout_and_the_rows_stay(tmp_path: Path) -> None:
    budgetd = FakeBudgetd()
    budgetd.fail = DOWN

    async def body(outbox: Outbox) -> int:
        await outbox.charge(charge())
        loop = asyncio.get_running_loop()
        started = loop.time()
        left = await outbox.flush(0.3)
        assert loop.time() - started < 1.0
        return left

    assert run(tmp_path, budgetd, body, grace_seconds=3600) == 1
    assert len(read_rows(tmp_path / "outbox.db")) == 1


def test_flush_delivers_rows_still_in_their_grace_period(tmp_path: Path) -> None:
    budgetd = FakeBudgetd()
    budgetd.fail = DOWN

    async def body(outbox: Outbox) -> int:
        await outbox.charge(charge())
        budgetd.fail = None
        return await outbox.flush(2.0)

    assert run(tmp_path, budgetd, body, grace_seconds=3600) == 0
    assert len(budgetd.ledger) == 1


def test_the_test_hook_pauses_after_the_write_and_before_record_spend(tmp_path: Path) -> None:
    budgetd = FakeBudgetd()
    pause = tmp_path / "paused"
    item = charge()

    async def body(outbox: Outbox) -> None:
        call = asyncio.create_task(outbox.charge(item))
        await until(pause.exists)
        assert pause.read_text() == item.request_id
        assert [row.item for row in read_rows(outbox.path)] == [item]  # already durable
        await asyncio.sleep(0.1)
        assert budgetd.requests == []  # still paused
        pause.unlink()
        assert await call is not None

    run(tmp_path, budgetd, body, sender=False, pause_file=pause)
    assert list(budgetd.ledger) == [item.request_id]


def test_an_unwritable_outbox_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    async def main() -> None:
        await Outbox(blocker / "outbox.db", FakeBudgetd()).open()

    with pytest.raises(OSError):
        asyncio.run(main())
