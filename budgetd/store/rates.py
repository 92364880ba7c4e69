"""Repository of rate buckets: requests and tokens per second, per customer and model scope."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, select, update

from budgetd.domain.admission import RateUsage
from budgetd.store import upserts
from budgetd.store.schema import rate_buckets

# The customer-wide scope; a model's scope is its name.
CUSTOMER_SCOPE = ""


class RateRepository:
    """Statements on the rate_buckets table."""

    def usage(self, conn: Connection, customer_pk: int, scope: str, since: int) -> RateUsage:
        """Totals over the buckets from second ``since`` on."""
        row = conn.execute(
            select(
                func.coalesce(func.sum(rate_buckets.c.requests), 0),
                func.coalesce(func.sum(rate_buckets.c.tokens), 0),
                func.min(rate_buckets.c.second),
            ).where(
                rate_buckets.c.customer_pk == customer_pk,
                rate_buckets.c.scope == scope,
                rate_buckets.c.second >= since,
            )
        ).one()
        return RateUsage(int(row[0]), int(row[1]), row[2])

    def add(
        self,
        conn: Connection,
        customer_pk: int,
        scope: str,
        second: int,
        *,
        requests: int,
        tokens: int,
    ) -> None:
        """Count requests and tokens in a second's bucket."""
        stmt = upserts.insert(conn, rate_buckets).values(
            customer_pk=customer_pk, scope=scope, second=second, requests=requests, tokens=tokens
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[
                    rate_buckets.c.customer_pk,
                    rate_buckets.c.scope,
                    rate_buckets.c.second,
                ],
                set_={
                    "requests": rate_buckets.c.requests + requests,
                    "tokens": rate_buckets.c.tokens + tokens,
                },
            )
        )

    def adjust_tokens(
        self, conn: Connection, customer_pk: int, scope: str, second: int, delta: int
    ) -> None:
        """Correct a bucket's tokens from the estimate to the actual count."""
        conn.execute(
            update(rate_buckets)
            .where(
                rate_buckets.c.customer_pk == customer_pk,
                rate_buckets.c.scope == scope,
                rate_buckets.c.second == second,
            )
            .values(tokens=rate_buckets.c.tokens + delta)
        )

    def prune(self, conn: Connection, before: int) -> int:
        """Drop buckets older than any window can reach."""
        return conn.execute(delete(rate_buckets).where(rate_buckets.c.second < before)).rowcount
