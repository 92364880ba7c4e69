"""Streams pass through as they arrive, are metered from their final chunk, and a cut-off
stream is settled: no hold outlives it and it is charged."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from budgetd.pricing import PriceTable, TokenUsage
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc
from proxy_shim.usd import render_usd
from tests.e2e.conftest import ANSWER_TOKENS, CHUNK_DELAY, get_spend, unique

pytestmark = pytest.mark.e2e


def test_chunks_arrive_before_the_end_and_usage_is_metered(client: httpx.Client) -> None:
    user = unique("streamer")
    arrivals: list[float] = []
    events: list[dict] = []
    started = time.monotonic()
    with client.stream(
        "POST",
        "/chat/completions",
        json={
            "model": "mistral",
            "user": user,
            "stream": True,
            "messages": [{"role": "user", "content": "Stream me a story"}],
        },
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-budgetd-reservation-id"]
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            arrivals.append(time.monotonic() - started)
            if line != "data: [DONE]":
                events.append(json.loads(line.removeprefix("data: ")))
    assert len(events) >= ANSWER_TOKENS
    # Paced at CHUNK_DELAY per chunk: the first must reach us long before the last.
    assert arrivals[-1] - arrivals[0] > (ANSWER_TOKENS - 4) * CHUNK_DELAY
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert len(text.split()) == ANSWER_TOKENS
    usage = events[-1]["usage"]  # include_usage was added by the shim
    assert usage["completion_tokens"] == ANSWER_TOKENS
    price = PriceTable().get("mistral-small-latest")
    assert price is not None
    cost = price.cost_nanos(
        TokenUsage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"])
    )
    info = client.get(f"/customer/info?end_user_id={user}").json()
    assert info["spend"] == render_usd(cost)
    logs = client.get(f"/spend/logs?end_user={user}").json()
    assert [(row["prompt_tokens"], row["completion_tokens"]) for row in logs] == [
        (usage["prompt_tokens"], usage["completion_tokens"])
    ]


def test_client_disconnect_mid_stream_releases_the_hold_and_charges(
    client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub
) -> None:
    user = unique("quitter")
    # A budget, so that a leaked hold would also show as lost room.
    assert client.post("/customer/new", json={"user_id": user, "max_budget": 1}).is_success
    received = 0
    with client.stream(
        "POST",
        "/chat/completions",
        json={
            "model": "mistral",
            "user": user,
            "stream": True,
            "messages": [{"role": "user", "content": "A long answer, please"}],
        },
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                received += 1
            if received == 3:
                break  # leaving the block closes the connection mid-stream
    assert received == 3
    # The shim notices the disconnect at its next write; poll budgetd with a deadline.
    deadline = time.monotonic() + 10
    spend = get_spend(spend_stub, user)
    while (spend.reserved_nanos or not spend.ledger_entry_count) and time.monotonic() < deadline:
        time.sleep(0.05)
        spend = get_spend(spend_stub, user)
    assert spend.reserved_nanos == 0
    assert spend.ledger_entry_count == 1
    assert spend.spend_nanos > 0
    row = client.get(f"/spend/logs?end_user={user}").json()[0]
    # Charged for what was known: the prompt estimate and part of the answer, not all of it.
    assert 0 < row["completion_tokens"] < ANSWER_TOKENS


def test_upstream_error_passes_through_and_charges_nothing(
    client: httpx.Client, spend_stub: spend_grpc.SpendServiceStub
) -> None:
    user = unique("unlucky")
    for stream in (False, True):
        response = client.post(
            "/chat/completions",
            json={
                "model": "broken",
                "user": user,
                "stream": stream,
                "messages": [{"role": "user", "content": "hello"}],
            },
        )
        assert response.status_code == 503
        assert response.json()["error"]["message"] == "simulated upstream error"
    spend = get_spend(spend_stub, user)
    assert (spend.spend_nanos, spend.reserved_nanos, spend.ledger_entry_count) == (0, 0, 0)
