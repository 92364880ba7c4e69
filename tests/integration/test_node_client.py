"""The published contract works outside Python: the Node.js example against a real budgetd.

Skips when Node.js or the example's node_modules (``npm ci`` in examples/node-client) is
missing; under CI (``CI=true``) that fails the run instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from budgetd.v1 import customer_service_pb2, customer_service_pb2_grpc
from tests.support.processes import ADMIN_TOKEN, BudgetdProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "node-client"


def _node() -> str:
    """The node executable, or skip (fail under CI) when the example cannot run."""
    node = shutil.which("node")
    if node is None:
        reason = "node is not on PATH"
    elif not (EXAMPLE / "node_modules").is_dir():
        reason = f"{EXAMPLE / 'node_modules'} is missing (run `npm ci` in examples/node-client)"
    else:
        return node
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)


def test_node_client_authorizes_and_settles(sqlite_url: str, tmp_path: Path) -> None:
    node = _node()
    user_id = "node-client-user"
    budgetd = BudgetdProcess(sqlite_url, tmp_path / "budgetd.log").start()
    try:
        result = subprocess.run(
            [node, str(EXAMPLE / "client.js"), user_id],
            env={
                **os.environ,
                "BUDGETD_ADDR": budgetd.address,
                "BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"client.js failed:\n{result.stderr}"
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 1, result.stdout
        out = json.loads(lines[0])

        authorize = out["authorize"]
        assert authorize["allowed"] is True
        assert authorize["reservation_id"]
        assert int(authorize["held_nanos"]) > 0

        # gpt-4o-mini: 100 in x $0.15/M + 50 out x $0.60/M = 15,000 + 30,000 nano-USD.
        record = out["record_spend"]
        assert record["charged_nanos"] == "45000"
        assert record["entry"]["reservation_id"] == authorize["reservation_id"]
        assert out["spend_nanos"] == "45000"
        assert out["customer"]["user_id"] == user_id
        assert out["customer"]["reserved_nanos"] == "0"

        with grpc.insecure_channel(budgetd.address) as channel:
            stub = customer_service_pb2_grpc.CustomerServiceStub(channel)
            reply = stub.GetCustomer(
                customer_service_pb2.GetCustomerRequest(user_id=user_id),
                metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")],
                timeout=10,
            )
        assert reply.customer.spend_nanos == 45_000
        assert reply.customer.limits.max_budget_nanos == 1_000_000
    finally:
        budgetd.stop()
