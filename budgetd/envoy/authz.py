"""``envoy.service.auth.v3.Authorization/Check``: budgetd as Envoy's ext_authz server.

Every call Envoy gates becomes one ``Authorize``. An admitted call goes upstream with
``x-budgetd-reservation-id`` (and ``x-budgetd-remaining-nanos`` when the customer has a budget)
and the reservation in the filter's dynamic metadata. A refused call is answered by Envoy with
the status and OpenAI-style JSON error budgetd gives: a refusal is an OK RPC whose
``CheckResponse.status`` is not OK. RPC errors are kept for real failures, for which Envoy
applies its ``status_on_error`` (fail closed with ``failure_mode_allow: false``).

ext_authz only gates: nothing here sees the upstream's answer. The reservation must be settled
by whoever does — the application calling ``RecordSpend`` with the reservation id it got in the
header — or it expires after the hold TTL, charging nothing. ext_proc mode
(:mod:`budgetd.envoy.ext_proc`) meters the answer as well.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2

from budgetd.api.guard import Submit
from budgetd.api.metrics import DECISIONS
from budgetd.domain.spend import SpendService
from budgetd.envoy import refusals
from budgetd.envoy.calls import call_estimate, lower_headers, read_call
from budgetd.envoy.headers import (
    BUDGETD_HEADERS,
    admitted_headers,
    decision_metadata,
    header_map_pairs,
    set_headers,
)
from budgetd.envoy.observe import CallRecord, answered, answered_async
from budgetd.envoy.options import EnvoyOptions
from budgetd.errors import BudgetdError, Unavailable
from budgetd.store.deadlines import call_deadline

log = logging.getLogger("budgetd.envoy")

DESCRIPTOR = pb.DESCRIPTOR.services_by_name["Authorization"]
# Adds a servicer to a grpc server (the generated function, re-exported for budgetd.api.server).
add_to_server = pb_grpc.add_AuthorizationServicer_to_server
METHOD = f"/{DESCRIPTOR.full_name}/Check"
# Below this much time left, Envoy will have answered with status_on_error before budgetd can.
_MIN_TIME_LEFT_S = 0.002


class AuthorizationServicer:
    """Envoy's ext_authz Check over the domain's Authorize."""

    def __init__(self, spend: SpendService, options: EnvoyOptions) -> None:
        self._spend = spend
        self._options = options

    def Check(self, request: pb.CheckRequest, context: grpc.ServicerContext) -> pb.CheckResponse:
        """Admit (reserving the estimate) or refuse one HTTP request."""
        record = CallRecord(METHOD)
        return answered(record, context, lambda: self._check(request, context, record))

    def _check(
        self, request: pb.CheckRequest, context: grpc.ServicerContext, record: CallRecord
    ) -> pb.CheckResponse:
        http = request.attributes.request.http
        # Envoy fills `headers` unless encode_raw_headers is set, then `header_map`.
        pairs = http.headers.items() if http.headers else header_map_pairs(http.header_map)
        headers = lower_headers(pairs)
        body = http.raw_body or http.body.encode() or None
        call = read_call(headers, body, self._options)
        record.fields.update(customer_id=call.customer_id, model=call.model)
        if call.customer_id is None:
            if call.body_cut or self._options.require_customer:
                missing = refusals.missing_customer(
                    body_cut=call.body_cut, headers=self._options.customer_headers
                )
                return _denied(missing, record)
            record.fields["outcome"] = "unmetered"
            return pb.CheckResponse(
                status=status_pb2.Status(code=code_pb2.OK),
                ok_response=pb.OkHttpResponse(headers_to_remove=list(BUDGETD_HEADERS)),
            )
        _check_deadline(context)
        try:
            with call_deadline(context.time_remaining()):
                estimate = call_estimate(call, self._options, call.customer_id)
                decision = self._spend.authorize(estimate)
        except BudgetdError as error:
            refusal = refusals.for_error(error)
            if refusal is None:
                raise
            return _denied(refusal, record)
        DECISIONS.labels(decision.denial_reason.name if decision.denial_reason else "ALLOWED").inc()
        if not decision.allowed:
            return _denied(refusals.for_decision(decision), record)
        assert decision.reservation_id is not None
        record.fields.update(outcome="allowed", reservation_id=decision.reservation_id)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            # Envoy has already failed the request: the call will not happen, so give the
            # budget back now rather than when the hold expires.
            self._spend.release(decision.reservation_id)
            raise Unavailable("the check's deadline passed; reservation released")
        added, removed = admitted_headers(decision)
        metadata = struct_pb2.Struct()
        metadata.update(decision_metadata(decision, call.customer_id, call.model))
        return pb.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=pb.OkHttpResponse(
                headers=set_headers(added.items()), headers_to_remove=removed
            ),
            dynamic_metadata=metadata,
        )


class AsyncAuthorizationServicer(AuthorizationServicer):
    """``Check`` as an asyncio handler, for the server: its domain work runs through the store's
    ``Database.submit_async`` (on SQLite the writer thread), like budgetd.v1's Authorize,
    instead of taking a thread of the server's pool and then waiting its turn on the writer.
    """

    def __init__(self, spend: SpendService, options: EnvoyOptions, submit: Submit) -> None:
        super().__init__(spend, options)
        self._submit = submit

    async def Check(  # type: ignore[override]
        self, request: pb.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CheckResponse:
        """Admit (reserving the estimate) or refuse one HTTP request."""
        record = CallRecord(METHOD)
        # The customer is known only once the headers are read, there: no lane key (PostgreSQL
        # then runs it in a transaction of its own, as before).
        return await answered_async(
            record, context, self._submit(self._check, request, context, record)
        )


def _denied(refusal: refusals.Refusal, record: CallRecord) -> pb.CheckResponse:
    record.fields.update(outcome="denied", denial=refusal.code, http_status=refusal.http_status)
    return pb.CheckResponse(
        status=status_pb2.Status(code=refusal.rpc_code, message=refusal.message),
        denied_response=pb.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=refusal.http_status),
            headers=set_headers(refusal.headers()),
            body=refusal.body().decode(),
        ),
    )


def _check_deadline(context: grpc.ServicerContext) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining < _MIN_TIME_LEFT_S:
        # Reserving now would hold budget for a call Envoy is about to fail anyway.
        raise Unavailable("the check's deadline passed before budgetd could answer")
