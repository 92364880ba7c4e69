"""budgetd over gRPC: one long-lived ``grpc.aio`` channel, a deadline on every call.

This is the only module that sees gRPC. RPC errors become the shim's errors here, once::

    INVALID_ARGUMENT     -> UnprocessableField (422) naming the field budgetd named
    NOT_FOUND            -> NotFound (404)
    ALREADY_EXISTS       -> InvalidRequest (400)
    FAILED_PRECONDITION  -> InvalidRequest (400)
    UNAVAILABLE, DEADLINE_EXCEEDED -> BudgetdUnavailable (503)
    UNAUTHENTICATED      -> InternalError (500): the shim's BUDGETD_ADMIN_TOKEN or
                            BUDGETD_GATEWAY_TOKEN is wrong
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from budgetd.v1 import audit_service_pb2 as audit_pb
from budgetd.v1 import audit_service_pb2_grpc as audit_grpc
from budgetd.v1 import budget_service_pb2 as budget_pb
from budgetd.v1 import budget_service_pb2_grpc as budget_grpc
from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import customer_service_pb2_grpc as customer_grpc
from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc
from proxy_shim.errors import (
    BudgetdUnavailable,
    InternalError,
    InvalidRequest,
    NotFound,
    ShimError,
    UnprocessableField,
)

T = TypeVar("T")
_MAX_PAGES = 100


def map_rpc_error(error: grpc.RpcError) -> ShimError:
    """The shim error for a failed RPC."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    detail = (error.details() if hasattr(error, "details") else "") or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        # budgetd's InvalidArgument messages are "<field>: <problem>".
        field, sep, _ = detail.partition(": ")
        param = _edge_field(field) if sep and " " not in field else None
        return UnprocessableField(detail, param=param)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(detail)
    if code in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION):
        return InvalidRequest(detail)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return BudgetdUnavailable(f"budgetd is unavailable: {code.name}")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return InternalError(
            "budgetd rejected the shim's token (BUDGETD_ADMIN_TOKEN or BUDGETD_GATEWAY_TOKEN)"
        )
    return InternalError(f"budgetd failed: {code.name}")


def _edge_field(field: str) -> str:
    """budgetd's field path in LiteLLM's vocabulary (``customer.limits.max_budget_nanos``)."""
    name = field.removeprefix("customer.").removeprefix("budget.").removeprefix("limits.")
    return name.replace("_nanos", "")


def channel_credentials(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> grpc.ChannelCredentials | None:
    """TLS credentials toward budgetd (with a client certificate for mTLS); None: plaintext."""
    if ca_file is None:
        if cert_file or key_file:
            raise ValueError("SHIM_BUDGETD_TLS_CERT_FILE/KEY_FILE need SHIM_BUDGETD_TLS_CA_FILE")
        return None
    if (cert_file is None) != (key_file is None):
        raise ValueError("set both SHIM_BUDGETD_TLS_CERT_FILE and SHIM_BUDGETD_TLS_KEY_FILE")
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(),
        private_key=key_file.read_bytes() if key_file else None,
        certificate_chain=cert_file.read_bytes() if cert_file else None,
    )


