"""budgetd as Envoy's ext_authz server: a real Envoy running examples/envoy/ext_authz.yaml."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from budgetd.pricing import PriceTable, TokenUsage
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.envoy.envoyproc import UpstreamProcess
from tests.envoy.stack import MODEL, Stack, chat, customer_header, running_stack

pytestmark = pytest.mark.e2e

CONFIG = "ext_authz.yaml"


@pytest.fixture(scope="module")
def stack(
    envoy_installed: Path, upstream: UpstreamProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One budgetd and one Envoy for the module."""
    with running_stack(CONFIG, tmp_path_factory.mktemp("authz"), upstream) as running:
        yield running


def _error(reply: httpx.Response) -> dict[str, object]:
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def test_an_admitted_call_reaches_the_upstream_with_its_reservation(stack: Stack) -> None:
    max_budget = 1_000_000_000
    customer = stack.customer(max_budget_nanos=max_budget)
    forged = {"x-budgetd-reservation-id": "forged", "x-budgetd-remaining-nanos": "999"}

    reply = stack.http.post(
        "/v1/chat/completions",
        json=chat(content="x" * 300, max_tokens=50),
        headers={**customer_header(customer), **forged},
    )

    assert reply.status_code == 200, reply.text
    seen = reply.json()["received_headers"]
    reservation = seen["x-budgetd-reservation-id"]
    assert str(uuid.UUID(reservation)) == reservation  # budgetd's, not the forged one
    price = PriceTable().get(MODEL)
    assert price is not None
    hold = price.cost_nanos(TokenUsage(input_tokens=100, output_tokens=50))  # 300 chars / 3
    assert seen["x-budgetd-remaining-nanos"] == str(max_budget - hold)
    spend = stack.spend(customer)
    assert (spend.spend_nanos, spend.reserved_nanos) == (0, hold)
    # The reservation is in the filter's dynamic metadata, which the example access log prints.
    line = stack.access_log(reservation)
    assert line["customer_id"] == customer
    assert line["held_nanos"] == str(hold)

    # ext_authz only gates: the application settles with the reservation id it was given.
    usage = reply.json()["usage"]
    stack.stubs.spend.RecordSpend(
        spend_pb.RecordSpendRequest(
            request_id=f"app-{reservation}",
            reservation_id=reservation,
            model=MODEL,
            usage=spend_pb.Usage(
                input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]
            ),
        ),
        timeout=10,
    )
    spend = stack.spend(customer)
    assert spend.reserved_nanos == 0
    assert spend.spend_nanos == price.cost_nanos(
        TokenUsage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"])
    )


def test_the_customer_comes_from_the_body_user_field(stack: Stack) -> None:
    customer = stack.customer(max_budget_nanos=1_000_000_000)

    reply = stack.http.post("/v1/chat/completions", json=chat(user=customer))

    assert reply.status_code == 200, reply.text
    assert reply.json()["received_headers"]["x-budgetd-reservation-id"]
    assert stack.spend(customer).reserved_nanos > 0


def test_an_unlimited_customer_gets_no_remaining_header(stack: Stack) -> None:
    customer = stack.customer()

    reply = stack.http.post(
        "/v1/chat/completions",
        json=chat(),
        headers={"x-litellm-end-user-id": customer, "x-budgetd-remaining-nanos": "forged"},
    )

    assert reply.status_code == 200, reply.text
    seen = reply.json()["received_headers"]
    assert seen["x-budgetd-reservation-id"]
    assert "x-budgetd-remaining-nanos" not in seen


def test_a_customer_over_budget_gets_429_with_an_openai_error(stack: Stack) -> None:
    customer = stack.customer(max_budget_nanos=0)

    reply = stack.http.post("/v1/chat/completions", json=chat(), headers=customer_header(customer))

    assert reply.status_code == 429
    error = _error(reply)
    assert (error["type"], error["code"]) == ("budget_exceeded", "budget_exceeded")
    assert customer in str(error["message"])
    assert "received_headers" not in reply.text  # the upstream never saw it


def test_a_blocked_customer_gets_403(stack: Stack) -> None:
    customer = stack.customer(blocked=True)

    reply = stack.http.post("/v1/chat/completions", json=chat(user=customer))

    assert reply.status_code == 403
    assert _error(reply)["code"] == "customer_blocked"


def test_a_call_naming_no_customer_is_refused(stack: Stack) -> None:
    reply = stack.http.post("/v1/chat/completions", json=chat())

    assert reply.status_code == 400
    error = _error(reply)
    assert (error["code"], error["param"]) == ("missing_customer_id", "user")


def test_a_model_without_a_price_is_refused_not_charged_zero(stack: Stack) -> None:
    customer = stack.customer(max_budget_nanos=1_000_000_000)

    reply = stack.http.post(
        "/v1/chat/completions",
        json=chat(model="no-such-model-xyz"),
        headers=customer_header(customer),
    )

    assert reply.status_code == 400
    assert _error(reply)["code"] == "model_not_priced"


def test_a_cut_body_must_name_its_customer_in_a_header(stack: Stack) -> None:
    customer = stack.customer(max_budget_nanos=1_000_000_000)
    # Over max_request_bytes (64 KiB), with multi-byte characters where the cut falls, and the
    # user field after the cut.
    body = {
        "model": MODEL,
        "max_tokens": 12,
        "messages": [{"role": "user", "content": "é" * 60_000}],
        "user": customer,
    }

    cut = stack.http.post("/v1/chat/completions", json=body)

    assert cut.status_code == 403
    assert _error(cut)["code"] == "missing_customer_id"
    assert stack.spend(customer).reserved_nanos == 0

    named = stack.http.post("/v1/chat/completions", json=body, headers=customer_header(customer))

    assert named.status_code == 200, named.text[:500]
    # The model was found in the part Envoy sent; the prompt is priced at the whole body's size.
    price = PriceTable().get(MODEL)
    assert price is not None
    size = int(named.json()["received_headers"]["content-length"])
    expected = price.cost_nanos(TokenUsage(input_tokens=-(-size // 3), output_tokens=12))
    assert stack.spend(customer).reserved_nanos == expected
