"""Whether a call may run: the checks Authorize makes on a locked, up-to-date account.

Pure functions of the account and the counts handed in, so every rule is testable alone. The
order is the order of the answers a caller can act on: blocked, model or region not allowed,
too many calls in flight, rate limited, over budget.

Rate limits count over a rolling 60-second window kept in one-second buckets. A request counts
from its second's bucket until 61 buckets later, so it is counted for between 60 and 61
seconds: never less than the window (no over-admission), at most one second more (a call may be
refused up to a second before a strict sliding log would admit it).
"""

from __future__ import annotations

from dataclasses import dataclass

from budgetd.domain.accounts import Account, ModelAccount
from budgetd.domain.records import DenialReason, ModelBudget

US = 1_000_000
_MODEL_CAP = "model_max_budget."
RATE_WINDOW_SECONDS = 60
# Buckets a window sums: the current second plus the 60 before it.
RATE_BUCKETS = RATE_WINDOW_SECONDS + 1


@dataclass(frozen=True, slots=True)
class RateUsage:
    """Requests and tokens counted in the rate window, and its oldest non-empty second."""

    requests: int
    tokens: int
    oldest_second: int | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A denial and what the caller is told."""

    reason: DenialReason
    # The limit that refused, as named in BudgetLimits: "max_budget", "rpm_limit",
    # "model_max_budget.tpm_limit", "allowed_model_region", ...
    rule: str
    message: str
    retry_after_us: int | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """The call being admitted, with its estimate."""

    model: str
    region: str
    amount_nanos: int
    tokens: int


def refusal(
    account: Account,
    call: Call,
    now_us: int,
    *,
    customer_rates: RateUsage | None,
    model_account: ModelAccount | None,
    cap: ModelBudget | None,
    model_rates: RateUsage | None,
) -> Refusal | None:
    """The first rule that refuses the call, or None when it may run."""
    limits = account.limits
    who = f"customer {account.user_id!r}"
    if account.blocked:
        return Refusal(DenialReason.BLOCKED, "blocked", f"{who} is blocked")
    if limits.allowed_models and call.model not in limits.allowed_models:
        return Refusal(
            DenialReason.MODEL_NOT_ALLOWED,
            "allowed_models",
            f"model {call.model!r} is not allowed for {who}; allowed: "
            + ", ".join(sorted(limits.allowed_models)),
        )
    if account.allowed_model_region and call.region != account.allowed_model_region:
        return Refusal(
            DenialReason.MODEL_NOT_ALLOWED,
            "allowed_model_region",
            f"{who} may only use models in region {account.allowed_model_region!r}; "
            f"model {call.model!r} is served from {call.region or 'an unknown region'!r}",
        )
    parallel = limits.max_parallel_requests
    if parallel is not None and account.open_holds + 1 > parallel:
        return Refusal(
            DenialReason.PARALLEL_LIMIT,
            "max_parallel_requests",
            f"{who} has {account.open_holds} calls in flight (max_parallel_requests={parallel})",
            retry_after_us=US,
        )
    limited = _rate_refusal(
        who, "", limits.rpm_limit, limits.tpm_limit, customer_rates, call.tokens, now_us
    )
    if limited is None and cap is not None:
        limited = _rate_refusal(
            f"{who} on model {call.model!r}",
            _MODEL_CAP,
            cap.rpm_limit,
            cap.tpm_limit,
            model_rates,
            call.tokens,
            now_us,
        )
    if limited is not None:
        return limited
    over = _over_budget(
        who, "", limits.max_budget_nanos, account.spend_nanos, account.reserved_nanos, call
    )
    if over is None and cap is not None and model_account is not None:
        over = _over_budget(
            f"{who} on model {call.model!r}",
            _MODEL_CAP,
            cap.max_budget_nanos,
            model_account.spend_nanos,
            model_account.reserved_nanos,
            call,
        )
    return over


def _rate_refusal(
    who: str,
    rule_prefix: str,
    rpm: int | None,
    tpm: int | None,
    usage: RateUsage | None,
    tokens: int,
    now_us: int,
) -> Refusal | None:
    if usage is None:
        return None
    if rpm is not None and usage.requests + 1 > rpm:
        return Refusal(
            DenialReason.RATE_LIMITED,
            f"{rule_prefix}rpm_limit",
            f"{who} made {usage.requests} requests in the last minute (rpm_limit={rpm})",
            _retry_after(usage, now_us),
        )
    if tpm is not None and usage.tokens + tokens > tpm:
        if tokens > tpm:
            return Refusal(
                DenialReason.RATE_LIMITED,
                f"{rule_prefix}tpm_limit",
                f"{who}: this call's {tokens} estimated tokens exceed tpm_limit={tpm}",
                RATE_WINDOW_SECONDS * US,
            )
        return Refusal(
            DenialReason.RATE_LIMITED,
            f"{rule_prefix}tpm_limit",
            f"{who} used {usage.tokens} tokens in the last minute; this call needs {tokens} "
            f"more (tpm_limit={tpm})",
            _retry_after(usage, now_us),
        )
    return None


def _retry_after(usage: RateUsage, now_us: int) -> int:
    # When the oldest counted second leaves the window; a hint, not a promise.
    if usage.oldest_second is None:
        return US
    return max(US // 1000, (usage.oldest_second + RATE_BUCKETS) * US - now_us)


def _over_budget(
    who: str, rule_prefix: str, max_budget: int | None, spend: int, reserved: int, call: Call
) -> Refusal | None:
    if max_budget is None:
        return None
    # A budget of 0 refuses everything, a call estimated at nothing included.
    if max_budget > 0 and spend + reserved + call.amount_nanos <= max_budget:
        return None
    return Refusal(
        DenialReason.BUDGET_EXCEEDED,
        f"{rule_prefix}max_budget",
        f"budget exceeded: {who} spend={spend} reserved={reserved} "
        f"estimate={call.amount_nanos} max_budget={max_budget} (nano-USD)",
    )
