"""LiteLLM's admin API at the JSON edge: request models and the rows it answers with.

Field names and shapes follow LiteLLM's proxy (``/customer/*``, ``/budget/*``). Money is USD at
this edge (numbers or numeric strings, ``"max_budget": "0"`` included) and integer nano-USD
inside: ``UsdNanos`` converts on the way in, ``render_usd`` on the way out. Unknown fields are
ignored, as LiteLLM does, so scripts written for it keep working.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints

from budgetd.v1 import resources_pb2 as res
from proxy_shim.usd import parse_usd, render_usd

MAX_ID_LENGTH = 256
# Prefix budgetd gives a customer's private budget; it is not a tier the operator named.
PRIVATE_BUDGET_PREFIX = "~own/"


def _count(value: object) -> object:
    """Counts may come as ints or integer strings, never as booleans or fractions."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be an integer")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


UsdNanos = Annotated[int, BeforeValidator(parse_usd)]
Count = Annotated[int, BeforeValidator(_count), Field(ge=0, le=2**63 - 1)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, strict=True)]
Text = Annotated[str, StringConstraints(max_length=1024, strict=True)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ModelBudgetIn(_Request):
    """A per-model cap inside a budget (``model_max_budget`` values)."""

    max_budget: UsdNanos | None = None
    budget_duration: Text | None = None
    tpm_limit: Count | None = None
    rpm_limit: Count | None = None


class BudgetFields(_Request):
    """The budget fields a customer or a tier may carry."""

    max_budget: UsdNanos | None = None
    soft_budget: UsdNanos | None = None
    max_parallel_requests: Count | None = None
    tpm_limit: Count | None = None
    rpm_limit: Count | None = None
    budget_duration: Text | None = None
    model_max_budget: dict[Id, ModelBudgetIn] | None = None
    # Beyond LiteLLM's budget table: models the customer may call (empty or null: any),
    # where windows fall ("anniversary" of the first call, or "calendar": midnight, Monday,
    # the 1st) and in which IANA zone (null: budgetd's BUDGETD_TIME_ZONE).
    allowed_models: list[Id] | None = Field(None, max_length=1000)
    budget_reset_alignment: Literal["anniversary", "calendar"] | None = None
    time_zone: Annotated[str, StringConstraints(max_length=64, strict=True)] | None = None


BUDGET_FIELDS = frozenset(BudgetFields.model_fields)


class CustomerNew(BudgetFields):
    """``/customer/new``: budget fields give a private budget, ``budget_id`` joins a tier."""

    user_id: Id
    alias: Text | None = None
    blocked: StrictBool = False
    budget_id: Id | None = None
    allowed_model_region: Literal["eu", "us"] | None = None
    default_model: Id | None = None
    metadata: dict[str, Any] | None = None


class CustomerUpdate(BudgetFields):
    """``/customer/update``: exactly the fields present in the body change."""

    user_id: Id
    alias: Text | None = None
    blocked: StrictBool = False
    budget_id: Id | None = None
    allowed_model_region: Literal["eu", "us"] | None = None
    default_model: Id | None = None
    metadata: dict[str, Any] | None = None


class UserIds(_Request):
    """``/customer/delete``, ``/customer/block``, ``/customer/unblock``."""

    user_ids: list[Id] = Field(min_length=1, max_length=1000)


class BudgetNew(BudgetFields):
    """``/budget/new``; LiteLLM generates the id when none is given."""

    budget_id: Id | None = None


class BudgetUpdate(BudgetFields):
    """``/budget/update``: exactly the fields present in the body change."""

    budget_id: Id


class BudgetInfo(_Request):
    """``/budget/info``."""

    budgets: list[Id] = Field(min_length=1, max_length=1000)


class BudgetDelete(_Request):
    """``/budget/delete``."""

    id: Id


# -- edge -> budgetd ---------------------------------------------------------------------------

# Edge names that differ from budgetd's BudgetLimits fields.
_TARGETS = {
    "max_budget": "max_budget_nanos",
    "soft_budget": "soft_budget_nanos",
    "budget_reset_alignment": "window_alignment",
}
_ALIGNMENTS = {
    "anniversary": res.WINDOW_ALIGNMENT_ANNIVERSARY,
    "calendar": res.WINDOW_ALIGNMENT_CALENDAR,
}
_ALIGNMENT_NAMES = {value: name for name, value in _ALIGNMENTS.items()}


def limits_message(fields: BudgetFields, present: set[str]) -> tuple[res.BudgetLimits, list[str]]:
    """The BudgetLimits for the budget fields in ``present``, and their update-mask paths."""
    limits = res.BudgetLimits()
    paths: list[str] = []
    for name in sorted(present & BUDGET_FIELDS):
        value = getattr(fields, name)
        target = _TARGETS.get(name, name)
        paths.append(f"limits.{target}")
        if value is None:
            continue  # an unset field in the message clears the limit
        if name == "allowed_models":
            limits.allowed_models.extend(value)
        elif name == "budget_reset_alignment":
            limits.window_alignment = _ALIGNMENTS[value]
        elif name == "model_max_budget":
            for model, cap in value.items():
                out = limits.model_max_budget[model]
                out.budget_duration = cap.budget_duration or ""
                if cap.max_budget is not None:
                    out.max_budget_nanos = cap.max_budget
                if cap.tpm_limit is not None:
                    out.tpm_limit = cap.tpm_limit
                if cap.rpm_limit is not None:
                    out.rpm_limit = cap.rpm_limit
        else:
            setattr(limits, target, value)
    return limits, paths


def budget_fields_present(model: BaseModel) -> set[str]:
    """The budget fields a request actually sent (null included)."""
    return set(model.model_fields_set) & BUDGET_FIELDS


# -- budgetd -> edge ---------------------------------------------------------------------------


def budget_table(limits: res.BudgetLimits, budget_id: str | None) -> dict[str, Any] | None:
    """LiteLLM's ``litellm_budget_table`` object, or None when no limit is set."""
    has_any = any(
        limits.HasField(name)
        for name in (
            "max_budget_nanos",
            "soft_budget_nanos",
            "tpm_limit",
            "rpm_limit",
            "max_parallel_requests",
        )
    )
    if not (
        has_any
        or limits.budget_duration
        or limits.model_max_budget
        or limits.allowed_models
        or limits.window_alignment
        or limits.time_zone
    ):
        return None
    return {"budget_id": budget_id, **_limit_fields(limits)}


def _limit_fields(limits: res.BudgetLimits) -> dict[str, Any]:
    def money(name: str) -> float | None:
        return render_usd(getattr(limits, name)) if limits.HasField(name) else None

    def count(name: str) -> int | None:
        return int(getattr(limits, name)) if limits.HasField(name) else None

    models = {
        model: {
            "max_budget": render_usd(cap.max_budget_nanos)
            if cap.HasField("max_budget_nanos")
            else None,
            "budget_duration": cap.budget_duration or None,
            "tpm_limit": cap.tpm_limit if cap.HasField("tpm_limit") else None,
            "rpm_limit": cap.rpm_limit if cap.HasField("rpm_limit") else None,
        }
        for model, cap in sorted(limits.model_max_budget.items())
    }
    return {
        "max_budget": money("max_budget_nanos"),
        "soft_budget": money("soft_budget_nanos"),
        "max_parallel_requests": count("max_parallel_requests"),
        "tpm_limit": count("tpm_limit"),
        "rpm_limit": count("rpm_limit"),
        "model_max_budget": models or None,
        "budget_duration": limits.budget_duration or None,
        "allowed_models": list(limits.allowed_models) or None,
        "budget_reset_alignment": _ALIGNMENT_NAMES.get(limits.window_alignment),
        "time_zone": limits.time_zone or None,
    }


def customer_row(customer: res.Customer) -> dict[str, Any]:
    """A customer as ``/customer/info`` shows it: the seed's shape plus the window's state."""
    tier = customer.budget_id if customer.HasField("budget_id") else None
    if tier is not None and tier.startswith(PRIVATE_BUDGET_PREFIX):
        tier = None
    return {
        "user_id": customer.user_id,
        "blocked": customer.blocked,
        "alias": customer.alias if customer.HasField("alias") else None,
        "spend": render_usd(customer.spend_nanos),
        "allowed_model_region": (
            customer.allowed_model_region if customer.HasField("allowed_model_region") else None
        ),
        "default_model": customer.default_model if customer.HasField("default_model") else None,
        "litellm_budget_table": budget_table(customer.effective_limits, tier),
        # Beyond LiteLLM's shape (extra keys only), stated here so no client has to derive them.
        "budget_used_percent": _used_percent(customer),
        "soft_budget_exceeded": customer.soft_budget_exceeded,
        "window_start_time": _time(customer.window_start_time),
        "window_end_time": _time(customer.window_end_time),
    }


def _used_percent(customer: res.Customer) -> float | None:
    """Window spend as a percentage of max_budget (2 decimals); None without a max_budget."""
    limits = customer.effective_limits
    if not limits.HasField("max_budget_nanos"):
        return None
    cap = limits.max_budget_nanos
    if cap <= 0:
        return 100.0  # a $0 budget has nothing left to spend
    return round(customer.spend_nanos * 100 / cap, 2)


def budget_row(budget: res.Budget) -> dict[str, Any]:
    """A tier as ``/budget/*`` shows it."""
    return {
        "budget_id": budget.budget_id,
        **_limit_fields(budget.limits),
        "customer_count": int(budget.customer_count),
        "created_at": _time(budget.create_time),
        "updated_at": _time(budget.update_time),
    }


def spend_log_row(entry: res.LedgerEntry) -> dict[str, Any]:
    """A ledger entry in the shape of LiteLLM's spend logs."""
    return {
        "request_id": entry.request_id,
        "end_user": entry.user_id,
        "model": entry.model,
        "spend": render_usd(entry.cost_nanos),
        "prompt_tokens": int(entry.input_tokens),
        "completion_tokens": int(entry.output_tokens),
        "cached_prompt_tokens": int(entry.cached_input_tokens),
        "total_tokens": int(entry.input_tokens + entry.output_tokens),
        "startTime": _time(entry.create_time),
        "reservation_id": entry.reservation_id or None,
        "spend_after": render_usd(entry.spend_after_nanos),
        "entry_id": int(entry.entry_id),
    }


def _time(stamp: Any) -> str | None:
    micros = stamp.ToMicroseconds()
    if not micros:
        return None
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC).isoformat()
