"""budgetd's gRPC listener: TLS, mTLS, the gateway token and the message size cap.

Real daemons with throw-away certificates; at the end of each test, budgetd's log must not
contain a token.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from envoy.service.ratelimit.v3 import rls_pb2 as rls_pb
from envoy.service.ratelimit.v3 import rls_pb2_grpc as rls_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.support.certs import Pki, make_pki
from tests.support.client import ADMIN, Stubs
from tests.support.processes import ADMIN_TOKEN, BudgetdProcess, ServiceProcess, free_port

pytestmark = pytest.mark.e2e

GATEWAY_TOKEN = "gw-test-secret-4f1c"
GATEWAY = (("authorization", f"Bearer {GATEWAY_TOKEN}"),)
MAX_MESSAGE_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1, and client certificates."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls(pki: Pki, client: bool = False) -> grpc.ChannelCredentials:
    """Client credentials trusting the test CA, with the client certificate if asked."""
    if not client:
        return grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_bytes(),
        private_key=pki.client.key_bytes(),
        certificate_chain=pki.client.cert_bytes(),
    )


def _assert_no_secret_in(log: Path) -> None:
    text = log.read_text()
    assert '"rpc"' in text  # the calls were logged ...
    for secret in (ADMIN_TOKEN, GATEWAY_TOKEN):  # ... and no token with them
        assert secret not in text


@pytest.fixture
def guarded(sqlite_url: str, tmp_path: Path, pki: Pki) -> Iterator[BudgetdProcess]:
    """budgetd over TLS, with a gateway token and a 64 KiB message cap."""
    process = BudgetdProcess(
        sqlite_url,
        tmp_path / "budgetd.log",
        credentials=_tls(pki),
        BUDGETD_TLS_CERT_FILE=str(pki.server.cert),
        BUDGETD_TLS_KEY_FILE=str(pki.server.key),
        BUDGETD_GATEWAY_TOKEN=GATEWAY_TOKEN,
        BUDGETD_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES),
    ).start()
    try:
        yield process
    finally:
        process.stop()


def _authorize(request_id: str, **fields: object) -> spend_pb.AuthorizeRequest:
    return spend_pb.AuthorizeRequest(
        customer_id="acme", estimated_cost_nanos=1000, request_id=request_id, **fields
    )


def test_tls_serves_and_plaintext_is_refused(guarded: BudgetdProcess) -> None:
    stubs = Stubs.over(guarded.channel())
    assert stubs.spend.Authorize(_authorize("tls"), metadata=GATEWAY, timeout=5).allowed
    stubs.close()
    plain = Stubs.connect(guarded.address)
    with pytest.raises(grpc.RpcError) as refused:
        plain.spend.Authorize(_authorize("plain"), metadata=GATEWAY, timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    plain.close()
    _assert_no_secret_in(guarded.log_path)


def test_the_hot_path_needs_the_gateway_or_admin_token(guarded: BudgetdProcess) -> None:
    stubs = Stubs.over(guarded.channel())
    wrong = (("authorization", "Bearer not-the-token"),)
    bare = (("authorization", GATEWAY_TOKEN),)  # no "Bearer "
    for metadata in ((), wrong, bare):
        with pytest.raises(grpc.RpcError) as refused:
            stubs.spend.Authorize(_authorize("nope"), metadata=metadata, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert GATEWAY_TOKEN not in (refused.value.details() or "")
    decision = stubs.spend.Authorize(_authorize("gw"), metadata=GATEWAY, timeout=5)
    assert decision.allowed
    assert stubs.spend.Authorize(_authorize("admin"), metadata=ADMIN, timeout=5).allowed

    charge = spend_pb.RecordSpendRequest(
        request_id="charge", reservation_id=decision.reservation_id, cost_nanos=500
    )
    with pytest.raises(grpc.RpcError) as refused:
        stubs.spend.RecordSpend(charge, timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stubs.spend.RecordSpend(charge, metadata=GATEWAY, timeout=5).charged_nanos == 500
    release = spend_pb.ReleaseReservationRequest(reservation_id="no-such-reservation")
    with pytest.raises(grpc.RpcError) as refused:
        stubs.spend.ReleaseReservation(release, timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # The gateway token is not an admin token: management stays closed to it.
    with pytest.raises(grpc.RpcError) as refused:
        stubs.customers.GetCustomer(
            customer_pb.GetCustomerRequest(user_id="acme"), metadata=GATEWAY, timeout=5
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Health checks (load balancers, Kubernetes probes) need no token.
    health = health_pb2_grpc.HealthStub(stubs.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stubs.close()
    _assert_no_secret_in(guarded.log_path)


def test_envoy_services_need_the_gateway_token(guarded: BudgetdProcess) -> None:
    with guarded.channel() as channel:
        authz = authz_grpc.AuthorizationStub(channel)
        ratelimit = rls_grpc.RateLimitServiceStub(channel)
        ext_proc = ext_proc_grpc.ExternalProcessorStub(channel)
        calls = [
            lambda metadata: authz.Check(authz_pb.CheckRequest(), metadata=metadata, timeout=5),
            lambda metadata: ratelimit.ShouldRateLimit(
                rls_pb.RateLimitRequest(domain="llm"), metadata=metadata, timeout=5
            ),
            lambda metadata: list(ext_proc.Process(iter(()), metadata=metadata, timeout=5)),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as refused:
                call(())
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            call(GATEWAY)  # answered (what it answers is the Envoy tests' business)
    _assert_no_secret_in(guarded.log_path)


def test_a_message_over_the_cap_is_resource_exhausted(guarded: BudgetdProcess) -> None:
    stubs = Stubs.over(guarded.channel())
    with pytest.raises(grpc.RpcError) as refused:
        stubs.spend.Authorize(
            _authorize("big", model="m" * (MAX_MESSAGE_BYTES + 1)), metadata=GATEWAY, timeout=5
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The connection and the server are fine afterwards.
    assert stubs.spend.Authorize(_authorize("small"), metadata=GATEWAY, timeout=5).allowed
    stubs.close()
    _assert_no_secret_in(guarded.log_path)


def test_mtls_refuses_clients_without_a_certificate_of_the_ca(
    sqlite_url: str, tmp_path: Path, pki: Pki
) -> None:
    process = BudgetdProcess(
        sqlite_url,
        tmp_path / "budgetd.log",
        credentials=_tls(pki, client=True),
        BUDGETD_TLS_CERT_FILE=str(pki.server.cert),
        BUDGETD_TLS_KEY_FILE=str(pki.server.key),
        BUDGETD_TLS_CLIENT_CA_FILE=str(pki.ca.cert),
    ).start()
    try:
        stranger = grpc.ssl_channel_credentials(
            root_certificates=pki.ca.cert_bytes(),
            private_key=pki.stranger.key_bytes(),
            certificate_chain=pki.stranger.cert_bytes(),
        )
        for credentials in (_tls(pki), stranger):
            with grpc.secure_channel(process.address, credentials) as channel:
                stubs = Stubs.over(channel)
                with pytest.raises(grpc.RpcError) as refused:
                    stubs.spend.Authorize(_authorize("no-cert"), timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        stubs = Stubs.over(process.channel())
        assert stubs.spend.Authorize(_authorize("with-cert"), timeout=5).allowed
        stubs.close()
    finally:
        process.stop()
    _assert_no_secret_in(process.log_path)


def test_tls_settings_must_come_in_pairs(sqlite_url: str, tmp_path: Path, pki: Pki) -> None:
    process = BudgetdProcess(
        sqlite_url, tmp_path / "budgetd.log", BUDGETD_TLS_CERT_FILE=str(pki.server.cert)
    )
    with pytest.raises(RuntimeError, match="BUDGETD_TLS_KEY_FILE"):
        process.start(timeout=15)


def test_the_shim_sends_the_gateway_token(sqlite_url: str, tmp_path: Path) -> None:
    budgetd = BudgetdProcess(
        sqlite_url, tmp_path / "budgetd.log", BUDGETD_GATEWAY_TOKEN=GATEWAY_TOKEN
    ).start()
    upstream_port = free_port()
    upstream = ServiceProcess(
        "fake upstream",
        [
            sys.executable,
            "-m",
            "proxy_shim",
            "fake-upstream",
            "--addr",
            f"127.0.0.1:{upstream_port}",
        ],
        dict(os.environ),
        tmp_path / "upstream.log",
    )
    config = tmp_path / "shim.yaml"
    config.write_text(
        "models:\n"
        "  gpt-4o-mini:\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
        "    upstream_model: gpt-4o-mini\n"
    )
    shim_port = free_port()
    shim = ServiceProcess(
        "shim",
        [sys.executable, "-m", "proxy_shim", "serve"],
        {
            **os.environ,
            "SHIM_ADDR": f"127.0.0.1:{shim_port}",
            "SHIM_CONFIG": str(config),
            "SHIM_OUTBOX_PATH": str(tmp_path / "outbox.db"),
            "BUDGETD_ADDR": budgetd.address,
            "BUDGETD_MASTER_KEY": "sk-shim-master",
            "BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN,
            "BUDGETD_GATEWAY_TOKEN": GATEWAY_TOKEN,
        },
        tmp_path / "shim.log",
    )
    try:
        upstream.start(f"http://127.0.0.1:{upstream_port}/health")
        shim.start(f"http://127.0.0.1:{shim_port}/health/readiness")
        reply = httpx.post(
            f"http://127.0.0.1:{shim_port}/chat/completions",
            headers={"Authorization": "Bearer sk-shim-master"},
            json={
                "model": "gpt-4o-mini",
                "user": "shim-customer",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": "hi"}],
            },
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        stubs = Stubs.connect(budgetd.address)
        count, total = stubs.ledger_sum("shim-customer")
        stubs.close()
        assert count == 1 and total > 0
    finally:
        shim.stop()
        upstream.stop()
        budgetd.stop()
    for log in (budgetd.log_path, shim.log_path):
        assert GATEWAY_TOKEN not in log.read_text()
