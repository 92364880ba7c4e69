"""``/spend/logs?end_user=``: one customer's ledger, newest first, from budgetd."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from proxy_shim.litellm_schema import MAX_ID_LENGTH, spend_log_row
from proxy_shim.state import Admin

router = APIRouter(tags=["spend"])


@router.get("/spend/logs")
async def spend_logs(
    end_user: Annotated[str, Query(min_length=1, max_length=MAX_ID_LENGTH)],
    state: Admin,
) -> list[dict[str, Any]]:
    """Every ledger entry of a customer; the costs sum to its spend."""
    return [spend_log_row(e) for e in await state.budgetd.ledger(end_user)]
