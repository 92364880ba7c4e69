"""No key or token ever reaches a log line or an error message.

A stack of its own, with fresh random secrets (the master key, a client key, budgetd's admin
token, the upstream's API key) and DEBUG logging, runs everything a deployment does: admin
changes, metered calls (plain, streamed, refused, failing upstream), wrong and missing keys,
client keys on admin routes, oversized bodies, gRPC calls with a wrong token. Then it stops, and
the logs of all three processes and every answer the clients saw are searched for the secrets.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import customer_service_pb2_grpc as customer_grpc
from tests.support.shim_stack import ShimStack, shim_stack

pytestmark = pytest.mark.e2e

MASTER_KEY = f"sk-master-{secrets.token_hex(12)}"
CLIENT_KEY = f"sk-client-{secrets.token_hex(12)}"
ADMIN_TOKEN = f"admin-{secrets.token_hex(12)}"
UPSTREAM_KEY = f"sk-upstream-{secrets.token_hex(12)}"
WRONG_KEY = f"sk-wrong-{secrets.token_hex(12)}"
WRONG_TOKEN = f"wrong-token-{secrets.token_hex(12)}"
SECRETS = {
    "master key": MASTER_KEY,
    "client key": CLIENT_KEY,
    "admin token": ADMIN_TOKEN,
    "upstream key": UPSTREAM_KEY,
    "a wrong key presented": WRONG_KEY,
    "a wrong token presented": WRONG_TOKEN,
}
CONFIG = f"""
models:
  house-model:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: house-model-v1
    api_key_env: TEST_UPSTREAM_KEY
    max_output_tokens: 1000
    price: {{input_per_mtok: "1.00", output_per_mtok: "2.00"}}
  broken:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: error-503
    api_key_env: TEST_UPSTREAM_KEY
    price: {{input_per_mtok: "1.00", output_per_mtok: "2.00"}}
client_keys: [{CLIENT_KEY}]
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ShimStack]:
    with shim_stack(
        tmp_path,
        config=CONFIG,
        master_key=MASTER_KEY,
        budgetd_env={"BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN, "BUDGETD_LOG_LEVEL": "DEBUG"},
        shim_env={
            "BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN,
            "TEST_UPSTREAM_KEY": UPSTREAM_KEY,
            "SHIM_LOG_LEVEL": "DEBUG",
            "SHIM_MAX_BODY_BYTES": "65536",
        },
    ) as running:
        yield running


def full_run(stack: ShimStack) -> list[httpx.Response]:
    """Everything a deployment does, good and bad; returns every answer."""
    answers: list[httpx.Response] = []
    chat = {
        "model": "house-model",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with stack.http(MASTER_KEY) as admin, stack.http(CLIENT_KEY) as app:
        for route, body in [
            ("/budget/new", {"budget_id": "gold", "max_budget": 5}),
            ("/customer/new", {"user_id": "alice", "budget_id": "gold"}),
            ("/customer/new", {"user_id": "bob", "max_budget": "0.000001"}),
            ("/customer/update", {"user_id": "alice", "alias": "Alice"}),
            ("/budget/update", {"budget_id": "gold", "rpm_limit": 100}),
            ("/customer/block", {"user_ids": ["carol-unknown"]}),  # 404
        ]:
            answers.append(admin.post(route, json=body))
        answers.append(app.post("/chat/completions", json={**chat, "user": "alice"}))
        answers.append(app.post("/v1/chat/completions", json={**chat, "user": "alice"}))
        with app.stream(
            "POST", "/chat/completions", json={**chat, "user": "alice", "stream": True}
        ) as streamed:
            streamed.read()
            answers.append(streamed)
        answers.append(app.post("/completions", json={**chat, "prompt": "x", "user": "alice"}))
        answers.append(app.post("/embeddings", json={"model": "house-model", "input": "x"}))
        answers.append(app.post("/chat/completions", json={**chat, "user": "bob"}))  # 429
        answers.append(app.post("/chat/completions", json={**chat, "model": "broken"}))  # 503
        answers.append(app.post("/chat/completions", json={**chat, "model": "nope"}))  # 404
        answers.append(admin.post("/customer/block", json={"user_ids": ["alice"]}))
        answers.append(app.post("/chat/completions", json={**chat, "user": "alice"}))  # 403
        answers.append(app.post("/chat/completions", content=b"{not json"))  # 400
        big = {**chat, "messages": [{"role": "user", "content": "z" * 70_000}]}
        answers.append(app.post("/chat/completions", json=big))  # 413
        answers.append(app.get("/customer/list"))  # client key on an admin route: 403
        for route in ("/customer/info?end_user_id=alice", "/spend/logs?end_user=alice"):
            answers.append(admin.get(route))
        answers.append(admin.get("/audit/logs"))
        answers.append(admin.get("/metrics"))
        answers.append(admin.post("/customer/delete", json={"user_ids": ["alice", "bob"]}))
        answers.append(admin.post("/budget/delete", json={"id": "gold"}))
    with httpx.Client(base_url=stack.shim_url, timeout=10) as anonymous:
        for headers in (
            {},
            {"Authorization": f"Bearer {WRONG_KEY}"},
            {"Authorization": WRONG_KEY},
            {"Authorization": f"Bearer {ADMIN_TOKEN}"},  # budgetd's token is no shim key
        ):
            answers.append(anonymous.get("/customer/list", headers=headers))
            answers.append(anonymous.post("/chat/completions", headers=headers, json=chat))
    with grpc.insecure_channel(stack.budgetd_addr) as channel:
        stub = customer_grpc.CustomerServiceStub(channel)
        for metadata in ((("authorization", f"Bearer {WRONG_TOKEN}"),), ()):
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetCustomer(customer_pb.GetCustomerRequest(user_id="x"), metadata=metadata)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert WRONG_TOKEN not in (refused.value.details() or "")
    return answers


def test_no_secret_in_any_log_or_answer_of_a_full_run(stack: ShimStack) -> None:
    answers = full_run(stack)
    statuses = sorted({a.status_code for a in answers})
    assert statuses == [200, 400, 401, 403, 404, 413, 429, 503], statuses
    stack.stop()  # SIGTERM: every process flushes its last lines
    logs = stack.logs()
    assert set(logs) == {"budgetd", "upstream", "shim"}
    # The run was really logged: one line per call and per RPC.
    assert logs["shim"].count('"msg": "call"') >= 10, logs["shim"][-2000:]
    assert logs["budgetd"].count('"rpc": ') >= 20
    assert '"level": "debug"' in logs["shim"] + logs["budgetd"]
    for name, text in logs.items():
        for what, secret in SECRETS.items():
            assert secret not in text, f"the {what} is in {name}'s log"
            # Nor its distinctive random half, in case something truncated or re-encoded it.
            assert secret[-24:] not in text, f"part of the {what} is in {name}'s log"
    for answer in answers:
        seen = answer.text + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
        for what, secret in SECRETS.items():
            assert secret[-24:] not in seen, f"the {what} is in an answer of {answer.url}"
