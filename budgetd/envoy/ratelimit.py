"""``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``: budgetd as Envoy's rate limit
service, for the ratelimit filter and Envoy Gateway's cost-based rules.

Each descriptor whose entries name a customer (an entry keyed ``customer_id``, or any key in
``BUDGETD_RATELIMIT_DESCRIPTOR_KEYS``) is answered from that customer's counters
(:mod:`budgetd.domain.rate_limits`), in the unit the operator chose (``BUDGETD_RATELIMIT_UNIT``):

- ``tokens`` (default): the customer's tpm window. ``current_limit`` is ``tpm_limit`` per
  MINUTE, ``limit_remaining`` the tokens left, ``duration_until_reset`` the time until the
  oldest counted second leaves the rolling window;
- ``nanos``: the customer's budget. A charge is a ledger entry; ``limit_remaining`` is the
  budget left (capped at 2**32-1, the field's range; the exact figure is in the dynamic
  metadata), ``duration_until_reset`` the time until the budget window ends. No
  ``current_limit``: a budget is not a rate per unit of time.

The answer's dynamic metadata (Envoy puts it in the ``envoy.filters.http.ratelimit`` namespace)
names the first customer: ``customer_id``, ``unit``, ``remaining`` and ``charged``, numbers as
strings.

The addend of a descriptor is its own ``hits_addend`` when Envoy sets it, else the request's.
0 checks only; anything else is a charge for what the call used (Envoy sends it after the
response with ``apply_on_stream_done``) and is always counted. The request-level
``hits_addend`` of 0 — which cannot be told apart from "not set", and which the protocol reads
as 1 — also means "check only": budgetd charges only what the gateway names.

A descriptor naming no customer is answered OK without a limit (it is not budgetd's to judge;
Envoy sends no descriptor at all when the customer header is missing, so refusing such calls is
the route's job — see examples/envoy/ratelimit.yaml). A customer id budgetd cannot accept (too
long, control characters) or an addend out of range is answered OVER_LIMIT: what cannot be
counted must not pass. An OVER_LIMIT answer carries an OpenAI-style JSON error and
``retry-after`` for Envoy's 429. A failure (the store is unreachable) is an RPC error, for which
Envoy applies ``failure_mode_deny``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2 as pb
from envoy.service.ratelimit.v3 import rls_pb2_grpc as pb_grpc
from google.protobuf import duration_pb2, struct_pb2
from google.rpc import code_pb2

from budgetd.domain.rate_limits import Allowance, RateLimitService
from budgetd.envoy.observe import CallRecord, answered
from budgetd.envoy.refusals import Refusal
from budgetd.errors import InvalidArgument
from budgetd.settings import Settings

log = logging.getLogger("budgetd.envoy")

DESCRIPTOR = pb.DESCRIPTOR.services_by_name["RateLimitService"]
# Adds a servicer to a grpc server (the generated function, re-exported for budgetd.api.server).
add_to_server = pb_grpc.add_RateLimitServiceServicer_to_server
METHOD = f"/{DESCRIPTOR.full_name}/ShouldRateLimit"

Unit = Literal["tokens", "nanos"]
OK = pb.RateLimitResponse.OK
OVER_LIMIT = pb.RateLimitResponse.OVER_LIMIT
_UINT32_MAX = 2**32 - 1
_US = 1_000_000


@dataclass(frozen=True, slots=True)
class RateLimitOptions:
    """Knobs of the rate limit service (``BUDGETD_RATELIMIT_*`` settings)."""

    # Descriptor entry keys whose value is the customer id; the first found in a descriptor wins.
    descriptor_keys: tuple[str, ...] = ("customer_id",)
    # What a hit is: a token of the tpm window, or a nano-USD of the budget.
    unit: Unit = "tokens"

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitOptions:
        """The options a ``budgetd serve`` was configured with."""
        keys = tuple(key.strip() for key in settings.ratelimit_descriptor_keys.split(","))
        return cls(descriptor_keys=tuple(key for key in keys if key), unit=settings.ratelimit_unit)


def customer_of(descriptor: ratelimit_pb2.RateLimitDescriptor, keys: tuple[str, ...]) -> str | None:
    """The customer a descriptor names: the value of its first entry with one of ``keys``."""
    values = {entry.key: entry.value for entry in descriptor.entries}
    for key in keys:
        value = values.get(key)
        if value:
            return str(value)
    return None


def hits_of(descriptor: ratelimit_pb2.RateLimitDescriptor, request: pb.RateLimitRequest) -> int:
    """The descriptor's own addend when Envoy set one, else the request's (0: check only)."""
    if descriptor.HasField("hits_addend"):
        return int(descriptor.hits_addend.value)
    return int(request.hits_addend)


def descriptor_status(allowance: Allowance, unit: Unit) -> pb.RateLimitResponse.DescriptorStatus:
    """Envoy's status of one descriptor."""
    status = pb.RateLimitResponse.DescriptorStatus(code=OVER_LIMIT if allowance.over else OK)
    remaining = allowance.remaining
    if remaining is not None:
        status.limit_remaining = min(remaining, _UINT32_MAX)
        if unit == "tokens":
            assert allowance.limit is not None
            status.current_limit.CopyFrom(
                pb.RateLimitResponse.RateLimit(
                    name="tpm_limit",
                    requests_per_unit=min(allowance.limit, _UINT32_MAX),
                    unit=pb.RateLimitResponse.RateLimit.MINUTE,
                )
            )
    if allowance.reset_after_us is not None:
        status.duration_until_reset.CopyFrom(_duration(allowance.reset_after_us))
    return status


