"""What a rate limit service asks of a customer: is there room left, and charge this much.

Envoy's ratelimit filter (and Envoy Gateway's cost-based rules built on it) asks one question per
descriptor: may this go on, having added ``hits`` to the counter? budgetd answers it over one of
two counters of the customer:

- **tokens** — the customer's tpm window: the same rolling 60-second window of one-second buckets
  (``rate_buckets``, customer scope) that Authorize reads, so a token charged here counts against
  ``tpm_limit`` everywhere;
- **nanos** — the customer's budget: a charge is a real ledger entry written by ``RecordSpend``
  (money is never counted anywhere else), and a check asks whether any budget is left.

``hits == 0`` only checks: nothing is written (unless the customer is new: it is created on first
use, as Authorize does). A non-zero ``hits`` is a charge for something already used — Envoy sends
it after the response (``apply_on_stream_done``) — so it is always counted, even when it takes
the customer past its limit. The answer says whether the customer is over the limit:

- a check is over when nothing is left (``used >= limit``; a budget of 0 refuses everything);
- a charge is over when it took the total beyond the limit (``used > limit``).

A blocked customer is always over: a rate limit service can only say yes or no.

Locking follows the hot path's rule (see ``budgetd.domain.accounts``): the customer's row is
locked first and its budget window rolled to now; only then are rate buckets touched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection

from budgetd.clock import Clock
from budgetd.domain.account_book import AccountBook
from budgetd.domain.accounts import Account
from budgetd.domain.admission import RATE_BUCKETS, RATE_WINDOW_SECONDS, RateUsage
from budgetd.domain.spend import SpendPolicy, SpendReport, SpendService
from budgetd.errors import InvalidArgument
from budgetd.store.database import Database
from budgetd.store.rates import CUSTOMER_SCOPE, RateRepository
from budgetd.validation import check_count, check_nanos, require_id

US = 1_000_000
# The most tokens one charge may add; Envoy caps a formatted hits_addend at the same number.
MAX_TOKEN_HITS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Allowance:
    """How much of one limit a customer has left, after any charge."""

    customer_id: str
    over: bool
    # tpm_limit (tokens) or max_budget_nanos (nanos); None when the customer has no such limit.
    limit: int | None
    # Tokens counted in the window, or spend + reserved in the budget window.
    used: int
    # When room frees up, in microseconds from now: the oldest counted second leaving the rate
    # window, or the budget window's end. None when nothing will change by waiting.
    reset_after_us: int | None = None
    blocked: bool = False
    # What this call added (tokens or nano-USD).
    charged: int = 0

    @property
    def remaining(self) -> int | None:
        """What is left of the limit; None without one."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.used)


def token_allowance(account: Account, usage: RateUsage, hits: int, now_us: int) -> Allowance:
    """The answer for the tpm window, ``usage`` already including ``hits``."""
    tpm = account.limits.tpm_limit
    over = account.blocked
    if tpm is not None:
        over = over or (usage.tokens > tpm if hits else usage.tokens >= tpm)
    return Allowance(
        customer_id=account.user_id,
        over=over,
        limit=tpm,
        used=usage.tokens,
        reset_after_us=rate_reset_after_us(usage, now_us) if tpm is not None else None,
        blocked=account.blocked,
        charged=hits if tpm is not None else 0,
    )


def budget_allowance(account: Account, hits: int, now_us: int) -> Allowance:
    """The answer for the budget of an account in its current window (after any charge)."""
    max_budget = account.limits.max_budget_nanos
    used = account.spend_nanos + account.reserved_nanos
    over = account.blocked
    if max_budget is not None:
        over = over or (used > max_budget if hits else used >= max_budget)
    reset = None
    if max_budget is not None and account.window_end_us is not None:
        reset = max(0, account.window_end_us - now_us)
    return Allowance(
        customer_id=account.user_id,
        over=over,
        limit=max_budget,
        used=used,
        reset_after_us=reset,
        blocked=account.blocked,
        charged=hits,
    )


def rate_reset_after_us(usage: RateUsage, now_us: int) -> int | None:
    """When the oldest counted second leaves the rolling window; None when nothing is counted.

    A second's bucket is counted for RATE_BUCKETS seconds (see ``budgetd.domain.admission``).
    """
    if usage.oldest_second is None:
        return None
    return max(US // 1000, (usage.oldest_second + RATE_BUCKETS) * US - now_us)


class RateLimitService:
    """Check and charge a customer's tpm window or budget, for Envoy's rate limit service."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        spend: SpendService,
        policy: SpendPolicy | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._spend = spend
        self._policy = policy or SpendPolicy()
        self._book = AccountBook(
            default_budget_id=self._policy.default_budget_id, time_zone=self._policy.time_zone
        )
        self._rates = RateRepository()

    # -- tokens ----------------------------------------------------------------------------

    def tokens(self, customer_id: str, hits: int) -> Allowance:
        """Check (``hits == 0``) or charge ``hits`` tokens to the customer's tpm window.

        Tokens are counted in the current second's bucket, customer scope, when the customer has
        a tpm_limit (as Authorize counts only for customers with rate limits).
        """
        require_id(customer_id, "customer_id")
        check_count(hits, "hits_addend")
        if hits > MAX_TOKEN_HITS:
            raise InvalidArgument("hits_addend", f"is more than {MAX_TOKEN_HITS} tokens")
        now = self._clock.now_us()
        if hits == 0:
            with self._db.read() as conn:
                account = self._book.read(conn, customer_id)
                if account is not None:
                    return token_allowance(account, self._usage(conn, account, now), 0, now)
        with self._db.write() as conn:
            account = self._book.open(conn, customer_id, now)
            if hits and account.limits.tpm_limit is not None:
                self._rates.add(
                    conn, account.customer_pk, CUSTOMER_SCOPE, now // US, requests=0, tokens=hits
                )
            return token_allowance(account, self._usage(conn, account, now), hits, now)

    def _usage(self, conn: Connection, account: Account, now: int) -> RateUsage:
        if account.limits.tpm_limit is None:
            return RateUsage(0, 0, None)
        since = now // US - RATE_WINDOW_SECONDS
        return self._rates.usage(conn, account.customer_pk, CUSTOMER_SCOPE, since)

    # -- budget ----------------------------------------------------------------------------

    def budget(self, customer_id: str, hits: int) -> Allowance:
        """Check (``hits == 0``) whether budget is left, or charge ``hits`` nano-USD.

        A charge is ``RecordSpend`` without a reservation (a fresh request_id, so never
        deduplicated): a ledger entry, the spend, the soft-budget alert, all as usual.
        """
        require_id(customer_id, "customer_id")
        check_nanos(hits, "hits_addend")
        if hits:
            self._spend.record_spend(
                SpendReport(
                    request_id=f"envoy-ratelimit-{uuid.uuid4()}",
                    customer_id=customer_id,
                    cost_nanos=hits,
                )
            )
        now = self._clock.now_us()
        with self._db.read() as conn:
            account = self._book.read(conn, customer_id)
        if account is not None:
            return budget_allowance(self._book.current(account, now), hits, now)
        with self._db.write() as conn:
            account = self._book.open(conn, customer_id, now)
            return budget_allowance(account, hits, now)
