"""Budget limits: their validation and partial updates."""

from __future__ import annotations

import dataclasses
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from budgetd.domain.records import BudgetLimits, ModelBudget
from budgetd.domain.windows import zone
from budgetd.errors import InvalidArgument
from budgetd.validation import check_count, check_duration, check_nanos, require_id

ALIGNMENTS = frozenset({"", "anniversary", "calendar"})

LIMIT_FIELDS = frozenset(f.name for f in dataclasses.fields(BudgetLimits))


def limits_json(limits: BudgetLimits) -> dict[str, Any]:
    """Limits as JSON values, model caps sorted; amounts stay exact integers of nano-USD."""
    state = dataclasses.asdict(limits)
    state["allowed_models"] = list(limits.allowed_models)
    state["model_max_budget"] = dict(sorted(state["model_max_budget"].items()))
    return state


def check_limits(limits: BudgetLimits, prefix: str) -> BudgetLimits:
    """Validate every field; errors name it as ``<prefix>.<field>``."""
    for name in ("max_budget_nanos", "soft_budget_nanos"):
        value = getattr(limits, name)
        if value is not None:
            check_nanos(value, f"{prefix}.{name}")
    for name in ("tpm_limit", "rpm_limit", "max_parallel_requests"):
        value = getattr(limits, name)
        if value is not None:
            check_count(value, f"{prefix}.{name}")
    check_duration(limits.budget_duration, f"{prefix}.budget_duration")
    for model, cap in limits.model_max_budget.items():
        _check_model_budget(model, cap, f"{prefix}.model_max_budget")
    if limits.window_alignment not in ALIGNMENTS:
        raise InvalidArgument(f"{prefix}.window_alignment", "must be 'anniversary' or 'calendar'")
    if limits.time_zone:
        zone(limits.time_zone, f"{prefix}.time_zone")
    for index, model in enumerate(limits.allowed_models):
        require_id(model, f"{prefix}.allowed_models[{index}]")
    return limits


def _check_model_budget(model: str, cap: ModelBudget, prefix: str) -> None:
    require_id(model, f"{prefix} key")
    field = f"{prefix}[{model}]"
    if cap.max_budget_nanos is not None:
        check_nanos(cap.max_budget_nanos, f"{field}.max_budget_nanos")
    for name in ("tpm_limit", "rpm_limit"):
        value = getattr(cap, name)
        if value is not None:
            check_count(value, f"{field}.{name}")
    check_duration(cap.budget_duration, f"{field}.budget_duration")


@dataclass(frozen=True, slots=True)
class LimitsPatch:
    """New values for some (or all) limit fields."""

    values: BudgetLimits
    # The fields to take from ``values``; None replaces them all.
    fields: AbstractSet[str] | None = None

    def __post_init__(self) -> None:
        unknown = (self.fields or set()) - LIMIT_FIELDS
        if unknown:
            raise InvalidArgument("update_mask", f"unknown limits field {sorted(unknown)[0]!r}")

    def apply(self, base: BudgetLimits) -> BudgetLimits:
        """``base`` with the patched fields replaced."""
        if self.fields is None:
            return self.values
        return dataclasses.replace(
            base, **{name: getattr(self.values, name) for name in self.fields}
        )
