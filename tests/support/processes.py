"""Real child processes for integration tests: budgetd and HTTP services.

Each is started like an operator would, waited for until it answers its health check, and
stopped with SIGTERM as in production (``kill`` is the crash).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

ADMIN_TOKEN = "test-admin-token"


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChildProcess:
    """A child process with its output in a log file."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: dict[str, str]) -> None:
        """Start the process, appending its output to the log."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready`` until it is true; fail early if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_path.read_text()}")
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} not ready in {timeout}s:\n{self.log_path.read_text()}")

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


class BudgetdProcess(ChildProcess):
    """``budgetd serve`` on a free port, with the test admin token."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        credentials: grpc.ChannelCredentials | None = None,
        **env: str,
    ) -> None:
        super().__init__("budgetd", log_path)
        self.database_url = database_url
        self.extra_env = env
        # Channel credentials for a daemon serving TLS (BUDGETD_TLS_* in env); None: plaintext.
        self.credentials = credentials
        self.port = 0

    @property
    def address(self) -> str:
        """host:port of the gRPC listener."""
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.Channel:
        """A new channel to the daemon, over TLS when it was given credentials."""
        if self.credentials is None:
            return grpc.insecure_channel(self.address)
        return grpc.secure_channel(self.address, self.credentials)

    def start(self, timeout: float = 20.0, *, port: int | None = None) -> BudgetdProcess:
        """Start the daemon (on ``port``: the old one to restart it) and wait until SERVING."""
        self.port = port or free_port()
        env = {
            **os.environ,
            "BUDGETD_DATABASE_URL": self.database_url,
            "BUDGETD_GRPC_ADDR": self.address,
            "BUDGETD_METRICS_ADDR": "",
            "BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN,
            **self.extra_env,
        }
        self.spawn([sys.executable, "-m", "budgetd", "serve"], env)
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            def serving() -> bool:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                except grpc.RpcError:
                    return False
                return reply.status == health_pb2.HealthCheckResponse.SERVING

            self.wait_until(serving, timeout)
        return self


class ServiceProcess(ChildProcess):
    """A child process serving HTTP (the shim, the fake upstream)."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_path: Path, port: int = 0
    ) -> None:
        super().__init__(name, log_path)
        self.port = port
        self.argv = argv
        self.env = env

    def start(self, health_url: str, timeout: float = 20.0) -> ServiceProcess:
        """Start and poll ``health_url`` until it answers 200."""
        self.spawn(self.argv, self.env)
        with httpx.Client(timeout=0.5) as client:

            def healthy() -> bool:
                try:
                    return client.get(health_url).status_code == 200
                except httpx.HTTPError:
                    return False

            self.wait_until(healthy, timeout)
        return self


def run_migrate(database_url: str) -> None:
    """``budgetd migrate`` against a database, as an operator would run it."""
    subprocess.run(
        [sys.executable, "-m", "budgetd", "migrate"],
        env={**os.environ, "BUDGETD_DATABASE_URL": database_url},
        check=True,
        capture_output=True,
    )
