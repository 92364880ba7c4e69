"""100 concurrent calls for a customer whose budget fits 10: budgetd never lets it overspend."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from budgetd.money import nanos_to_usd
from budgetd.pricing import ModelPrice, TokenUsage
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc
from proxy_shim.estimate import chat_prompt_tokens
from tests.e2e.conftest import MASTER_KEY, Stack, get_spend, unique

pytestmark = pytest.mark.e2e

# house-model's configured price ($1 in, $2 out per 1M tokens).
HOUSE = ModelPrice("house-model", 1_000_000_000, 2_000_000_000, 1_000_000_000)
# A 2-character prompt: the shim's estimate (3 chars/token) and the fake upstream's count
# (4 chars/token) agree, so the estimate is exact and exactly 10 calls fit.
MESSAGES = [{"role": "user", "content": "hi"}]
MAX_TOKENS = 5


def test_hundred_concurrent_calls_admit_at_most_ten(
    stack: Stack, client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub
) -> None:
    user = unique("burst")
    estimate = HOUSE.cost_nanos(
        TokenUsage(input_tokens=chat_prompt_tokens(MESSAGES), output_tokens=MAX_TOKENS)
    )
    budget_nanos = 10 * estimate
    created = client.post(
        "/customer/new", json={"user_id": user, "max_budget": str(nanos_to_usd(budget_nanos))}
    )
    assert created.status_code == 200, created.text

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=stack.shim_url,
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=60,
            limits=httpx.Limits(max_connections=100),
        ) as http:
            body = {
                "model": "house-model",
                "user": user,
                "max_tokens": MAX_TOKENS,
                "messages": MESSAGES,
            }
            return await asyncio.gather(
                *(http.post("/chat/completions", json=body) for _ in range(100))
            )

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    admitted = statuses.count(200)
    assert statuses.count(429) == 100 - admitted, statuses
    assert admitted == 10
    for response in responses:
        if response.status_code == 429:
            assert response.json()["error"]["type"] == "budget_exceeded"

    spend = get_spend(spend_stub, user)
    assert spend.spend_nanos <= budget_nanos
    assert spend.reserved_nanos == 0
    assert spend.ledger_entry_count == admitted
    logs = client.get(f"/spend/logs?end_user={user}").json()
    assert len(logs) == admitted
    info = client.get(f"/customer/info?end_user_id={user}").json()
    assert sum(Decimal(str(row["spend"])) for row in logs) == Decimal(str(info["spend"]))
    assert Decimal(str(info["spend"])) == nanos_to_usd(spend.spend_nanos)
