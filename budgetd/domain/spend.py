"""Reserve and settle: the hot path between a gateway and the ledger.

Every method locks the customer's row first (see ``budgetd.domain.accounts``), brings its budget
window up to now, decides, and writes back in the same transaction:

- **Authorize** admits a call iff every rule in ``budgetd.domain.admission`` passes — above all
  ``spend + reserved + estimate <= max_budget`` — and then reserves the estimate (a hold).
- **RecordSpend** settles a hold with the real cost: the hold leaves ``reserved``, the cost
  joins ``spend`` and the ledger. A hold taken in an earlier window is charged to that window.
- **release** returns a hold without a charge; **expiry** does the same for holds past their
  TTL, so a crashed gateway cannot lock a budget.

Locks are always taken customer first, then holds, so concurrent calls cannot deadlock.

Idempotency (AIP-155): Authorize deduplicates on (customer, request_id) through a unique index on
holds; RecordSpend on request_id through a unique index on the ledger. A retry that races the
first attempt loses at the index (or finds the first attempt's entry after waiting for the lock),
rolls back everything it did, and answers with what the first attempt stored. It looks that up
in a write unit, which sees (and waits for the commit of) a first attempt still in flight.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from budgetd.clock import Clock
from budgetd.domain.account_book import AccountBook
from budgetd.domain.accounts import Account, ModelAccount, model_cap
from budgetd.domain.admission import RATE_WINDOW_SECONDS, Call, Refusal, refusal
from budgetd.domain.alerts import SOFT_BUDGET
from budgetd.domain.paging import decode_token, encode_token
from budgetd.domain.records import Charge, Decision, LedgerEntry, Page, SpendSummary
from budgetd.errors import FailedPrecondition, InvalidArgument, NotFound
from budgetd.pricing import PriceTable, TokenUsage
from budgetd.store.alerts import AlertRepository
from budgetd.store.customers import CustomerRepository
from budgetd.store.database import Database
from budgetd.store.holds import Hold, HoldRepository
from budgetd.store.ledger import LedgerRepository
from budgetd.store.rates import CUSTOMER_SCOPE, RateRepository
from budgetd.store.schema import HOLD_OPEN, HOLD_RELEASED, HOLD_SETTLED
from budgetd.validation import (
    check_count,
    check_nanos,
    check_page_size,
    optional_id,
    require_id,
)

US = 1_000_000


@dataclass(frozen=True, slots=True)
class SpendPolicy:
    """Operator settings of the hot path."""

    hold_ttl_us: int = 600 * US
    # Used when a call names no output limit and the model's is unknown.
    default_max_output_tokens: int = 4096
    # Characters per token when only a prompt's length is known. Real text averages about 4;
    # 3 over-reserves a little, which is the safe side of an estimate.
    chars_per_token: int = 3
    # The tier customers created on first use are put on (LiteLLM's max_end_user_budget_id).
    default_budget_id: str | None = None
    # Zone of calendar windows and day/month arithmetic when a budget names none.
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class CallEstimate:
    """What Authorize is told about a call."""

    customer_id: str
    model: str = ""
    input_tokens: int | None = None
    input_characters: int | None = None
    max_output_tokens: int | None = None
    estimated_cost_nanos: int | None = None
    request_id: str = ""
    model_region: str = ""


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
        self._rates = RateRepository()
        self._alerts = AlertRepository()
        self._book = AccountBook(
            default_budget_id=self._policy.default_budget_id, time_zone=self._policy.time_zone
        )

    # -- Authorize -------------------------------------------------------------------------

    def authorize(self, call: CallEstimate) -> Decision:
        """Decide whether a call may run and, if so, reserve its estimated cost."""
        customer_id = require_id(call.customer_id, "customer_id")
        request_id = optional_id(call.request_id, "request_id")
        _check_call(call)
        try:
            with self._db.write() as conn:
                return self._authorize(conn, customer_id, call, request_id)
        except sa_exc.IntegrityError:
            # Another attempt with this request_id reserved first: answer with its hold.
            if request_id is None:
                raise
            with self._db.write() as conn:
                earlier = self._earlier_hold(conn, customer_id, request_id)
            if earlier is None:
                raise FailedPrecondition(
                    f"request_id {request_id!r} conflicts with another call"
                ) from None
            return earlier

    def _authorize(
        self, conn: Connection, customer_id: str, call: CallEstimate, request_id: str | None
    ) -> Decision:
        now = self._clock.now_us()
        account = self._book.open(conn, customer_id, now)
        model = call.model or account.default_model or ""
        amount, tokens = self._estimate(call, model)
        check_nanos(account.spend_nanos + account.reserved_nanos + amount, "estimated cost")
        candidate = Call(model, call.model_region, amount, tokens)
        model_account = self._book.model_account(conn, account, model, now)
        refused = self._refusal(conn, account, candidate, model_account, now)
        if refused is not None and refused.reason.name in ("BUDGET_EXCEEDED", "PARALLEL_LIMIT"):
            # Holds past their TTL may be taking the room: expire them and look again.
            expired = self._expire(conn, account, now)
            if expired is not account:
                account = expired
                self._book.save(conn, account)
                model_account = self._book.model_account(conn, account, model, now)
                refused = self._refusal(conn, account, candidate, model_account, now)
        if refused is not None:
            if request_id is not None:
                # A retry of a call that was admitted gets its reservation back.
                earlier = self._earlier_hold(conn, customer_id, request_id)
                if earlier is not None:
                    return earlier
            return _denied(account, refused, model)
        return self._admit(conn, account, candidate, model_account, request_id, now)

    def _admit(
        self,
        conn: Connection,
        account: Account,
        call: Call,
        model_account: ModelAccount | None,
        request_id: str | None,
        now: int,
    ) -> Decision:
        rate_second = None
        scopes = self._rate_scopes(account, call.model)
        if scopes:
            rate_second = now // US
            for scope in scopes:
                self._rates.add(
                    conn,
                    account.customer_pk,
                    scope,
                    rate_second,
                    requests=1,
                    tokens=call.tokens,
                )
        if model_account is not None:
            model_account = dataclasses.replace(
                model_account, reserved_nanos=model_account.reserved_nanos + call.amount_nanos
            )
            self._book.save_model(conn, model_account)
        account = dataclasses.replace(
            account,
            reserved_nanos=account.reserved_nanos + call.amount_nanos,
            open_holds=account.open_holds + 1,
        )
        self._book.save(conn, account)
        hold = Hold(
            hold_id=str(uuid.uuid4()),
            customer_pk=account.customer_pk,
            request_id=request_id,
            model=call.model,
            amount_nanos=call.amount_nanos,
            state=HOLD_OPEN,
            created_us=now,
            expires_us=now + self._policy.hold_ttl_us,
            window_start_us=account.window_start_us,
            model_window_start_us=model_account.window_start_us if model_account else None,
            tokens=call.tokens,
            rate_second=rate_second,
        )
        self._holds.insert(conn, hold)
        return _allowed(hold, account)

    def _refusal(
        self,
        conn: Connection,
        account: Account,
        call: Call,
        model_account: ModelAccount | None,
        now: int,
    ) -> Refusal | None:
        limits = account.limits
        since = now // US - RATE_WINDOW_SECONDS
        customer_rates = None
        if limits.rpm_limit is not None or limits.tpm_limit is not None:
            customer_rates = self._rates.usage(conn, account.customer_pk, CUSTOMER_SCOPE, since)
        cap = model_cap(limits, call.model)
        model_rates = None
        if cap is not None and (cap.rpm_limit is not None or cap.tpm_limit is not None):
            model_rates = self._rates.usage(conn, account.customer_pk, call.model, since)
        return refusal(
            account,
            call,
            now,
            customer_rates=customer_rates,
            model_account=model_account,
            cap=cap,
            model_rates=model_rates,
        )

    def _earlier_hold(self, conn: Connection, customer_id: str, request_id: str) -> Decision | None:
        account = self._book.read(conn, customer_id)
        if account is None:
            return None
        hold = self._holds.get_by_request(conn, account.customer_pk, request_id)
        return _allowed(hold, account) if hold is not None else None

    def _estimate(self, call: CallEstimate, model: str) -> tuple[int, int]:
        """(cost, tokens) the call may use at most."""
        input_tokens = call.input_tokens
        if input_tokens is None:
            input_tokens = math.ceil((call.input_characters or 0) / self._policy.chars_per_token)
        if call.estimated_cost_nanos is not None:
            return call.estimated_cost_nanos, input_tokens + (call.max_output_tokens or 0)
        if not model:
            raise InvalidArgument(
                "model", "is required: the call names none and the customer has no default_model"
            )
        price = self._prices.get(model)
        if price is None:
            raise _unpriced(model)
        output_tokens = call.max_output_tokens
        if output_tokens is None:
            output_tokens = price.max_output_tokens or self._policy.default_max_output_tokens
        estimate = price.cost_nanos(
            TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens)
        )
        return check_nanos(estimate, "input_tokens"), input_tokens + output_tokens

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
            with self._db.write() as conn:
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
        hold: Hold | None = None
        if hold_id is not None:
            found = self._holds.get(conn, hold_id)
            if found is None:
                raise NotFound(f"reservation {hold_id!r} not found")
            account = self._book.open_pk(conn, found.customer_pk, now)
            if customer_id is not None and account.user_id != customer_id:
                raise InvalidArgument(
                    "customer_id", f"reservation {hold_id!r} belongs to another customer"
                )
            hold = self._holds.close(
                conn, hold_id, from_state=HOLD_OPEN, to_state=HOLD_SETTLED, now_us=now
            )
            if hold is not None:
                account = self._unreserve(conn, account, hold, now)
            else:
                # Expired or released holds no longer count in reserved: charge, release nothing.
                hold = self._holds.close(
                    conn, hold_id, from_state=found.state, to_state=HOLD_SETTLED, now_us=now
                )
                if found.state == HOLD_SETTLED or hold is None:
                    # A concurrent attempt with this request_id may have settled it a moment
                    # ago; its entry is visible now that it committed.
                    replay = self._ledger.get_by_request(conn, request_id)
                    if replay is not None:
                        return self._replayed_charge(conn, *replay)
                    raise FailedPrecondition(
                        f"reservation {hold_id!r} was already settled by another request_id"
                    )
            # A charge with an explicit cost may name no model: it is the reserved one's.
            model = model or hold.model
            self._correct_tokens(conn, account, hold, usage, now)
            window = hold.window_start_us
        else:
            assert customer_id is not None
            account = self._book.open(conn, customer_id, now)
            self._count_unreserved(conn, account, model, usage, now)
            window = account.window_start_us
        in_current_window = window == account.window_start_us
        if in_current_window:
            check_nanos(account.spend_nanos + cost, "cost_nanos")
            account = dataclasses.replace(account, spend_nanos=account.spend_nanos + cost)
            account = self._alert_soft_budget(conn, account, now)
        self._charge_model(conn, account, model, hold, cost, now)
        self._book.save(conn, account)
        entry = self._ledger.append(
            conn,
            customer_pk=account.customer_pk,
            entry=LedgerEntry(
                entry_id=0,
                user_id=account.user_id,
                request_id=request_id,
                reservation_id=hold_id,
                model=model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                cost_nanos=cost,
                spend_after_nanos=account.spend_nanos,
                created_us=now,
                window_start_us=window,
            ),
        )
        return Charge(entry, account.limits.max_budget_nanos, account.reserved_nanos)

    def _charge_model(
        self,
        conn: Connection,
        account: Account,
        model: str,
        hold: Hold | None,
        cost: int,
        now: int,
    ) -> None:
        model_account = self._book.model_account(conn, account, model, now)
        if model_account is None:
            return
        if hold is not None and hold.model_window_start_us != model_account.window_start_us:
            return  # charged to an earlier window of the model's cap
        self._book.save_model(
            conn,
            dataclasses.replace(model_account, spend_nanos=model_account.spend_nanos + cost),
        )

    def _alert_soft_budget(self, conn: Connection, account: Account, now: int) -> Account:
        soft = account.limits.soft_budget_nanos
        window_key = account.window_start_us or 0
        if soft is None or account.spend_nanos < soft or account.soft_alert_window_us == window_key:
            return account
        self._alerts.enqueue(
            conn,
            SOFT_BUDGET,
            {
                "customer_id": account.user_id,
                "spend_nanos": account.spend_nanos,
                "soft_budget_nanos": soft,
                "max_budget_nanos": account.limits.max_budget_nanos,
                "window_start_us": account.window_start_us,
                "window_end_us": account.window_end_us,
            },
            now,
        )
        return dataclasses.replace(account, soft_alert_window_us=window_key)

    def _replayed_charge(self, conn: Connection, customer_pk: int, entry: LedgerEntry) -> Charge:
        account = self._customers.lock(conn, customer_pk=customer_pk, for_update=False)
        if account is None:
            return Charge(entry, None, 0)
        return Charge(entry, account.limits.max_budget_nanos, account.reserved_nanos)

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
            found = self._holds.get(conn, hold_id)
            if found is None:
                raise NotFound(f"reservation {hold_id!r} not found")
            now = self._clock.now_us()
            account = self._book.open_pk(conn, found.customer_pk, now)
            hold = self._holds.close(
                conn, hold_id, from_state=HOLD_OPEN, to_state=HOLD_RELEASED, now_us=now
            )
            if hold is None:
                return 0
            account = self._unreserve(conn, account, hold, now)
            # The call used nothing: its estimated tokens leave the tpm window.
            self._correct_tokens(conn, account, hold, TokenUsage(), now)
            self._book.save(conn, account)
            return hold.amount_nanos

    def expire_due(self, batch: int = 500) -> int:
        """Expire holds past their TTL for up to ``batch`` customers; returns how many had any.

        Authorize already expires a customer's stale holds when they stand in its way; this
        sweep keeps reported reservations honest for everyone else, and drops rate buckets that
        no window reaches any more.
        """
        now = self._clock.now_us()
        with self._db.read() as conn:
            due = self._holds.customers_with_expired(conn, now_us=now, limit=batch)
        for customer_pk in due:
            with self._db.write() as conn:
                account = self._book.open_pk(conn, customer_pk, now)
                self._book.save(conn, self._expire(conn, account, now))
        with self._db.write() as conn:
            self._rates.prune(conn, now // US - RATE_WINDOW_SECONDS - 1)
        return len(due)

    def _expire(self, conn: Connection, account: Account, now: int) -> Account:
        """The account without its holds past their TTL (the same object when none were)."""
        for hold in self._holds.expire(conn, account.customer_pk, now_us=now):
            account = self._unreserve(conn, account, hold, now)
        return account

    def _unreserve(self, conn: Connection, account: Account, hold: Hold, now: int) -> Account:
        """Take a hold that was open off the counters it was added to."""
        reserved = account.reserved_nanos
        if hold.window_start_us == account.window_start_us:
            reserved = max(0, reserved - hold.amount_nanos)
        model_account = self._book.model_account(conn, account, hold.model, now)
        if (
            model_account is not None
            and hold.model_window_start_us == model_account.window_start_us
        ):
            self._book.save_model(
                conn,
                dataclasses.replace(
                    model_account,
                    reserved_nanos=max(0, model_account.reserved_nanos - hold.amount_nanos),
                ),
            )
        return dataclasses.replace(
            account, reserved_nanos=reserved, open_holds=max(0, account.open_holds - 1)
        )

    # -- rate windows ----------------------------------------------------------------------

    def _rate_scopes(self, account: Account, model: str) -> list[str]:
        scopes = []
        limits = account.limits
        if limits.rpm_limit is not None or limits.tpm_limit is not None:
            scopes.append(CUSTOMER_SCOPE)
        cap = model_cap(limits, model)
        if cap is not None and (cap.rpm_limit is not None or cap.tpm_limit is not None):
            scopes.append(model)
        return scopes

    def _correct_tokens(
        self, conn: Connection, account: Account, hold: Hold, usage: TokenUsage, now: int
    ) -> None:
        """Replace a hold's estimated tokens by the actual count in the bucket it was counted."""
        if hold.rate_second is None or hold.rate_second < now // US - RATE_WINDOW_SECONDS:
            return
        delta = usage.input_tokens + usage.output_tokens - hold.tokens
        if delta:
            # A call naming no model has the customer's scope as its model's: correct it once.
            for scope in dict.fromkeys((CUSTOMER_SCOPE, hold.model)):
                self._rates.adjust_tokens(conn, account.customer_pk, scope, hold.rate_second, delta)

    def _count_unreserved(
        self, conn: Connection, account: Account, model: str, usage: TokenUsage, now: int
    ) -> None:
        """Count a charge that no Authorize preceded in the rate windows."""
        tokens = usage.input_tokens + usage.output_tokens
        for scope in self._rate_scopes(account, model):
            self._rates.add(conn, account.customer_pk, scope, now // US, requests=1, tokens=tokens)

    # -- Queries ---------------------------------------------------------------------------

    def summary(self, customer_id: str) -> SpendSummary:
        """A customer's spend and reservations in its current window, and its ledger size."""
        require_id(customer_id, "customer_id")
        with self._db.read() as conn:
            stored = self._book.read(conn, customer_id)
            if stored is None:
                raise NotFound(f"customer {customer_id!r} not found")
            count = self._ledger.count(conn, stored.customer_pk)
        account = self._book.reported(stored, self._clock.now_us())
        return SpendSummary(
            customer_id,
            account.spend_nanos,
            account.reserved_nanos,
            account.limits.max_budget_nanos,
            count,
            account.window_start_us,
            account.window_end_us,
        )

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


def _check_call(call: CallEstimate) -> None:
    """Validate an Authorize request's fields before any transaction."""
    optional_id(call.model, "model")
    for name in ("input_tokens", "input_characters", "max_output_tokens"):
        value = getattr(call, name)
        if value is not None:
            check_count(value, name)
    if call.estimated_cost_nanos is not None:
        check_nanos(call.estimated_cost_nanos, "estimated_cost_nanos")
    if len(call.model_region) > 16:
        raise InvalidArgument("model_region", "is longer than 16 characters")


def _allowed(hold: Hold, account: Account) -> Decision:
    return Decision(
        allowed=True,
        denial_reason=None,
        message="",
        reservation_id=hold.hold_id,
        held_nanos=hold.amount_nanos,
        spend_nanos=account.spend_nanos,
        reserved_nanos=account.reserved_nanos,
        max_budget_nanos=account.limits.max_budget_nanos,
        reservation_expire_us=hold.expires_us,
        model=hold.model,
        window_end_us=account.window_end_us,
    )


def _denied(account: Account, refused: Refusal, model: str) -> Decision:
    return Decision(
        allowed=False,
        denial_reason=refused.reason,
        message=refused.message,
        reservation_id=None,
        held_nanos=0,
        spend_nanos=account.spend_nanos,
        reserved_nanos=account.reserved_nanos,
        max_budget_nanos=account.limits.max_budget_nanos,
        retry_after_us=refused.retry_after_us,
        denied_by=refused.rule,
        model=model,
        window_end_us=account.window_end_us,
    )


def _unpriced(model: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"model {model!r} has no price: add it to the price file, or pass an explicit cost"
    )
