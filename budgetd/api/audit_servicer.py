"""budgetd.v1.AuditService over the domain's AuditService."""

from __future__ import annotations

import grpc

from budgetd.api import convert
from budgetd.domain.audit import AuditService
from budgetd.v1 import audit_service_pb2 as pb
from budgetd.v1 import audit_service_pb2_grpc as pb_grpc


class AuditServicer(pb_grpc.AuditServiceServicer):
    """The audit trail; needs the admin token."""

    def __init__(self, audit: AuditService) -> None:
        self._audit = audit

    def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListAuditEntriesResponse:
        page = self._audit.list(
            request.page_size,
            request.page_token,
            target_type=request.target_type,
            target_id=request.target_id,
            action=request.action,
        )
        return pb.ListAuditEntriesResponse(
            audit_entries=[convert.audit_entry_to_proto(e) for e in page.items],
            next_page_token=page.next_page_token,
        )
