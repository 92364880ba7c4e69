"""LiteLLM's admin API: happy paths, and bad input on every route (clear 4xx, nothing changed)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import CLIENT_KEY, Stack, assert_openai_error, unique

pytestmark = pytest.mark.e2e

HUGE = "x" * 300


def _snapshot(client: httpx.Client) -> tuple[list[dict], list[dict]]:
    customers = client.get("/customer/list")
    budgets = client.get("/budget/list")
    assert customers.status_code == budgets.status_code == 200
    return customers.json(), budgets.json()


BAD_REQUESTS: list[tuple[str, str, object, int]] = [
    # /customer/new
    ("POST", "/customer/new", {}, 422),
    ("POST", "/customer/new", {"user_id": ""}, 422),
    ("POST", "/customer/new", {"user_id": HUGE}, 422),
    ("POST", "/customer/new", {"user_id": 42}, 422),
    ("POST", "/customer/new", {"user_id": "bad-new", "max_budget": "lots"}, 422),
    ("POST", "/customer/new", {"user_id": "bad-new", "max_budget": -1}, 422),
    ("POST", "/customer/new", {"user_id": "bad-new", "max_budget": "NaN"}, 422),
    ("POST", "/customer/new", {"user_id": "bad-new", "max_budget": True}, 422),
    ("POST", "/customer/new", {"user_id": "bad-new", "tpm_limit": 1.5}, 422),
    ("POST", "/customer/new", {"user_id": "bad-new", "blocked": "yes"}, 422),
    ("POST", "/customer/new", {"user_id": "bad-new", "allowed_model_region": "mars"}, 422),
    ("POST", "/customer/new", {"user_id": "bad-new", "budget_duration": "forever"}, 422),
    ("POST", "/customer/new", {"user_id": "bad-new", "budget_id": "no-such-tier"}, 404),
    ("POST", "/end_user/new", {"user_id": "bad-new", "budget_id": "t", "max_budget": 1}, 400),
    ("POST", "/customer/new", [1, 2], 422),
    # /customer/info
    ("GET", "/customer/info", None, 422),
    ("GET", "/customer/info?end_user_id=", None, 422),
    ("GET", f"/customer/info?end_user_id={HUGE}", None, 422),
    ("GET", "/end_user/info?end_user_id=nobody-here", None, 404),
    # /customer/update
    ("POST", "/customer/update", {"max_budget": 1}, 422),
    ("POST", "/customer/update", {"user_id": "nobody-here", "max_budget": 1}, 404),
    ("POST", "/customer/update", {"user_id": HUGE, "max_budget": 1}, 422),
    ("POST", "/customer/update", {"user_id": "nobody-here"}, 400),
    ("POST", "/customer/update", {"user_id": "nobody-here", "max_budget": []}, 422),
    # /customer/delete, /customer/block, /customer/unblock
    ("POST", "/customer/delete", {}, 422),
    ("POST", "/customer/delete", {"user_ids": []}, 422),
    ("POST", "/customer/delete", {"user_ids": "abc"}, 422),
    ("POST", "/customer/delete", {"user_ids": [""]}, 422),
    ("POST", "/customer/delete", {"user_ids": [HUGE]}, 422),
    ("POST", "/customer/delete", {"user_ids": ["nobody-here"]}, 404),
    ("POST", "/customer/block", {"user_ids": ["nobody-here"]}, 404),
    ("POST", "/customer/block", {"user_ids": [7]}, 422),
    ("POST", "/end_user/unblock", {"user_ids": ["nobody-here"]}, 404),
    ("POST", "/customer/unblock", {}, 422),
    # /budget/*
    ("POST", "/budget/new", {"budget_id": "", "max_budget": 1}, 422),
    ("POST", "/budget/new", {"budget_id": HUGE, "max_budget": 1}, 422),
    ("POST", "/budget/new", {"budget_id": "bad-tier", "max_budget": "x"}, 422),
    ("POST", "/budget/new", {"budget_id": "bad-tier", "rpm_limit": -3}, 422),
    ("POST", "/budget/new", {"budget_id": "bad-tier", "model_max_budget": {"m": 5}}, 422),
    ("POST", "/budget/info", {}, 422),
    ("POST", "/budget/info", {"budgets": []}, 422),
    ("POST", "/budget/info", {"budgets": ["no-such-tier"]}, 404),
    ("POST", "/budget/update", {"max_budget": 1}, 422),
    ("POST", "/budget/update", {"budget_id": "no-such-tier", "max_budget": 1}, 404),
    ("POST", "/budget/update", {"budget_id": "no-such-tier"}, 400),
    ("POST", "/budget/delete", {}, 422),
    ("POST", "/budget/delete", {"id": HUGE}, 422),
    ("POST", "/budget/delete", {"id": "no-such-tier"}, 404),
    # /spend/logs
    ("GET", "/spend/logs", None, 422),
    ("GET", "/spend/logs?end_user=nobody-here", None, 404),
]


def test_bad_input_on_every_admin_route_changes_nothing(client: httpx.Client) -> None:
    before = _snapshot(client)
    for method, path, body, status in BAD_REQUESTS:
        response = client.request(method, path, json=body) if body is not None else None
        if response is None:
            response = client.request(method, path)
        error = assert_openai_error(response, status)
        if status == 422:
            assert error["param"], (path, body, error)
    assert _snapshot(client) == before


def test_malformed_json_is_400(client: httpx.Client) -> None:
    for path in ("/customer/new", "/budget/new", "/chat/completions"):
        response = client.post(
            path,
            content=b'{"user_id": "x", # comment\n}',
            headers={"content-type": "application/json"},
        )
        assert_openai_error(response, 400)


def test_keys(stack: Stack, client: httpx.Client) -> None:
    with httpx.Client(base_url=stack.shim_url) as anonymous:
        assert_openai_error(anonymous.get("/customer/list"), 401, "authentication_error")
        wrong = anonymous.get("/customer/list", headers={"Authorization": "Bearer sk-wrong"})
        assert_openai_error(wrong, 401, "authentication_error")
        assert "sk-wrong" not in wrong.text
        as_client = {"Authorization": f"Bearer {CLIENT_KEY}"}
        assert_openai_error(anonymous.get("/customer/list", headers=as_client), 403)
        call = anonymous.post(
            "/v1/chat/completions",
            headers=as_client,
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert call.status_code == 200, call.text
    assert stack.shim_log.read_text().count(CLIENT_KEY) == 0


def test_update_sets_exactly_the_fields_sent(client: httpx.Client) -> None:
    user = unique("update")
    created = client.post("/end_user/new", json={"user_id": user, "alias": "Al", "max_budget": 5})
    assert created.status_code == 200, created.text
    blocked = client.post("/customer/update", json={"user_id": user, "blocked": True})
    assert blocked.json()["blocked"] is True
    assert blocked.json()["alias"] == "Al"
    assert blocked.json()["litellm_budget_table"]["max_budget"] == 5.0
    # LiteLLM silently ignores these two; they must take effect.
    unblocked = client.post("/customer/update", json={"user_id": user, "blocked": False})
    assert unblocked.json()["blocked"] is False
    zero = client.post("/customer/update", json={"user_id": user, "max_budget": 0})
    assert zero.json()["litellm_budget_table"]["max_budget"] == 0.0
    assert zero.json()["alias"] == "Al"
    refused = client.post(
        "/chat/completions",
        json={"model": "gpt-4o-mini", "user": user, "messages": [{"role": "user", "content": "x"}]},
    )
    assert_openai_error(refused, 429, "budget_exceeded")


def test_block_unblock_and_delete(client: httpx.Client) -> None:
    user = unique("blocky")
    assert client.post("/customer/new", json={"user_id": user}).is_success
    body = {"model": "gpt-4o-mini", "user": user, "messages": [{"role": "user", "content": "x"}]}
    assert client.post("/customer/block", json={"user_ids": [user]}).json() == {
        "blocked_users": [user]
    }
    assert_openai_error(client.post("/chat/completions", json=body), 403, "blocked")
    assert client.post("/customer/unblock", json={"user_ids": [user]}).json() == {
        "blocked_users": [user]
    }
    assert client.get(f"/customer/info?end_user_id={user}").json()["blocked"] is False
    assert client.post("/chat/completions", json=body).status_code == 200
    # Unknown ids delete nothing, known ones included.
    assert_openai_error(
        client.post("/customer/delete", json={"user_ids": [user, "nobody-here"]}), 404, "not_found"
    )
    assert client.get(f"/customer/info?end_user_id={user}").status_code == 200
    deleted = client.post("/customer/delete", json={"user_ids": [user]})
    assert deleted.json()["deleted_customers"] == 1
    assert_openai_error(client.get(f"/customer/info?end_user_id={user}"), 404, "not_found")


def test_budget_lifecycle(client: httpx.Client) -> None:
    tier = unique("tier")
    created = client.post(
        "/budget/new",
        json={"budget_id": tier, "max_budget": "2.5", "rpm_limit": 10, "budget_duration": "30d"},
    )
    assert created.status_code == 200, created.text
    assert created.json()["max_budget"] == 2.5
    assert_openai_error(client.post("/budget/new", json={"budget_id": tier}), 400)
    updated = client.post("/budget/update", json={"budget_id": tier, "max_budget": 3})
    assert updated.json()["max_budget"] == 3.0
    assert updated.json()["rpm_limit"] == 10
    assert [
        b["budget_id"] for b in client.post("/budget/info", json={"budgets": [tier]}).json()
    ] == [tier]
    assert tier in [b["budget_id"] for b in client.get("/budget/list").json()]
    user = unique("member")
    assert client.post("/customer/new", json={"user_id": user, "budget_id": tier}).is_success
    # A tier in use cannot be deleted.
    assert_openai_error(client.post("/budget/delete", json={"id": tier}), 400)
    assert client.post("/customer/delete", json={"user_ids": [user]}).is_success
    assert client.post("/budget/delete", json={"id": tier}).json()["budget_id"] == tier


def test_model_call_errors(client: httpx.Client) -> None:
    messages = [{"role": "user", "content": "x"}]
    assert_openai_error(
        client.post("/chat/completions", json={"model": "nope", "messages": messages}), 404
    )
    missing = client.post("/chat/completions", json={"messages": messages})
    assert assert_openai_error(missing, 422)["param"] == "model"
    bad_max = client.post(
        "/chat/completions", json={"model": "gpt-4o-mini", "messages": messages, "max_tokens": "9"}
    )
    assert assert_openai_error(bad_max, 422)["param"] == "max_tokens"
    bad_user = client.post(
        "/chat/completions", json={"model": "gpt-4o-mini", "messages": messages, "user": 12}
    )
    assert assert_openai_error(bad_user, 422)["param"] == "user"


def test_customer_id_precedence_and_anonymous_calls(client: httpx.Client) -> None:
    header_user, body_user = unique("hdr"), unique("body")
    response = client.post(
        "/chat/completions",
        headers={"x-litellm-end-user-id": header_user},
        json={
            "model": "gpt-4o-mini",
            "user": body_user,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert response.status_code == 200
    assert client.get(f"/customer/info?end_user_id={header_user}").json()["spend"] > 0
    assert client.get(f"/customer/info?end_user_id={body_user}").status_code == 404
    # No customer id: served, metered to nobody.
    anonymous = client.post("/embeddings", json={"model": "gpt-4o-mini", "input": "embed me"})
    assert anonymous.status_code == 200
    assert "x-budgetd-reservation-id" not in anonymous.headers


def test_uncapped_call_is_capped_to_what_the_customer_can_afford(client: httpx.Client) -> None:
    user = unique("capped")
    # house-model: $2 per 1M output tokens, limit 1000 tokens -> a full hold is ~$0.002.
    # $0.00003 affords the prompt plus ~8 output tokens.
    assert client.post("/customer/new", json={"user_id": user, "max_budget": "0.00003"}).is_success
    response = client.post(
        "/chat/completions",
        json={
            "model": "house-model",
            "user": user,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert 1 <= answer["usage"]["completion_tokens"] < 24
    spend = client.get(f"/customer/info?end_user_id={user}").json()["spend"]
    assert 0 < spend <= 0.00003


def test_health_and_metrics(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "healthy"
    assert client.get("/health/readiness").status_code == 200
    metrics = client.get("/metrics").text
    assert "shim_requests_total" in metrics
    assert "shim_upstream_seconds" in metrics
