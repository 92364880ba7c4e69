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

On PostgreSQL, budgetd runs several of these, as *lanes* (``budgetd.store.database``): jobs are
keyed by customer, a customer's jobs always go to the same lane, and a batch there holds the jobs
of one customer only. Calls for one customer then share one row lock and one commit instead of
queueing on the lock one transaction each; and as no transaction ever holds two customers' row
locks, batches of different replicas cannot deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RootTransaction, text

from budgetd.store import deadlines
from budgetd.store.prepared import Prepared

T = TypeVar("T")
_local = threading.local()


def current() -> GroupCommit | None:
    """The group whose writer thread is calling, if any."""
    group: GroupCommit | None = getattr(_local, "group", None)
    return group


class _Turn:
    """Another thread's ``write()`` block, run on the batch connection while the writer waits."""

    def __init__(self) -> None:
        self.connection: Connection | None = None
        self.started = threading.Event()  # set by the writer: the connection is lent
        self.finished = threading.Event()  # set by the borrower: its block ended
        self.failed = False
        self.done: Future[None] = Future()


class _Job:
    """A function to run on the writer thread, and where its result goes after the commit:
    a ``concurrent.futures.Future``, or an asyncio future of ``loop``."""

    __slots__ = ("args", "fn", "future", "key", "loop")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        key: str | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.key = key
        self.loop = loop
        self.future: Future[Any] | asyncio.Future[Any] = (
            Future() if loop is None else loop.create_future()
        )

    def start(self) -> bool:
        """Whether to run the job: not if its caller gave up (a cancelled RPC) already."""
        if isinstance(self.future, Future):
            return self.future.set_running_or_notify_cancel()
        # Read from another thread: a cancellation racing this check only means the job runs
        # and its result is dropped, as for a caller that goes away a moment later.
        return not self.future.cancelled()


_Resolutions = dict[asyncio.AbstractEventLoop, list[tuple["asyncio.Future[Any]", Any, Any]]]


def _resolve(resolutions: list[tuple[asyncio.Future[Any], BaseException | None, Any]]) -> None:
    """On the event loop: hand a batch's outcomes to their awaiting calls."""
    for future, error, result in resolutions:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class _Outcome:
    """What became of one unit in a batch; reported once the batch's commit is known."""

    __slots__ = ("error", "result", "skipped", "unit")

    def __init__(self, unit: _Job | _Turn) -> None:
        self.unit = unit
        self.error: BaseException | None = None
        self.result: Any = None
        self.skipped = False

    def report(self, batch_error: BaseException | None, later: _Resolutions) -> None:
        """Resolve the unit's future: the batch's failure first, then the unit's own.

        Asyncio futures are collected in ``later``, to be resolved on their loops with one
        wake-up per batch rather than one per call.
        """
        if self.skipped:
            return
        unit = self.unit
        error = batch_error or self.error
        if isinstance(error, _TurnFailed):
            error = None  # the borrower raised its own error already
        if isinstance(unit, _Job) and unit.loop is not None:
            assert isinstance(unit.future, asyncio.Future)
            later.setdefault(unit.loop, []).append((unit.future, error, self.result))
            return
        if isinstance(unit, _Turn):
            unit.started.set()  # a turn that never got the connection must not wait forever
            future: Future[Any] = unit.done
        else:
            assert isinstance(unit.future, Future)
            future = unit.future
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(self.result)


