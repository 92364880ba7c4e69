"""The database handle and its units of work.

``Database.write()`` and ``Database.read()`` each open one transaction, commit when the block
ends normally and roll back otherwise. They translate SQLAlchemy's outage errors into
``Unavailable`` at this boundary, so the layers above never see driver exceptions.

SQLite (the embedded default) allows one writer at a time. Rather than let threads collide inside
SQLite, whose busy handler sleeps and polls, one writer thread owns the write connection and
runs units of work in batches that share a commit (``budgetd.store.group_commit``), starting
with ``BEGIN IMMEDIATE``; readers run concurrently under WAL. PostgreSQL needs no single
writer: row locks serialize writers to one customer, across replicas too.

``Database.submit()`` is how the hot path runs its domain calls: on SQLite on the writer thread
itself (no hand-off per write); on PostgreSQL on *lanes*, writer threads that each batch the
calls of one customer at a time into one transaction (see ``budgetd.store.group_commit``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from budgetd.errors import Unavailable
from budgetd.store import deadlines, group_commit
from budgetd.store.group_commit import GroupCommit
from budgetd.store.metrics import STORE_LATENCY

T = TypeVar("T")


class Database:
    """An engine plus the transaction discipline budgetd relies on."""

    def __init__(self, engine: Engine, timeout_s: float = 5.0, workers: int = 10) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.timeout_s = timeout_s
        self._group = GroupCommit(engine, translate=_translate) if self.is_sqlite else None
        self._lanes = (
            []
            if self.is_sqlite
            else [
                GroupCommit(
                    engine,
                    name=f"store-lane-{i}",
                    one_key_per_batch=True,
                    translate=_translate,
                    timeout_s=timeout_s,
                )
                for i in range(workers)
            ]
        )
        self._next_lane = itertools.count()
        self.executor: Executor = _Submitter(self)
        """:meth:`submit` as an ``Executor``, for ``loop.run_in_executor``."""
        # Set by the store health check (budgetd.store.health) while the store does not answer:
        # units of work then fail at once instead of each waiting for its timeout.
        self.outage: str | None = None

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        sqlite_synchronous: str = "FULL",
        timeout_s: float = 5.0,
    ) -> Database:
        """Create the engine for a URL (``sqlite:///path`` or ``postgresql+psycopg://...``).

        ``timeout_s`` bounds each unit of work's waits: for a connection from the pool, and on
        PostgreSQL for connecting and for each statement or lock (see ``budgetd.store.postgres``);
        a call's deadline shortens it further.
        """
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(
                parsed,
                pool_size=pool_size,
                max_overflow=0,
                connect_args={"check_same_thread": False, "timeout": timeout_s},
            )
            _configure_sqlite(engine, sqlite_synchronous)
        else:
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            engine = create_engine(
                parsed,
                # The lanes (``pool_size`` of them) and as many management threads.
                pool_size=2 * pool_size,
                max_overflow=0,
                pool_pre_ping=True,
                pool_timeout=timeout_s,
            )
            # Imported here: it loads psycopg, which a daemon on SQLite does without (~8 MB).
            from budgetd.store import postgres

            postgres.configure(engine, timeout_s)
        return cls(engine, timeout_s, pool_size)

    def submit(self, fn: Callable[..., T], *args: Any, key: str | None = None) -> Future[T]:
        """Run ``fn(*args)``, which does its own units of work, where writes are cheapest.

        The future resolves after the commit holding ``fn``'s writes. On SQLite ``fn`` runs on
        the writer thread; on PostgreSQL on the lane of ``key`` (the customer whose row ``fn``
        locks), batched with that customer's other calls — or, without a key, on any lane
        in a transaction of its own.
        """
        if self.outage is not None:
            # Fail at once, as write() would, rather than queue behind a store that is down.
            failed: Future[T] = Future()
            failed.set_exception(Unavailable(f"store unavailable: {self.outage}"))
            return failed
        return self._group_for(key).submit(fn, *args, key=key)

    def _group_for(self, key: str | None) -> GroupCommit:
        """SQLite's writer; on PostgreSQL, the lane of ``key`` (any lane without one)."""
        if self._group is not None:
            return self._group
        index = zlib.crc32(key.encode()) if key else next(self._next_lane)
        return self._lanes[index % len(self._lanes)]

    def submit_async(
        self, fn: Callable[..., T], *args: Any, key: str | None = None
    ) -> asyncio.Future[T]:
        """:meth:`submit` for a caller on an event loop (the hot RPCs): the result arrives as
        an asyncio future, and a batch's results reach the loop in one wake-up."""
        if self.outage is not None:
            failed: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            failed.set_exception(Unavailable(f"store unavailable: {self.outage}"))
            return failed
        return self._group_for(key).submit_async(fn, *args, key=key)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write unit of work, committed (and durable) when the block returns.

        On a writer thread (SQLite's, or a PostgreSQL lane) it is a savepoint of the batch.
        """
        with self._translated("write"):
            group = self._group or group_commit.current()
            if group is not None:
                with group.write() as conn:
                    yield conn
            else:
                with self.engine.begin() as conn:
                    yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction; it sees only committed work."""
        with self._translated("read"), self.engine.connect() as conn:
            if self.is_sqlite:
                conn = conn.execution_options(budgetd_write=False)
            with conn.begin():
                yield conn

    @contextmanager
    def _translated(self, kind: str) -> Iterator[None]:
        if self.outage is not None:
            raise Unavailable(f"store unavailable: {self.outage}")
        started = time.perf_counter()
        try:
            with deadlines.store_work(self.timeout_s):
                yield
        except (sa_exc.OperationalError, sa_exc.TimeoutError) as exc:
            raise _translate(exc) from exc
        finally:
            STORE_LATENCY.labels(kind).observe(time.perf_counter() - started)

    def dispose(self) -> None:
        """Finish submitted work, stop the writers and close every pooled connection."""
        for group in [self._group] if self._group else self._lanes:
            group.close()
        self.engine.dispose()


class _Submitter(Executor):
    def __init__(self, db: Database) -> None:
        self._db = db

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if kwargs:
            raise TypeError("Database.executor takes positional arguments only")
        return self._db.submit(fn, *args)


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours to emit.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL syncs the WAL at every commit: an acknowledged charge survives power loss too.
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("budgetd_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _translate(error: BaseException) -> BaseException:
    """The store's failures as callers see them: outages are ``Unavailable`` (retryable)."""
    if isinstance(error, sa_exc.OperationalError):
        # Connection refused, server gone, database locked past the timeout: all retryable.
        return Unavailable(f"store unavailable: {_first_line(error.orig)}")
    if isinstance(error, sa_exc.TimeoutError):
        return Unavailable("store unavailable: no free connection in time")
    return error


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
