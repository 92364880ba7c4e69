"""What the shim serves for the page (no browser needed): the files, their headers, and the
extra keys of ``/customer/info`` the page shows instead of computing them."""

from __future__ import annotations

import httpx
import pytest

from proxy_shim.ui.routes import load_static
from tests.e2e.conftest import Stack, unique

pytestmark = pytest.mark.e2e


def test_ui_redirects_to_the_page_and_sends_strict_headers(stack: Stack) -> None:
    with httpx.Client(base_url=stack.shim_url, follow_redirects=True) as http:
        page = http.get("/ui")
    assert page.status_code == 200
    assert str(page.url).endswith("/ui/")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'src="static/js/main.js"' in page.text


def test_every_shipped_file_is_served_with_its_type(stack: Stack) -> None:
    files = load_static()
    assert {"index.html", "app.css", "favicon.svg", "js/main.js", "js/api.js"} <= set(files)
    with httpx.Client(base_url=stack.shim_url) as http:
        for name, file in files.items():
            reply = http.get(f"/ui/static/{name}")
            assert reply.status_code == 200, name
            assert reply.content == file.body
            assert reply.headers["content-type"] == file.content_type
        module = http.get("/ui/static/js/main.js")
        assert module.headers["content-type"].startswith("text/javascript")
        again = http.get("/ui/static/js/main.js", headers={"If-None-Match": module.headers["etag"]})
        assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/nope.js",
        "/ui/static/../routes.py",
        "/ui/static/%2e%2e/routes.py",
        "/ui/static/..%2f__init__.py",
        "/ui/static/js/",
    ],
)
def test_nothing_else_is_served(stack: Stack, path: str) -> None:
    with httpx.Client(base_url=stack.shim_url) as http:
        reply = http.get(path)
    assert reply.status_code == 404, (path, reply.text)
    assert "import" not in reply.text


def test_static_files_need_no_key_but_the_api_does(stack: Stack) -> None:
    with httpx.Client(base_url=stack.shim_url) as http:
        assert http.get("/ui/").status_code == 200
        assert http.get("/customer/list").status_code == 401


def test_customer_rows_state_usage_and_window(client: httpx.Client) -> None:
    user = unique("ui-usage")
    body = {"user_id": user, "max_budget": 0.001, "soft_budget": 0.00001, "budget_duration": "1d"}
    assert client.post("/customer/new", json=body).status_code == 200
    fresh = client.get("/customer/info", params={"end_user_id": user}).json()
    assert fresh["budget_used_percent"] == 0.0
    assert fresh["soft_budget_exceeded"] is False
    assert fresh["window_end_time"] is None  # the window starts with the first call

    reply = client.post(
        "/chat/completions",
        json={
            "model": "azure-gpt-3.5",
            "user": user,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert reply.status_code == 200, reply.text
    info = client.get("/customer/info", params={"end_user_id": user}).json()
    spend_nanos = round(info["spend"] * 1e9)
    assert info["budget_used_percent"] == round(spend_nanos * 100 / 1_000_000, 2)
    assert info["soft_budget_exceeded"] is True
    assert info["window_start_time"] and info["window_end_time"]
    assert info["window_start_time"] < info["window_end_time"]
    listed = {row["user_id"]: row for row in client.get("/customer/list").json()}
    assert listed[user] == info

    unlimited = unique("ui-unlimited")
    assert client.post("/customer/new", json={"user_id": unlimited}).status_code == 200
    row = client.get("/customer/info", params={"end_user_id": unlimited}).json()
    assert row["budget_used_percent"] is None
    assert row["window_start_time"] is None and row["window_end_time"] is None

    broke = unique("ui-zero")
    zero_budget = {"user_id": broke, "max_budget": "0"}
    assert client.post("/customer/new", json=zero_budget).status_code == 200
    zero = client.get("/customer/info", params={"end_user_id": broke}).json()
    assert zero["budget_used_percent"] == 100.0
