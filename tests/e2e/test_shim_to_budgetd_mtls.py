"""The shim reaches a budgetd that serves gRPC over mTLS, presenting its client certificate."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from budgetd.pricing import PriceTable, TokenUsage
from budgetd.v1 import spend_service_pb2 as spend_pb
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc
from tests.support.certs import make_pki
from tests.support.client import ADMIN
from tests.support.shim_stack import shim_stack

pytestmark = pytest.mark.e2e

CONFIG = """
models:
  gpt-4o-mini:
    base_url: ${FAKE_UPSTREAM_URL}
    upstream_model: gpt-4o-mini
"""


def test_a_call_through_the_shim_is_charged_over_mtls(tmp_path: Path) -> None:
    with shim_stack(tmp_path, config=CONFIG, master_key="sk-mtls", budgetd_mtls=True) as stack:
        with stack.http("sk-mtls") as client:
            answer = client.post(
                "/chat/completions",
                json={
                    "model": "gpt-4o-mini",
                    "user": "over-mtls",
                    "messages": [{"role": "user", "content": "hello"}],
                    "max_tokens": 8,
                },
            )
            assert answer.status_code == 200, answer.text
            usage = answer.json()["usage"]
            info = client.get("/customer/info?end_user_id=over-mtls").json()
        price = PriceTable().get("gpt-4o-mini")
        assert price is not None
        cost = price.cost_nanos(
            TokenUsage(
                input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]
            )
        )
        # budgetd trusts the stack's CA only: a client of another CA is refused.
        other = make_pki(tmp_path / "other-pki")
        stranger = grpc.ssl_channel_credentials(
            root_certificates=(tmp_path / "pki" / "ca.crt").read_bytes(),
            private_key=other.client.key_bytes(),
            certificate_chain=other.client.cert_bytes(),
        )
        with (
            grpc.secure_channel(stack.budgetd_addr, stranger) as channel,
            pytest.raises(grpc.RpcError),
        ):
            spend_grpc.SpendServiceStub(channel).GetSpend(  # type: ignore[no-untyped-call]
                spend_pb.GetSpendRequest(customer_id="over-mtls"), metadata=ADMIN, timeout=5
            )
    assert round(info["spend"] * 1e9) == cost
