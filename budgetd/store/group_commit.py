"""Group commit: the write transactions of many threads share one database commit.

SQLite has one writer at a time, and with ``synchronous=FULL`` every commit waits for the disk.
One transaction per call would spend most of its time in that wait. Here writers take turns on
one connection; each runs inside its own SAVEPOINT (so a failing call undoes only its own work),
and the last writer of a burst — the one that finds nobody waiting behind it, or the batch full
— commits for all of them. Every writer returns only after the commit that contains its work,
so an acknowledged charge is durable exactly as with a commit of its own.

Used for SQLite only: on PostgreSQL, one transaction holding the row locks of many customers at
once could deadlock against another replica's batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, NestedTransaction, RootTransaction


class _Batch:
    """The writers that share one commit."""

    def __init__(self, connection: Connection, transaction: RootTransaction) -> None:
        self.connection = connection
        self.transaction = transaction
        self.members = 0
        self.committed = threading.Event()
        self.error: BaseException | None = None


class GroupCommit:
    """Serializes writers on one connection and commits them in groups."""

    def __init__(self, engine: Engine, max_batch: int = 64) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._turn = threading.Lock()  # whose turn it is on the batch connection
        self._count = threading.Lock()  # guards _waiting
        self._waiting = 0
        self._batch: _Batch | None = None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write unit: its work is committed (with others') before this returns normally."""
        with self._count:
            self._waiting += 1
        self._turn.acquire()
        with self._count:
            self._waiting -= 1
        try:
            batch = self._current()
            savepoint = batch.connection.begin_nested()
        except BaseException:
            self._turn.release()
            raise
        try:
            yield batch.connection
        except BaseException:
            self._leave(batch, savepoint, succeeded=False)
            raise
        self._leave(batch, savepoint, succeeded=True)
        batch.committed.wait()
        if batch.error is not None:
            raise batch.error

    def _current(self) -> _Batch:
        if self._batch is None:
            connection = self._engine.connect().execution_options(budgetd_write=True)
            try:
                self._batch = _Batch(connection, connection.begin())
            except BaseException:
                connection.close()
                raise
        return self._batch

    def _leave(self, batch: _Batch, savepoint: NestedTransaction, *, succeeded: bool) -> None:
        """End a writer's turn; commit the batch when nobody else is about to join it."""
        try:
            try:
                if succeeded:
                    savepoint.commit()
                    batch.members += 1
                elif savepoint.is_active:
                    savepoint.rollback()
            except BaseException as error:
                # The connection itself failed: nobody in this batch can be acknowledged.
                self._finish(batch, error)
                raise
            with self._count:
                nobody_waiting = self._waiting == 0
            if nobody_waiting or batch.members >= self._max_batch:
                self._finish(batch, None)
        finally:
            self._turn.release()

    def _finish(self, batch: _Batch, error: BaseException | None) -> None:
        """Commit (or, after an error, roll back) a batch and wake its writers."""
        self._batch = None
        try:
            if error is None and batch.members:
                batch.transaction.commit()
            else:
                batch.transaction.rollback()
        except BaseException as commit_error:
            error = commit_error
        finally:
            batch.connection.close()
            batch.error = error
            batch.committed.set()
