"""The durable charge outbox: once an upstream has answered, its charge reaches budgetd's ledger.

Every charge is written to an embedded SQLite file (``SHIM_OUTBOX_PATH``, default
``shim-outbox.db`` in the working directory; WAL, ``synchronous=FULL``) and fsynced *before*
the shim finishes the response: a JSON answer is sent, and a stream's ``[DONE]`` forwarded, only
after that. Then the shim calls ``RecordSpend`` at once (the normal case: the spend is visible
right away) and deletes the row when budgetd acknowledges it. A row that could not be delivered
stays in the file; a background sender retries it with the **same** ``request_id`` (RecordSpend
is idempotent on it, so a charge that landed but whose answer was lost is never charged twice),
with exponential backoff and jitter, until budgetd acknowledges it. On start the sender resumes
whatever a previous process left, including after ``kill -9``.

What each kind of failure costs:

- shim killed after the write: the next start delivers the charge (once).
- budgetd down or unreachable: calls already answered are charged when it is back.
- ``--fail-open`` calls (served while budgetd was unreachable, so without a reservation) are
  queued as charges of the customer with no reservation, delivered when budgetd is back.
- budgetd refuses a charge as invalid (``INVALID_ARGUMENT``/``FAILED_PRECONDITION``): the row is
  kept with ``state='dead'`` and logged; nothing else can make it succeed. A charge whose
  reservation budgetd no longer knows (``NOT_FOUND``) is sent again without the reservation, for
  the customer: a call that happened is never dropped.
- the shim killed *before* the upstream finished (mid-stream): nothing is charged, and the
  reservation expires after budgetd's hold TTL.

Releases (an upstream that failed, so the reservation is given back uncharged) are tried at once
and written to the outbox only when budgetd is unreachable: a lost release costs no money, it
only keeps the estimate held until the hold TTL, so the fast path does not pay an fsync for it.

Writes go through one writer thread that commits whatever has queued up meanwhile in a single
transaction (group commit): under concurrency, many calls share one fsync. Deleting a delivered
row does not need to be durable (if it is lost, the row is sent again and budgetd answers with
the first result), so batches with only deletes commit with ``synchronous=NORMAL``: the hot path
pays one fsync per call, or less.

One outbox file belongs to one shim process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import queue
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from budgetd.pricing import TokenUsage
from budgetd.v1 import spend_service_pb2 as spend_pb
from proxy_shim.errors import InvalidRequest, NotFound, ShimError, UnprocessableField

log = logging.getLogger("proxy_shim.outbox")

CHARGE = "charge"
RELEASE = "release"

PENDING_ROWS = Gauge("shim_outbox_pending", "Charges and releases waiting in the outbox.")
DELIVERIES = Counter(
    "shim_outbox_deliveries_total",
    "Outbox deliveries by kind, path (now: on the call; sender: in the background) and outcome.",
    ["kind", "path", "outcome"],
)
WRITE_SECONDS = Histogram(
    "shim_outbox_write_seconds",
    "Time to write a charge durably to the outbox (queue + group commit + fsync).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL DEFAULT '',
    customer_id TEXT NOT NULL DEFAULT '',
    reservation_id TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_input_tokens INTEGER NOT NULL DEFAULT 0,
    cost_nanos INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
"""
_COLUMNS = (
    "id, kind, request_id, customer_id, reservation_id, model, input_tokens, output_tokens, "
    "cached_input_tokens, cost_nanos, created_at, attempts"
)
PENDING = "pending"
DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Charge:
    """One RecordSpend, exactly as it will be sent (every attempt reuses ``request_id``)."""

    request_id: str
    customer_id: str
    model: str
    usage: TokenUsage
    cost_nanos: int
    # Empty for a --fail-open call, which has no reservation.
    reservation_id: str = ""

    def request(self) -> spend_pb.RecordSpendRequest:
        """The RecordSpend request."""
        return spend_pb.RecordSpendRequest(
            request_id=self.request_id,
            customer_id=self.customer_id,
            reservation_id=self.reservation_id,
            model=self.model,
            usage=spend_pb.Usage(
                input_tokens=self.usage.input_tokens,
                output_tokens=self.usage.output_tokens,
                cached_input_tokens=self.usage.cached_input_tokens,
            ),
            cost_nanos=self.cost_nanos,
        )


