"""budgetd unreachable: 503 by default (fail closed); served unmetered with --fail-open."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import MASTER_KEY, SHIM_CONFIG, Stack, assert_openai_error
from tests.support.processes import ServiceProcess, free_port

pytestmark = pytest.mark.e2e

CALL = {"model": "gpt-4o-mini", "user": "someone", "messages": [{"role": "user", "content": "x"}]}


def _shim(stack: Stack, tmp_path: Path, *flags: str) -> ServiceProcess:
    config = tmp_path / "shim.yaml"
    config.write_text(SHIM_CONFIG)
    port = free_port()
    env = {
        **os.environ,
        "SHIM_ADDR": f"127.0.0.1:{port}",
        "SHIM_CONFIG": str(config),
        # Nobody listens here: budgetd is "down".
        "BUDGETD_ADDR": f"127.0.0.1:{free_port()}",
        "BUDGETD_MASTER_KEY": MASTER_KEY,
        "SHIM_BUDGETD_DEADLINE_SECONDS": "0.5",
        "FAKE_UPSTREAM_URL": stack.upstream_url,
        "SHIM_OUTBOX_PATH": str(tmp_path / "shim-outbox.db"),
        "SHIM_OUTBOX_DRAIN_SECONDS": "0.5",
    }
    shim = ServiceProcess(
        "shim",
        [sys.executable, "-m", "proxy_shim", "serve", *flags],
        env,
        tmp_path / "shim.log",
        port=port,
    )
    return shim.start(f"http://127.0.0.1:{port}/health")


@pytest.fixture(params=[(), ("--fail-open",)], ids=["fail-closed", "fail-open"])
def lonely_shim(
    request: pytest.FixtureRequest, stack: Stack, tmp_path: Path
) -> Iterator[tuple[httpx.Client, bool]]:
    shim = _shim(stack, tmp_path, *request.param)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{shim.port}",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=10,
        ) as client:
            yield client, bool(request.param)
    finally:
        shim.stop()


def test_budgetd_down(lonely_shim: tuple[httpx.Client, bool]) -> None:
    client, fail_open = lonely_shim
    response = client.post("/chat/completions", json=CALL)
    if fail_open:
        assert response.status_code == 200, response.text
        assert "x-budgetd-reservation-id" not in response.headers
        assert client.get("/health/readiness").json()["budgetd"] == "unreachable"
    else:
        assert_openai_error(response, 503, "service_unavailable")
        assert client.get("/health/readiness").status_code == 503
    # Admin routes cannot work without budgetd either way.
    assert_openai_error(client.get("/customer/list"), 503)
