"""budgetd.v1.BudgetService over the domain's BudgetService."""

from __future__ import annotations

import grpc

from budgetd.api import convert
from budgetd.api.actor import Actors
from budgetd.domain.budgets import BudgetService
from budgetd.v1 import budget_service_pb2 as pb
from budgetd.v1 import budget_service_pb2_grpc as pb_grpc


class BudgetServicer(pb_grpc.BudgetServiceServicer):
    """Pricing-tier management; every method needs the admin token."""

    def __init__(self, budgets: BudgetService, actors: Actors) -> None:
        self._budgets = budgets
        self._actors = actors

    def CreateBudget(
        self, request: pb.CreateBudgetRequest, context: grpc.ServicerContext
    ) -> pb.CreateBudgetResponse:
        budget = self._budgets.create(
            request.budget.budget_id,
            convert.limits_from_proto(request.budget.limits),
            request.request_id,
            actor=self._actors.of(context.invocation_metadata()),
        )
        return pb.CreateBudgetResponse(budget=convert.budget_to_proto(budget))

    def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.ServicerContext
    ) -> pb.GetBudgetResponse:
        budget = self._budgets.get(request.budget_id)
        return pb.GetBudgetResponse(budget=convert.budget_to_proto(budget))

    def UpdateBudget(
        self, request: pb.UpdateBudgetRequest, context: grpc.ServicerContext
    ) -> pb.UpdateBudgetResponse:
        patch = convert.limits_patch(request.budget, request.update_mask)
        budget = self._budgets.update(
            request.budget.budget_id, patch, actor=self._actors.of(context.invocation_metadata())
        )
        return pb.UpdateBudgetResponse(budget=convert.budget_to_proto(budget))

    def DeleteBudget(
        self, request: pb.DeleteBudgetRequest, context: grpc.ServicerContext
    ) -> pb.DeleteBudgetResponse:
        budget = self._budgets.delete(
            request.budget_id, actor=self._actors.of(context.invocation_metadata())
        )
        return pb.DeleteBudgetResponse(budget=convert.budget_to_proto(budget))

    def ListBudgets(
        self, request: pb.ListBudgetsRequest, context: grpc.ServicerContext
    ) -> pb.ListBudgetsResponse:
        page = self._budgets.list(request.page_size, request.page_token)
        return pb.ListBudgetsResponse(
            budgets=[convert.budget_to_proto(b) for b in page.items],
            next_page_token=page.next_page_token,
        )
