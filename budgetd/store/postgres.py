"""PostgreSQL connections that never wait on the server past their call's deadline.

A stopped database refuses connections at once, but an unreachable one (a network partition, a
hung server) just never answers: a plain blocking driver waits for minutes and each call piles
one more stuck thread onto the pool. Here every wait on the server — connecting, the pool's
pre-ping, each statement, the commit — ends at the store deadline of the calling thread
(:mod:`budgetd.store.deadlines`). A connection that ran out of time is closed, since its
protocol state is unknown; SQLAlchemy sees it closed, discards it, and the call fails with
``Unavailable``. The server bounds the same work from its side with ``statement_timeout`` and
``lock_timeout``, so a query the client gave up on does not hold row locks.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.abc import PQGen
from sqlalchemy import Engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import ConnectionPoolEntry

from budgetd.store import deadlines

RV = TypeVar("RV")
# libpq (and psycopg) never wait less than this for a connection.
_MIN_CONNECT_TIMEOUT_S = 2


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection whose waits on the server end at the thread's store deadline."""

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        """psycopg's wait, ending at the store deadline when that comes first."""
        left = deadlines.store_seconds_left()
        if left is None or (timeout is not None and timeout <= left):
            return super().wait(gen, interval=interval, timeout=timeout)
        try:
            return super().wait(gen, interval=interval, timeout=max(left, 0.0))
        except pg_errors._WaitTimeout:
            # Mid-protocol: the connection cannot be used again. Closed, it is discarded.
            self.close()
            raise psycopg.OperationalError(
                "the database did not answer in time (call deadline or store timeout)"
            ) from None


def configure(engine: Engine, timeout_s: float) -> None:
    """Make ``engine`` open :class:`DeadlineConnection` s with server-side timeouts.

    ``connect_timeout`` follows the calling thread's store deadline (libpq's minimum is 2 s);
    ``statement_timeout`` and ``lock_timeout`` are ``timeout_s`` for every statement.
    """
    server_ms = max(1, round(timeout_s * 1000))

    @event.listens_for(engine, "do_connect")
    def _connect(
        _dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: dict[str, Any]
    ) -> DeadlineConnection:
        left = deadlines.store_seconds_left()
        if left is not None and left <= 0:
            raise psycopg.OperationalError("no time left to connect to the database")
        wait_s = timeout_s if left is None else min(timeout_s, left)
        cparams["connect_timeout"] = max(_MIN_CONNECT_TIMEOUT_S, math.ceil(wait_s))
        settings = f"-c statement_timeout={server_ms} -c lock_timeout={server_ms}"
        cparams["options"] = f"{cparams.get('options', '')} {settings}".strip()
        return DeadlineConnection.connect(*cargs, **cparams)
