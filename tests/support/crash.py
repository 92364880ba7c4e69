"""Helpers of the crash tests (``tests/e2e/test_crash_*.py``): a shim of their own, ledger reads.

Each crash test runs a shim (and often a budgetd) of its own, on an outbox file of its own, so
it can kill them without disturbing the session's stack; the fake upstream is shared.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx

from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc
from proxy_shim.fake_upstream import fake_prompt_tokens
from proxy_shim.outbox import Charge, Row, read_rows
from tests.support.processes import ADMIN_TOKEN, ServiceProcess, free_port

MASTER_KEY = "sk-crash"
# The shim config's house-model: $1.00 / $2.00 per million tokens, i.e. 1,000 and 2,000 nanos
# per token, so a call's cost is exact integer arithmetic the tests compute on their own.
MODEL = "house-model"
CONFIG = """
models:
  house-model:
    base_url: ${FAKE_UPSTREAM_URL}
    upstream_model: house-model-v1
    max_output_tokens: 1000
    price:
      input_per_mtok: "1.00"
      output_per_mtok: "2.00"
"""
_ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


def cost_nanos(usage: dict[str, Any]) -> int:
    """What house-model charges for an answer's ``usage``."""
    return int(usage["prompt_tokens"]) * 1_000 + int(usage["completion_tokens"]) * 2_000


def call_body(customer: str, *, stream: bool = False, text: str = "what time is it") -> dict:
    """A chat call of house-model for ``customer``."""
    body: dict[str, Any] = {
        "model": MODEL,
        "user": customer,
        "messages": [{"role": "user", "content": text}],
    }
    if stream:
        body["stream"] = True
    return body


def expected_prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt tokens the fake upstream reports for ``body``."""
    return fake_prompt_tokens("chat", body)


def start_shim(
    upstream_url: str,
    budgetd_addr: str,
    outbox: Path,
    log: Path,
    *flags: str,
    **env: str,
) -> ServiceProcess:
    """A shim of the test's own, on ``outbox``; ready when /health answers."""
    config = log.with_suffix(".yaml")
    config.write_text(CONFIG)
    port = free_port()
    shim = ServiceProcess(
        "shim",
        [sys.executable, "-m", "proxy_shim", "serve", *flags],
        {
            **os.environ,
            "SHIM_ADDR": f"127.0.0.1:{port}",
            "SHIM_CONFIG": str(config),
            "BUDGETD_ADDR": budgetd_addr,
            "BUDGETD_MASTER_KEY": MASTER_KEY,
            "BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN,
            "FAKE_UPSTREAM_URL": upstream_url,
            "SHIM_OUTBOX_PATH": str(outbox),
            "SHIM_BUDGETD_DEADLINE_SECONDS": "1",
            "SHIM_OUTBOX_DRAIN_SECONDS": "1",
            **env,
        },
        log,
        port=port,
    )
    return shim.start(f"http://127.0.0.1:{port}/health")


def shim_client(shim: ServiceProcess, timeout: float = 30.0) -> httpx.Client:
    """An HTTP client of ``shim`` with the master key."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{shim.port}",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=timeout,
    )


def stream_usage(text: str) -> dict[str, Any]:
    """The usage of an SSE answer (its usage chunk); fails if it did not end with [DONE]."""
    events = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", text[-500:]
    usages = [json.loads(e)["usage"] for e in events[:-1] if json.loads(e).get("usage")]
    assert len(usages) == 1, text[-500:]
    return dict(usages[0])


def ledger(addr: str, customer: str) -> list[res.LedgerEntry]:
    """Every ledger entry of ``customer`` (gRPC, admin token)."""
    entries: list[res.LedgerEntry] = []
    token = ""
    with grpc.insecure_channel(addr) as channel:
        stub = spend_grpc.SpendServiceStub(channel)
        while True:
            page = stub.ListLedgerEntries(
                spend_pb.ListLedgerEntriesRequest(
                    customer_id=customer, page_size=1000, page_token=token
                ),
                metadata=_ADMIN,
                timeout=5,
            )
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                return entries


def spend(addr: str, customer: str) -> spend_pb.GetSpendResponse:
    """GetSpend of ``customer`` (gRPC, admin token)."""
    with grpc.insecure_channel(addr) as channel:
        stub = spend_grpc.SpendServiceStub(channel)
        reply: spend_pb.GetSpendResponse = stub.GetSpend(
            spend_pb.GetSpendRequest(customer_id=customer), metadata=_ADMIN, timeout=5
        )
        return reply


def pending(outbox: Path) -> list[Row]:
    """The rows waiting in an outbox file."""
    return read_rows(outbox)


def pending_charges(outbox: Path) -> list[Charge]:
    """The charges waiting in an outbox file (failing if anything else waits there)."""
    items = [row.item for row in read_rows(outbox)]
    assert all(isinstance(item, Charge) for item in items), items
    return [item for item in items if isinstance(item, Charge)]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 50 ms until true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
