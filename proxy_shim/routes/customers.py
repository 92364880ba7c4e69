"""LiteLLM's customer API (``/customer/*`` and its ``/end_user/*`` aliases) over budgetd.

Every route is a translation: validate the JSON, call budgetd's CustomerService, render the
answer in LiteLLM's shape. The shim keeps no customer state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from google.protobuf import struct_pb2

from budgetd.v1 import resources_pb2 as res
from proxy_shim.errors import InvalidRequest
from proxy_shim.litellm_schema import (
    MAX_ID_LENGTH,
    CustomerNew,
    CustomerUpdate,
    UserIds,
    budget_fields_present,
    customer_row,
    limits_message,
)
from proxy_shim.state import Admin

router = APIRouter(tags=["customers"])

# Customer fields outside the budget, as LiteLLM and budgetd both name them.
_PLAIN_FIELDS = ("alias", "blocked", "budget_id", "allowed_model_region", "default_model")


def _both(method: str, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a route under /customer and its /end_user alias."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        for prefix in ("/customer", "/end_user"):
            router.add_api_route(prefix + path, func, methods=[method])
        return func

    return register


@_both("POST", "/new")
async def customer_new(body: CustomerNew, state: Admin) -> dict[str, Any]:
    """Create a customer: on a tier (``budget_id``), with its own budget, or unlimited."""
    budget_fields = {f for f in budget_fields_present(body) if getattr(body, f) is not None}
    if body.budget_id is not None and budget_fields:
        raise InvalidRequest(
            f"cannot set both budget_id and budget fields ({', '.join(sorted(budget_fields))}): "
            "a customer is either on a tier or has its own budget",
            param="budget_id",
        )
    customer = res.Customer(user_id=body.user_id, blocked=body.blocked)
    for name in ("alias", "budget_id", "allowed_model_region", "default_model"):
        value = getattr(body, name)
        if value is not None:
            setattr(customer, name, value)
    if budget_fields:
        limits, _ = limits_message(body, budget_fields)
        customer.limits.CopyFrom(limits)
    if body.metadata:
        customer.metadata.CopyFrom(_struct(body.metadata))
    created = await state.budgetd.create_customer(customer, str(uuid.uuid4()))
    return customer_row(created)


@_both("GET", "/info")
async def customer_info(
    end_user_id: Annotated[str, Query(min_length=1, max_length=MAX_ID_LENGTH)],
    state: Admin,
) -> dict[str, Any]:
    """One customer with its spend (every answered call included) and effective limits."""
    return customer_row(await state.budgetd.get_customer(end_user_id))


@_both("POST", "/update")
async def customer_update(body: CustomerUpdate, state: Admin) -> dict[str, Any]:
    """Change exactly the fields present in the body (``blocked: false`` and 0 budgets too)."""
    present = set(body.model_fields_set) - {"user_id"}
    budget_fields = budget_fields_present(body)
    if not present:
        raise InvalidRequest("no field to update: send user_id and the fields to change")
    if "budget_id" in present and body.budget_id is not None and budget_fields:
        raise InvalidRequest(
            "cannot set both budget_id and budget fields: a customer is either on a tier or "
            "has its own budget",
            param="budget_id",
        )
    customer = res.Customer(user_id=body.user_id, blocked=body.blocked)
    paths: list[str] = []
    for name in _PLAIN_FIELDS:
        if name not in present:
            continue
        paths.append(name)
        value = getattr(body, name)
        if value is not None and name != "blocked":
            setattr(customer, name, value)
    if "metadata" in present:
        paths.append("metadata")
        customer.metadata.CopyFrom(_struct(body.metadata or {}))
    if budget_fields:
        limits, limit_paths = limits_message(body, budget_fields)
        customer.limits.CopyFrom(limits)
        paths.extend(limit_paths)
    updated = await state.budgetd.update_customer(customer, paths)
    return customer_row(updated)


@_both("POST", "/delete")
async def customer_delete(body: UserIds, state: Admin) -> dict[str, Any]:
    """Delete all the named customers, or none (404) when any is unknown."""
    deleted = await state.budgetd.delete_customers(list(body.user_ids))
    return {
        "deleted_customers": deleted,
        "message": f"Successfully deleted customers with ids: {sorted(set(body.user_ids))}",
    }


@_both("GET", "/list")
async def customer_list(state: Admin) -> list[dict[str, Any]]:
    """Every customer, ordered by user_id."""
    return [customer_row(c) for c in await state.budgetd.list_customers()]


@_both("POST", "/block")
async def customer_block(body: UserIds, state: Admin) -> dict[str, Any]:
    """Block all the named customers, or none (404) when any is unknown."""
    customers = await state.budgetd.set_blocked(list(body.user_ids), blocked=True)
    return {"blocked_users": [c.user_id for c in customers]}


@_both("POST", "/unblock")
async def customer_unblock(body: UserIds, state: Admin) -> dict[str, Any]:
    """Unblock all the named customers (the stored flag really clears), or none."""
    customers = await state.budgetd.set_blocked(list(body.user_ids), blocked=False)
    return {"blocked_users": [c.user_id for c in customers]}


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    try:
        message.update(values)
    except (TypeError, ValueError) as error:
        raise InvalidRequest(f"metadata: {error}", param="metadata") from None
    return message