def refusal(allowance: Allowance, unit: Unit) -> Refusal:
    """What the client of a call refused on ``allowance`` is told (Envoy answers 429)."""
    who = f"customer {allowance.customer_id!r}"
    retry_after = None
    if allowance.reset_after_us is not None:
        retry_after = max(1, math.ceil(allowance.reset_after_us / _US))
    if allowance.blocked:
        return Refusal(
            429,
            code_pb2.PERMISSION_DENIED,
            "permission_denied",
            "customer_blocked",
            f"{who} is blocked",
        )
    if unit == "nanos":
        return Refusal(
            429,
            code_pb2.RESOURCE_EXHAUSTED,
            "budget_exceeded",
            "budget_exceeded",
            f"budget exceeded: {who} spend+reserved={allowance.used} "
            f"max_budget={allowance.limit} (nano-USD)",
            retry_after_seconds=retry_after,
        )
    return Refusal(
        429,
        code_pb2.RESOURCE_EXHAUSTED,
        "rate_limit_exceeded",
        "rate_limit_exceeded",
        f"{who} used {allowance.used} tokens in the last minute (tpm_limit={allowance.limit})",
        retry_after_seconds=retry_after,
    )


def _unusable(customer_id: str, error: InvalidArgument) -> Refusal:
    return Refusal(
        429,
        code_pb2.INVALID_ARGUMENT,
        "invalid_request_error",
        "invalid_argument",
        f"cannot rate limit customer {customer_id[:64]!r}: {error.message}",
    )


def _duration(us: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=us // _US, nanos=(us % _US) * 1000)


class RateLimitServicer:
    """Envoy's ShouldRateLimit over the customer's tpm window or budget."""

    def __init__(self, limits: RateLimitService, options: RateLimitOptions) -> None:
        self._limits = limits
        self._options = options

    def ShouldRateLimit(
        self, request: pb.RateLimitRequest, context: grpc.ServicerContext
    ) -> pb.RateLimitResponse:
        """Answer every descriptor; the call is over the limit when any descriptor is."""
        record = CallRecord(METHOD)
        return answered(record, context, lambda: self._answer(request, record))

    def _answer(self, request: pb.RateLimitRequest, record: CallRecord) -> pb.RateLimitResponse:
        unit = self._options.unit
        response = pb.RateLimitResponse(overall_code=OK)
        first_refusal: Refusal | None = None
        metadata: dict[str, str] = {}
        record.fields.update(domain=request.domain or None, unit=unit)
        for descriptor in request.descriptors:
            customer = customer_of(descriptor, self._options.descriptor_keys)
            if customer is None:
                response.statuses.append(pb.RateLimitResponse.DescriptorStatus(code=OK))
                continue
            hits = hits_of(descriptor, request)
            record.fields.setdefault("customer_id", customer)
            record.fields["hits"] = record.fields.get("hits", 0) + hits
            try:
                allowance = self._allowance(customer, hits)
            except InvalidArgument as error:
                log.warning("refusing descriptor of %r: %s", customer[:64], error.message)
                response.statuses.append(pb.RateLimitResponse.DescriptorStatus(code=OVER_LIMIT))
                first_refusal = first_refusal or _unusable(customer, error)
                continue
            status = descriptor_status(allowance, unit)
            response.statuses.append(status)
            if allowance.over and first_refusal is None:
                first_refusal = refusal(allowance, unit)
            if not metadata:
                metadata = {"customer_id": customer, "unit": unit}
                if allowance.remaining is not None:
                    metadata["remaining"] = str(allowance.remaining)
                if allowance.charged:
                    metadata["charged"] = str(allowance.charged)
        if metadata:
            response.dynamic_metadata.CopyFrom(_struct(metadata))
        if first_refusal is not None:
            response.overall_code = OVER_LIMIT
            response.raw_body = first_refusal.body()
            response.response_headers_to_add.extend(
                base_pb2.HeaderValue(key=name, value=value)
                for name, value in first_refusal.headers()
            )
            record.fields.update(outcome="over_limit", denial=first_refusal.code)
        else:
            record.fields["outcome"] = "ok"
        return response

    def _allowance(self, customer_id: str, hits: int) -> Allowance:
        if self._options.unit == "nanos":
            return self._limits.budget(customer_id, hits)
        return self._limits.tokens(customer_id, hits)


def _struct(values: dict[str, str]) -> struct_pb2.Struct:
    # Numbers as strings: a Struct holds doubles, inexact beyond 2**53.
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct
