"""``envoy.service.ext_proc.v3.ExternalProcessor/Process``: Envoy alone gates and meters.

One gRPC stream per HTTP request, so the reservation lives in the stream's state across its
phases:

1. request headers (and body, BUFFERED): ``Authorize``. A refusal ends the call with an
   ``immediate_response`` (429/403/400 and an OpenAI-style JSON error); an admitted call goes
   upstream with ``x-budgetd-reservation-id``. A streamed chat call is asked for a final usage
   chunk (``stream_options.include_usage``) unless the operator turned that off.
2. response headers: an upstream error status releases the hold at once.
3. response body (STREAMED): each chunk is passed on as it comes — budgetd answers CONTINUE
   without holding or changing it — while the JSON answer, or the SSE ``data:`` lines, are
   scanned for ``usage``. At the end of the body, ``RecordSpend`` settles the hold (before the
   last chunk is released, so the charge is durable when the client sees the end).
4. a stream that ends any other way (client gone, Envoy reset, timeout) settles with what was
   seen, or releases the hold when nothing was delivered — see :mod:`budgetd.envoy.settlement`.

The handler is asyncio (one stream lives as long as its HTTP call; a thread per stream would let
a few slow streams exhaust the pool); the blocking domain calls run on the server's thread pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2

from budgetd.api.metrics import DECISIONS
from budgetd.api.status import status_code
from budgetd.domain.records import Decision
from budgetd.domain.spend import SpendReport, SpendService
from budgetd.envoy import refusals
from budgetd.envoy.calls import LlmCall, call_estimate, lower_headers, read_call, with_stream_usage
from budgetd.envoy.headers import (
    BUDGETD_HEADERS,
    admitted_headers,
    decision_metadata,
    header_map_pairs,
    set_headers,
)
from budgetd.envoy.observe import CallRecord
from budgetd.envoy.options import EnvoyOptions
from budgetd.envoy.settlement import Settlement, plan_settlement
from budgetd.envoy.usage import ResponseMeter
from budgetd.errors import BudgetdError
from budgetd.pricing import TokenUsage

log = logging.getLogger("budgetd.envoy")

DESCRIPTOR = pb.DESCRIPTOR.services_by_name["ExternalProcessor"]
# Adds a servicer to a grpc server (the generated function, re-exported for budgetd.api.server).
add_to_server = pb_grpc.add_ExternalProcessorServicer_to_server
METHOD = f"/{DESCRIPTOR.full_name}/Process"
# Dynamic metadata namespace of the reservation, as ext_authz uses its filter name.
METADATA_NAMESPACE = "envoy.filters.http.ext_proc"

T = TypeVar("T")
# Removed from the upstream request: a compressed answer could not be read for its usage.
_ACCEPT_ENCODING = "accept-encoding"


class ExternalProcessorServicer:
    """Envoy's ext_proc over the domain's Authorize, RecordSpend and ReleaseReservation."""

    def __init__(self, spend: SpendService, options: EnvoyOptions, executor: Executor) -> None:
        self._spend = spend
        self._options = options
        self._executor = executor

    async def Process(
        self,
        request_iterator: AsyncIterator[pb.ProcessingRequest],
        context: grpc.aio.ServicerContext[pb.ProcessingRequest, pb.ProcessingResponse],
    ) -> AsyncIterator[pb.ProcessingResponse]:
        """Answer each phase of one HTTP request."""
        record = CallRecord(METHOD)
        exchange = _Exchange(self._spend, self._options, self._executor, record)
        code, detail = grpc.StatusCode.OK, ""
        try:
            async for request in request_iterator:
                yield await exchange.answer(request)
        except BudgetdError as error:
            # Not a refusal (those are immediate responses) but a failure, e.g. the store is
            # unreachable: Envoy fails the call closed (failure_mode_allow: false).
            code, detail = status_code(error), error.message
            context.set_code(code)
            context.set_details(detail)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            log.exception("unhandled error in %s", METHOD)
            code, detail = grpc.StatusCode.INTERNAL, "internal error"
            context.set_code(code)
            context.set_details(detail)
        finally:
            # Not awaited: this stream may be cancelled, and the hold must end regardless. The
            # call is logged once its hold has ended, so the line says how.
            exchange.end_detached(lambda: record.finish(code, detail))


class _Exchange:
    """The state of one HTTP request across its ext_proc phases."""

    def __init__(
        self,
        spend: SpendService,
        options: EnvoyOptions,
        executor: Executor,
        record: CallRecord,
    ) -> None:
        self._spend = spend
        self._options = options
        self._executor = executor
        self._record = record
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._call: LlmCall | None = None
        self._decision: Decision | None = None
        self._status: int | None = None
        self._meter: ResponseMeter | None = None
        # Set once the hold is settled or released (or handed to a thread to be).
        self._closed = False

    async def answer(self, request: pb.ProcessingRequest) -> pb.ProcessingResponse:
        """The response to one phase."""
        phase = request.WhichOneof("request")
        if phase == "request_headers":
            self._headers = lower_headers(header_map_pairs(request.request_headers.headers))
            if request.request_headers.end_of_stream:
                return await self._gate(None, in_body=False)
            # Forged budgetd headers go; the real ones are set once the call is admitted.
            return pb.ProcessingResponse(
                request_headers=pb.HeadersResponse(
                    response=pb.CommonResponse(
                        header_mutation=pb.HeaderMutation(
                            remove_headers=[*BUDGETD_HEADERS, _ACCEPT_ENCODING]
                        )
                    )
                )
            )
        if phase == "request_body":
            self._body += request.request_body.body
            if not request.request_body.end_of_stream:
                # Only with a STREAMED request body: those chunks have gone upstream already,
                # so the gate comes late. Configure BUFFERED (see examples/envoy/ext_proc.yaml).
                return pb.ProcessingResponse(request_body=pb.BodyResponse())
            return await self._gate(bytes(self._body), in_body=True)
        if phase == "response_headers":
            pairs = lower_headers(header_map_pairs(request.response_headers.headers))
            status = pairs.get(":status", "")
            self._status = int(status) if status.isdigit() else 0
            self._meter = ResponseMeter(pairs.get("content-type", ""))
            self._record.fields["status"] = self._status
            if self._status >= 400 or request.response_headers.end_of_stream:
                await self._end()
            return pb.ProcessingResponse(response_headers=pb.HeadersResponse())
        if phase == "response_body":
            if self._meter is not None:
                self._meter.feed(request.response_body.body)
                if request.response_body.end_of_stream:
                    self._meter.finish()
            if request.response_body.end_of_stream:
                await self._end()
            return pb.ProcessingResponse(response_body=pb.BodyResponse())
        if phase == "request_trailers":
            return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
        if phase == "response_trailers":
            if self._meter is not None:
                self._meter.finish()
            await self._end()
            return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())
        # Phases this processor never asks for; an empty answer keeps Envoy going.
        return pb.ProcessingResponse()

    async def _gate(self, body: bytes | None, *, in_body: bool) -> pb.ProcessingResponse:
        options = self._options
        call = read_call(self._headers, body, options)
        self._call = call
        self._record.fields.update(customer_id=call.customer_id, model=call.model)
        if call.customer_id is None:
            if options.require_customer:
                missing = refusals.missing_customer(
                    body_cut=call.body_cut, headers=options.customer_headers
                )
                return self._refuse(missing)
            self._record.fields["outcome"] = "unmetered"
            unmetered = pb.HeaderMutation(remove_headers=list(BUDGETD_HEADERS))
            return _continue(pb.CommonResponse(header_mutation=unmetered), in_body=in_body)
        authorizing = self._start(
            self._spend.authorize, call_estimate(call, options, call.customer_id)
        )
        try:
            decision: Decision = await asyncio.shield(authorizing)
        except asyncio.CancelledError:
            # The stream died while the database decided: a hold taken now would be nobody's.
            authorizing.add_done_callback(self._release_orphan)
            raise
        except BudgetdError as error:
            refusal = refusals.for_error(error)
            if refusal is None:
                raise
            return self._refuse(refusal)
        DECISIONS.labels(decision.denial_reason.name if decision.denial_reason else "ALLOWED").inc()
        if not decision.allowed:
            return self._refuse(refusals.for_decision(decision))
        self._decision = decision
        self._record.fields.update(outcome="allowed", reservation_id=decision.reservation_id)
        added, removed = admitted_headers(decision)
        common = pb.CommonResponse(
            header_mutation=pb.HeaderMutation(
                set_headers=set_headers(added.items(), raw=True),
                remove_headers=[*removed, _ACCEPT_ENCODING],
            )
        )
        if in_body and call.stream and options.stream_include_usage and call.document:
            document = with_stream_usage(call.document)
            if document is not None:
                new_body = json.dumps(document).encode()
                common.body_mutation.body = new_body
                common.header_mutation.set_headers.extend(
                    set_headers([("content-length", str(len(new_body)))], raw=True)
                )
        response = _continue(common, in_body=in_body)
        metadata = decision_metadata(decision, call.customer_id, call.model)
        response.dynamic_metadata.update({METADATA_NAMESPACE: metadata})
        return response

    def _refuse(self, refusal: refusals.Refusal) -> pb.ProcessingResponse:
        self._record.fields.update(
            outcome="denied", denial=refusal.code, http_status=refusal.http_status
        )
        return pb.ProcessingResponse(
            immediate_response=pb.ImmediateResponse(
                status=http_status_pb2.HttpStatus(code=refusal.http_status),
                headers=pb.HeaderMutation(set_headers=set_headers(refusal.headers(), raw=True)),
                body=refusal.body(),
                details=f"budgetd_{refusal.code}",
            )
        )

    def _take_plan(self) -> tuple[str, Settlement] | None:
        """The hold to end and how, at most once per exchange."""
        if self._closed or self._decision is None or self._call is None:
            return None
        self._closed = True
        if self._meter is not None:
            self._meter.finish()  # a last event not followed by a newline still counts
        assert self._decision.reservation_id is not None
        plan = plan_settlement(
            self._call,
            self._decision.held_nanos,
            self._status,
            self._meter,
            self._options.chars_per_token,
            default_model=self._decision.model,
        )
        return self._decision.reservation_id, plan

    def _start(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run blocking domain work on the server's pool."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _release_orphan(self, authorizing: asyncio.Future[Decision]) -> None:
        if authorizing.cancelled() or authorizing.exception() is not None:
            return
        decision = authorizing.result()
        if decision.allowed and decision.reservation_id:
            log.warning(
                "releasing hold %s: its stream ended while it was taken", decision.reservation_id
            )
            try:
                self._executor.submit(self._spend.release, decision.reservation_id)
            except RuntimeError:
                log.warning("could not release hold %s: shutting down", decision.reservation_id)

    async def _end(self) -> None:
        taken = self._take_plan()
        if taken is not None:
            # Shielded: once taken, the plan must run even if this stream is cancelled.
            await asyncio.shield(self._start(self._settle, *taken))

    def end_detached(self, then: Callable[[], None]) -> None:
        """End the hold, if still open, on the pool without waiting; then call ``then``.

        The hold is still open here only when the stream ended before the answer did.
        """
        taken = self._take_plan()
        if taken is None:
            then()
            return
        self._record.fields["ended"] = "early"

        def settle_then() -> None:
            try:
                self._settle(*taken)
            finally:
                then()

        try:
            self._executor.submit(settle_then)
        except RuntimeError:
            # The pool is shut down (server stopping): the hold expires by its TTL.
            log.warning("could not end hold %s: shutting down", taken[0])
            then()

    def _settle(self, reservation_id: str, plan: Settlement) -> None:
        """Charge or release, on a worker thread; any failure falls back to releasing."""
        fields = self._record.fields
        fields["settlement"] = plan.reason
        try:
            if not plan.charge:
                self._spend.release(reservation_id)
                fields["outcome"] = "released"
                return
            charge = self._spend.record_spend(
                SpendReport(
                    request_id=f"envoy-ext-proc-{uuid.uuid4()}",
                    reservation_id=reservation_id,
                    model=plan.model,
                    usage=plan.usage or TokenUsage(),
                )
            )
            fields.update(outcome="charged", charged_nanos=charge.entry.cost_nanos)
            if plan.estimated:
                fields["estimated"] = True
        except Exception:
            log.exception("settling reservation %s failed; releasing it", reservation_id)
            try:
                self._spend.release(reservation_id)
                fields["outcome"] = "released"
            except Exception:
                log.exception("releasing reservation %s failed; it expires by TTL", reservation_id)


def _continue(common: pb.CommonResponse, *, in_body: bool) -> pb.ProcessingResponse:
    if in_body:
        return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))
    return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=common))
