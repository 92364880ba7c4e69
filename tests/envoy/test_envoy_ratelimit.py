"""budgetd as Envoy's rate limit service: a real Envoy running examples/envoy/ratelimit.yaml.

Every call is checked against the customer's tpm window before it goes upstream (hits_addend 0),
and charged the tokens of its answer afterwards (apply_on_stream_done, the addend read from the
upstream's x-usage-total-tokens header). budgetd runs on a clock the test moves (a file of
microseconds), so the window rolls without waiting a minute.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res
from tests.envoy.envoyproc import UpstreamProcess
from tests.envoy.stack import Stack, chat, customer_header, running_stack
from tests.envoy.upstream import usage_for
from tests.support.client import ADMIN

pytestmark = pytest.mark.e2e

CONFIG = "ratelimit.yaml"
START_US = 1_800_000_000_000_000  # on a second boundary
TPM = 100
CALL = chat(content="hi", max_tokens=12)
CALL_TOKENS = usage_for(CALL)["total_tokens"]


class Clock:
    """budgetd's clock: the file BUDGETD_CLOCK_FILE names."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.now_us = START_US
        self._write()

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)
        self._write()

    def _write(self) -> None:
        # Written whole, then renamed: budgetd never reads half a number.
        partial = self.path.with_suffix(".tmp")
        partial.write_text(str(self.now_us))
        partial.replace(self.path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ratelimit")


@pytest.fixture(scope="module")
def clock(workdir: Path) -> Clock:
    return Clock(workdir / "clock_us")


@pytest.fixture(scope="module")
def stack(
    envoy_installed: Path, upstream: UpstreamProcess, workdir: Path, clock: Clock
) -> Iterator[Stack]:
    """One budgetd (on the test's clock) and one Envoy for the module."""
    env = {"BUDGETD_CLOCK_FILE": str(clock.path)}
    with running_stack(CONFIG, workdir, upstream, budgetd_env=env) as running:
        yield running


def new_customer(stack: Stack, *, tpm: int | None = TPM, blocked: bool = False) -> str:
    user_id = f"cust-{uuid.uuid4().hex[:10]}"
    limits = res.BudgetLimits()
    if tpm is not None:
        limits.tpm_limit = tpm
    stack.stubs.customers.CreateCustomer(
        customer_pb.CreateCustomerRequest(
            customer=res.Customer(user_id=user_id, blocked=blocked, limits=limits)
        ),
        metadata=ADMIN,
        timeout=10,
    )
    return user_id


def tokens_left(stack: Stack, customer: str) -> rls_pb2.RateLimitResponse.DescriptorStatus:
    """What budgetd's rate limit service says of the customer now (a check, as Envoy's)."""
    stub = rls_pb2_grpc.RateLimitServiceStub(stack.stubs.channel)
    descriptor = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key="customer_id", value=customer)]
    )
    descriptor.hits_addend.value = 0
    reply = stub.ShouldRateLimit(
        rls_pb2.RateLimitRequest(domain="budgetd", descriptors=[descriptor]), timeout=5
    )
    return reply.statuses[0]


def wait_remaining(stack: Stack, customer: str, expected: int, timeout: float = 5.0) -> None:
    """Wait for the charge Envoy sends after a response (it lands just after the client's)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = tokens_left(stack, customer).limit_remaining
        if remaining == expected:
            return
        assert time.monotonic() < deadline, f"tokens left {remaining}, expected {expected}"
        time.sleep(0.02)


def call(stack: Stack, customer: str) -> httpx.Response:
    return stack.http.post("/v1/chat/completions", json=CALL, headers=customer_header(customer))


def test_calls_are_refused_once_the_window_tokens_are_spent_and_admitted_when_it_rolls(
    stack: Stack, clock: Clock
) -> None:
    customer = new_customer(stack)
    admitted = 0
    while True:
        reply = call(stack, customer)
        if reply.status_code != 200:
            break
        # Checked with what was charged before this call.
        assert reply.headers["x-ratelimit-remaining"] == str(TPM - admitted * CALL_TOKENS)
        assert reply.headers["x-usage-total-tokens"] == str(CALL_TOKENS)
        admitted += 1
        wait_remaining(stack, customer, max(0, TPM - admitted * CALL_TOKENS))
        assert admitted < 20, "never refused"

    # Admitted while any token was left: the last call overshoots by (at most) one response.
    assert admitted == -(-TPM // CALL_TOKENS)
    assert reply.status_code == 429
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_exceeded", "rate_limit_exceeded")
    assert f"used {admitted * CALL_TOKENS} tokens" in error["message"]
    assert reply.headers["x-ratelimit-remaining"] == "0"
    # The clock stood still: every token is in one second, which leaves the window 61 s later.
    assert reply.headers["x-ratelimit-reset"] == "61"
    assert reply.headers["retry-after"] == "61"
    status = tokens_left(stack, customer)
    assert status.code == rls_pb2.RateLimitResponse.OVER_LIMIT
    assert status.current_limit.requests_per_unit == TPM
    assert status.current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.MINUTE

    clock.advance(30)
    assert call(stack, customer).status_code == 429
    assert call(stack, customer).headers["x-ratelimit-reset"] == "31"

    clock.advance(31)
    reply = call(stack, customer)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-ratelimit-remaining"] == str(TPM)
    wait_remaining(stack, customer, TPM - CALL_TOKENS)

    # The access log shows what budgetd said before each call (the filter's dynamic metadata).
    line = stack.access_log(customer)
    assert (line["tokens"], line["tokens_left"]) == (str(CALL_TOKENS), str(TPM))


def test_a_customer_without_a_tpm_limit_is_not_limited(stack: Stack) -> None:
    customer = new_customer(stack, tpm=None)
    for _ in range(3):
        reply = call(stack, customer)
        assert reply.status_code == 200, reply.text
        assert "x-ratelimit-limit" not in reply.headers
    status = tokens_left(stack, customer)
    assert status.code == rls_pb2.RateLimitResponse.OK
    assert not status.HasField("current_limit")


def test_a_blocked_customer_is_refused(stack: Stack) -> None:
    reply = call(stack, new_customer(stack, blocked=True))

    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "customer_blocked"
    assert "received_headers" not in reply.text


def test_a_call_naming_no_customer_is_refused_by_the_route(stack: Stack) -> None:
    reply = stack.http.post("/v1/chat/completions", json=CALL)

    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]["code"] == "missing_customer_id"


def test_envoy_fails_closed_when_budgetd_is_down(
    envoy_installed: Path, upstream: UpstreamProcess, tmp_path: Path
) -> None:
    with running_stack(CONFIG, tmp_path, upstream) as stack:
        customer = new_customer(stack)
        assert call(stack, customer).status_code == 200
        stack.budgetd.stop()

        started = time.monotonic()
        reply = call(stack, customer)
        elapsed = time.monotonic() - started

        assert reply.status_code == 503  # status_on_error, with failure_mode_deny: true
        assert "received_headers" not in reply.text
        assert elapsed < 2.0
        with pytest.raises(grpc.RpcError):
            tokens_left(stack, customer)
