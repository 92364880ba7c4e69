"""``/audit/logs`` on the shim: budgetd's audit trail, naming the key each change was made with
by its fingerprint, never the key itself."""

from __future__ import annotations

import hashlib

import grpc
import httpx
import pytest

from budgetd.v1 import audit_service_pb2 as audit_pb
from budgetd.v1 import audit_service_pb2_grpc as audit_grpc
from tests.e2e.conftest import CLIENT_KEY, MASTER_KEY, Stack, assert_openai_error, unique
from tests.support.processes import ADMIN_TOKEN

pytestmark = pytest.mark.e2e


def fingerprint(secret: str, kind: str) -> str:
    return f"{kind}:{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


def test_every_admin_change_through_the_shim_is_in_the_trail(client: httpx.Client) -> None:
    tier, user = unique("audit-tier"), unique("audit-user")
    assert client.post("/budget/new", json={"budget_id": tier, "max_budget": 5}).status_code == 200
    assert client.post("/customer/new", json={"user_id": user, "max_budget": 1}).status_code == 200
    steps = [
        ("/customer/update", {"user_id": user, "alias": "Ada"}),
        ("/customer/update", {"user_id": user, "budget_id": tier}),
        ("/customer/block", {"user_ids": [user]}),
        ("/customer/unblock", {"user_ids": [user]}),
        ("/budget/update", {"budget_id": tier, "max_budget": "7.5"}),
        ("/customer/delete", {"user_ids": [user]}),
        ("/budget/delete", {"id": tier}),
    ]
    for route, body in steps:
        answer = client.post(route, json=body)
        assert answer.status_code == 200, (route, answer.text)

    page = client.get("/audit/logs", params={"target_id": user})
    assert page.status_code == 200, page.text
    entries = page.json()["entries"]
    assert [e["action"] for e in entries] == [
        "customer.delete",
        "customer.unblock",
        "customer.block",
        "customer.change_tier",
        "customer.update",
        "customer.create",
    ]
    actor, via = fingerprint(MASTER_KEY, "key"), fingerprint(ADMIN_TOKEN, "token")
    assert {(e["actor"], e["via"]) for e in entries} == {(actor, via)}
    assert all(e["target_type"] == "customer" for e in entries)
    deleted, _, _, moved, renamed, created = entries
    assert created["before"] is None
    assert created["after"]["limits"]["max_budget_nanos"] == 1_000_000_000
    assert (renamed["before"]["alias"], renamed["after"]["alias"]) == (None, "Ada")
    assert (moved["before"]["budget_id"], moved["after"]["budget_id"]) == (None, tier)
    assert moved["after"]["limits"] is None  # its own budget went with the move
    assert deleted["after"] is None
    assert created["created_at"] <= deleted["created_at"]

    tier_entries = client.get("/audit/logs", params={"target_id": tier, "target_type": "budget"})
    changes = [(e["action"], e["before"], e["after"]) for e in tier_entries.json()["entries"]]
    assert [action for action, _, _ in changes] == [
        "budget.delete",
        "budget.update",
        "budget.create",
    ]
    _, updated_before, updated_after = changes[1]
    assert updated_before["limits"]["max_budget_nanos"] == 5_000_000_000
    assert updated_after["limits"]["max_budget_nanos"] == 7_500_000_000

    assert MASTER_KEY not in page.text and ADMIN_TOKEN not in page.text


def test_filters_and_pages(client: httpx.Client) -> None:
    user = unique("audit-pages")
    client.post("/customer/new", json={"user_id": user})
    for n in range(3):
        client.post("/customer/update", json={"user_id": user, "alias": f"v{n}"})
    seen, token = [], ""
    while True:
        params = {"target_id": user, "action": "customer.update", "page_size": 2}
        if token:
            params["page_token"] = token
        page = client.get("/audit/logs", params=params).json()
        seen.extend(e["after"]["alias"] for e in page["entries"])
        token = page["next_page_token"]
        if not token:
            break
    assert seen == ["v2", "v1", "v0"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"action": "customer.explode"}, "action"),
        ({"target_type": "tier"}, "target_type"),
        ({"page_size": 0}, "page_size"),
        ({"page_token": "garbage"}, "page_token"),
        ({"target_id": "bad\x01id"}, "target_id"),
    ],
)
def test_bad_queries_are_422(client: httpx.Client, params: dict, param: str) -> None:
    error = assert_openai_error(client.get("/audit/logs", params=params), 422)
    assert error["param"] == param


def test_only_the_master_key_reads_the_trail(stack: Stack) -> None:
    with httpx.Client(base_url=stack.shim_url, timeout=10) as http:
        for key, status in ((CLIENT_KEY, 403), ("sk-wrong", 401), (None, 401)):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            assert_openai_error(http.get("/audit/logs", headers=headers), status)


def test_budgetd_serves_the_trail_over_grpc_to_the_admin_token_only(
    client: httpx.Client, stack: Stack
) -> None:
    user = unique("audit-grpc")
    client.post("/customer/new", json={"user_id": user})
    with grpc.insecure_channel(stack.budgetd_addr) as channel:
        stub = audit_grpc.AuditServiceStub(channel)
        request = audit_pb.ListAuditEntriesRequest(target_id=user)
        reply = stub.ListAuditEntries(
            request, metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),), timeout=5
        )
        assert [e.action for e in reply.audit_entries] == ["customer.create"]
        assert reply.audit_entries[0].actor == fingerprint(MASTER_KEY, "key")
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListAuditEntries(request, timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
