"""Soft-budget alerts: posted to a webhook, retried with backoff, never on the call path.

RecordSpend writes the alert into the same transaction that crossed the threshold (so it fires
exactly when the charge commits, once per window); this sender posts it afterwards. Delivery is
at least once: a sender that dies after posting but before marking it sent posts it again.
"""

from __future__ import annotations

import logging

from budgetd.clock import Clock
from budgetd.store.alerts import Alert, AlertRepository
from budgetd.store.database import Database

log = logging.getLogger("budgetd.alerts")

SOFT_BUDGET = "soft_budget_exceeded"
_US = 1_000_000
# Longer than one POST may take, so two replicas never post the same alert at once.
_LEASE_US = 30 * _US
_MAX_BACKOFF_US = 300 * _US


class AlertSender:
    """Delivers due alerts to the configured webhook."""

    def __init__(
        self, db: Database, clock: Clock, url: str, *, timeout_s: float = 5.0, batch: int = 50
    ) -> None:
        self._db = db
        self._clock = clock
        self._url = url
        self._batch = batch
        self._alerts = AlertRepository()
        # Imported here, not at the top: a daemon without a webhook never loads httpx (~4 MB).
        import httpx

        self._http = httpx.Client(timeout=timeout_s)

    def deliver_due(self) -> int:
        """Post every due alert once; returns how many were delivered."""
        now = self._clock.now_us()
        with self._db.read() as conn:
            due = self._alerts.due(conn, now, self._batch)
        delivered = 0
        for alert in due:
            with self._db.write() as conn:
                if not self._alerts.claim(conn, alert, now + _LEASE_US):
                    continue
            if self._post(alert):
                with self._db.write() as conn:
                    self._alerts.delivered(conn, alert.alert_id, self._clock.now_us())
                delivered += 1
            else:
                backoff = min(_US * 2 ** (alert.attempts + 1), _MAX_BACKOFF_US)
                with self._db.write() as conn:
                    self._alerts.retry_at(conn, alert.alert_id, self._clock.now_us() + backoff)
        return delivered

    def _post(self, alert: Alert) -> bool:
        import httpx  # loaded by __init__ already

        try:
            response = self._http.post(self._url, json={"type": alert.kind, **alert.payload})
        except httpx.HTTPError as exc:
            log.warning("alert webhook failed", extra={"fields": {"error": type(exc).__name__}})
            return False
        if response.is_success:
            return True
        log.warning("alert webhook refused", extra={"fields": {"status": response.status_code}})
        return False

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()
