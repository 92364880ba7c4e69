"""The benchmark scenarios. Each takes (scratch dir, runs, seconds) and returns Markdown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
from grpc_health.v1 import health_pb2

from bench.load import h2load_grpc, python_grpc
from bench.stats import Summary, repeat
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.support.client import Stubs
from tests.support.postgres import ADMIN_URL, temporary_database
from tests.support.processes import BudgetdProcess, run_migrate

CONCURRENCY = (1, 16, 64)
AUTHORIZE = spend_pb.AuthorizeRequest(
    customer_id="bench", model="gpt-4o-mini", input_tokens=100, max_output_tokens=100
)


def postgres_available() -> bool:
    """Whether the local PostgreSQL answers."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    """A fresh, migrated database URL of the backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        for suffix in ("", "-wal", "-shm"):
            (tmp / f"bench.db{suffix}").unlink(missing_ok=True)
        return
    with temporary_database() as url:
        run_migrate(url)
        yield url


@contextmanager
def budgetd(url: str, tmp: Path, replicas: int = 1, **env: str) -> Iterator[list[BudgetdProcess]]:
    """Running budgetd processes on one database."""
    with ExitStack() as stack:
        processes = []
        for i in range(replicas):
            process = BudgetdProcess(url, tmp / f"budgetd-{i}.log", **env).start()
            stack.callback(process.stop)
            processes.append(process)
        yield processes


def backends() -> list[str]:
    """SQLite, and PostgreSQL when one answers."""
    return ["sqlite", "postgres"] if postgres_available() else ["sqlite"]


def _row(label: str, c: int, s: Summary, base: Summary | None) -> str:
    ratio = f"{s.rps.median / base.rps.median:.2f}x" if base else "1.00x"
    return (
        f"| {label} | {c} | {s.rps.show()} | {ratio} | {s.p50_ms.show(2)} | "
        f"{s.p99_ms.show(2)} | {s.client_cpu.show(2)} | {s.errors} |"
    )


def transport(tmp: Path, runs: int, seconds: float) -> str:
    """Authorize and RecordSpend against grpc.health.v1 Check on the same server and client."""
    out = [
        "## Authorize and RecordSpend vs the transport's own limit\n",
        "One budgetd, one customer (every call contends for the same row: the worst case), "
        "no budget limit. Authorize and Health/Check from h2load (one connection, c streams); "
        "RecordSpend (a new request_id per call) and its Health/Check baseline from a Python "
        "grpc.aio process. Ratio = calls/s over Health/Check with the same client.\n",
        "| call | c | calls/s | ratio | p50 ms | p99 ms | client CPU (cores) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend in backends():
        with database(backend, tmp) as url, budgetd(url, tmp) as (daemon,):
            stubs = Stubs.connect(daemon.address)
            assert stubs.spend.Authorize(AUTHORIZE).allowed  # the fixed request really works
            stubs.close()
            for c in CONCURRENCY:
                health = repeat(
                    lambda c=c: h2load_grpc(
                        daemon.address,
                        "/grpc.health.v1.Health/Check",
                        health_pb2.HealthCheckRequest(),
                        concurrency=c,
                        seconds=seconds,
                    ),
                    runs,
                )
                authorize = repeat(
                    lambda c=c: h2load_grpc(
                        daemon.address,
                        "/budgetd.v1.SpendService/Authorize",
                        AUTHORIZE,
                        concurrency=c,
                        seconds=seconds,
                    ),
                    runs,
                )
                py_health = repeat(
                    lambda c=c: python_grpc(
                        daemon.address, "health", concurrency=c, seconds=seconds, customer="-"
                    ),
                    runs,
                )
                record = repeat(
                    lambda c=c: python_grpc(
                        daemon.address,
                        "record_spend",
                        concurrency=c,
                        seconds=seconds,
                        customer="bench-spend",
                    ),
                    runs,
                )
                out.append(_row(f"Health/Check (h2load), {backend}", c, health, None))
                out.append(_row(f"**Authorize**, {backend}", c, authorize, health))
                out.append(_row(f"Health/Check (Python), {backend}", c, py_health, None))
                out.append(_row(f"**RecordSpend**, {backend}", c, record, py_health))
    return "\n".join(out) + "\n"


ALL: dict[str, Callable[[Path, int, float], str]] = {"transport": transport}
