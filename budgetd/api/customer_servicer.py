"""budgetd.v1.CustomerService over the domain's CustomerService."""

from __future__ import annotations

import grpc

from budgetd.api import convert
from budgetd.api.actor import Actors
from budgetd.domain.customers import CustomerService
from budgetd.v1 import customer_service_pb2 as pb
from budgetd.v1 import customer_service_pb2_grpc as pb_grpc


class CustomerServicer(pb_grpc.CustomerServiceServicer):
    """Customer management; every method needs the admin token."""

    def __init__(self, customers: CustomerService, actors: Actors) -> None:
        self._customers = customers
        self._actors = actors

    def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: grpc.ServicerContext
    ) -> pb.CreateCustomerResponse:
        customer = self._customers.create(
            convert.new_customer(request.customer),
            request.request_id,
            actor=self._actors.of(context.invocation_metadata()),
        )
        return pb.CreateCustomerResponse(customer=convert.customer_to_proto(customer))

    def GetCustomer(
        self, request: pb.GetCustomerRequest, context: grpc.ServicerContext
    ) -> pb.GetCustomerResponse:
        customer = self._customers.get(request.user_id)
        return pb.GetCustomerResponse(customer=convert.customer_to_proto(customer))

    def UpdateCustomer(
        self, request: pb.UpdateCustomerRequest, context: grpc.ServicerContext
    ) -> pb.UpdateCustomerResponse:
        changes = convert.customer_changes(request.customer, request.update_mask)
        customer = self._customers.update(
            request.customer.user_id, changes, actor=self._actors.of(context.invocation_metadata())
        )
        return pb.UpdateCustomerResponse(customer=convert.customer_to_proto(customer))

    def DeleteCustomer(
        self, request: pb.DeleteCustomerRequest, context: grpc.ServicerContext
    ) -> pb.DeleteCustomerResponse:
        self._customers.delete(
            [request.user_id], actor=self._actors.of(context.invocation_metadata())
        )
        return pb.DeleteCustomerResponse()

    def BatchDeleteCustomers(
        self, request: pb.BatchDeleteCustomersRequest, context: grpc.ServicerContext
    ) -> pb.BatchDeleteCustomersResponse:
        deleted = self._customers.delete(
            list(request.user_ids), actor=self._actors.of(context.invocation_metadata())
        )
        return pb.BatchDeleteCustomersResponse(deleted_count=deleted)

    def ListCustomers(
        self, request: pb.ListCustomersRequest, context: grpc.ServicerContext
    ) -> pb.ListCustomersResponse:
        page = self._customers.list(request.page_size, request.page_token, request.budget_id)
        return pb.ListCustomersResponse(
            customers=[convert.customer_to_proto(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    def BlockCustomers(
        self, request: pb.BlockCustomersRequest, context: grpc.ServicerContext
    ) -> pb.BlockCustomersResponse:
        customers = self._customers.set_blocked(
            list(request.user_ids),
            blocked=True,
            actor=self._actors.of(context.invocation_metadata()),
        )
        return pb.BlockCustomersResponse(
            customers=[convert.customer_to_proto(c) for c in customers]
        )

    def UnblockCustomers(
        self, request: pb.UnblockCustomersRequest, context: grpc.ServicerContext
    ) -> pb.UnblockCustomersResponse:
        customers = self._customers.set_blocked(
            list(request.user_ids),
            blocked=False,
            actor=self._actors.of(context.invocation_metadata()),
        )
        return pb.UnblockCustomersResponse(
            customers=[convert.customer_to_proto(c) for c in customers]
        )
