"""How long store work may take: the calling RPC's deadline, capped by the store timeout.

An RPC handler runs inside :func:`call_deadline` with what is left of its gRPC deadline (the
guard does this for every budgetd.v1 method, ``budgetd.envoy.observe.answered`` for Envoy's).
Each unit of store work (``Database.write()`` / ``read()``) then runs inside :func:`store_work`,
which ends at that deadline — less a margin, so the answer still reaches the caller in time — or
after ``BUDGETD_STORE_TIMEOUT_SECONDS``, whichever comes first. The PostgreSQL connections
(:mod:`budgetd.store.postgres`) stop waiting on the server at that moment, so an unreachable
database costs a call at most its own deadline, never a thread stuck for minutes.

The deadline lives in a thread-local: a call's domain work runs synchronously on one thread at a
time (a pool thread, or the store's writer, which sets each call's deadline as it runs it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from budgetd.errors import DeadlineExceeded

_local = threading.local()

# The answer needs time to travel back: the store gets what is left of the call less this
# share of it, and less at most _MAX_MARGIN_S.
_MARGIN_SHARE = 0.1
_MAX_MARGIN_S = 0.1


@contextmanager
def call_deadline(seconds_left: float | None) -> Iterator[None]:
    """Store work in this block ends ``seconds_left`` from now (less a margin); None: no limit.

    A deadline already past raises :class:`DeadlineExceeded` without touching the store.
    """
    if seconds_left is None:
        yield
        return
    if seconds_left <= 0:
        raise DeadlineExceeded("the call's deadline passed before budgetd could start it")
    margin = min(seconds_left * _MARGIN_SHARE, _MAX_MARGIN_S)
    previous: float | None = getattr(_local, "call", None)
    deadline = time.monotonic() + seconds_left - margin
    _local.call = deadline if previous is None else min(previous, deadline)
    try:
        yield
    finally:
        _local.call = previous


@contextmanager
def store_work(timeout_s: float) -> Iterator[None]:
    """One unit of store work, bounded by the call's deadline and by ``timeout_s``."""
    now = time.monotonic()
    call: float | None = getattr(_local, "call", None)
    if call is not None and call <= now:
        raise DeadlineExceeded("the call's deadline passed before the store answered")
    deadline = now + timeout_s if call is None else min(call, now + timeout_s)
    previous: float | None = getattr(_local, "store", None)
    _local.store = deadline if previous is None else min(previous, deadline)
    try:
        yield
    finally:
        _local.store = previous


def store_seconds_left() -> float | None:
    """Seconds the current store work has left on this thread; None outside :func:`store_work`."""
    deadline: float | None = getattr(_local, "store", None)
    return None if deadline is None else deadline - time.monotonic()
