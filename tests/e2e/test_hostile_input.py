"""Hostile input through the shim: odd ids are stored verbatim or refused with a clear 4xx, never
executed and never a crash; client keys never get past an admin route.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.e2e.conftest import CLIENT_KEY, MASTER_KEY, Stack, assert_openai_error

pytestmark = pytest.mark.e2e

# Stored and read back exactly as sent.
VERBATIM = [
    'it\'s "quoted" `back` \\slash\\',
    "'; DROP TABLE customers;--",
    "Robert'); DELETE FROM ledger_entries WHERE '1'='1",
    "1 OR 1=1 /* */ UNION SELECT * FROM budgets",
    "%s %d %n {0} ${HOME} $(whoami)",
    "../../etc/passwd?x=1&y=2#frag",
    "<script>alert('x')</script>",
    "ünïcødé 客户 Ωμέγα 🚀👩‍👩‍👧",
    "\u202eright-to-left\u200b zero-width",
    " leading and trailing spaces ",
]
# Refused with a 4xx that says why.
CONTROL = ["nul\x00byte", "new\nline", "tab\there", "esc\x1b[31mred", "del\x7f", "c1\x85next"]


def unique_id(base: str) -> str:
    return f"{base}·{uuid.uuid4().hex[:8]}"


def chat(client: httpx.Client, user: str, **extra: object) -> httpx.Response:
    body = {
        "model": "house-model",
        "user": user,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return client.post("/chat/completions", json={**body, **extra})


@pytest.mark.parametrize("base", VERBATIM)
def test_odd_customer_ids_are_stored_and_read_back_verbatim(
    client: httpx.Client, base: str
) -> None:
    user_id = unique_id(base)
    created = client.post(
        "/customer/new", json={"user_id": user_id, "alias": base, "max_budget": 1}
    )
    assert created.status_code == 200, created.text
    assert created.json()["user_id"] == user_id
    info = client.get("/customer/info", params={"end_user_id": user_id})
    assert info.status_code == 200, info.text
    assert (info.json()["user_id"], info.json()["alias"]) == (user_id, base)

    assert chat(client, user_id).status_code == 200
    # The same customer named by header, UTF-8 encoded as HTTP carries it.
    by_header = client.post(
        "/chat/completions",
        headers={"x-litellm-customer-id": user_id.strip().encode()},
        json={"model": "house-model", "max_tokens": 4, "messages": []},
    )
    assert by_header.status_code == 200, by_header.text
    header_id = user_id.strip()
    logs = client.get("/spend/logs", params={"end_user": user_id}).json()
    assert [row["end_user"] for row in logs] == [user_id] * (2 if header_id == user_id else 1)

    listed = [row["user_id"] for row in client.get("/customer/list").json()]
    assert user_id in listed
    for route in ("/customer/block", "/customer/unblock"):
        assert client.post(route, json={"user_ids": [user_id]}).status_code == 200
    audit = client.get("/audit/logs", params={"target_id": user_id}).json()["entries"]
    assert [e["action"] for e in audit] == ["customer.unblock", "customer.block", "customer.create"]
    assert all(e["target_id"] == user_id for e in audit)
    deleted = client.post("/customer/delete", json={"user_ids": [user_id]})
    assert deleted.status_code == 200, deleted.text
    assert_openai_error(client.get("/customer/info", params={"end_user_id": user_id}), 404)


@pytest.mark.parametrize("base", VERBATIM[:4] + VERBATIM[7:8])
def test_odd_tier_ids_are_stored_verbatim(client: httpx.Client, base: str) -> None:
    budget_id = unique_id(base)
    created = client.post("/budget/new", json={"budget_id": budget_id, "max_budget": 3})
    assert created.status_code == 200, created.text
    info = client.post("/budget/info", json={"budgets": [budget_id]})
    assert [row["budget_id"] for row in info.json()] == [budget_id]
    member = unique_id("member")
    joined = client.post("/customer/new", json={"user_id": member, "budget_id": budget_id})
    assert joined.status_code == 200, joined.text
    assert joined.json()["litellm_budget_table"]["budget_id"] == budget_id
    assert client.post("/customer/delete", json={"user_ids": [member]}).status_code == 200
    assert client.post("/budget/delete", json={"id": budget_id}).status_code == 200


@pytest.mark.parametrize("bad", CONTROL)
def test_ids_with_control_characters_are_refused_clearly(client: httpx.Client, bad: str) -> None:
    user_id = unique_id(bad)
    refused = client.post("/customer/new", json={"user_id": user_id})
    error = assert_openai_error(refused, 422)
    assert error["param"] == "user_id"
    assert "control characters" in error["message"]
    assert_openai_error(client.get("/customer/info", params={"end_user_id": user_id}), 422)
    error = assert_openai_error(chat(client, user_id), 422)
    assert error["param"] == "user"
    refused_tier = client.post("/budget/new", json={"budget_id": user_id})
    assert assert_openai_error(refused_tier, 422)["param"] == "budget_id"
    assert user_id not in [row["user_id"] for row in client.get("/customer/list").json()]


@pytest.mark.parametrize(
    ("route", "template", "param", "status"),
    [
        ("/customer/new", '{"user_id": "%s"}', "user_id", 422),
        ("/customer/new", '{"user_id": "ok-%s", "alias": "%s"}', "alias", 422),
        ("/customer/new", '{"user_id": "ok-%s", "metadata": {"k": "%s"}}', "metadata", 400),
        ("/budget/new", '{"budget_id": "%s"}', "budget_id", 422),
        ("/customer/block", '{"user_ids": ["%s"]}', "user_ids[0]", 422),
        (
            "/chat/completions",
            '{"model": "house-model", "user": "%s", "messages": []}',
            "user",
            422,
        ),
    ],
)
def test_a_lone_surrogate_is_refused_not_a_crash(
    client: httpx.Client, route: str, template: str, param: str, status: int
) -> None:
    # JSON may spell a lone surrogate as an escape; no such text can be stored or forwarded.
    body = template.replace("%s", "\\ud800") if template.count("%s") == 1 else None
    if body is None:
        body = template.replace("ok-%s", f"ok-{uuid.uuid4().hex[:8]}").replace("%s", "\\udc00")
    refused = client.post(route, content=body, headers={"content-type": "application/json"})
    error = assert_openai_error(refused, status)
    assert error["param"] == param
    assert "unicode" in error["message"].lower() or "surrogate" in error["message"]


def test_header_ids_must_be_utf8(client: httpx.Client) -> None:
    refused = client.post(
        "/chat/completions",
        headers={"x-litellm-customer-id": b"\xff\xfebad"},
        json={"model": "house-model", "messages": []},
    )
    error = assert_openai_error(refused, 422)
    assert error["param"] == "x-litellm-customer-id"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_absurd_output_limits_are_refused_not_a_crash(client: httpx.Client, field: str) -> None:
    for value in (10**30, 2**63, 1_000_000_001):
        error = assert_openai_error(chat(client, unique_id("absurd"), **{field: value}), 422)
        assert error["param"] == field


def test_overlong_ids_are_refused(client: httpx.Client) -> None:
    long_id = "x" * 257
    assert_openai_error(client.post("/customer/new", json={"user_id": long_id}), 422)
    assert_openai_error(chat(client, long_id), 422)
    assert client.post("/customer/new", json={"user_id": unique_id("y" * 240)}).status_code == 200


# -- keys --------------------------------------------------------------------------------------

MODEL_PATHS = {
    "/chat/completions",
    "/v1/chat/completions",
    "/completions",
    "/v1/completions",
    "/embeddings",
    "/v1/embeddings",
}
OPEN_PATHS = {"/health", "/health/liveness", "/health/liveliness", "/health/readiness", "/metrics"}
ADMIN_PREFIXES = ("/customer/", "/end_user/", "/budget/", "/spend/", "/audit/")


def admin_operations(stack: Stack) -> list[tuple[str, str]]:
    """(method, path) of every admin route the shim documents; fails on an unclassified one."""
    paths = httpx.get(f"{stack.shim_url}/openapi.json", timeout=10).json()["paths"]
    operations = []
    for path, methods in paths.items():
        if path in MODEL_PATHS or path in OPEN_PATHS:
            continue
        assert path.startswith(ADMIN_PREFIXES), f"unclassified route {path}: admin or not?"
        operations.extend((method.upper(), path) for method in methods)
    assert len(operations) >= 20
    return operations


def test_client_keys_never_reach_an_admin_route(stack: Stack) -> None:
    user_id = unique_id("scoped")
    with httpx.Client(base_url=stack.shim_url, timeout=10) as http:
        setup = http.post(
            "/customer/new",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={"user_id": user_id},
        )
        assert setup.status_code == 200
        # Bodies and parameters that the master key would make succeed.
        body = {"user_id": user_id, "user_ids": [user_id], "budget_id": "x", "id": "x"}
        query = {"end_user_id": user_id, "end_user": user_id}
        for method, path in admin_operations(stack):
            for key, status in ((CLIENT_KEY, 403), ("sk-not-a-key", 401), (None, 401)):
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                answer = http.request(
                    method,
                    path,
                    headers=headers,
                    params=query if method == "GET" else None,
                    json=body if method == "POST" else None,
                )
                error = assert_openai_error(answer, status)
                assert error["param"] == "api_key", (method, path)
        # Nothing was changed: the customer is as created, unblocked.
        info = http.get(
            "/customer/info",
            params={"end_user_id": user_id},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        )
        assert info.json()["blocked"] is False
        # The client key does reach the models.
        served = http.post(
            "/chat/completions",
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": "house-model", "user": user_id, "max_tokens": 4, "messages": []},
        )
        assert served.status_code == 200, served.text


def test_no_error_echoes_a_key(stack: Stack) -> None:
    secret = f"sk-guess-{uuid.uuid4().hex}"
    with httpx.Client(base_url=stack.shim_url, timeout=10) as http:
        for headers in (
            {"Authorization": f"Bearer {secret}"},
            {"Authorization": secret},
            {"Authorization": f"Basic {secret}"},
        ):
            for answer in (
                http.get("/customer/list", headers=headers),
                http.post("/chat/completions", headers=headers, json={"model": "house-model"}),
            ):
                assert_openai_error(answer, 401)
                assert secret not in answer.text
                assert secret not in json.dumps(dict(answer.headers))
