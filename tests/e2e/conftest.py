"""Real processes for end-to-end tests: budgetd, the fake upstream and the shim.

One stack serves the whole session (start-up is the slow part); tests keep out of each other's
way by using their own customer and tier ids.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from budgetd.v1 import spend_service_pb2 as spend_pb
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc
from tests.support.processes import ADMIN_TOKEN, BudgetdProcess, ServiceProcess, free_port

MASTER_KEY = "sk-1234"
CLIENT_KEY = "sk-client-e2e"
# Seconds between the fake upstream's stream chunks: enough to see chunks arrive one by one.
CHUNK_DELAY = 0.03
ANSWER_TOKENS = 24

SHIM_CONFIG = f"""
models:
  azure-gpt-3.5:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: gpt-3.5-turbo
  mistral:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: mistral-small-latest
    max_output_tokens: 8192
    region: eu
  gpt-4o-mini:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: gpt-4o-mini
    region: us
  house-model:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: house-model-v1
    max_output_tokens: 1000
    price:
      input_per_mtok: "1.00"
      output_per_mtok: "2.00"
  broken:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: error-503
    price:
      input_per_mtok: "1.00"
      output_per_mtok: "2.00"
client_keys:
  - {CLIENT_KEY}
"""


@dataclass
class Stack:
    """Addresses of the running stack."""

    shim_url: str
    budgetd_addr: str
    upstream_url: str
    shim_log: Path


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """budgetd (SQLite) + fake upstream + shim, as real processes."""
    root = tmp_path_factory.mktemp("e2e")
    budgetd = BudgetdProcess(f"sqlite:///{root / 'budgetd.db'}", root / "budgetd.log").start()
    upstream_port = free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    upstream = ServiceProcess(
        "fake upstream",
        [
            sys.executable,
            "-m",
            "proxy_shim",
            "fake-upstream",
            "--addr",
            f"127.0.0.1:{upstream_port}",
            "--chunk-delay",
            str(CHUNK_DELAY),
            "--answer-tokens",
            str(ANSWER_TOKENS),
        ],
        dict(os.environ),
        root / "upstream.log",
    )
    shim: ServiceProcess | None = None
    try:
        upstream.start(f"http://127.0.0.1:{upstream_port}/health")
        config = root / "shim.yaml"
        config.write_text(SHIM_CONFIG)
        shim_port = free_port()
        shim_url = f"http://127.0.0.1:{shim_port}"
        env = {
            **os.environ,
            "SHIM_ADDR": f"127.0.0.1:{shim_port}",
            "SHIM_CONFIG": str(config),
            "BUDGETD_ADDR": budgetd.address,
            "BUDGETD_MASTER_KEY": MASTER_KEY,
            "BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN,
            "FAKE_UPSTREAM_URL": upstream_url,
            "SHIM_OUTBOX_PATH": str(root / "shim-outbox.db"),
        }
        shim = ServiceProcess(
            "shim", [sys.executable, "-m", "proxy_shim", "serve"], env, root / "shim.log"
        )
        shim.start(f"{shim_url}/health/readiness")
        yield Stack(shim_url, budgetd.address, upstream_url, root / "shim.log")
    finally:
        if shim is not None:
            shim.stop()
        upstream.stop()
        budgetd.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client of the shim, authenticated with the master key."""
    with httpx.Client(
        base_url=stack.shim_url,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=30.0,
    ) as http:
        yield http


@pytest.fixture
def spend_stub(stack: Stack) -> Iterator[spend_grpc.SpendServiceStub]:
    """budgetd's SpendService, to check what the shim did from budgetd's side."""
    with grpc.insecure_channel(stack.budgetd_addr) as channel:
        yield spend_grpc.SpendServiceStub(channel)


def get_spend(stub: spend_grpc.SpendServiceStub, customer_id: str) -> spend_pb.GetSpendResponse:
    """budgetd's GetSpend with the admin token."""
    return stub.GetSpend(
        spend_pb.GetSpendRequest(customer_id=customer_id),
        metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
        timeout=5,
    )


def unique(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_openai_error(
    response: httpx.Response, status: int, error_type: str | None = None
) -> dict:
    """The response is an OpenAI-shaped error with this status (and type)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"]
    assert error["code"] == str(status)
    if error_type is not None:
        assert error["type"] == error_type, error
    return error
