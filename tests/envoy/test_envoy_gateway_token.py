"""A real Envoy presents budgetd's gateway token (``initial_metadata`` on its grpc_service), and
reaches budgetd over mTLS, as examples/envoy/README.md shows.

The example configs with those lines added: budgetd started with ``BUDGETD_GATEWAY_TOKEN``
admits Envoy with the token and refuses the stock config, which Envoy then fails closed.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest

from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res
from tests.envoy.envoyproc import EXAMPLES, EnvoyProcess, UpstreamProcess
from tests.envoy.stack import chat, customer_header
from tests.support.certs import Pki, make_pki
from tests.support.client import ADMIN, Stubs
from tests.support.processes import BudgetdProcess

pytestmark = pytest.mark.e2e

TOKEN = "gw-envoy-test-77aa"
GRPC_SERVICE = "envoy_grpc: {cluster_name: budgetd}"
BUDGETD_CLUSTER_LINE = "connect_timeout: 1s"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


def _insert_after(text: str, marker: str, lines: list[str]) -> str:
    """``lines`` added after the one line containing ``marker``, at its indentation."""
    assert text.count(marker) == 1
    line = next(line for line in text.splitlines() if marker in line)
    indent = line[: len(line) - len(line.lstrip())]
    return text.replace(line, "\n".join([line, *(indent + added for added in lines)]))


def _config(name: str, pki: Pki | None) -> str:
    """The example config sending the gateway token, and reaching budgetd over mTLS if ``pki``."""
    text = _insert_after(
        (EXAMPLES / name).read_text(),
        GRPC_SERVICE,
        [f'initial_metadata: [{{key: authorization, value: "Bearer {TOKEN}"}}]'],
    )
    if pki is None:
        return text
    return _insert_after(
        text,
        BUDGETD_CLUSTER_LINE,
        [
            "transport_socket:",
            "  name: envoy.transport_sockets.tls",
            "  typed_config:",
            f'    "@type": {UPSTREAM_TLS}',
            "    sni: localhost",
            "    common_tls_context:",
            f"      validation_context: {{trusted_ca: {{filename: {pki.ca.cert}}}}}",
            "      tls_certificates:",
            f"        - certificate_chain: {{filename: {pki.client.cert}}}",
            f"          private_key: {{filename: {pki.client.key}}}",
        ],
    )


@pytest.mark.parametrize(
    ("config", "tls"),
    [("ext_authz.yaml", False), ("ext_proc.yaml", False), ("ext_authz.yaml", True)],
)
def test_envoy_presents_the_gateway_token(
    config: str, tls: bool, upstream: UpstreamProcess, tmp_path: Path, envoy_installed: Path
) -> None:
    pki = make_pki(tmp_path / "pki") if tls else None
    env = {"BUDGETD_GATEWAY_TOKEN": TOKEN}
    credentials = None
    if pki is not None:
        env |= {
            "BUDGETD_TLS_CERT_FILE": str(pki.server.cert),
            "BUDGETD_TLS_KEY_FILE": str(pki.server.key),
            "BUDGETD_TLS_CLIENT_CA_FILE": str(pki.ca.cert),
        }
        credentials = grpc.ssl_channel_credentials(
            pki.ca.cert_bytes(), pki.client.key_bytes(), pki.client.cert_bytes()
        )
    budgetd = BudgetdProcess(
        f"sqlite:///{tmp_path / 'budgetd.db'}", tmp_path / "budgetd.log", credentials, **env
    ).start()
    values: dict[str, str | int] = {
        "BUDGETD_HOST": "127.0.0.1",
        "BUDGETD_PORT": budgetd.port,
        "UPSTREAM_HOST": "127.0.0.1",
        "UPSTREAM_PORT": upstream.port,
    }
    (tmp_path / "stock").mkdir()
    envoys = [EnvoyProcess(config, tmp_path, template=_config(config, pki), **values)]
    if pki is None:
        envoys.append(EnvoyProcess(config, tmp_path / "stock", **values))
    stubs = Stubs.over(budgetd.channel())
    try:
        stubs.customers.CreateCustomer(
            customer_pb.CreateCustomerRequest(
                customer=res.Customer(
                    user_id="acme", limits=res.BudgetLimits(max_budget_nanos=10**9)
                )
            ),
            metadata=ADMIN,
            timeout=10,
        )
        answers = []
        for envoy in envoys:
            envoy.start()
            with httpx.Client(base_url=envoy.url, timeout=15) as http:
                answers.append(
                    http.post("/v1/chat/completions", json=chat(), headers=customer_header("acme"))
                )
        assert answers[0].status_code == 200, answers[0].text
        assert stubs.ledger_sum("acme")[0] == (1 if config == "ext_proc.yaml" else 0)
        if pki is None:
            # budgetd answered the stock config UNAUTHENTICATED; Envoy fails the call closed.
            stock = answers[1]
            assert stock.status_code >= 500
            assert "received_headers" not in stock.text
    finally:
        stubs.close()
        for envoy in envoys:
            envoy.stop()
        budgetd.stop()
    log = budgetd.log_path.read_text()
    assert TOKEN not in log
    if pki is None:
        assert '"code": "UNAUTHENTICATED"' in log
