"""Translation between budgetd.v1 messages and domain values, in both directions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.field_mask_pb2 import FieldMask

from budgetd.domain.customers import UPDATABLE, CustomerChanges, NewCustomer
from budgetd.domain.limits import LIMIT_FIELDS, LimitsPatch
from budgetd.domain.records import (
    AuditEntry,
    Budget,
    BudgetLimits,
    Charge,
    Customer,
    Decision,
    DenialReason,
    LedgerEntry,
    ModelBudget,
)
from budgetd.errors import InvalidArgument
from budgetd.v1 import audit_service_pb2 as audit_pb
from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb

_DENIALS = {
    DenialReason.BUDGET_EXCEEDED: spend_pb.DENIAL_REASON_BUDGET_EXCEEDED,
    DenialReason.BLOCKED: spend_pb.DENIAL_REASON_BLOCKED,
    DenialReason.RATE_LIMITED: spend_pb.DENIAL_REASON_RATE_LIMITED,
    DenialReason.MODEL_NOT_ALLOWED: spend_pb.DENIAL_REASON_MODEL_NOT_ALLOWED,
    DenialReason.PARALLEL_LIMIT: spend_pb.DENIAL_REASON_PARALLEL_LIMIT,
}
_LIMIT_OPTIONALS = (
    "max_budget_nanos",
    "soft_budget_nanos",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
)


def _opt(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


# -- to the domain ---------------------------------------------------------------------------


_ALIGNMENTS = {
    res.WINDOW_ALIGNMENT_UNSPECIFIED: "",
    res.WINDOW_ALIGNMENT_ANNIVERSARY: "anniversary",
    res.WINDOW_ALIGNMENT_CALENDAR: "calendar",
}
_ALIGNMENT_VALUES = {name: value for value, name in _ALIGNMENTS.items()}


def limits_from_proto(message: res.BudgetLimits) -> BudgetLimits:
    """Domain limits from a BudgetLimits message."""
    if message.window_alignment not in _ALIGNMENTS:
        raise InvalidArgument("limits.window_alignment", "is not a known alignment")
    return BudgetLimits(
        **{name: _opt(message, name) for name in _LIMIT_OPTIONALS},
        budget_duration=message.budget_duration,
        model_max_budget={
            model: ModelBudget(
                max_budget_nanos=_opt(cap, "max_budget_nanos"),
                budget_duration=cap.budget_duration,
                tpm_limit=_opt(cap, "tpm_limit"),
                rpm_limit=_opt(cap, "rpm_limit"),
            )
            for model, cap in message.model_max_budget.items()
        },
        window_alignment=_ALIGNMENTS[message.window_alignment],
        time_zone=message.time_zone,
        allowed_models=tuple(message.allowed_models),
    )


def new_customer(message: res.Customer) -> NewCustomer:
    """A create request's customer."""
    return NewCustomer(
        user_id=message.user_id,
        alias=_opt(message, "alias"),
        blocked=message.blocked,
        budget_id=_opt(message, "budget_id"),
        limits=limits_from_proto(message.limits) if message.HasField("limits") else None,
        allowed_model_region=_opt(message, "allowed_model_region"),
        default_model=_opt(message, "default_model"),
        metadata=json_format.MessageToDict(message.metadata),
    )


def customer_changes(message: res.Customer, mask: FieldMask) -> CustomerChanges:
    """The fields an update mask names, with the values the message carries for them."""
    values: dict[str, Any] = {}
    limit_fields: set[str] = set()
    whole_limits = False
    for path in _paths(mask):
        if path == "limits":
            whole_limits = True
        elif path.startswith("limits."):
            limit_fields.add(_limit_field(path))
        elif path in UPDATABLE:
            if path == "metadata":
                values[path] = json_format.MessageToDict(message.metadata)
            elif path == "blocked":
                values[path] = message.blocked
            else:
                values[path] = _opt(message, path)
        else:
            raise InvalidArgument("update_mask", f"cannot update {path!r}")
    limits = None
    if whole_limits or limit_fields:
        limits = LimitsPatch(
            limits_from_proto(message.limits), None if whole_limits else frozenset(limit_fields)
        )
    return CustomerChanges(values=values, limits=limits)


def limits_patch(message: res.Budget, mask: FieldMask) -> LimitsPatch:
    """The tier fields an update mask names."""
    fields: set[str] = set()
    for path in _paths(mask):
        if path == "limits":
            return LimitsPatch(limits_from_proto(message.limits))
        if not path.startswith("limits."):
            raise InvalidArgument("update_mask", f"cannot update {path!r}")
        fields.add(_limit_field(path))
    return LimitsPatch(limits_from_proto(message.limits), frozenset(fields))


def _paths(mask: FieldMask) -> Sequence[str]:
    if not mask.paths:
        raise InvalidArgument("update_mask", "is required")
    return list(mask.paths)


def _limit_field(path: str) -> str:
    name = path.removeprefix("limits.")
    if name not in LIMIT_FIELDS:
        raise InvalidArgument("update_mask", f"cannot update {path!r}")
    return name


# -- from the domain -------------------------------------------------------------------------


