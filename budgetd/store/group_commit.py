"""Group commit: one writer thread runs SQLite's write transactions in batches, one commit each.

SQLite has one writer at a time, and with ``synchronous=FULL`` every commit waits for the disk.
One transaction per call would spend most of its time in that wait, and threads taking turns on
the write lock spend the rest handing the GIL and the lock around. Here a single thread owns the
write connection and works through a queue: it opens a transaction, runs every queued unit of
work in it, each inside its own SAVEPOINT (so a failing unit undoes only its own work), commits
once, and only then reports the units done. An acknowledged charge is therefore durable exactly
as with a commit of its own.

Two kinds of units share the queue, in arrival order:

- a *job* (:meth:`GroupCommit.submit`): a function that runs on the writer thread; any
  ``Database.write()`` it opens joins the batch. The hot path (Authorize, RecordSpend) runs so,
  without a thread of its own.
- a *turn* (:meth:`GroupCommit.write` from another thread): the writer lends that thread the
  connection for the body of its ``with`` block and waits until it is done. Management calls and
  background jobs use this; it costs two thread hand-offs, which they can afford.

Used for SQLite only: on PostgreSQL, one transaction holding the row locks of many customers at
once could deadlock against another replica's batch.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")


class _Turn:
    """Another thread's ``write()`` block, run on the batch connection while the writer waits."""

    def __init__(self) -> None:
        self.connection: Connection | None = None
        self.started = threading.Event()  # set by the writer: the connection is lent
        self.finished = threading.Event()  # set by the borrower: its block ended
        self.failed = False
        self.done: Future[None] = Future()


class _Job:
    """A function to run on the writer thread, and where its result goes after the commit."""

    __slots__ = ("args", "fn", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.future: Future[Any] = Future()


class _Outcome:
    """What became of one unit in a batch; reported once the batch's commit is known."""

    __slots__ = ("error", "result", "skipped", "unit")

    def __init__(self, unit: _Job | _Turn) -> None:
        self.unit = unit
        self.error: BaseException | None = None
        self.result: Any = None
        self.skipped = False

    def report(self, batch_error: BaseException | None) -> None:
        """Resolve the unit's future: the batch's failure first, then the unit's own."""
        if self.skipped:
            return
        unit = self.unit
        if isinstance(unit, _Turn):
            unit.started.set()  # a turn that never got the connection must not wait forever
            future: Future[Any] = unit.done
        else:
            future = unit.future
        error = batch_error or self.error
        if isinstance(error, _TurnFailed):
            error = None  # the borrower raised its own error already
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(self.result)


class GroupCommit:
    """The write connection's owner: batches units of work into shared commits."""

    def __init__(self, engine: Engine, max_batch: int = 128) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: deque[_Job | _Turn] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._closing = False
        self._connection: Connection | None = None
        self._savepoints = 0
        self._thread: threading.Thread | None = None  # started by the first unit

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on the writer thread; the future resolves after its commit.

        Inside ``fn``, every ``Database.write()`` is a savepoint of the current batch.
        """
        job = _Job(fn, args)
        self._enqueue(job)
        return job.future

    @property
    def on_writer(self) -> bool:
        """Whether the calling thread is the writer, inside a batch."""
        return threading.current_thread() is self._thread and self._connection is not None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write unit: its work is committed (with others') before this returns normally."""
        if self.on_writer:
            with self._savepoint() as conn:
                yield conn
            return
        turn = _Turn()
        self._enqueue(turn)
        turn.started.wait()
        if turn.connection is None:  # the batch failed before this turn came
            turn.done.result()
        assert turn.connection is not None
        try:
            yield turn.connection
        except BaseException:
            turn.failed = True
            raise
        finally:
            turn.finished.set()
        turn.done.result()  # the commit, or the error that stopped it

    def close(self) -> None:
        """Finish what is queued and stop the writer; a later unit starts a new one."""
        with self._wake:
            thread = self._thread
            self._closing = True
            self._wake.notify()
        if thread is not None:
            thread.join()

    def _enqueue(self, unit: _Job | _Turn) -> None:
        with self._wake:
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
                self._thread.start()
            self._queue.append(unit)
            if len(self._queue) == 1:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    self._thread = None
                    return
            self._batch()

    def _batch(self) -> None:
        """Run queued units in one transaction, commit, then report them all."""
        try:
            conn = self._engine.connect().execution_options(budgetd_write=True)
            transaction = conn.begin()
        except BaseException as exc:
            self._fail_next(exc)
            return
        self._connection = conn
        ran: list[_Outcome] = []
        error: BaseException | None = None
        try:
            while len(ran) < self._max_batch and self._queue:
                outcome = _Outcome(self._queue.popleft())  # only this thread pops
                ran.append(outcome)
                self._perform(outcome)
            if any(outcome.error is None and not outcome.skipped for outcome in ran):
                transaction.commit()
            else:
                transaction.rollback()
        except BaseException as exc:
            # The connection itself failed: nobody in this batch can be acknowledged.
            error = exc
            if transaction.is_active:
                transaction.rollback()
        finally:
            self._connection = None
            conn.close()
        for outcome in ran:
            outcome.report(error)

    def _perform(self, outcome: _Outcome) -> None:
        unit = outcome.unit
        if isinstance(unit, _Job):
            if not unit.future.set_running_or_notify_cancel():
                outcome.skipped = True  # its caller gave up (a cancelled RPC): nothing to do
                return
            try:
                outcome.result = unit.fn(*unit.args)
            except BaseException as exc:
                outcome.error = exc
            return
        try:
            with self._savepoint() as lent:
                unit.connection = lent
                unit.started.set()
                unit.finished.wait()
                if unit.failed:
                    raise _TurnFailed
        except _TurnFailed as exc:
            outcome.error = exc

    @contextmanager
    def _savepoint(self) -> Iterator[Connection]:
        # Raw SAVEPOINTs on the driver connection: SQLAlchemy's begin_nested() builds and
        # compiles two statements per use, which showed up on the hot path.
        conn = self._connection
        assert conn is not None
        driver = conn.connection.driver_connection
        assert driver is not None
        name = f"u{self._savepoints}"
        self._savepoints += 1
        driver.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            driver.execute(f"ROLLBACK TO {name}")
            driver.execute(f"RELEASE {name}")
            raise
        finally:
            self._savepoints -= 1
        driver.execute(f"RELEASE {name}")

    def _fail_next(self, error: BaseException) -> None:
        """No transaction could be opened: fail the unit at the head of the queue."""
        unit = self._queue.popleft()
        if isinstance(unit, _Job) and not unit.future.set_running_or_notify_cancel():
            return
        _Outcome(unit).report(error)


class _TurnFailed(Exception):
    """A lent block raised: roll its savepoint back; the borrower re-raises its own error."""
