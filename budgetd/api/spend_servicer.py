"""budgetd.v1.SpendService over the domain's SpendService."""

from __future__ import annotations

import grpc

from budgetd.api import convert
from budgetd.api.metrics import DECISIONS
from budgetd.domain.spend import CallEstimate, SpendReport, SpendService
from budgetd.pricing import TokenUsage
from budgetd.v1 import spend_service_pb2 as pb
from budgetd.v1 import spend_service_pb2_grpc as pb_grpc

ADMIN_METHODS = frozenset({"GetSpend", "ListLedgerEntries"})
# The gateway's per-call methods: the server runs them on the store's runner (budgetd.api.guard).
HOT_METHODS = frozenset({"Authorize", "RecordSpend", "ReleaseReservation"})


def _opt(message: object, name: str) -> int | None:
    return getattr(message, name) if message.HasField(name) else None  # type: ignore[attr-defined]


class SpendServicer(pb_grpc.SpendServiceServicer):
    """Authorize, RecordSpend, ReleaseReservation and spend queries."""

    def __init__(self, spend: SpendService) -> None:
        self._spend = spend

    def Authorize(
        self, request: pb.AuthorizeRequest, context: grpc.ServicerContext
    ) -> pb.AuthorizeResponse:
        decision = self._spend.authorize(
            CallEstimate(
                customer_id=request.customer_id,
                model=request.model,
                input_tokens=_opt(request, "input_tokens"),
                input_characters=_opt(request, "input_characters"),
                max_output_tokens=_opt(request, "max_output_tokens"),
                estimated_cost_nanos=_opt(request, "estimated_cost_nanos"),
                request_id=request.request_id,
                model_region=request.model_region,
            )
        )
        DECISIONS.labels(decision.denial_reason.name if decision.denial_reason else "ALLOWED").inc()
        return convert.decision_to_proto(decision)

    def RecordSpend(
        self, request: pb.RecordSpendRequest, context: grpc.ServicerContext
    ) -> pb.RecordSpendResponse:
        charge = self._spend.record_spend(
            SpendReport(
                request_id=request.request_id,
                customer_id=request.customer_id,
                reservation_id=request.reservation_id,
                model=request.model,
                usage=TokenUsage(
                    input_tokens=request.usage.input_tokens,
                    output_tokens=request.usage.output_tokens,
                    cached_input_tokens=request.usage.cached_input_tokens,
                ),
                cost_nanos=_opt(request, "cost_nanos"),
            )
        )
        return convert.charge_to_proto(charge)

    def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseReservationResponse:
        released = self._spend.release(request.reservation_id)
        return pb.ReleaseReservationResponse(released_nanos=released)

    def GetSpend(
        self, request: pb.GetSpendRequest, context: grpc.ServicerContext
    ) -> pb.GetSpendResponse:
        summary = self._spend.summary(request.customer_id)
        response = pb.GetSpendResponse(
            customer_id=summary.user_id,
            spend_nanos=summary.spend_nanos,
            reserved_nanos=summary.reserved_nanos,
            ledger_entry_count=summary.ledger_entry_count,
        )
        if summary.max_budget_nanos is not None:
            response.max_budget_nanos = summary.max_budget_nanos
        if summary.remaining_nanos is not None:
            response.remaining_nanos = summary.remaining_nanos
        if summary.window_start_us is not None:
            response.window_start_time.FromMicroseconds(summary.window_start_us)
        if summary.window_end_us is not None:
            response.window_end_time.FromMicroseconds(summary.window_end_us)
        return response

    def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListLedgerEntriesResponse:
        page = self._spend.ledger(request.customer_id, request.page_size, request.page_token)
        return pb.ListLedgerEntriesResponse(
            entries=[convert.entry_to_proto(entry) for entry in page.items],
            next_page_token=page.next_page_token,
        )
