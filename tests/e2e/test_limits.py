"""Each refusal reason reaches a shim caller with its HTTP status and message, and a gRPC caller
with its reason enum; budgets are created through the shim's LiteLLM admin API.

BUDGET_EXCEEDED -> 429 budget_exceeded; RATE_LIMITED and PARALLEL_LIMIT -> 429 with
Retry-After; BLOCKED -> 403; MODEL_NOT_ALLOWED -> 403 naming the rule.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from budgetd.v1 import spend_service_pb2 as spend_pb
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc
from tests.e2e.conftest import assert_openai_error, get_spend, unique

pytestmark = pytest.mark.e2e

# In the e2e shim config, "mistral" is served from region "eu", "gpt-4o-mini" from "us", and
# "azure-gpt-3.5" names no region.
HELLO = [{"role": "user", "content": "hello"}]


def chat(client: httpx.Client, user: str, model: str = "mistral", **extra: Any) -> httpx.Response:
    return client.post(
        "/chat/completions",
        json={"model": model, "user": user, "messages": HELLO, "max_tokens": 10, **extra},
    )


def tier(client: httpx.Client, **fields: Any) -> str:
    budget_id = unique("tier")
    created = client.post("/budget/new", json={"budget_id": budget_id, **fields})
    assert created.status_code == 200, created.text
    return budget_id


def customer_on(client: httpx.Client, budget_id: str, **fields: Any) -> str:
    user = unique("cust")
    created = client.post("/customer/new", json={"user_id": user, "budget_id": budget_id, **fields})
    assert created.status_code == 200, created.text
    return user


def own_customer(client: httpx.Client, **fields: Any) -> str:
    user = unique("cust")
    created = client.post("/customer/new", json={"user_id": user, **fields})
    assert created.status_code == 200, created.text
    return user


def grpc_reason(stub: spend_grpc.SpendServiceStub, user: str, model: str, region: str = "") -> int:
    """The reason enum a direct gRPC caller gets for the same call (no reservation left behind)."""
    decision = stub.Authorize(
        spend_pb.AuthorizeRequest(
            customer_id=user, model=model, estimated_cost_nanos=1, model_region=region
        ),
        timeout=5,
    )
    if decision.allowed:
        stub.ReleaseReservation(
            spend_pb.ReleaseReservationRequest(reservation_id=decision.reservation_id), timeout=5
        )
    return int(decision.denial_reason)


def test_budget_exceeded_is_429_budget_exceeded(
    client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub
) -> None:
    user = customer_on(client, tier(client, max_budget=0))
    error = assert_openai_error(chat(client, user), 429, "budget_exceeded")
    assert error["message"] == f"ExceededBudget: End User={user} over budget. Spend=0.0, Budget=0.0"
    assert grpc_reason(spend_stub, user, "mistral") == spend_pb.DENIAL_REASON_BUDGET_EXCEEDED
    assert get_spend(spend_stub, user).spend_nanos == 0


def test_a_model_cap_is_429_budget_exceeded_naming_the_model(
    client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub
) -> None:
    user = own_customer(client, max_budget=10, model_max_budget={"gpt-4o-mini": {"max_budget": 0}})
    error = assert_openai_error(chat(client, user, "gpt-4o-mini"), 429, "budget_exceeded")
    assert "model=gpt-4o-mini" in error["message"]
    assert "gpt-4o-mini" in error["message"].split(". ", 1)[1]
    assert grpc_reason(spend_stub, user, "gpt-4o-mini") == spend_pb.DENIAL_REASON_BUDGET_EXCEEDED
    # Other models still draw on the customer's budget.
    assert chat(client, user, "mistral").status_code == 200


def test_rate_limited_is_429_with_retry_after(
    client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub
) -> None:
    user = customer_on(client, tier(client, rpm_limit=1))
    assert chat(client, user).status_code == 200
    refused = chat(client, user)
    error = assert_openai_error(refused, 429, "rate_limit_error")
    assert "rpm_limit=1" in error["message"]
    # budgetd frees the request 60 to 61 s after it counted; the header rounds up.
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert grpc_reason(spend_stub, user, "mistral") == spend_pb.DENIAL_REASON_RATE_LIMITED


def test_a_call_over_the_tpm_limit_is_429_with_retry_after(client: httpx.Client) -> None:
    user = customer_on(client, tier(client, tpm_limit=5))
    refused = chat(client, user)  # the prompt plus max_tokens=10 is over 5 tokens
    error = assert_openai_error(refused, 429, "rate_limit_error")
    assert "tpm_limit=5" in error["message"]
    assert refused.headers["retry-after"] == "60"


def test_parallel_limit_is_429_with_retry_after(
    client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub
) -> None:
    user = customer_on(client, tier(client, max_parallel_requests=1))
    # Another gateway's call is in flight: an open reservation.
    in_flight = spend_stub.Authorize(
        spend_pb.AuthorizeRequest(customer_id=user, estimated_cost_nanos=1), timeout=5
    )
    assert in_flight.allowed
    refused = chat(client, user)
    error = assert_openai_error(refused, 429, "rate_limit_error")
    assert "max_parallel_requests=1" in error["message"]
    assert refused.headers["retry-after"] == "1"
    assert grpc_reason(spend_stub, user, "mistral") == spend_pb.DENIAL_REASON_PARALLEL_LIMIT
    spend_stub.ReleaseReservation(
        spend_pb.ReleaseReservationRequest(reservation_id=in_flight.reservation_id), timeout=5
    )
    assert chat(client, user).status_code == 200


def test_blocked_is_403(client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub) -> None:
    user = own_customer(client, blocked=True)
    error = assert_openai_error(chat(client, user), 403, "blocked")
    assert user in error["message"]
    assert grpc_reason(spend_stub, user, "mistral") == spend_pb.DENIAL_REASON_BLOCKED


def test_a_model_outside_allowed_models_is_403_naming_the_rule(
    client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub
) -> None:
    user = customer_on(client, tier(client, allowed_models=["mistral"]))
    error = assert_openai_error(chat(client, user, "gpt-4o-mini"), 403, "model_not_allowed")
    assert "'gpt-4o-mini' is not allowed" in error["message"]
    assert "allowed: mistral" in error["message"]
    assert grpc_reason(spend_stub, user, "gpt-4o-mini") == spend_pb.DENIAL_REASON_MODEL_NOT_ALLOWED
    assert chat(client, user, "mistral").status_code == 200


def test_a_model_outside_the_allowed_region_is_403_naming_the_rule(
    client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub
) -> None:
    user = own_customer(client, allowed_model_region="eu")
    # The shim sends the route's configured region: mistral is "eu", gpt-4o-mini is "us".
    assert chat(client, user, "mistral").status_code == 200
    error = assert_openai_error(chat(client, user, "gpt-4o-mini"), 403, "model_not_allowed")
    assert "region 'eu'" in error["message"] and "'us'" in error["message"]
    # A route with no configured region cannot prove it is in the customer's region.
    unknown = assert_openai_error(chat(client, user, "azure-gpt-3.5"), 403, "model_not_allowed")
    assert "unknown region" in unknown["message"]
    assert (
        grpc_reason(spend_stub, user, "gpt-4o-mini", "us")
        == spend_pb.DENIAL_REASON_MODEL_NOT_ALLOWED
    )


# -- the admin API carries the new limits --------------------------------------------------------


def test_budget_admin_fields_round_trip(client: httpx.Client) -> None:
    budget_id = tier(
        client,
        max_budget=5,
        budget_duration="1d",
        budget_reset_alignment="calendar",
        time_zone="Europe/Berlin",
        allowed_models=["mistral", "gpt-4o-mini"],
    )
    [row] = client.post("/budget/info", json={"budgets": [budget_id]}).json()
    assert row["budget_duration"] == "1d"
    assert row["budget_reset_alignment"] == "calendar"
    assert row["time_zone"] == "Europe/Berlin"
    assert row["allowed_models"] == ["mistral", "gpt-4o-mini"]

    updated = client.post(
        "/budget/update",
        json={"budget_id": budget_id, "budget_reset_alignment": "anniversary", "time_zone": None},
    )
    assert updated.status_code == 200, updated.text
    row = updated.json()
    assert row["budget_reset_alignment"] == "anniversary"
    assert row["time_zone"] is None
    assert row["allowed_models"] == ["mistral", "gpt-4o-mini"]  # untouched
    assert row["max_budget"] == 5.0

    cleared = client.post("/budget/update", json={"budget_id": budget_id, "allowed_models": None})
    assert cleared.json()["allowed_models"] is None


def test_customer_admin_fields_and_window_state(client: httpx.Client) -> None:
    user = own_customer(
        client,
        max_budget=10,
        soft_budget=0.000001,
        budget_duration="30d",
        budget_reset_alignment="calendar",
        allowed_models=["mistral"],
    )
    info = client.get(f"/customer/info?end_user_id={user}").json()
    table = info["litellm_budget_table"]
    assert table["budget_reset_alignment"] == "calendar"
    assert table["allowed_models"] == ["mistral"]
    assert table["budget_duration"] == "30d"
    assert info["soft_budget_exceeded"] is False

    assert chat(client, user, "mistral").status_code == 200
    info = client.get(f"/customer/info?end_user_id={user}").json()
    assert info["soft_budget_exceeded"] is True  # a soft budget alerts, it never refuses
    assert chat(client, user, "mistral").status_code == 200

    changed = client.post("/customer/update", json={"user_id": user, "allowed_models": []})
    assert changed.status_code == 200, changed.text
    assert changed.json()["litellm_budget_table"]["allowed_models"] is None
    assert chat(client, user, "gpt-4o-mini").status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"budget_reset_alignment": "weekly"}, "budget_reset_alignment"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"allowed_models": "mistral"}, "allowed_models"),
        ({"allowed_models": [""]}, "allowed_models[0]"),
        ({"budget_duration": "99999mo"}, "budget_duration"),
    ],
)
def test_bad_limit_fields_are_422_naming_the_field(
    client: httpx.Client, body: dict[str, Any], param: str
) -> None:
    budget_id = unique("bad")
    error = assert_openai_error(
        client.post("/budget/new", json={"budget_id": budget_id, **body}), 422
    )
    assert error["param"] == param
    assert client.post("/budget/info", json={"budgets": [budget_id]}).status_code == 404


def test_retry_after_header_reaches_a_streaming_caller(client: httpx.Client) -> None:
    user = customer_on(client, tier(client, rpm_limit=1))
    assert chat(client, user).status_code == 200
    with client.stream(
        "POST",
        "/chat/completions",
        json={"model": "mistral", "user": user, "messages": HELLO, "stream": True},
    ) as refused:
        refused.read()
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