class BudgetdClient:
    """Typed async calls to budgetd's three services."""

    def __init__(
        self,
        address: str,
        *,
        deadline: float,
        admin_token: str | None,
        gateway_token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        options = [
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # Reconnect within ~2 s of budgetd coming back, however long it was away
            # (gRPC's default backoff grows to 120 s: that long of 503s after a recovery).
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ]
        self._channel = (
            grpc.aio.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(address, options=options)
        )
        self._deadline = deadline
        self._admin = (("authorization", f"Bearer {admin_token}"),) if admin_token else ()
        # Authorize, RecordSpend, ReleaseReservation: budgetd may require the gateway token.
        self._gateway = (("authorization", f"Bearer {gateway_token}"),) if gateway_token else ()
        # The generated stubs are untyped; every method below states its reply type instead.
        self.spend: Any = spend_grpc.SpendServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.customers: Any = customer_grpc.CustomerServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.budgets: Any = budget_grpc.BudgetServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.audit: Any = audit_grpc.AuditServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._health: Any = health_pb2_grpc.HealthStub(self._channel)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    def acting_for(self, actor: str) -> BudgetdClient:
        """This client (same channel) whose management calls name ``actor`` to budgetd.

        ``actor`` is the fingerprint of the key the shim's caller presented; budgetd records it
        in its audit trail (``x-budgetd-actor``), trusting it because the shim holds the admin
        token. Only management calls carry it.
        """
        view = copy.copy(self)
        view._admin = (*self._admin, ("x-budgetd-actor", actor))
        return view

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, admin: bool) -> T:
        try:
            return await method(
                request, timeout=self._deadline, metadata=(self._admin if admin else self._gateway)
            )
        except grpc.RpcError as error:
            raise map_rpc_error(error) from None

    # -- health -------------------------------------------------------------------------

    async def serving(self) -> bool:
        """Whether budgetd answers its health check with SERVING."""
        try:
            reply = await self._health.Check(
                health_pb2.HealthCheckRequest(), timeout=self._deadline
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    # -- spend --------------------------------------------------------------------------

    async def authorize(self, request: spend_pb.AuthorizeRequest) -> spend_pb.AuthorizeResponse:
        """Reserve for a call (a denial is a normal answer)."""
        return await self._call(self.spend.Authorize, request, admin=False)

    async def record_spend(
        self, request: spend_pb.RecordSpendRequest
    ) -> spend_pb.RecordSpendResponse:
        """Charge a finished call; idempotent on request_id."""
        return await self._call(self.spend.RecordSpend, request, admin=False)

    async def release(self, reservation_id: str) -> int:
        """Release a reservation without charging."""
        reply = await self._call(
            self.spend.ReleaseReservation,
            spend_pb.ReleaseReservationRequest(reservation_id=reservation_id),
            admin=False,
        )
        return int(reply.released_nanos)

    async def ledger(self, customer_id: str) -> list[res.LedgerEntry]:
        """Every ledger entry of a customer, newest first."""
        return await self._every_page(
            self.spend.ListLedgerEntries,
            lambda token: spend_pb.ListLedgerEntriesRequest(
                customer_id=customer_id, page_size=1000, page_token=token
            ),
            "entries",
        )

    async def _every_page(
        self, method: Callable[..., Awaitable[Any]], request: Callable[[str], Any], field: str
    ) -> list[Any]:
        """The items of every page of a listing (AIP-158), up to _MAX_PAGES pages."""
        items: list[Any] = []
        token = ""
        for _ in range(_MAX_PAGES):
            page = await self._call(method, request(token), admin=True)
            items.extend(getattr(page, field))
            token = page.next_page_token
            if not token:
                break
        return items

    # -- customers ----------------------------------------------------------------------

    async def create_customer(self, customer: res.Customer, request_id: str) -> res.Customer:
        """Create a customer."""
        reply: customer_pb.CreateCustomerResponse = await self._call(
            self.customers.CreateCustomer,
            customer_pb.CreateCustomerRequest(customer=customer, request_id=request_id),
            admin=True,
        )
        return reply.customer

    async def get_customer(self, user_id: str) -> res.Customer:
        """One customer."""
        reply: customer_pb.GetCustomerResponse = await self._call(
            self.customers.GetCustomer,
            customer_pb.GetCustomerRequest(user_id=user_id),
            admin=True,
        )
        return reply.customer

    async def update_customer(self, customer: res.Customer, paths: list[str]) -> res.Customer:
        """Change exactly the fields named in ``paths``."""
        request = customer_pb.UpdateCustomerRequest(customer=customer)
        request.update_mask.paths.extend(paths)
        reply: customer_pb.UpdateCustomerResponse = await self._call(
            self.customers.UpdateCustomer, request, admin=True
        )
        return reply.customer

    async def delete_customers(self, user_ids: list[str]) -> int:
        """Delete all the named customers, or none."""
        reply = await self._call(
            self.customers.BatchDeleteCustomers,
            customer_pb.BatchDeleteCustomersRequest(user_ids=user_ids),
            admin=True,
        )
        return int(reply.deleted_count)

    async def list_customers(self) -> list[res.Customer]:
        """Every customer, ordered by user_id."""
        return await self._every_page(
            self.customers.ListCustomers,
            lambda token: customer_pb.ListCustomersRequest(page_size=1000, page_token=token),
            "customers",
        )

    async def set_blocked(self, user_ids: list[str], *, blocked: bool) -> list[res.Customer]:
        """Block or unblock all the named customers, or none."""
        if blocked:
            reply = await self._call(
                self.customers.BlockCustomers,
                customer_pb.BlockCustomersRequest(user_ids=user_ids),
                admin=True,
            )
        else:
            reply = await self._call(
                self.customers.UnblockCustomers,
                customer_pb.UnblockCustomersRequest(user_ids=user_ids),
                admin=True,
            )
        return list(reply.customers)

    # -- audit --------------------------------------------------------------------------

    async def audit_entries(
        self, request: audit_pb.ListAuditEntriesRequest
    ) -> audit_pb.ListAuditEntriesResponse:
        """One page of budgetd's audit trail."""
        return await self._call(self.audit.ListAuditEntries, request, admin=True)

    # -- budgets ------------------------------------------------------------------------

    async def create_budget(self, budget: res.Budget, request_id: str) -> res.Budget:
        """Create a pricing tier."""
        reply: budget_pb.CreateBudgetResponse = await self._call(
            self.budgets.CreateBudget,
            budget_pb.CreateBudgetRequest(budget=budget, request_id=request_id),
            admin=True,
        )
        return reply.budget

    async def get_budget(self, budget_id: str) -> res.Budget:
        """One tier."""
        reply: budget_pb.GetBudgetResponse = await self._call(
            self.budgets.GetBudget, budget_pb.GetBudgetRequest(budget_id=budget_id), admin=True
        )
        return reply.budget

    async def update_budget(self, budget: res.Budget, paths: list[str]) -> res.Budget:
        """Change exactly the limits named in ``paths``."""
        request = budget_pb.UpdateBudgetRequest(budget=budget)
        request.update_mask.paths.extend(paths)
        reply: budget_pb.UpdateBudgetResponse = await self._call(
            self.budgets.UpdateBudget, request, admin=True
        )
        return reply.budget

    async def delete_budget(self, budget_id: str) -> res.Budget:
        """Delete a tier nobody is on."""
        reply: budget_pb.DeleteBudgetResponse = await self._call(
            self.budgets.DeleteBudget,
            budget_pb.DeleteBudgetRequest(budget_id=budget_id),
            admin=True,
        )
        return reply.budget

    async def list_budgets(self) -> list[res.Budget]:
        """Every tier, ordered by budget_id."""
        return await self._every_page(
            self.budgets.ListBudgets,
            lambda token: budget_pb.ListBudgetsRequest(page_size=1000, page_token=token),
            "budgets",
        )
