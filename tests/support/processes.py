"""Real budgetd processes for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ADMIN_TOKEN = "test-admin-token"


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BudgetdProcess:
    """``budgetd serve`` in a child process, stopped with SIGTERM like in production."""

    def __init__(self, database_url: str, log_path: Path, **env: str) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.extra_env = env
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port of the gRPC listener."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> BudgetdProcess:
        """Start the daemon and wait until its health check says SERVING."""
        self.port = free_port()
        env = {
            **os.environ,
            "BUDGETD_DATABASE_URL": self.database_url,
            "BUDGETD_GRPC_ADDR": self.address,
            "BUDGETD_METRICS_ADDR": "",
            "BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN,
            **self.extra_env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "budgetd", "serve"], env=env, stdout=log, stderr=log
            )
        self._wait_serving(timeout)
        return self

    def _wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"budgetd exited early:\n{self.log_path.read_text()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"budgetd not serving in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_migrate(database_url: str) -> None:
    """``budgetd migrate`` against a database, as an operator would run it."""
    subprocess.run(
        [sys.executable, "-m", "budgetd", "migrate"],
        env={**os.environ, "BUDGETD_DATABASE_URL": database_url},
        check=True,
        capture_output=True,
    )
