"""budgetd as Envoy's external processor: a real Envoy running examples/envoy/ext_proc.yaml
gates and meters every call, streamed ones included."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from budgetd.pricing import PriceTable, TokenUsage
from tests.envoy.envoyproc import UpstreamProcess
from tests.envoy.stack import MODEL, Stack, chat, customer_header, running_stack
from tests.envoy.upstream import usage_for
from tests.support.processes import free_port, run_migrate

pytestmark = pytest.mark.e2e

CONFIG = "ext_proc.yaml"


@pytest.fixture(scope="module")
def stack(
    envoy_installed: Path, upstream: UpstreamProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One budgetd and one Envoy for the module."""
    with running_stack(CONFIG, tmp_path_factory.mktemp("ext-proc"), upstream) as running:
        yield running


def _cost(usage: dict[str, int]) -> int:
    price = PriceTable().get(MODEL)
    assert price is not None
    return price.cost_nanos(
        TokenUsage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"])
    )


def _events(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[5:])
        for line in text.splitlines()
        if line.startswith("data:") and line[5:].strip() != "[DONE]"
    ]


def test_a_call_is_metered_exactly(stack: Stack) -> None:
    customer = stack.customer(max_budget_nanos=1_000_000_000)
    body = chat(content="y" * 120, max_tokens=40)

    forged = {"x-budgetd-reservation-id": "forged", "accept-encoding": "gzip"}

    reply = stack.http.post(
        "/v1/chat/completions", json=body, headers={**customer_header(customer), **forged}
    )

    assert reply.status_code == 200, reply.text
    answer = reply.json()
    reservation = answer["received_headers"]["x-budgetd-reservation-id"]
    assert reservation != "forged"
    # A compressed answer could not be read for its usage, so the upstream is not offered one.
    assert "accept-encoding" not in answer["received_headers"]
    usage = answer["usage"]
    spend = stack.wait_settled(customer)
    assert spend.spend_nanos == _cost(usage) > 0
    assert spend.reserved_nanos == 0
    (entry,) = stack.ledger(customer)
    assert entry.reservation_id == reservation
    assert (entry.input_tokens, entry.output_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert entry.cost_nanos == spend.spend_nanos
    assert stack.access_log(reservation)["customer_id"] == customer


def test_a_streamed_call_streams_and_is_metered_from_its_final_chunk(stack: Stack) -> None:
    customer = stack.customer(max_budget_nanos=1_000_000_000)
    body = chat(content="z" * 90, stream=True, user=customer)
    arrivals: list[float] = []
    text = ""

    started = time.monotonic()
    with stack.http.stream(
        "POST",
        "/v1/chat/completions",
        json=body,
        headers={"x-test-chunks": "5", "x-test-chunk-delay-ms": "150"},
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/event-stream"
        for chunk in reply.iter_text():
            arrivals.append(time.monotonic() - started)
            text += chunk

    # Five content chunks 150 ms apart, then the usage chunk: the first reached the client
    # long before the last, so nothing was held back.
    assert arrivals[-1] - arrivals[0] > 0.5
    events = _events(text)
    # The client did not ask for usage; budgetd asked the upstream for it on its behalf.
    assert events[0]["received_body"]["stream_options"] == {"include_usage": True}
    usage = events[-1]["usage"]
    assert usage == usage_for(body)
    spend = stack.wait_settled(customer)
    assert spend.spend_nanos == _cost(usage) > 0
    assert spend.reserved_nanos == 0
    assert len(stack.ledger(customer)) == 1


def test_refusals_are_immediate_responses(stack: Stack) -> None:
    broke = stack.customer(max_budget_nanos=0)
    blocked = stack.customer(blocked=True)

    over = stack.http.post("/v1/chat/completions", json=chat(), headers=customer_header(broke))
    barred = stack.http.post("/v1/chat/completions", json=chat(user=blocked))
    anonymous = stack.http.post("/v1/chat/completions", json=chat())

    assert (over.status_code, barred.status_code, anonymous.status_code) == (429, 403, 400)
    for reply in (over, barred, anonymous):
        assert reply.headers["content-type"] == "application/json"
    assert over.json()["error"]["type"] == "budget_exceeded"
    assert barred.json()["error"]["code"] == "customer_blocked"
    assert anonymous.json()["error"]["code"] == "missing_customer_id"


def test_an_upstream_error_releases_the_hold(stack: Stack) -> None:
    customer = stack.customer(max_budget_nanos=1_000_000_000)

    reply = stack.http.post(
        "/v1/chat/completions",
        json=chat(user=customer),
        headers={"x-test-status": "500"},
    )

    assert reply.status_code == 500
    spend = stack.wait_settled(customer)
    assert (spend.spend_nanos, spend.reserved_nanos, spend.ledger_entry_count) == (0, 0, 0)


def test_an_unreachable_upstream_releases_the_hold(envoy_installed: Path, tmp_path: Path) -> None:
    nobody = UpstreamProcess(tmp_path / "unused.log")
    nobody.port = free_port()  # nothing listens there
    with running_stack(CONFIG, tmp_path, nobody) as own:
        customer = own.customer(max_budget_nanos=1_000_000_000)

        reply = own.http.post("/v1/chat/completions", json=chat(user=customer))

        assert reply.status_code == 503  # Envoy's own answer, which ext_proc sees too
        spend = own.wait_settled(customer)
        assert (spend.spend_nanos, spend.reserved_nanos, spend.ledger_entry_count) == (0, 0, 0)


def test_a_stream_the_client_abandons_never_leaks_its_hold(stack: Stack) -> None:
    customer = stack.customer(max_budget_nanos=1_000_000_000)

    with stack.http.stream(
        "POST",
        "/v1/chat/completions",
        json=chat(content="w" * 30, stream=True, user=customer),
        headers={"x-test-chunks": "20", "x-test-chunk-delay-ms": "200"},
    ) as reply:
        assert reply.status_code == 200
        next(reply.iter_bytes())
    # Leaving the block closed the connection mid-stream.

    spend = stack.wait_settled(customer)
    assert spend.reserved_nanos == 0
    # What was delivered before the cut is charged (estimated: the usage chunk never came).
    entries = stack.ledger(customer)
    assert len(entries) == 1
    assert spend.spend_nanos == entries[0].cost_nanos > 0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def concurrent_stack(
    request: pytest.FixtureRequest,
    envoy_installed: Path,
    upstream: UpstreamProcess,
    tmp_path: Path,
) -> Iterator[Stack]:
    """A stack of its own, on SQLite or on PostgreSQL."""
    url = None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))
    if url is not None:
        run_migrate(url)
    with running_stack(CONFIG, tmp_path, upstream, database_url=url) as running:
        yield running


