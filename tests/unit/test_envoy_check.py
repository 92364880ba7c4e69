"""The ext_authz servicer's answers, over a stand-in for the domain (no Envoy, no database)."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import grpc
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from google.rpc import code_pb2

from budgetd.domain.records import Decision, DenialReason
from budgetd.domain.spend import CallEstimate
from budgetd.envoy.authz import AuthorizationServicer
from budgetd.envoy.options import EnvoyOptions
from budgetd.errors import FailedPrecondition, Unavailable


class Aborted(Exception):
    """What the stand-in context raises on abort, as grpc's does."""


class Context:
    """The two things Check asks of its gRPC context."""

    def __init__(self, time_left: float | None = 0.2) -> None:
        self.time_left = time_left
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> float | None:
        return self.time_left

    def abort(self, code: grpc.StatusCode, detail: str) -> NoReturn:
        self.aborted = (code, detail)
        raise Aborted(detail)


class Spend:
    """Answers Authorize with a fixed outcome and records what it was asked."""

    def __init__(self, outcome: Decision | Exception) -> None:
        self.outcome = outcome
        self.calls: list[CallEstimate] = []
        self.released: list[str] = []

    def authorize(self, call: CallEstimate) -> Decision:
        self.calls.append(call)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def release(self, reservation_id: str) -> int:
        self.released.append(reservation_id)
        return 1


ALLOWED = Decision(
    allowed=True,
    denial_reason=None,
    message="",
    reservation_id="res-1",
    held_nanos=500,
    spend_nanos=0,
    reserved_nanos=500,
    max_budget_nanos=10_000,
)
DENIED = Decision(
    allowed=False,
    denial_reason=DenialReason.BUDGET_EXCEEDED,
    message="over",
    reservation_id=None,
    held_nanos=0,
    spend_nanos=10_000,
    reserved_nanos=0,
    max_budget_nanos=10_000,
)


def _request(headers: dict[str, str], body: dict[str, Any] | None = None) -> Any:
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        headers=headers, raw_body=json.dumps(body).encode() if body else b""
    )
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


def _check(spend: Spend, request: Any, context: Context | None = None) -> Any:
    servicer = AuthorizationServicer(spend, EnvoyOptions())  # type: ignore[arg-type]
    return servicer.Check(request, context or Context())  # type: ignore[arg-type]


def test_an_admitted_call_gets_headers_and_metadata() -> None:
    spend = Spend(ALLOWED)

    reply = _check(spend, _request({}, {"model": "m", "user": "u", "max_tokens": 9}))

    assert reply.status.code == code_pb2.OK
    added = {h.header.key: h.header.value for h in reply.ok_response.headers}
    assert added == {"x-budgetd-reservation-id": "res-1", "x-budgetd-remaining-nanos": "9500"}
    assert dict(reply.dynamic_metadata)["reservation_id"] == "res-1"
    assert (spend.calls[0].customer_id, spend.calls[0].max_output_tokens) == ("u", 9)


def test_a_denial_is_an_ok_rpc_with_a_denied_status() -> None:
    reply = _check(Spend(DENIED), _request({"x-litellm-customer-id": "u"}))

    assert reply.status.code == code_pb2.RESOURCE_EXHAUSTED
    assert reply.denied_response.status.code == 429
    assert json.loads(reply.denied_response.body)["error"]["type"] == "budget_exceeded"


def test_an_unpriced_model_is_a_400_answer_not_an_rpc_error() -> None:
    reply = _check(Spend(FailedPrecondition("model 'x' has no price")), _request({}, {"user": "u"}))

    assert reply.denied_response.status.code == 400


def test_a_store_outage_is_an_rpc_error_so_envoy_fails_closed() -> None:
    context = Context()

    with pytest.raises(Aborted):
        _check(
            Spend(Unavailable("database down")), _request({"x-litellm-customer-id": "u"}), context
        )

    assert context.aborted == (grpc.StatusCode.UNAVAILABLE, "database down")


def test_no_reservation_is_taken_once_the_deadline_has_passed() -> None:
    spend = Spend(ALLOWED)
    context = Context(time_left=0.0)

    with pytest.raises(Aborted):
        _check(spend, _request({"x-litellm-customer-id": "u"}), context)

    assert spend.calls == []
    assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.UNAVAILABLE


def test_a_reservation_taken_too_late_is_released_at_once() -> None:
    spend = Spend(ALLOWED)

    class Expiring(Context):
        def time_remaining(self) -> float | None:
            # Time enough before Authorize, none left after it.
            return -0.01 if spend.calls else 0.05

    with pytest.raises(Aborted):
        _check(spend, _request({"x-litellm-customer-id": "u"}), Expiring())

    assert spend.released == ["res-1"]


def test_without_a_required_customer_the_call_passes_unmetered() -> None:
    spend = Spend(ALLOWED)
    servicer = AuthorizationServicer(spend, EnvoyOptions(require_customer=False))  # type: ignore[arg-type]

    reply = servicer.Check(_request({}, {"model": "m"}), Context())  # type: ignore[arg-type]

    assert reply.status.code == code_pb2.OK
    assert set(reply.ok_response.headers_to_remove) == {
        "x-budgetd-reservation-id",
        "x-budgetd-remaining-nanos",
    }
    assert spend.calls == []