class GroupCommit:
    """The write connection's owner: batches units of work into shared commits."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 128,
        name: str = "sqlite-writer",
        one_key_per_batch: bool = False,
        translate: Callable[[BaseException], BaseException] = lambda error: error,
        timeout_s: float | None = None,
    ) -> None:
        """``translate`` turns a batch's driver failure into what its callers should see;
        ``timeout_s`` bounds the batch's own BEGIN and COMMIT (see ``budgetd.store.deadlines``).
        """
        self._engine = engine
        self._max_batch = max_batch
        self._name = name
        self._one_key = one_key_per_batch
        self._translate = translate
        self._timeout_s = timeout_s
        self._queue: deque[_Job | _Turn] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._closing = False
        self._in_batch = False
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None
        self._savepoints = 0
        self._thread: threading.Thread | None = None  # started by the first unit

    def submit(self, fn: Callable[..., T], *args: Any, key: str | None = None) -> Future[T]:
        """Run ``fn(*args)`` on the writer thread; the future resolves after its commit.

        Inside ``fn``, every ``Database.write()`` is a savepoint of the current batch. With
        ``one_key_per_batch``, only jobs of the same (non-None) ``key`` share a batch.
        """
        job = _Job(fn, args, key)
        self._enqueue(job)
        assert isinstance(job.future, Future)
        return job.future

    def submit_async(
        self, fn: Callable[..., T], *args: Any, key: str | None = None
    ) -> asyncio.Future[T]:
        """:meth:`submit` for a caller on an event loop: the result arrives on that loop."""
        job = _Job(fn, args, key, asyncio.get_running_loop())
        self._enqueue(job)
        assert isinstance(job.future, asyncio.Future)
        return job.future

    @property
    def on_writer(self) -> bool:
        """Whether the calling thread is the writer, inside a batch."""
        return self._in_batch and threading.current_thread() is self._thread

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
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._queue.append(unit)
            if len(self._queue) == 1:
                self._wake.notify()

    def _run(self) -> None:
        _local.group = self
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    self._thread = None
                    return
            self._batch()

    def _batch(self) -> None:
        """Run queued units in one transaction, commit, then report them all.

        The transaction starts with the first unit that writes, inside that unit's deadline:
        a store that does not answer fails that unit, not the writer.
        """
        self._in_batch = True
        ran: list[_Outcome] = []
        error: BaseException | None = None
        try:
            for unit in self._take():
                outcome = _Outcome(unit)
                ran.append(outcome)
                self._perform(outcome)
            if self._transaction is not None:
                with deadlines.store_work(self._timeout_s) if self._timeout_s else nullcontext():
                    if any(outcome.error is None and not outcome.skipped for outcome in ran):
                        self._transaction.commit()
                    else:
                        self._transaction.rollback()
        except BaseException as exc:
            # The connection itself failed: nobody in this batch can be acknowledged.
            error = self._translate(exc)
            # A broken connection may fail these too; the writer must live on regardless.
            with contextlib.suppress(Exception):
                if self._transaction is not None and self._transaction.is_active:
                    self._transaction.rollback()
        finally:
            self._in_batch = False
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    self._connection.close()
            self._connection = self._transaction = None
        later: _Resolutions = {}
        for outcome in ran:
            outcome.report(error, later)
        for loop, resolutions in later.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, resolutions)

    def _open(self) -> Connection:
        """The batch's connection, in its transaction (opened by the first unit that writes)."""
        if self._connection is None:
            conn = self._engine.connect().execution_options(budgetd_write=True)
            try:
                self._transaction = conn.begin()
            except BaseException:
                conn.close()
                raise
            self._connection = conn
        return self._connection

    def _take(self) -> Iterator[_Job | _Turn]:
        """The units of this batch, popped one at a time (only this thread pops)."""
        first = self._queue.popleft()
        yield first
        key = first.key if isinstance(first, _Job) else None
        taken = 1
        if not self._one_key:
            while taken < self._max_batch and self._queue:
                taken += 1
                yield self._queue.popleft()
            return
        while key is not None and taken < self._max_batch:
            with self._wake:  # others append while this looks for the same customer's jobs
                unit = next((u for u in self._queue if isinstance(u, _Job) and u.key == key), None)
                if unit is None:
                    return
                self._queue.remove(unit)
            taken += 1
            yield unit

    def _perform(self, outcome: _Outcome) -> None:
        unit = outcome.unit
        if isinstance(unit, _Job):
            if not unit.start():
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
        conn = self._open()
        depth = self._savepoints
        save, back, release = (
            _SAVEPOINTS[depth] if depth < len(_SAVEPOINTS) else _savepoint_statements(depth)
        )
        self._savepoints += 1
        save.run(conn, {})
        try:
            yield conn
        except BaseException:
            back.run(conn, {})
            release.run(conn, {})
            raise
        finally:
            self._savepoints -= 1
        release.run(conn, {})


def _savepoint_statements(depth: int) -> tuple[Prepared, Prepared, Prepared]:
    """SAVEPOINT, ROLLBACK TO and RELEASE of the savepoint at ``depth`` (units nest)."""
    name = f"unit_{depth}"
    return (
        Prepared(text(f"SAVEPOINT {name}")),
        Prepared(text(f"ROLLBACK TO SAVEPOINT {name}")),
        Prepared(text(f"RELEASE SAVEPOINT {name}")),
    )


# Prepared statements rather than ``begin_nested()``, which builds and compiles two statements
# per use: a savepoint per unit is on the hot path. Units nest a level or two deep.
_SAVEPOINTS = [_savepoint_statements(depth) for depth in range(8)]


class _TurnFailed(Exception):
    """A lent block raised: roll its savepoint back; the borrower re-raises its own error."""