@dataclass(frozen=True, slots=True)
class Release:
    """One ReleaseReservation."""

    reservation_id: str


Item = Charge | Release


@dataclass(frozen=True, slots=True)
class Row:
    """A row of the outbox: an item waiting for delivery."""

    row_id: int
    item: Item
    attempts: int
    created_at: float


class Outcome(enum.Enum):
    """What one delivery attempt came to."""

    DELIVERED = "delivered"
    RETRY = "retry"  # budgetd unreachable or failing: try again later
    DEAD = "dead"  # budgetd refused it as invalid: retrying cannot help


class SpendClient(Protocol):
    """The part of ``BudgetdClient`` the outbox uses."""

    async def record_spend(
        self, request: spend_pb.RecordSpendRequest
    ) -> spend_pb.RecordSpendResponse: ...

    async def release(self, reservation_id: str) -> int: ...


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: exponential from ``base``, capped, jittered.

    The jitter takes the delay uniformly from [d/2, d], so retries of many rows (or of many
    shims after one budgetd outage) spread out instead of arriving together.
    """
    delay = min(cap, base * 2.0 ** min(max(0, attempt - 1), 60))
    jitter = rng.uniform(0.5, 1.0) if rng is not None else random.uniform(0.5, 1.0)
    return delay * jitter


# -- the file ---------------------------------------------------------------------------


class OutboxFile:
    """The SQLite file. Not thread-safe: ``Outbox`` uses it from its writer thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._synchronous = ""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are begun and committed explicitly.
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            raise OSError(
                f"cannot open the outbox file {path} (SHIM_OUTBOX_PATH): {error}"
            ) from None
        try:
            self.conn.execute("PRAGMA busy_timeout=5000")
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OSError(f"outbox {path}: cannot use the WAL journal (got {mode})")
            self.synchronous("FULL")
            self.conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            self.conn.close()
            raise OSError(
                f"cannot use the outbox file {path} (SHIM_OUTBOX_PATH): {error}"
            ) from None

    def synchronous(self, level: str) -> None:
        """``FULL`` (commit = fsync) or ``NORMAL`` (crash-safe, not power-loss-safe)."""
        if level != self._synchronous:
            self.conn.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        self.conn.close()

    # Statements; each runs inside the caller's transaction.

    def insert(self, item: Item, now: float, next_attempt_at: float) -> int:
        """Store an item; returns its row id."""
        if isinstance(item, Charge):
            cursor = self.conn.execute(
                "INSERT INTO outbox (kind, request_id, customer_id, reservation_id, model, "
                "input_tokens, output_tokens, cached_input_tokens, cost_nanos, created_at, "
                "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    CHARGE,
                    item.request_id,
                    item.customer_id,
                    item.reservation_id,
                    item.model,
                    item.usage.input_tokens,
                    item.usage.output_tokens,
                    item.usage.cached_input_tokens,
                    item.cost_nanos,
                    now,
                    next_attempt_at,
                ),
            )
        else:
            cursor = self.conn.execute(
                "INSERT INTO outbox (kind, reservation_id, created_at, next_attempt_at) "
                "VALUES (?, ?, ?, ?)",
                (RELEASE, item.reservation_id, now, next_attempt_at),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def delete(self, row_id: int) -> int:
        """Forget a delivered row; returns how many pending rows that removed (0 or 1)."""
        return self.conn.execute(
            "DELETE FROM outbox WHERE id = ? AND state = ?", (row_id, PENDING)
        ).rowcount

    def reschedule(self, row_id: int, attempts: int, next_attempt_at: float, error: str) -> None:
        """Record a failed attempt and when to try again."""
        self.conn.execute(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? "
            "WHERE id = ? AND state = ?",
            (attempts, next_attempt_at, error[:500], row_id, PENDING),
        )

    def bury(self, row_id: int, error: str) -> int:
        """Keep a row that can never be delivered, for an operator; returns rows changed."""
        return self.conn.execute(
            "UPDATE outbox SET state = ?, last_error = ? WHERE id = ? AND state = ?",
            (DEAD, error[:500], row_id, PENDING),
        ).rowcount

    def due(self, now: float, limit: int) -> list[Row]:
        """Pending rows whose next attempt is due, oldest first."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = ? AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT ?",
            (PENDING, now, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def pending(self) -> list[Row]:
        """Every pending row, oldest first."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = ? ORDER BY id", (PENDING,)
        ).fetchall()
        return [_row(r) for r in rows]

    def next_due(self) -> float | None:
        """When the earliest pending row is due (None when there is none)."""
        value = self.conn.execute(
            "SELECT min(next_attempt_at) FROM outbox WHERE state = ?", (PENDING,)
        ).fetchone()[0]
        return None if value is None else float(value)

    def make_all_due(self) -> int:
        """Make every pending row due now (at start, and when flushing at shutdown)."""
        return self.conn.execute(
            "UPDATE outbox SET next_attempt_at = 0 WHERE state = ?", (PENDING,)
        ).rowcount

    def count(self, state: str = PENDING) -> int:
        """How many rows are in ``state``."""
        return int(
            self.conn.execute("SELECT count(*) FROM outbox WHERE state = ?", (state,)).fetchone()[0]
        )


