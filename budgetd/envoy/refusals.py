"""How a refused call is answered through Envoy: HTTP status, gRPC code and an OpenAI error body.

A refusal is a normal answer — ext_authz's ``denied_response`` or ext_proc's
``immediate_response`` — never an RPC error: Envoy turns RPC errors into its configured
``status_on_error`` for every call, which must stay reserved for budgetd being unreachable.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from google.rpc import code_pb2

from budgetd.domain.records import Decision, DenialReason
from budgetd.errors import BudgetdError, FailedPrecondition, InvalidArgument


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call budgetd will not let through, and how to say so."""

    http_status: int
    rpc_code: int  # google.rpc.Code of ext_authz's CheckResponse.status
    type: str
    code: str
    message: str
    param: str | None = None
    retry_after_seconds: int | None = None

    def body(self) -> bytes:
        """The OpenAI-style error document clients already parse."""
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()

    def headers(self) -> list[tuple[str, str]]:
        """Response headers of the refusal."""
        headers = [("content-type", "application/json")]
        if self.retry_after_seconds is not None:
            headers.append(("retry-after", str(self.retry_after_seconds)))
        return headers


_DENIALS: dict[DenialReason, tuple[int, int, str, str]] = {
    DenialReason.BUDGET_EXCEEDED: (
        429,
        code_pb2.RESOURCE_EXHAUSTED,
        "budget_exceeded",
        "budget_exceeded",
    ),
    DenialReason.RATE_LIMITED: (
        429,
        code_pb2.RESOURCE_EXHAUSTED,
        "rate_limit_exceeded",
        "rate_limit_exceeded",
    ),
    DenialReason.PARALLEL_LIMIT: (
        429,
        code_pb2.RESOURCE_EXHAUSTED,
        "rate_limit_exceeded",
        "parallel_request_limit",
    ),
    DenialReason.BLOCKED: (
        403,
        code_pb2.PERMISSION_DENIED,
        "permission_denied",
        "customer_blocked",
    ),
    DenialReason.MODEL_NOT_ALLOWED: (
        403,
        code_pb2.PERMISSION_DENIED,
        "permission_denied",
        "model_not_allowed",
    ),
}


def for_decision(decision: Decision) -> Refusal:
    """The refusal of a denied Authorize."""
    assert decision.denial_reason is not None
    status, rpc_code, kind, code = _DENIALS[decision.denial_reason]
    retry_after = None
    if decision.retry_after_us is not None:
        retry_after = max(1, math.ceil(decision.retry_after_us / 1_000_000))
    return Refusal(status, rpc_code, kind, code, decision.message, None, retry_after)


def for_error(error: BudgetdError) -> Refusal | None:
    """The refusal of a call the domain rejected as malformed or unpriceable, else None.

    Such a call can never succeed as sent, so the client is told why (400). Anything else
    (an unreachable store) stays an error, so Envoy applies its ``status_on_error``.
    """
    if isinstance(error, InvalidArgument):
        return Refusal(
            400,
            code_pb2.INVALID_ARGUMENT,
            "invalid_request_error",
            "invalid_argument",
            error.message,
            error.field,
        )
    if isinstance(error, FailedPrecondition):
        # In Authorize this is a model without a price: refused rather than charged $0.
        return Refusal(
            400,
            code_pb2.FAILED_PRECONDITION,
            "invalid_request_error",
            "model_not_priced",
            error.message,
            "model",
        )
    return None


def missing_customer(*, body_cut: bool, headers: tuple[str, ...]) -> Refusal:
    """The refusal of a call that names no customer."""
    named = ", ".join(headers) or "a customer header"
    if body_cut:
        # The customer may sit in the part of the body Envoy did not forward: letting the call
        # through would let a large body slip past a blocked or exhausted customer.
        return Refusal(
            403,
            code_pb2.PERMISSION_DENIED,
            "permission_denied",
            "missing_customer_id",
            f"the request body was too large to inspect for a customer id; name the customer "
            f"in a header ({named})",
        )
    return Refusal(
        400,
        code_pb2.INVALID_ARGUMENT,
        "invalid_request_error",
        "missing_customer_id",
        f"no customer id: set a header ({named}) or the body's 'user' field",
        "user",
    )
