"""A stack of its own (budgetd, the fake upstream, the shim) for tests that need chosen settings:
TLS, small limits, a fresh database, or logs that only their own traffic wrote.

The session stack of ``tests/e2e/conftest.py`` serves the ordinary end-to-end tests; this one
starts in about two seconds and stops with SIGTERM, as in production, so its logs are complete
once ``stop`` returns.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from tests.support.certs import make_pki
from tests.support.processes import (
    ADMIN_TOKEN,
    BudgetdProcess,
    ChildProcess,
    ServiceProcess,
    free_port,
)


@dataclass
class ShimStack:
    """A running stack and where its logs are."""

    root: Path
    shim_url: str
    budgetd_addr: str
    upstream_url: str
    ca_file: Path | None  # the CA that signed the shim's certificate, when serving TLS
    processes: list[ChildProcess] = field(default_factory=list)

    @property
    def shim_port(self) -> int:
        """The shim's TCP port."""
        return int(self.shim_url.rpartition(":")[2])

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client should verify the shim with."""
        return self.client_context() if self.ca_file else True

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context trusting the shim's CA."""
        assert self.ca_file is not None, "the shim serves plain HTTP"
        return ssl.create_default_context(cafile=str(self.ca_file))

    def http(self, key: str | None, **kwargs: object) -> httpx.Client:
        """An HTTP client of the shim presenting ``key`` (none when None)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(
            base_url=self.shim_url,
            headers=headers,
            timeout=30.0,
            verify=self.verify,
            **kwargs,  # type: ignore[arg-type]
        )

    def logs(self) -> dict[str, str]:
        """Every process's log so far, by process name."""
        return {p.name: p.log_path.read_text(errors="replace") for p in self.processes}

    def stop(self) -> None:
        """SIGTERM every process, the shim first (idempotent)."""
        for process in reversed(self.processes):
            process.stop()


@contextmanager
def shim_stack(
    root: Path,
    *,
    config: str,
    master_key: str,
    shim_env: dict[str, str] | None = None,
    budgetd_env: dict[str, str] | None = None,
    upstream_args: tuple[str, ...] = (),
    tls: bool = False,
    budgetd_mtls: bool = False,
) -> Iterator[ShimStack]:
    """Start budgetd (SQLite, the test admin token), the fake upstream and the shim.

    ``config`` is the shim's YAML; ``${FAKE_UPSTREAM_URL}`` in it names the fake upstream.
    ``tls``: the shim serves HTTPS. ``budgetd_mtls``: budgetd serves gRPC over TLS and requires
    a client certificate, which the shim presents.
    """
    root.mkdir(parents=True, exist_ok=True)
    pki = make_pki(root / "pki") if tls or budgetd_mtls else None
    budgetd_env = dict(budgetd_env or {})
    shim_env = dict(shim_env or {})
    credentials = None
    if budgetd_mtls:
        assert pki is not None
        budgetd_env |= {
            "BUDGETD_TLS_CERT_FILE": str(pki.server.cert),
            "BUDGETD_TLS_KEY_FILE": str(pki.server.key),
            "BUDGETD_TLS_CLIENT_CA_FILE": str(pki.ca.cert),
        }
        shim_env |= {
            "SHIM_BUDGETD_TLS_CA_FILE": str(pki.ca.cert),
            "SHIM_BUDGETD_TLS_CERT_FILE": str(pki.client.cert),
            "SHIM_BUDGETD_TLS_KEY_FILE": str(pki.client.key),
        }
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.ca.cert_bytes(),
            private_key=pki.client.key_bytes(),
            certificate_chain=pki.client.cert_bytes(),
        )
    budgetd = BudgetdProcess(
        f"sqlite:///{root / 'budgetd.db'}",
        root / "budgetd.log",
        credentials=credentials,
        **budgetd_env,
    )
    upstream_port = free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    upstream = ServiceProcess(
        "upstream",
        [
            sys.executable,
            "-m",
            "proxy_shim",
            "fake-upstream",
            "--addr",
            f"127.0.0.1:{upstream_port}",
            *upstream_args,
        ],
        dict(os.environ),
        root / "upstream.log",
    )
    shim = ChildProcess("shim", root / "shim.log")
    shim_port = free_port()
    scheme = "https" if tls else "http"
    stack = ShimStack(
        root,
        f"{scheme}://127.0.0.1:{shim_port}",
        "",
        upstream_url,
        pki.ca.cert if tls and pki else None,
        [budgetd, upstream, shim],
    )
    try:
        budgetd.start()
        stack.budgetd_addr = budgetd.address
        upstream.start(f"http://127.0.0.1:{upstream_port}/health")
        (root / "shim.yaml").write_text(config)
        env = {
            **os.environ,
            "SHIM_ADDR": f"127.0.0.1:{shim_port}",
            "SHIM_CONFIG": str(root / "shim.yaml"),
            "SHIM_OUTBOX_PATH": str(root / "shim-outbox.db"),
            "BUDGETD_ADDR": budgetd.address,
            "BUDGETD_MASTER_KEY": master_key,
            "BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN,
            "FAKE_UPSTREAM_URL": upstream_url,
            **shim_env,
        }
        if tls and pki:
            env["SHIM_TLS_CERT_FILE"] = str(pki.server.cert)
            env["SHIM_TLS_KEY_FILE"] = str(pki.server.key)
        shim.spawn([sys.executable, "-m", "proxy_shim", "serve"], env)
        with httpx.Client(timeout=0.5, verify=stack.verify) as client:

            def ready() -> bool:
                try:
                    return client.get(f"{stack.shim_url}/health/readiness").status_code == 200
                except httpx.HTTPError:
                    return False

            shim.wait_until(ready, 20.0)
        yield stack
    finally:
        stack.stop()
