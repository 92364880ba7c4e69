"""budgetd and a real Envoy running one of the example configs, and helpers to drive them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.envoy.envoyproc import EnvoyProcess, UpstreamProcess
from tests.support.client import ADMIN, Stubs
from tests.support.processes import BudgetdProcess

MODEL = "gpt-4o-mini"


@dataclass
class Stack:
    """budgetd and an Envoy running one example config in front of the test upstream."""

    budgetd: BudgetdProcess
    envoy: EnvoyProcess
    stubs: Stubs
    http: httpx.Client

    def customer(self, *, max_budget_nanos: int | None = None, blocked: bool = False) -> str:
        """Create a customer with a fresh id (and a budget, if given); returns its id."""
        user_id = f"cust-{uuid.uuid4().hex[:10]}"
        limits = res.BudgetLimits()
        if max_budget_nanos is not None:
            limits.max_budget_nanos = max_budget_nanos
        self.stubs.customers.CreateCustomer(
            customer_pb.CreateCustomerRequest(
                customer=res.Customer(user_id=user_id, blocked=blocked, limits=limits)
            ),
            metadata=ADMIN,
            timeout=10,
        )
        return user_id

    def spend(self, customer_id: str) -> spend_pb.GetSpendResponse:
        """GetSpend of a customer."""
        return self.stubs.spend.GetSpend(
            spend_pb.GetSpendRequest(customer_id=customer_id), metadata=ADMIN, timeout=10
        )

    def ledger(self, customer_id: str) -> list[res.LedgerEntry]:
        """Every ledger entry of a customer."""
        page = self.stubs.spend.ListLedgerEntries(
            spend_pb.ListLedgerEntriesRequest(customer_id=customer_id, page_size=1000),
            metadata=ADMIN,
            timeout=10,
        )
        return list(page.entries)

    def wait_settled(self, customer_id: str, timeout: float = 5.0) -> spend_pb.GetSpendResponse:
        """GetSpend once no reservation is outstanding (holds end just after a response)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.spend(customer_id)
            if reply.reserved_nanos == 0 or time.monotonic() > deadline:
                return reply
            time.sleep(0.05)

    def access_log(self, reservation_id: str, timeout: float = 5.0) -> dict[str, str]:
        """Envoy's access log line of the request that got ``reservation_id``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.envoy.log_path.read_text().splitlines():
                if line.startswith("{") and reservation_id in line:
                    return dict(json.loads(line))
            time.sleep(0.1)
        raise AssertionError(f"no access log line for {reservation_id}")


@contextmanager
def running_stack(
    config: str,
    workdir: Path,
    upstream: UpstreamProcess,
    database_url: str | None = None,
    budgetd_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """budgetd (SQLite in ``workdir`` unless ``database_url``; ``BUDGETD_*`` variables from
    ``budgetd_env``) and Envoy running ``config``."""
    budgetd = BudgetdProcess(
        database_url or f"sqlite:///{workdir / 'budgetd.db'}",
        workdir / "budgetd.log",
        **(budgetd_env or {}),
    )
    envoy = EnvoyProcess(
        config,
        workdir,
        BUDGETD_HOST="127.0.0.1",
        UPSTREAM_HOST="127.0.0.1",
        UPSTREAM_PORT=upstream.port,
    )
    stubs: Stubs | None = None
    try:
        budgetd.start()
        envoy.values["BUDGETD_PORT"] = budgetd.port
        envoy.start()
        stubs = Stubs.connect(budgetd.address)
        with httpx.Client(base_url=envoy.url, timeout=15) as http:
            yield Stack(budgetd, envoy, stubs, http)
    finally:
        if stubs is not None:
            stubs.close()
        envoy.stop()
        budgetd.stop()


def chat(
    model: str = MODEL, content: str = "hi", max_tokens: int | None = 12, **extra: object
) -> dict[str, object]:
    """A chat completion request body."""
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": content}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    return body


def customer_header(customer_id: str) -> dict[str, str]:
    """The header naming the customer, LiteLLM's first choice."""
    return {"x-litellm-customer-id": customer_id}
