"""Plain values the domain hands to transports. Money is integer nano-USD."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ModelBudget:
    """A per-model cap inside a customer's budget."""

    max_budget_nanos: int | None = None
    budget_duration: str = ""
    tpm_limit: int | None = None
    rpm_limit: int | None = None


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """Limits of a tier or of a customer's own budget. None means "no limit"."""

    max_budget_nanos: int | None = None
    soft_budget_nanos: int | None = None
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    max_parallel_requests: int | None = None
    budget_duration: str = ""
    model_max_budget: Mapping[str, ModelBudget] = field(default_factory=dict)
    window_alignment: str = ""  # "anniversary" (also when empty) or "calendar"
    time_zone: str = ""  # empty: the server's BUDGETD_TIME_ZONE
    allowed_models: tuple[str, ...] = ()  # empty: every model


@dataclass(frozen=True, slots=True)
class Budget:
    """A pricing tier."""

    budget_id: str
    limits: BudgetLimits
    customer_count: int
    created_us: int
    updated_us: int


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer with its spend and the limits in force."""

    user_id: str
    alias: str | None
    blocked: bool
    budget_id: str | None  # the tier, None when on own limits or none
    own_limits: BudgetLimits | None  # set when the customer has limits of its own
    effective_limits: BudgetLimits  # the tier's or its own; empty when neither
    spend_nanos: int
    reserved_nanos: int
    allowed_model_region: str | None
    default_model: str | None
    metadata: Mapping[str, Any]
    created_us: int
    updated_us: int
    window_start_us: int | None = None
    window_end_us: int | None = None
    window_anchor_us: int | None = None

    @property
    def soft_budget_exceeded(self) -> bool:
        """Spend has reached the soft budget in the current window."""
        soft = self.effective_limits.soft_budget_nanos
        return soft is not None and self.spend_nanos >= soft

    @property
    def max_budget_nanos(self) -> int | None:
        """The budget in force, None when unlimited."""
        return self.effective_limits.max_budget_nanos

    @property
    def remaining_nanos(self) -> int | None:
        """What is left to reserve, None when unlimited."""
        return remaining(self.max_budget_nanos, self.spend_nanos, self.reserved_nanos)


class DenialReason(enum.Enum):
    """Why Authorize refused a call; values match the proto enum numbers."""

    BUDGET_EXCEEDED = 1
    BLOCKED = 2
    RATE_LIMITED = 3
    MODEL_NOT_ALLOWED = 4
    PARALLEL_LIMIT = 5


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to Authorize."""

    allowed: bool
    denial_reason: DenialReason | None
    message: str
    reservation_id: str | None
    held_nanos: int
    spend_nanos: int
    reserved_nanos: int
    max_budget_nanos: int | None
    reservation_expire_us: int | None = None
    retry_after_us: int | None = None
    model: str = ""
    window_end_us: int | None = None
    denied_by: str = ""  # the limit that refused, e.g. "max_budget", "model_max_budget.rpm_limit"

    @property
    def remaining_nanos(self) -> int | None:
        """What is left after this reservation, None when unlimited."""
        return remaining(self.max_budget_nanos, self.spend_nanos, self.reserved_nanos)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One settled charge."""

    entry_id: int
    user_id: str
    request_id: str
    reservation_id: str | None
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_nanos: int
    spend_after_nanos: int
    created_us: int
    window_start_us: int | None = None


@dataclass(frozen=True, slots=True)
class Charge:
    """The answer to RecordSpend: the entry written (or written first, on a retry)."""

    entry: LedgerEntry
    max_budget_nanos: int | None
    reserved_nanos: int

    @property
    def remaining_nanos(self) -> int | None:
        """What is left after this charge, None when unlimited."""
        return remaining(self.max_budget_nanos, self.entry.spend_after_nanos, self.reserved_nanos)


@dataclass(frozen=True, slots=True)
class SpendSummary:
    """A customer's spend as GetSpend reports it."""

    user_id: str
    spend_nanos: int
    reserved_nanos: int
    max_budget_nanos: int | None
    ledger_entry_count: int
    window_start_us: int | None = None
    window_end_us: int | None = None

    @property
    def remaining_nanos(self) -> int | None:
        """What is left to reserve, None when unlimited."""
        return remaining(self.max_budget_nanos, self.spend_nanos, self.reserved_nanos)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; an empty token means the last page."""

    items: Sequence[T]
    next_page_token: str


def remaining(max_budget: int | None, spend: int, reserved: int) -> int | None:
    """Budget left after spend and reservations; never negative, None when unlimited."""
    if max_budget is None:
        return None
    return max(0, max_budget - spend - reserved)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One management change: who, when, what, and the target's settings before and after."""

    entry_id: int
    created_us: int
    actor: str  # a credential's fingerprint ("token:<16 hex>", "key:<16 hex>") or a role
    via: str | None  # the credential that forwarded ``actor``, when it was forwarded
    action: str  # e.g. "customer.update", "budget.delete"
    target_type: str  # "customer" or "budget"
    target_id: str
    before: Mapping[str, Any] | None  # None for a create
    after: Mapping[str, Any] | None  # None for a delete
