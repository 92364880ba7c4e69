"""schemathesis against the shim's own OpenAPI schema (``/openapi.json``), on a stack of its own.

With the master key, every operation is fuzzed with schema-valid requests (model calls included:
they reach the fake upstream and are metered): no answer is a 5xx and every answer matches the
schema (errors are OpenAI-shaped, documented as ``4XX``/``5XX``). With a client key, no admin
operation ever succeeds: every one is a 403. Bounded: a few examples per operation and a time
budget for the whole run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.shim_stack import ShimStack, shim_stack

pytestmark = pytest.mark.e2e

MASTER_KEY = "sk-fuzz-master"
CLIENT_KEY = "sk-fuzz-client"
MODELS = ("house-model", "cheap-model")
CONFIG = f"""
models:
  house-model:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: house-model-v1
    max_output_tokens: 1000
    price: {{input_per_mtok: "1.00", output_per_mtok: "2.00"}}
  cheap-model:
    base_url: ${{FAKE_UPSTREAM_URL}}
    upstream_model: gpt-4o-mini
client_keys: [{CLIENT_KEY}]
"""
MODEL_PATHS = {
    "/chat/completions",
    "/v1/chat/completions",
    "/completions",
    "/v1/completions",
    "/embeddings",
    "/v1/embeddings",
}
OPEN_PATHS = {"/health", "/health/liveness", "/health/liveliness", "/health/readiness", "/metrics"}
EXAMPLES = 25
BUDGET_SECONDS = 45.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShimStack]:
    with shim_stack(
        tmp_path_factory.mktemp("fuzz"), config=CONFIG, master_key=MASTER_KEY
    ) as running:
        yield running


def load_schema(stack: ShimStack) -> Any:
    """The shim's schema, with the model field of model calls drawn from the configured models
    (an unknown model is a 404 before anything else is looked at)."""
    raw = httpx.get(f"{stack.shim_url}/openapi.json", timeout=10).json()
    for path in MODEL_PATHS:
        body = raw["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        body["properties"]["model"] = {"enum": list(MODELS)}
    return schemathesis.openapi.from_dict(raw)


def fuzz(
    stack: ShimStack,
    key: str,
    check: Callable[[Any, Any], None],
    only: Callable[[str], bool],
) -> int:
    """Run every selected operation's examples; returns how many requests were made."""
    schema = load_schema(stack)
    calls = 0
    deadline = time.monotonic() + BUDGET_SECONDS
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if not only(operation.path):
                continue
            assert time.monotonic() < deadline, f"time budget spent before {operation.label}"

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def run(case: Any) -> None:
                nonlocal calls
                answer = case.call(
                    base_url=stack.shim_url,
                    session=session,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                )
                calls += 1
                check(case, answer)

            run()
    return calls


def test_master_key_no_5xx_and_every_answer_matches_the_schema(stack: ShimStack) -> None:
    def check(case: Any, answer: Any) -> None:
        assert answer.status_code < 500, (case.operation.label, answer.status_code, answer.text)
        case.validate_response(answer, checks=[not_a_server_error, response_schema_conformance])

    calls = fuzz(stack, MASTER_KEY, check, lambda path: True)
    assert calls >= 300


def test_client_key_never_succeeds_on_an_admin_route(stack: ShimStack) -> None:
    def check(case: Any, answer: Any) -> None:
        assert answer.status_code == 403, (case.operation.label, answer.status_code, answer.text)
        assert answer.json()["error"]["type"] == "permission_error"

    calls = fuzz(stack, CLIENT_KEY, check, lambda path: path not in MODEL_PATHS | OPEN_PATHS)
    assert calls >= 200


def test_the_schema_documents_every_route(stack: ShimStack, tmp_path: Path) -> None:
    paths = httpx.get(f"{stack.shim_url}/openapi.json", timeout=10).json()["paths"]
    assert MODEL_PATHS | OPEN_PATHS | {"/audit/logs", "/spend/logs"} <= set(paths)
    for path in MODEL_PATHS:
        assert paths[path]["post"]["requestBody"]["required"] is True
