"""Reserve and settle: the hot path between a gateway and the ledger.

Authorize reserves the estimated cost of a call with one conditional UPDATE that admits iff
``spend + reserved + estimate <= max_budget``; RecordSpend settles the reservation with the real
cost, releases the rest and appends a ledger entry, all in one transaction. A reservation that is
never settled expires after its TTL, so a crashed gateway cannot lock a budget.

Idempotency (AIP-155): Authorize deduplicates on (customer, request_id) through a unique index on
holds; RecordSpend on request_id through a unique index on the ledger. A retry that races the
first attempt loses at the index, rolls back everything it did, and answers with what the first
attempt stored.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from budgetd.clock import Clock
from budgetd.domain.paging import decode_token, encode_token
from budgetd.domain.records import (
    Charge,
    Decision,
    DenialReason,
    LedgerEntry,
    Page,
    SpendSummary,
)
from budgetd.errors import FailedPrecondition, InvalidArgument, NotFound
from budgetd.pricing import PriceTable, TokenUsage
from budgetd.store.customers import Balance, CustomerRepository
from budgetd.store.database import Database
from budgetd.store.holds import Hold, HoldRepository
from budgetd.store.ledger import LedgerRepository
from budgetd.store.schema import HOLD_OPEN, HOLD_RELEASED, HOLD_SETTLED
from budgetd.validation import (
    check_count,
    check_nanos,
    check_page_size,
    optional_id,
    require_id,
)


@dataclass(frozen=True, slots=True)
class SpendPolicy:
    """Operator settings of the hot path."""

    hold_ttl_us: int = 600 * 1_000_000
    # Used when a call names no output limit and the model's is unknown.
    default_max_output_tokens: int = 4096
    # Characters per token when only a prompt's length is known. Real text averages about 4;
    # 3 over-reserves a little, which is the safe side of an estimate.
    chars_per_token: int = 3


@dataclass(frozen=True, slots=True)
class CallEstimate:
    """What Authorize is told about a call."""

    customer_id: str
    model: str
    input_tokens: int | None = None
    input_characters: int | None = None
    max_output_tokens: int | None = None
    estimated_cost_nanos: int | None = None
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class SpendReport:
    """What RecordSpend is told about a finished call."""

    request_id: str
    customer_id: str = ""
    reservation_id: str = ""
    model: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_nanos: int | None = None


class SpendService:
    """Authorize, RecordSpend, ReleaseReservation, hold expiry and spend queries."""

    def __init__(
        self, db: Database, prices: PriceTable, clock: Clock, policy: SpendPolicy | None = None
    ) -> None:
        self._db = db
        self._prices = prices
        self._clock = clock
        self._policy = policy or SpendPolicy()
        self._customers = CustomerRepository()
        self._holds = HoldRepository()
        self._ledger = LedgerRepository()

    # -- Authorize -------------------------------------------------------------------------

    def authorize(self, call: CallEstimate) -> Decision:
        """Decide whether a call may run and, if so, reserve its estimated cost."""
        customer_id = require_id(call.customer_id, "customer_id")
        request_id = optional_id(call.request_id, "request_id")
        amount = self._estimate(call)
        try:
            with self._db.write() as conn:
                return self._authorize(conn, customer_id, call.model, amount, request_id)
        except sa_exc.IntegrityError:
            # Another attempt with this request_id reserved first: answer with its hold.
            if request_id is None:
                raise
            with self._db.read() as conn:
                return self._replay_authorize(conn, customer_id, request_id)

    def _authorize(
        self, conn: Connection, customer_id: str, model: str, amount: int, request_id: str | None
    ) -> Decision:
        now = self._clock.now_us()
        balance = self._customers.reserve(conn, customer_id, amount)
        if balance is None:
            # Rare path: find out why, fix what can be fixed, and try once more.
            if request_id is not None:
                # A retry of an admitted call gets its reservation even if it no longer fits.
                earlier = self._earlier_hold(conn, customer_id, request_id)
                if earlier is not None:
                    return earlier
            standing = self._customers.standing(conn, customer_id)
            if standing is None:
                # Created on first use, as LiteLLM upserts unknown customers.
                self._customers.insert_if_absent(conn, customer_id, now_us=now)
            elif standing.blocked:
                return _denied(
                    DenialReason.BLOCKED, f"customer {customer_id!r} is blocked", standing.balance
                )
            else:
                # Holds past their TTL may be taking the room.
                self._expire(conn, standing.customer_pk, now)
            balance = self._customers.reserve(conn, customer_id, amount)
        if balance is None:
            standing = self._customers.standing(conn, customer_id)
            assert standing is not None
            b = standing.balance
            return _denied(
                DenialReason.BUDGET_EXCEEDED,
                f"budget exceeded: customer {customer_id!r} spend={b.spend_nanos} "
                f"reserved={b.reserved_nanos} estimate={amount} "
                f"max_budget={b.max_budget_nanos} (nano-USD)",
                b,
            )
        hold = Hold(
            hold_id=str(uuid.uuid4()),
            customer_pk=balance.customer_pk,
            request_id=request_id,
            model=model,
            amount_nanos=amount,
            state=HOLD_OPEN,
            created_us=now,
            expires_us=now + self._policy.hold_ttl_us,
        )
        self._holds.insert(conn, hold)
        return _allowed(hold, balance)

    def _earlier_hold(self, conn: Connection, customer_id: str, request_id: str) -> Decision | None:
        customer_pk = self._customers.pk_of(conn, customer_id)
        if customer_pk is None:
            return None
        hold = self._holds.get_by_request(conn, customer_pk, request_id)
        standing = self._customers.standing(conn, customer_id)
        if hold is None or standing is None:
            return None
        return _allowed(hold, standing.balance)

    def _replay_authorize(self, conn: Connection, customer_id: str, request_id: str) -> Decision:
        customer_pk = self._customers.pk_of(conn, customer_id)
        hold = self._holds.get_by_request(conn, customer_pk, request_id) if customer_pk else None
        standing = self._customers.standing(conn, customer_id)
        if hold is None or standing is None:
            raise FailedPrecondition(f"request_id {request_id!r} conflicts with another call")
        return _allowed(hold, standing.balance)

    def _estimate(self, call: CallEstimate) -> int:
        if call.estimated_cost_nanos is not None:
            optional_id(call.model, "model")
            return check_nanos(call.estimated_cost_nanos, "estimated_cost_nanos")
        model = require_id(call.model, "model")
        for name in ("input_tokens", "input_characters", "max_output_tokens"):
            value = getattr(call, name)
            if value is not None:
                check_count(value, name)
        price = self._prices.get(model)
        if price is None:
            raise _unpriced(model)
        if call.input_tokens is not None:
            input_tokens = call.input_tokens
        else:
            input_tokens = math.ceil((call.input_characters or 0) / self._policy.chars_per_token)
        output_tokens = call.max_output_tokens
        if output_tokens is None:
            output_tokens = price.max_output_tokens or self._policy.default_max_output_tokens
        estimate = price.cost_nanos(
            TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens)
        )
        return check_nanos(estimate, "input_tokens")

    # -- RecordSpend -----------------------------------------------------------------------

    def record_spend(self, report: SpendReport) -> Charge:
        """Charge a finished call, settling its reservation. Idempotent on request_id."""
        request_id = require_id(report.request_id, "request_id")
        customer_id = optional_id(report.customer_id, "customer_id")
        hold_id = optional_id(report.reservation_id, "reservation_id")
        if customer_id is None and hold_id is None:
            raise InvalidArgument("customer_id", "is required when reservation_id is not set")
        cost, usage, model = self._cost(report)
        try:
            with self._db.write() as conn:
                replay = self._ledger.get_by_request(conn, request_id)
                if replay is not None:
                    return self._replayed_charge(conn, *replay)
                return self._settle(conn, request_id, customer_id, hold_id, model, usage, cost)
        except sa_exc.IntegrityError:
            # A concurrent attempt with this request_id committed first.
            with self._db.read() as conn:
                replay = self._ledger.get_by_request(conn, request_id)
                if replay is None:
                    raise
                return self._replayed_charge(conn, *replay)

    def _settle(
        self,
        conn: Connection,
        request_id: str,
        customer_id: str | None,
        hold_id: str | None,
        model: str,
        usage: TokenUsage,
        cost: int,
    ) -> Charge:
        now = self._clock.now_us()
        release = 0
        if hold_id is not None:
            hold = self._holds.close(
                conn, hold_id, from_state=HOLD_OPEN, to_state=HOLD_SETTLED, now_us=now
            )
            if hold is not None:
                release = hold.amount_nanos
            else:
                # Expired or released holds no longer count in reserved: charge, release nothing.
                hold = self._holds.get(conn, hold_id)
                if hold is None:
                    raise NotFound(f"reservation {hold_id!r} not found")
                moved = self._holds.close(
                    conn, hold_id, from_state=hold.state, to_state=HOLD_SETTLED, now_us=now
                )
                if hold.state == HOLD_SETTLED or moved is None:
                    # A concurrent attempt with this request_id may have settled it a moment
                    # ago; its entry is visible now that it committed.
                    replay = self._ledger.get_by_request(conn, request_id)
                    if replay is not None:
                        return self._replayed_charge(conn, *replay)
                    raise FailedPrecondition(
                        f"reservation {hold_id!r} was already settled by another request_id"
                    )
            customer_pk = hold.customer_pk
            if customer_id is not None and self._customers.pk_of(conn, customer_id) != customer_pk:
                raise InvalidArgument(
                    "customer_id", f"reservation {hold_id!r} belongs to another customer"
                )
        else:
            assert customer_id is not None
            pk = self._customers.pk_of(conn, customer_id)
            if pk is None:
                self._customers.insert_if_absent(conn, customer_id, now_us=now)
                pk = self._customers.pk_of(conn, customer_id)
            assert pk is not None
            customer_pk = pk
        balance = self._customers.apply(conn, customer_pk, charge_nanos=cost, release_nanos=release)
        entry = self._ledger.append(
            conn,
            customer_pk=customer_pk,
            entry=LedgerEntry(
                entry_id=0,
                user_id=balance.user_id,
                request_id=request_id,
                reservation_id=hold_id,
                model=model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                cost_nanos=cost,
                spend_after_nanos=balance.spend_nanos,
                created_us=now,
            ),
        )
        return Charge(entry, balance.max_budget_nanos, balance.reserved_nanos)

    def _replayed_charge(self, conn: Connection, customer_pk: int, entry: LedgerEntry) -> Charge:
        standing = self._customers.standing(conn, entry.user_id)
        if standing is None or standing.customer_pk != customer_pk:
            return Charge(entry, None, 0)
        return Charge(entry, standing.balance.max_budget_nanos, standing.balance.reserved_nanos)

    def _cost(self, report: SpendReport) -> tuple[int, TokenUsage, str]:
        usage = report.usage
        check_count(usage.input_tokens, "usage.input_tokens")
        check_count(usage.output_tokens, "usage.output_tokens")
        check_count(usage.cached_input_tokens, "usage.cached_input_tokens")
        if usage.cached_input_tokens > usage.input_tokens:
            raise InvalidArgument("usage.cached_input_tokens", "must not exceed usage.input_tokens")
        if report.cost_nanos is not None:
            model = optional_id(report.model, "model") or ""
            return check_nanos(report.cost_nanos, "cost_nanos"), usage, model
        model = require_id(report.model, "model")
        price = self._prices.get(model)
        if price is None:
            raise _unpriced(model)
        return check_nanos(price.cost_nanos(usage), "usage"), usage, model

    # -- Release and expiry ----------------------------------------------------------------

    def release(self, reservation_id: str) -> int:
        """Return a reservation's amount to the budget without charging; idempotent."""
        hold_id = require_id(reservation_id, "reservation_id")
        with self._db.write() as conn:
            hold = self._holds.close(
                conn,
                hold_id,
                from_state=HOLD_OPEN,
                to_state=HOLD_RELEASED,
                now_us=self._clock.now_us(),
            )
            if hold is None:
                if self._holds.get(conn, hold_id) is None:
                    raise NotFound(f"reservation {hold_id!r} not found")
                return 0
            self._customers.apply(
                conn, hold.customer_pk, charge_nanos=0, release_nanos=hold.amount_nanos
            )
            return hold.amount_nanos

    def expire_due(self, batch: int = 500) -> int:
        """Expire holds past their TTL for up to ``batch`` customers; returns how many had any.

        Authorize already expires a customer's stale holds when they stand in its way; this
        sweep keeps reported reservations honest for everyone else.
        """
        now = self._clock.now_us()
        with self._db.read() as conn:
            due = self._holds.customers_with_expired(conn, now_us=now, limit=batch)
        for customer_pk in due:
            with self._db.write() as conn:
                self._expire(conn, customer_pk, now)
        return len(due)

    def _expire(self, conn: Connection, customer_pk: int, now: int) -> None:
        released = self._holds.expire(conn, customer_pk, now_us=now)
        if released:
            self._customers.apply(conn, customer_pk, charge_nanos=0, release_nanos=released)

    # -- Queries ---------------------------------------------------------------------------

    def summary(self, customer_id: str) -> SpendSummary:
        """A customer's spend, reservations and ledger size."""
        require_id(customer_id, "customer_id")
        with self._db.read() as conn:
            standing = self._customers.standing(conn, customer_id)
            if standing is None:
                raise NotFound(f"customer {customer_id!r} not found")
            count, _ = self._ledger.totals(conn, standing.customer_pk)
        b = standing.balance
        return SpendSummary(customer_id, b.spend_nanos, b.reserved_nanos, b.max_budget_nanos, count)

    def ledger(self, customer_id: str, page_size: int, page_token: str) -> Page[LedgerEntry]:
        """A customer's ledger entries, newest first."""
        require_id(customer_id, "customer_id")
        size = check_page_size(page_size)
        before = decode_token(page_token, int)
        with self._db.read() as conn:
            customer_pk = self._customers.pk_of(conn, customer_id)
            if customer_pk is None:
                raise NotFound(f"customer {customer_id!r} not found")
            items = self._ledger.list(conn, customer_pk, before, size + 1)  # type: ignore[arg-type]
        more = len(items) > size
        items = items[:size]
        return Page(items, encode_token(items[-1].entry_id) if more else "")


def _allowed(hold: Hold, balance: Balance) -> Decision:
    return Decision(
        allowed=True,
        denial_reason=None,
        message="",
        reservation_id=hold.hold_id,
        held_nanos=hold.amount_nanos,
        spend_nanos=balance.spend_nanos,
        reserved_nanos=balance.reserved_nanos,
        max_budget_nanos=balance.max_budget_nanos,
        reservation_expire_us=hold.expires_us,
    )


def _denied(reason: DenialReason, message: str, balance: Balance) -> Decision:
    return Decision(
        allowed=False,
        denial_reason=reason,
        message=message,
        reservation_id=None,
        held_nanos=0,
        spend_nanos=balance.spend_nanos,
        reserved_nanos=balance.reserved_nanos,
        max_budget_nanos=balance.max_budget_nanos,
    )


def _unpriced(model: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"model {model!r} has no price: add it to the price file, or pass an explicit cost"
    )