def limits_to_proto(limits: BudgetLimits) -> res.BudgetLimits:
    """A BudgetLimits message from domain limits."""
    message = res.BudgetLimits(
        budget_duration=limits.budget_duration,
        window_alignment=_ALIGNMENT_VALUES[limits.window_alignment],
        time_zone=limits.time_zone,
        allowed_models=limits.allowed_models,
    )
    for name in _LIMIT_OPTIONALS:
        value = getattr(limits, name)
        if value is not None:
            setattr(message, name, value)
    for model, cap in limits.model_max_budget.items():
        out = message.model_max_budget[model]
        out.budget_duration = cap.budget_duration
        for name in ("max_budget_nanos", "tpm_limit", "rpm_limit"):
            value = getattr(cap, name)
            if value is not None:
                setattr(out, name, value)
    return message


def budget_to_proto(budget: Budget) -> res.Budget:
    """A Budget message."""
    message = res.Budget(
        budget_id=budget.budget_id,
        limits=limits_to_proto(budget.limits),
        customer_count=budget.customer_count,
    )
    message.create_time.FromMicroseconds(budget.created_us)
    message.update_time.FromMicroseconds(budget.updated_us)
    return message


def customer_to_proto(customer: Customer) -> res.Customer:
    """A Customer message."""
    metadata = struct_pb2.Struct()
    metadata.update(dict(customer.metadata))
    message = res.Customer(
        user_id=customer.user_id,
        blocked=customer.blocked,
        effective_limits=limits_to_proto(customer.effective_limits),
        spend_nanos=customer.spend_nanos,
        reserved_nanos=customer.reserved_nanos,
        metadata=metadata,
    )
    for name in ("alias", "budget_id", "allowed_model_region", "default_model"):
        value = getattr(customer, name)
        if value is not None:
            setattr(message, name, value)
    if customer.own_limits is not None:
        message.limits.CopyFrom(limits_to_proto(customer.own_limits))
    message.create_time.FromMicroseconds(customer.created_us)
    message.update_time.FromMicroseconds(customer.updated_us)
    message.soft_budget_exceeded = customer.soft_budget_exceeded
    if customer.window_start_us is not None:
        message.window_start_time.FromMicroseconds(customer.window_start_us)
    if customer.window_end_us is not None:
        message.window_end_time.FromMicroseconds(customer.window_end_us)
    return message


def entry_to_proto(entry: LedgerEntry) -> res.LedgerEntry:
    """A LedgerEntry message."""
    message = res.LedgerEntry(
        entry_id=entry.entry_id,
        user_id=entry.user_id,
        request_id=entry.request_id,
        reservation_id=entry.reservation_id or "",
        model=entry.model,
        input_tokens=entry.input_tokens,
        output_tokens=entry.output_tokens,
        cached_input_tokens=entry.cached_input_tokens,
        cost_nanos=entry.cost_nanos,
        spend_after_nanos=entry.spend_after_nanos,
    )
    message.create_time.FromMicroseconds(entry.created_us)
    if entry.window_start_us is not None:
        message.window_start_time.FromMicroseconds(entry.window_start_us)
    return message


def decision_to_proto(decision: Decision) -> spend_pb.AuthorizeResponse:
    """An AuthorizeResponse."""
    message = spend_pb.AuthorizeResponse(
        allowed=decision.allowed,
        message=decision.message,
        reservation_id=decision.reservation_id or "",
        held_nanos=decision.held_nanos,
        spend_nanos=decision.spend_nanos,
        reserved_nanos=decision.reserved_nanos,
        model=decision.model,
        denied_by=decision.denied_by,
    )
    if decision.denial_reason is not None:
        message.denial_reason = _DENIALS[decision.denial_reason]
    if decision.max_budget_nanos is not None:
        message.max_budget_nanos = decision.max_budget_nanos
    if decision.remaining_nanos is not None:
        message.remaining_nanos = decision.remaining_nanos
    if decision.reservation_expire_us is not None:
        message.reservation_expire_time.FromMicroseconds(decision.reservation_expire_us)
    if decision.retry_after_us is not None:
        message.retry_after.FromMicroseconds(decision.retry_after_us)
    if decision.window_end_us is not None:
        message.window_end_time.FromMicroseconds(decision.window_end_us)
    return message


def charge_to_proto(charge: Charge) -> spend_pb.RecordSpendResponse:
    """A RecordSpendResponse."""
    message = spend_pb.RecordSpendResponse(
        charged_nanos=charge.entry.cost_nanos,
        spend_nanos=charge.entry.spend_after_nanos,
        entry=entry_to_proto(charge.entry),
    )
    if charge.remaining_nanos is not None:
        message.remaining_nanos = charge.remaining_nanos
    return message


def audit_entry_to_proto(entry: AuditEntry) -> audit_pb.AuditEntry:
    """An AuditEntry message; settings as compact JSON with sorted keys, empty when absent."""
    message = audit_pb.AuditEntry(
        entry_id=entry.entry_id,
        actor=entry.actor,
        via=entry.via or "",
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        before_json=_json_or_empty(entry.before),
        after_json=_json_or_empty(entry.after),
    )
    message.create_time.FromMicroseconds(entry.created_us)
    return message


def _json_or_empty(value: object) -> str:
    return "" if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)
