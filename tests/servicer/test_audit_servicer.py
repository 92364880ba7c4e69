"""AuditService and the actor of management RPCs, in-process (grpc_testing).

The actor is the fingerprint of the admin token presented; a caller holding the admin token may
name its own caller in ``x-budgetd-actor`` (the shim does); anyone else's claim is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import grpc_testing  # type: ignore[import-untyped]
import pytest
from google.protobuf.message import Message

from budgetd.api.auth import AdminAuth
from budgetd.api.server import AUDIT, BUDGETS, CUSTOMERS, registrations
from budgetd.app import Budgetd
from budgetd.clock import ManualClock
from budgetd.domain.actors import fingerprint
from budgetd.domain.audit import AuditService
from budgetd.domain.budgets import BudgetService
from budgetd.domain.customers import CustomerService
from budgetd.domain.rate_limits import RateLimitService
from budgetd.domain.spend import SpendService
from budgetd.pricing import PriceTable
from budgetd.store import migrate
from budgetd.store.database import Database
from budgetd.v1 import audit_service_pb2 as audit_pb
from budgetd.v1 import budget_service_pb2 as budget_pb
from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res

TOKEN = "s3cret-admin-token"
ADMIN = (("authorization", f"Bearer {TOKEN}"),)
TOKEN_FP = fingerprint(TOKEN, "token")
KEY_FP = fingerprint("sk-the-shim-callers-key", "key")
METHODS = {m.name: m for service in (CUSTOMERS, BUDGETS, AUDIT) for m in service.methods}


@pytest.fixture
def app(sqlite_url: str, clock: ManualClock) -> Iterator[Budgetd]:
    db = Database.connect(sqlite_url, pool_size=4)
    migrate.upgrade(db)
    spend = SpendService(db, PriceTable(), clock)
    yield Budgetd(
        db=db,
        customers=CustomerService(db, clock),
        budgets=BudgetService(db, clock),
        spend=spend,
        rate_limits=RateLimitService(db, clock, spend),
        audit=AuditService(db),
    )
    db.dispose()


def server(app: Budgetd, token: str | None) -> grpc_testing.Server:
    return grpc_testing.server_from_dictionary(
        {reg.descriptor: reg.servicer for reg in registrations(app, AdminAuth(token))},
        grpc_testing.strict_real_time(),
    )


def call(
    srv: grpc_testing.Server, method: str, request: Message, metadata: Any = ADMIN
) -> tuple[Any, grpc.StatusCode, str]:
    rpc = srv.invoke_unary_unary(METHODS[method], metadata, request, None)
    response, _trailing, code, details = rpc.termination()
    return response, code, details or ""


def entries(srv: grpc_testing.Server, **filters: Any) -> list[audit_pb.AuditEntry]:
    response, code, details = call(
        srv, "ListAuditEntries", audit_pb.ListAuditEntriesRequest(page_size=1000, **filters)
    )
    assert code is grpc.StatusCode.OK, details
    return list(response.audit_entries)


def test_the_actor_is_the_admin_tokens_fingerprint(app: Budgetd) -> None:
    srv = server(app, TOKEN)
    created = customer_pb.CreateCustomerRequest(customer=res.Customer(user_id="alice"))
    assert call(srv, "CreateCustomer", created)[1] is grpc.StatusCode.OK
    (entry,) = entries(srv)
    assert (entry.actor, entry.via, entry.action) == (TOKEN_FP, "", "customer.create")
    assert (entry.target_type, entry.target_id) == ("customer", "alice")
    assert entry.before_json == ""
    assert json.loads(entry.after_json)["blocked"] is False
    assert entry.create_time.ToMicroseconds() > 0
    assert TOKEN not in str(entry)


def test_a_caller_holding_the_admin_token_may_name_its_caller(app: Budgetd) -> None:
    srv = server(app, TOKEN)
    forwarded = (*ADMIN, ("x-budgetd-actor", KEY_FP))
    tier = budget_pb.CreateBudgetRequest(budget=res.Budget(budget_id="gold"))
    assert call(srv, "CreateBudget", tier, forwarded)[1] is grpc.StatusCode.OK
    block = customer_pb.CreateCustomerRequest(customer=res.Customer(user_id="bob"))
    assert call(srv, "CreateCustomer", block, forwarded)[1] is grpc.StatusCode.OK
    blocked = customer_pb.BlockCustomersRequest(user_ids=["bob"])
    assert call(srv, "BlockCustomers", blocked, forwarded)[1] is grpc.StatusCode.OK
    recorded = entries(srv)
    assert [(e.actor, e.via) for e in recorded] == [(KEY_FP, TOKEN_FP)] * 3
    assert [e.action for e in entries(srv, target_type="customer")] == [
        "customer.block",
        "customer.create",
    ]


def test_a_claim_that_is_not_a_fingerprint_is_refused_and_changes_nothing(app: Budgetd) -> None:
    srv = server(app, TOKEN)
    request = customer_pb.CreateCustomerRequest(customer=res.Customer(user_id="carol"))
    for claim in ("sk-a-raw-secret-key", "key:XYZ", "key:0123456789abcdef0"):
        _, code, details = call(
            srv, "CreateCustomer", request, (*ADMIN, ("x-budgetd-actor", claim))
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("x-budgetd-actor: ")
        assert claim not in details
    assert entries(srv) == []
    assert call(srv, "GetCustomer", customer_pb.GetCustomerRequest(user_id="carol"))[1] is (
        grpc.StatusCode.NOT_FOUND
    )


def test_without_an_admin_token_claims_are_ignored(app: Budgetd) -> None:
    srv = server(app, None)
    claim = (("x-budgetd-actor", KEY_FP),)
    request = customer_pb.CreateCustomerRequest(customer=res.Customer(user_id="dave"))
    assert call(srv, "CreateCustomer", request, claim)[1] is grpc.StatusCode.OK
    other = customer_pb.CreateCustomerRequest(customer=res.Customer(user_id="erin"))
    assert call(srv, "CreateCustomer", other, (("authorization", "Bearer anything"),))[1] is (
        grpc.StatusCode.OK
    )
    recorded = {e.target_id: (e.actor, e.via) for e in entries(srv)}
    assert recorded == {
        "dave": ("anonymous", ""),
        "erin": (fingerprint("anything", "token"), ""),
    }


def test_the_trail_needs_the_admin_token(app: Budgetd) -> None:
    srv = server(app, TOKEN)
    request = audit_pb.ListAuditEntriesRequest()
    for metadata in ((), (("authorization", "Bearer guess-42"),), (("x-budgetd-actor", KEY_FP),)):
        _, code, details = call(srv, "ListAuditEntries", request, metadata)
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert "guess-42" not in details


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"target_type": "tier"}, "target_type"),
        ({"action": "customer.explode"}, "action"),
        ({"page_size": 5000}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
    ],
)
def test_bad_filters_are_invalid_arguments(
    app: Budgetd, request_fields: dict[str, Any], field: str
) -> None:
    srv = server(app, TOKEN)
    _, code, details = call(
        srv, "ListAuditEntries", audit_pb.ListAuditEntriesRequest(**request_fields)
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"{field}: ")


def test_pages_follow_aip_158(app: Budgetd) -> None:
    srv = server(app, TOKEN)
    for n in range(5):
        request = customer_pb.CreateCustomerRequest(customer=res.Customer(user_id=f"p{n}"))
        assert call(srv, "CreateCustomer", request)[1] is grpc.StatusCode.OK
    seen: list[str] = []
    token = ""
    while True:
        response, code, _ = call(
            srv, "ListAuditEntries", audit_pb.ListAuditEntriesRequest(page_size=2, page_token=token)
        )
        assert code is grpc.StatusCode.OK
        seen.extend(e.target_id for e in response.audit_entries)
        token = response.next_page_token
        if not token:
            break
    assert seen == ["p4", "p3", "p2", "p1", "p0"]
