"""LiteLLM's budget (pricing tier) API over budgetd's BudgetService."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from budgetd.v1 import resources_pb2 as res
from proxy_shim.errors import InvalidRequest
from proxy_shim.litellm_schema import (
    BudgetDelete,
    BudgetInfo,
    BudgetNew,
    BudgetUpdate,
    budget_fields_present,
    budget_row,
    limits_message,
)
from proxy_shim.state import Admin

router = APIRouter(prefix="/budget", tags=["budgets"])


@router.post("/new")
async def budget_new(body: BudgetNew, state: Admin) -> dict[str, Any]:
    """Create a tier; each customer on it gets these limits separately."""
    fields = {f for f in budget_fields_present(body) if getattr(body, f) is not None}
    limits, _ = limits_message(body, fields)
    budget = res.Budget(budget_id=body.budget_id or str(uuid.uuid4()), limits=limits)
    return budget_row(await state.budgetd.create_budget(budget, str(uuid.uuid4())))


@router.post("/info")
async def budget_info(body: BudgetInfo, state: Admin) -> list[dict[str, Any]]:
    """The named tiers; 404 when any is unknown."""
    return [budget_row(await state.budgetd.get_budget(b)) for b in dict.fromkeys(body.budgets)]


@router.post("/update")
async def budget_update(body: BudgetUpdate, state: Admin) -> dict[str, Any]:
    """Change exactly the limits present in the body."""
    fields = budget_fields_present(body)
    if not fields:
        raise InvalidRequest("no field to update: send budget_id and the limits to change")
    limits, paths = limits_message(body, fields)
    budget = res.Budget(budget_id=body.budget_id, limits=limits)
    return budget_row(await state.budgetd.update_budget(budget, paths))


@router.post("/delete")
async def budget_delete(body: BudgetDelete, state: Admin) -> dict[str, Any]:
    """Delete a tier; 400 while customers are on it."""
    return budget_row(await state.budgetd.delete_budget(body.id))


@router.get("/list")
async def budget_list(state: Admin) -> list[dict[str, Any]]:
    """Every tier."""
    return [budget_row(b) for b in await state.budgetd.list_budgets()]
