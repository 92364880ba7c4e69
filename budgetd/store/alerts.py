"""Repository of alerts waiting for delivery (an outbox)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from budgetd.store.schema import alerts


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert to post."""

    alert_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_us: int


class AlertRepository:
    """Statements on the alerts table."""

    def enqueue(self, conn: Connection, kind: str, payload: dict[str, Any], now_us: int) -> None:
        """Store an alert in the caller's transaction; it is sent after that commits."""
        conn.execute(
            insert(alerts).values(
                kind=kind,
                payload=json.dumps(payload, separators=(",", ":")),
                created_us=now_us,
                attempts=0,
                next_attempt_us=now_us,
            )
        )

    def due(self, conn: Connection, now_us: int, limit: int) -> list[Alert]:
        """Undelivered alerts whose next attempt is due, oldest first."""
        rows = conn.execute(
            select(
                alerts.c.alert_id,
                alerts.c.kind,
                alerts.c.payload,
                alerts.c.attempts,
                alerts.c.next_attempt_us,
            )
            .where(alerts.c.delivered_us.is_(None), alerts.c.next_attempt_us <= now_us)
            .order_by(alerts.c.alert_id)
            .limit(limit)
        ).all()
        return [Alert(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def claim(self, conn: Connection, alert: Alert, lease_until_us: int) -> bool:
        """Take an alert for one sender: of two replicas racing, one wins."""
        result = conn.execute(
            update(alerts)
            .where(
                alerts.c.alert_id == alert.alert_id,
                alerts.c.delivered_us.is_(None),
                alerts.c.next_attempt_us == alert.next_attempt_us,
            )
            .values(next_attempt_us=lease_until_us, attempts=alerts.c.attempts + 1)
        )
        return result.rowcount == 1

    def delivered(self, conn: Connection, alert_id: int, now_us: int) -> None:
        """Mark an alert sent."""
        conn.execute(
            update(alerts).where(alerts.c.alert_id == alert_id).values(delivered_us=now_us)
        )

    def retry_at(self, conn: Connection, alert_id: int, when_us: int) -> None:
        """Schedule the next attempt of a failed alert."""
        conn.execute(
            update(alerts).where(alerts.c.alert_id == alert_id).values(next_attempt_us=when_us)
        )