def test_fifty_concurrent_calls_never_overspend(concurrent_stack: Stack) -> None:
    stack = concurrent_stack
    # A prompt of 300 characters is estimated at 100 tokens and reported by the upstream as 84:
    # the holds cover what the calls really cost, so the budget is a hard cap.
    body = chat(content="q" * 300, max_tokens=12, stream=True)
    price = PriceTable().get(MODEL)
    assert price is not None
    estimate = price.cost_nanos(TokenUsage(input_tokens=100, output_tokens=12))
    max_budget = 5 * estimate
    customer = stack.customer(max_budget_nanos=max_budget)

    def call(_: int) -> int:
        with stack.http.stream(
            "POST",
            "/v1/chat/completions",
            json=body,
            headers={**customer_header(customer), "x-test-chunks": "3"},
        ) as reply:
            reply.read()
            return reply.status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(call, range(50)))

    admitted = statuses.count(200)
    assert admitted + statuses.count(429) == 50, statuses
    assert admitted >= 5
    spend = stack.wait_settled(customer)
    assert spend.reserved_nanos == 0
    assert spend.spend_nanos <= max_budget
    entries = stack.ledger(customer)
    assert len(entries) == admitted
    assert sum(e.cost_nanos for e in entries) == spend.spend_nanos
    assert spend.spend_nanos == admitted * _cost(usage_for(body))
