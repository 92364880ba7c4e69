"""Envoy fails closed, and fast, when budgetd is down: in both example configs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.envoy.envoyproc import UpstreamProcess
from tests.envoy.stack import chat, running_stack

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("config", ["ext_authz.yaml", "ext_proc.yaml"])
def test_envoy_answers_its_failure_status_quickly_when_budgetd_is_down(
    config: str, upstream: UpstreamProcess, tmp_path: Path, envoy_installed: Path
) -> None:
    with running_stack(config, tmp_path, upstream) as stack:
        customer = stack.customer(max_budget_nanos=1_000_000_000)
        assert stack.http.post("/v1/chat/completions", json=chat(user=customer)).status_code == 200
        stack.budgetd.stop()

        started = time.monotonic()
        reply = stack.http.post("/v1/chat/completions", json=chat(user=customer))
        elapsed = time.monotonic() - started

        # status_on_error in the config; failure_mode_allow: false keeps the call from passing.
        assert reply.status_code == 503
        assert "received_headers" not in reply.text
        assert elapsed < 2.0
