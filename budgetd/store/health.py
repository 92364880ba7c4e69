"""The store health check: is the database answering right now?

A thread of its own asks ``SELECT 1`` every interval, on a connection of its own (a busy pool
must not look like an outage), and gives the answer ``interval`` seconds at most. When the store
stops answering it sets ``Database.outage`` — every unit of work then fails at once with
``Unavailable`` instead of each call waiting out its deadline — and tells the server, which
reports NOT_SERVING; when the store answers again both are undone. Nothing restarts: the next
calls reconnect (PostgreSQL's pool pre-pings and replaces dead connections).

Like envoyproxy/ratelimit, the server's health is derived from its components' health.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from budgetd.store import deadlines
from budgetd.store.database import Database

log = logging.getLogger("budgetd.store")


class StoreHealth:
    """Probes the store every ``interval_s``; ``on_change(up)`` is called on each transition."""

    def __init__(
        self, db: Database, interval_s: float, on_change: Callable[[bool], None] | None = None
    ) -> None:
        self._db = db
        self._interval_s = interval_s
        # An answer later than this counts as none.
        self._timeout_s = min(interval_s, db.timeout_s)
        self._on_change = on_change
        if db.is_sqlite:
            # Opening the file is part of the check; nothing to keep open between probes.
            self._engine = create_engine(db.engine.url, poolclass=NullPool)
        else:
            # Imported here, as in Database.connect: only PostgreSQL needs psycopg loaded.
            from budgetd.store import postgres

            self._engine = create_engine(db.engine.url, pool_size=1, max_overflow=0)
            postgres.configure(self._engine, self._timeout_s)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.up = True

    def check(self) -> bool:
        """Probe once, record the outcome (``Database.outage``, listeners); True if up."""
        reason = self._probe()
        up = reason is None
        self._db.outage = reason
        if up != self.up:
            self.up = up
            if up:
                log.info("store reachable again; serving")
            else:
                log.warning(
                    "store unreachable; failing calls fast and reporting NOT_SERVING",
                    extra={"fields": {"reason": reason}},
                )
            if self._on_change is not None:
                self._on_change(up)
        return up

    def start(self) -> None:
        """Probe every interval on a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="store-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop probing and close the probe's connection."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        self._engine.dispose()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.check()
            except Exception:  # a bug here must not end the health check
                log.exception("store health check failed")

    def _probe(self) -> str | None:
        """None when ``SELECT 1`` answered in time, else why not."""
        try:
            with deadlines.store_work(self._timeout_s), self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as error:
            cause = getattr(error, "orig", None) or error
            text = str(cause).strip()
            return text.splitlines()[0] if text else type(cause).__name__
        return None
