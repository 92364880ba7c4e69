"""Every command of the LiteLLM "Customers" page, in order, with its JSON bodies.

The page's typos (``-D`` for ``-d``, ``#`` comments inside JSON) are fixed; nothing else is.
"""

from __future__ import annotations

import httpx
import pytest

from budgetd.pricing import PriceTable, TokenUsage
from proxy_shim.usd import header_usd, render_usd
from tests.e2e.conftest import assert_openai_error, unique

pytestmark = pytest.mark.e2e

PRICES = PriceTable()


def _charged(response: httpx.Response, upstream_model: str) -> int:
    usage = response.json()["usage"]
    price = PRICES.get(upstream_model)
    assert price is not None
    return price.cost_nanos(
        TokenUsage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"])
    )


def test_seed_page_in_order(client: httpx.Client) -> None:
    # 1. Make LLM API call w/ Customer ID: the first call works and upserts the customer.
    first = client.post(
        "/chat/completions",
        json={
            "model": "azure-gpt-3.5",
            "user": "ishaan3",
            "messages": [{"role": "user", "content": "what time is it"}],
        },
    )
    assert first.status_code == 200, first.text
    assert first.json()["object"] == "chat.completion"
    cost = _charged(first, "gpt-3.5-turbo")
    assert first.headers["x-budgetd-spend-usd"] == header_usd(cost)
    assert first.headers["x-budgetd-reservation-id"]

    # 2. Get Customer Spend: visible at once, exactly usage x price, in the page's shape.
    info = client.get("/customer/info?end_user_id=ishaan3")
    assert info.status_code == 200, info.text
    assert info.json() == {
        "user_id": "ishaan3",
        "blocked": False,
        "alias": None,
        "spend": render_usd(cost),
        "allowed_model_region": None,
        "default_model": None,
        "litellm_budget_table": None,
        # Extra keys beyond the seed's shape (for the admin page): no budget, no window.
        "budget_used_percent": None,
        "soft_budget_exceeded": False,
        "window_start_time": None,
        "window_end_time": None,
    }

    # "If the customer_id already exists, spend will be incremented."
    second = client.post(
        "/chat/completions",
        json={
            "model": "azure-gpt-3.5",
            "user": "ishaan3",
            "messages": [{"role": "user", "content": "what time is it"}],
        },
    )
    assert second.status_code == 200
    total = cost + _charged(second, "gpt-3.5-turbo")
    assert client.get("/customer/info?end_user_id=ishaan3").json()["spend"] == render_usd(total)

    # Create New Customer w/ budget: "max_budget" as a string, "0" included.
    created = client.post("/customer/new", json={"user_id": "my-customer-id", "max_budget": "0"})
    assert created.status_code == 200, created.text
    assert created.json()["litellm_budget_table"]["max_budget"] == 0.0

    # Test it! The page's call names "ishaan-jaff-48", a customer it never created: like
    # LiteLLM, we upsert it without a budget and serve it.
    weather = {
        "model": "mistral",
        "messages": [{"role": "user", "content": "What's the weather like in Boston today?"}],
        "user": "ishaan-jaff-48",
    }
    served = client.post("/chat/completions", json=weather)
    assert served.status_code == 200, served.text

    # The customer the page meant, with its $0 budget, is refused and charged nothing.
    refused = client.post("/chat/completions", json={**weather, "user": "my-customer-id"})
    error = assert_openai_error(refused, 429, "budget_exceeded")
    assert error["message"] == (
        "ExceededBudget: End User=my-customer-id over budget. Spend=0.0, Budget=0.0"
    )
    assert client.get("/customer/info?end_user_id=my-customer-id").json()["spend"] == 0.0
    assert client.get("/spend/logs?end_user=my-customer-id").json() == []

    # Assign Pricing Tiers. 1. Create a budget: 'my-free-tier' with budget $4.
    tier = client.post("/budget/new", json={"budget_id": "my-free-tier", "max_budget": 4})
    assert tier.status_code == 200, tier.text
    assert tier.json()["budget_id"] == "my-free-tier"
    assert tier.json()["max_budget"] == 4.0

    # 2. Assign Budget to Customer, with the page's body. "my-customer-id" already exists from
    # the section above, so, as in LiteLLM, creating it again is a 400 and changes nothing.
    join = {"user_id": "my-customer-id", "budget_id": "my-free-tier"}
    duplicate = client.post("/customer/new", json=join)
    assert_openai_error(duplicate, 400)
    unchanged = client.get("/customer/info?end_user_id=my-customer-id").json()
    assert unchanged["litellm_budget_table"]["max_budget"] == 0.0

    # Moving the existing customer onto the tier is an update.
    moved = client.post("/customer/update", json=join)
    assert moved.status_code == 200, moved.text
    assert moved.json()["litellm_budget_table"]["budget_id"] == "my-free-tier"
    assert moved.json()["litellm_budget_table"]["max_budget"] == 4.0
    assert client.post("/chat/completions", json={**weather, "user": "my-customer-id"}).is_success

    # 3. Test it! (the page repeats the create): a fresh customer joins the tier.
    fresh = client.post(
        "/customer/new", json={"user_id": unique("tier"), "budget_id": "my-free-tier"}
    )
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["litellm_budget_table"]["budget_id"] == "my-free-tier"
    assert fresh.json()["spend"] == 0.0


def test_tier_limits_each_customer_separately(client: httpx.Client) -> None:
    tier_id = unique("tiny-tier")
    # $0.0001 = 100,000 nanos: a couple of capped calls of house-model ($1 in / $2 out per 1M).
    created = client.post("/budget/new", json={"budget_id": tier_id, "max_budget": "0.0001"})
    assert created.status_code == 200, created.text
    alice, bob = unique("alice"), unique("bob")
    for user in (alice, bob):
        joined = client.post("/customer/new", json={"user_id": user, "budget_id": tier_id})
        assert joined.status_code == 200, joined.text

    def call(user: str) -> httpx.Response:
        return client.post(
            "/chat/completions",
            json={
                "model": "house-model",
                "user": user,
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "Tell me something short."}],
            },
        )

    admitted_alice = 0
    while (response := call(alice)).status_code == 200:
        admitted_alice += 1
        assert admitted_alice < 50
    assert_openai_error(response, 429, "budget_exceeded")
    assert admitted_alice >= 1

    # Alice's exhausted budget is hers alone: Bob, on the same tier, gets the same room.
    admitted_bob = 0
    while call(bob).status_code == 200:
        admitted_bob += 1
        assert admitted_bob < 50
    assert admitted_bob == admitted_alice
    for user in (alice, bob):
        info = client.get(f"/customer/info?end_user_id={user}").json()
        assert 0 < info["spend"] <= 0.0001
        assert info["litellm_budget_table"]["budget_id"] == tier_id
    assert client.post("/budget/info", json={"budgets": [tier_id]}).json()[0]["customer_count"] == 2


def test_unlimited_customer_gets_no_remaining_header(client: httpx.Client) -> None:
    # Another customer's budget must not leak into this one's answer.
    assert client.post("/budget/new", json={"budget_id": unique("any"), "max_budget": 1}).is_success
    response = client.post(
        "/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "user": unique("unlimited"),
            "messages": [{"role": "user", "content": "hello"}],
        },
    )
    assert response.status_code == 200
    assert "x-budgetd-remaining-usd" not in response.headers