def _row(r: Sequence[Any]) -> Row:
    item: Item
    if r[1] == RELEASE:
        item = Release(r[4])
    else:
        item = Charge(
            request_id=r[2],
            customer_id=r[3],
            reservation_id=r[4],
            model=r[5],
            usage=TokenUsage(input_tokens=r[6], output_tokens=r[7], cached_input_tokens=r[8]),
            cost_nanos=r[9],
        )
    return Row(row_id=r[0], item=item, attempts=r[11], created_at=r[10])


# -- the writer thread (group commit) ------------------------------------------------------


@dataclass
class _Op:
    work: Callable[[OutboxFile], Any]
    durable: bool
    done: Future[Any] = dataclasses.field(default_factory=Future)


_STOP = object()
_MAX_BATCH = 512


class _Writer:
    """Runs statements on the file in one thread, committing each batch of them together."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="shim-outbox", daemon=True)
        self._opened: Future[None] = Future()

    def start(self) -> None:
        self._thread.start()
        self._opened.result()  # raises if the file cannot be opened

    def submit(self, work: Callable[[OutboxFile], Any], *, durable: bool) -> Future[Any]:
        op = _Op(work, durable)
        if not self._thread.is_alive():
            op.done.set_running_or_notify_cancel()
            op.done.set_exception(RuntimeError("the outbox is closed"))
        else:
            self._queue.put(op)
        return op.done

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        # Anything submitted while stopping fails instead of waiting forever.
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(op, _Op) and op.done.set_running_or_notify_cancel():
                op.done.set_exception(RuntimeError("the outbox is closed"))

    def _run(self) -> None:
        try:
            file = OutboxFile(self._path)
        except BaseException as error:
            self._opened.set_exception(error)
            return
        self._opened.set_result(None)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                self._commit(file, [op for op in batch if isinstance(op, _Op)])
        finally:
            file.close()

    @staticmethod
    def _commit(file: OutboxFile, batch: list[_Op]) -> None:
        results: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            file.synchronous("FULL" if any(op.durable for op in batch) else "NORMAL")
            file.conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if not op.done.set_running_or_notify_cancel():
                    continue
                file.conn.execute("SAVEPOINT op")
                try:
                    result = op.work(file)
                except Exception as error:
                    file.conn.execute("ROLLBACK TO op")
                    results.append((op, None, error))
                else:
                    results.append((op, result, None))
                file.conn.execute("RELEASE op")
            file.conn.execute("COMMIT")
        except Exception as error:
            with contextlib.suppress(sqlite3.Error):
                file.conn.execute("ROLLBACK")
            for op in batch:
                if op.done.running():
                    op.done.set_exception(error)
                elif not op.done.done():
                    op.done.set_running_or_notify_cancel()
                    op.done.set_exception(error)
            return
        for op, result, failure in results:
            if failure is None:
                op.done.set_result(result)
            else:
                op.done.set_exception(failure)


# -- the outbox --------------------------------------------------------------------------


class Outbox:
    """Durable charges and releases, delivered to budgetd now or by the background sender.

    ``grace_seconds``: a new row is left to the call that wrote it for this long (its own
    attempt), before the sender may send it too. ``pause_file`` is a TESTS-ONLY hook: see
    ``ShimSettings.test_pause_before_record``.
    """

    def __init__(
        self,
        path: Path,
        budgetd: SpendClient,
        *,
        grace_seconds: float = 3.0,
        base_backoff: float = 0.25,
        max_backoff: float = 10.0,
        batch: int = 64,
        concurrency: int = 8,
        pause_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._budgetd = budgetd
        self._grace = grace_seconds
        self._base = base_backoff
        self._cap = max_backoff
        self._batch = batch
        self._concurrency = concurrency
        self._pause_file = pause_file
        self._clock = clock
        self._writer = _Writer(path)
        self._pending = 0
        self._wake = asyncio.Event()
        self._flushing = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the file and make what a previous process left due now."""
        await asyncio.to_thread(self._writer.start)
        self._pending = await self._run(lambda f: f.count(), durable=False)
        resumed = await self._run(lambda f: f.make_all_due(), durable=False)
        dead = await self._run(lambda f: f.count(DEAD), durable=False)
        PENDING_ROWS.set(self._pending)
        if resumed:
            log.warning(
                "outbox: resuming undelivered charges and releases of an earlier run",
                extra={"fields": {"pending": resumed, "path": str(self.path)}},
            )
        if dead:
            log.error(
                "outbox: rows budgetd refused as invalid are kept with state='dead'",
                extra={"fields": {"dead": dead, "path": str(self.path)}},
            )

    def start_sender(self) -> None:
        """Start delivering in the background (call from the event loop)."""
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_forever())

    async def flush(self, timeout: float) -> int:
        """Try hard to deliver everything for up to ``timeout`` s; returns what is left."""
        if self._pending:
            await self._run(lambda f: f.make_all_due(), durable=False)
        self._flushing.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self._pending

    async def close(self) -> None:
        """Stop the sender and close the file (undelivered rows stay for the next start)."""
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        await asyncio.to_thread(self._writer.stop)
        if self._pending:
            log.warning(
                "outbox: undelivered rows stay in the file for the next start",
                extra={"fields": {"pending": self._pending, "path": str(self.path)}},
            )

    @property
    def pending(self) -> int:
        """Rows waiting for delivery."""
        return self._pending

    # -- the hot path --------------------------------------------------------------------

    async def charge(
        self, charge: Charge, *, try_now: bool = True
    ) -> spend_pb.RecordSpendResponse | None:
        """Make ``charge`` durable and try to deliver it; budgetd's answer, or None if queued.

        Returns once the charge is on disk (fsynced), whatever happens to the delivery. The
        first delivery attempt runs while the row is being written, not after: either copy
        makes the charge safe, and the call waits for the slower of the two disk syncs
        (the outbox's and budgetd's) instead of their sum. A row whose charge was delivered
        is forgotten; the sender leaves it alone for its grace period meanwhile. With
        ``try_now=False`` (budgetd was just found unreachable) the sender is only nudged.
        """
        started = time.perf_counter()
        now = self._clock()
        written = asyncio.ensure_future(
            self._run(
                lambda f: f.insert(charge, now, now + (self._grace if try_now else 0.0)),
                durable=True,
            )
        )
        # Tests pausing between the write and the delivery (a kill -9 goes there) deliver after.
        at_once = try_now and self._pause_file is None
        delivering = asyncio.ensure_future(self._deliver(charge)) if at_once else None
        try:
            row_id: int | None = await written
        except Exception:
            # A full disk must not fail a call that was served: fall back to trying hard now.
            log.exception(
                "outbox: cannot write a charge; sending it without the outbox",
                extra={"fields": {"customer": charge.customer_id, "path": str(self.path)}},
            )
            row_id = None
        else:
            self._added()
            WRITE_SECONDS.observe(time.perf_counter() - started)
        if delivering is None:
            await self._pause_for_tests(charge.request_id)
            if not try_now:
                if row_id is None:
                    return await self._without_outbox(charge)
                self._wake.set()
                return None
            delivering = asyncio.ensure_future(self._deliver(charge))
        outcome, reply, error = await delivering
        DELIVERIES.labels(CHARGE, "now", outcome.value).inc()
        if row_id is None:
            return reply if outcome is Outcome.DELIVERED else await self._without_outbox(charge)
        await self._settled(Row(row_id, charge, 0, now), outcome, error, path="now")
        if outcome is not Outcome.DELIVERED:
            log.warning(
                "charge queued in the outbox: budgetd did not acknowledge it (%s); the sender "
                "retries it with the same request_id",
                error,
                extra={"fields": {"customer": charge.customer_id, "request_id": charge.request_id}},
            )
        return reply

    async def release(self, reservation_id: str) -> None:
        """Give a reservation back; queued only if budgetd cannot be reached now."""
        outcome, _, error = await self._deliver(Release(reservation_id))
        DELIVERIES.labels(RELEASE, "now", outcome.value).inc()
        if outcome is Outcome.DELIVERED:
            return
        if outcome is Outcome.DEAD:
            log.error(
                "could not release a reservation: %s",
                error,
                extra={"fields": {"reservation_id": reservation_id}},
            )
            return
        now = self._clock()
        try:
            await self._run(
                lambda f: f.insert(Release(reservation_id), now, now + self._grace), durable=True
            )
        except Exception:
            log.exception("outbox: cannot queue a release; the hold expires after its TTL")
            return
        self._added()
        log.warning(
            "release queued in the outbox: %s",
            error,
            extra={"fields": {"reservation_id": reservation_id}},
        )

    # -- delivery ------------------------------------------------------------------------

    async def _deliver(
        self, item: Item
    ) -> tuple[Outcome, spend_pb.RecordSpendResponse | None, str]:
        """One attempt; never raises for budgetd's errors."""
        try:
            if isinstance(item, Release):
                await self._budgetd.release(item.reservation_id)
                return Outcome.DELIVERED, None, ""
            return Outcome.DELIVERED, await self._budgetd.record_spend(item.request()), ""
        except NotFound as error:
            if isinstance(item, Release):
                return Outcome.DELIVERED, None, ""  # nothing left to release
            if item.reservation_id and item.customer_id:
                # budgetd does not know the reservation (a database restored from a backup,
                # say): the call happened, so charge the customer without it. Same request_id:
                # a later resend finds this charge in the ledger before looking at the hold.
                return await self._deliver(dataclasses.replace(item, reservation_id=""))
            return Outcome.DEAD, None, error.message
        except (InvalidRequest, UnprocessableField) as error:
            return Outcome.DEAD, None, error.message
        except ShimError as error:
            return Outcome.RETRY, None, error.message
        except Exception as error:  # a bug or an unexpected transport error: keep the row
            return Outcome.RETRY, None, f"{type(error).__name__}: {error}"

    async def _settled(self, row: Row, outcome: Outcome, error: str, *, path: str) -> None:
        """Apply an attempt's outcome to its row."""
        if outcome is Outcome.DELIVERED:
            # Not durable on purpose: if the delete is lost, the row is sent again and budgetd
            # answers with the first result. Not awaited by the caller's response either.
            self._forget(row.row_id)
            return
        if outcome is Outcome.DEAD:
            buried = await self._run(lambda f: f.bury(row.row_id, error), durable=False)
            self._removed(buried)
            log.error(
                "budgetd refused a queued %s as invalid; kept in the outbox with state='dead'",
                CHARGE if isinstance(row.item, Charge) else RELEASE,
                extra={"fields": {"row": row.row_id, "error": error, "path": str(self.path)}},
            )
            return
        if path == "sender":
            attempts = row.attempts + 1
            due = self._clock() + backoff(attempts, self._base, self._cap)
            await self._run(lambda f: f.reschedule(row.row_id, attempts, due, error), False)
        # path "now": the row becomes due after its grace period; nothing to write.

    async def _send_forever(self) -> None:
        failures = 0
        while True:
            try:
                # Cleared before looking, so a row added while we look still wakes the wait.
                self._wake.clear()
                rows = await self._run(lambda f: f.due(self._clock(), self._batch), False)
                if not rows:
                    await self._idle()
                    continue
                unavailable = False
                for start in range(0, len(rows), self._concurrency):
                    chunk = rows[start : start + self._concurrency]
                    outcomes = await asyncio.gather(*(self._send(row) for row in chunk))
                    if Outcome.RETRY in outcomes:
                        # budgetd is down or failing: stop this round rather than hammer it.
                        unavailable = True
                        break
                if unavailable:
                    failures += 1
                    await self._back_off(backoff(failures, self._base, self._cap))
                else:
                    failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox sender failed; retrying")
                await asyncio.sleep(1.0)

    async def _send(self, row: Row) -> Outcome:
        outcome, _, error = await self._deliver(row.item)
        kind = CHARGE if isinstance(row.item, Charge) else RELEASE
        DELIVERIES.labels(kind, "sender", outcome.value).inc()
        await self._settled(row, outcome, error, path="sender")
        if outcome is Outcome.DELIVERED and row.attempts:
            log.info(
                "outbox: delivered a queued %s",
                kind,
                extra={"fields": {"row": row.row_id, "attempts": row.attempts + 1}},
            )
        return outcome

    async def _idle(self) -> None:
        next_due = await self._run(lambda f: f.next_due(), durable=False)
        wait = 1.0 if next_due is None else min(1.0, max(0.01, next_due - self._clock()))
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._wake.wait()

    async def _back_off(self, seconds: float) -> None:
        # New rows do not cut a backoff short (budgetd is down); a flush at shutdown does.
        if self._flushing.is_set():
            await asyncio.sleep(min(seconds, 0.2))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._flushing.wait()

    # -- plumbing ------------------------------------------------------------------------

    async def _run(self, work: Callable[[OutboxFile], Any], durable: bool) -> Any:
        # Shielded: a caller cancelled meanwhile (a client gone) must not take a charge's
        # write with it; the write completes, and the sender delivers the row.
        return await asyncio.shield(asyncio.wrap_future(self._writer.submit(work, durable=durable)))

    def _forget(self, row_id: int) -> None:
        done = self._writer.submit(lambda f: f.delete(row_id), durable=False)
        loop = asyncio.get_running_loop()

        def counted(future: Future[Any]) -> None:
            if not future.cancelled() and future.exception() is None:
                loop.call_soon_threadsafe(self._removed, future.result())

        done.add_done_callback(counted)

    def _added(self) -> None:
        self._pending += 1
        PENDING_ROWS.set(self._pending)

    def _removed(self, count: int) -> None:
        self._pending = max(0, self._pending - count)
        PENDING_ROWS.set(self._pending)

    async def _without_outbox(self, charge: Charge) -> spend_pb.RecordSpendResponse | None:
        """The outbox file failed: a few attempts in memory, as before there was one."""
        for pause in (0.05, 0.25, 1.0, None):
            outcome, reply, _ = await self._deliver(charge)
            if outcome is Outcome.DELIVERED:
                return reply
            if outcome is Outcome.DEAD or pause is None:
                break
            await asyncio.sleep(pause)
        log.error(
            "LOST CHARGE: the outbox could not store it and budgetd did not acknowledge it",
            extra={
                "fields": {
                    "customer": charge.customer_id,
                    "request_id": charge.request_id,
                    "cost_nanos": charge.cost_nanos,
                }
            },
        )
        DELIVERIES.labels(CHARGE, "now", "lost").inc()
        return None

    async def _pause_for_tests(self, request_id: str) -> None:
        """TESTS ONLY: create the pause file and wait while it exists (a kill -9 goes here)."""
        if self._pause_file is None:
            return
        self._pause_file.write_text(request_id)
        while self._pause_file.exists():
            await asyncio.sleep(0.01)


def new_request_id() -> str:
    """A RecordSpend request_id: chosen before the charge is written, reused by every retry."""
    return str(uuid.uuid4())


def read_rows(path: Path, state: str = PENDING) -> list[Row]:
    """The rows of an outbox file in ``state`` (for tests and operators; read-only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = ? ORDER BY id", (state,)
        ).fetchall()
    finally:
        conn.close()
    return [_row(r) for r in rows]
