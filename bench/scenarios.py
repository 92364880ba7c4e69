"""The benchmark scenarios. Each takes (scratch dir, runs, seconds) and returns Markdown."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
from grpc_health.v1 import health_pb2
from sqlalchemy import create_engine, text

from bench.load import h2load_grpc, python_grpc, wrk_post
from bench.stats import Summary, repeat
from budgetd.pricing import PriceTable, TokenUsage
from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import resources_pb2 as res
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.support.client import ADMIN, Stubs
from tests.support.postgres import ADMIN_URL, temporary_database
from tests.support.processes import (
    ADMIN_TOKEN,
    BudgetdProcess,
    ServiceProcess,
    free_port,
    run_migrate,
)

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


def _overspend_grpc(addresses: list[str], calls: int, fits: int) -> tuple[int, float]:
    """(admitted, spend / max_budget) for ``calls`` concurrent Authorize over ``addresses``."""
    stubs = [Stubs.connect(a) for a in addresses]
    customer = f"overspend-{uuid.uuid4().hex[:8]}"
    price = PriceTable().get("gpt-4o-mini")
    assert price is not None
    estimate = price.cost_nanos(TokenUsage(input_tokens=1000, output_tokens=200))
    max_budget = fits * estimate
    stubs[0].customers.CreateCustomer(
        customer_pb.CreateCustomerRequest(
            customer=res.Customer(
                user_id=customer, limits=res.BudgetLimits(max_budget_nanos=max_budget)
            )
        ),
        metadata=ADMIN,
    )

    def call(i: int) -> int:
        stub = stubs[i % len(stubs)]
        decision = stub.spend.Authorize(
            spend_pb.AuthorizeRequest(
                customer_id=customer,
                model="gpt-4o-mini",
                input_tokens=1000,
                max_output_tokens=200,
                request_id=f"a-{i}",
            ),
            timeout=60,
        )
        if not decision.allowed:
            return 0
        # The worst case for a budget: every admitted call uses all it was allowed.
        stub.spend.RecordSpend(
            spend_pb.RecordSpendRequest(
                request_id=f"s-{i}",
                reservation_id=decision.reservation_id,
                model="gpt-4o-mini",
                usage=spend_pb.Usage(input_tokens=1000, output_tokens=200),
            ),
            timeout=60,
        )
        return 1

    with ThreadPoolExecutor(max_workers=calls) as pool:
        admitted = sum(pool.map(call, range(calls)))
    spend = (
        stubs[0]
        .spend.GetSpend(spend_pb.GetSpendRequest(customer_id=customer), metadata=ADMIN)
        .spend_nanos
    )
    for stub in stubs:
        stub.close()
    return admitted, spend / max_budget


def overspend(tmp: Path, runs: int, seconds: float) -> str:
    """256 concurrent calls for a customer whose budget fits exactly N, straight over gRPC."""
    calls, fits = 256, 37
    out = [
        "## Overspend\n",
        f"{calls} concurrent Authorize calls (then RecordSpend of the full estimate for each one "
        f"admitted) for one customer whose budget fits exactly N = {fits} estimated calls. "
        "Must be: admitted == N, spend / max_budget <= 1.0. Straight over gRPC; the shim's "
        "figure is in the shim section.\n",
        "| setup | admitted (N = 37) | spend / max_budget |",
        "|---|---|---|",
    ]
    setups = [("sqlite", 1)] + ([("postgres", 1), ("postgres", 2)] if postgres_available() else [])
    for backend, replicas in setups:
        with database(backend, tmp) as url, budgetd(url, tmp, replicas) as daemons:
            results = [
                _overspend_grpc([d.address for d in daemons], calls, fits) for _ in range(runs)
            ]
        admitted = sorted({a for a, _ in results})
        ratio = max(r for _, r in results)
        label = f"{backend}, {replicas} budgetd" + ("s" if replicas > 1 else "")
        out.append(f"| {label} | {', '.join(map(str, admitted))} | {ratio:.4f} (max of {runs}) |")
    return "\n".join(out) + "\n"


GROWTH_SIZES = (10_000, 100_000, 1_000_000)
LEDGER_ROWS = 10_000_000


def _grow(url: str, customers_now: int, customers_target: int, now_us: int) -> None:
    """Bulk-insert customers ``customers_now+1 .. customers_target`` with plain SQL."""
    # A plain engine: the bulk load must not run under budgetd's per-statement timeout.
    engine = create_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            series = "generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g(n)"
        else:
            series = (
                "(WITH RECURSIVE s(n) AS (SELECT :lo UNION ALL SELECT n + 1 FROM s WHERE n < :hi)"
                " SELECT n FROM s) AS g"
            )
        conn.execute(
            text(
                "INSERT INTO customers (user_id, blocked, metadata_json, spend_nanos, "
                "reserved_nanos, open_holds, created_us, updated_us) "
                f"SELECT 'grow-' || n, false, '{{}}', 0, 0, 0, :now, :now FROM {series}"
            ),
            {"lo": customers_now + 1, "hi": customers_target, "now": now_us},
        )
    engine.dispose()


def _fill_ledger(url: str, customers: int, rows: int, now_us: int) -> None:
    """Bulk-insert ``rows`` ledger entries spread over the customers."""
    # A plain engine: the bulk load must not run under budgetd's per-statement timeout.
    engine = create_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            series = "generate_series(1, CAST(:rows AS bigint)) AS g(n)"
        else:
            series = (
                "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :rows)"
                " SELECT n FROM s) AS g"
            )
        conn.execute(
            text(
                "INSERT INTO ledger_entries (customer_pk, user_id, request_id, model, "
                "input_tokens, output_tokens, cached_input_tokens, cost_nanos, "
                "spend_after_nanos, created_us) "
                "SELECT (n % CAST(:customers AS bigint)) + 1, "
                "'grow-' || ((n % CAST(:customers AS bigint)) + 1), "
                "'grow-' || n, 'gpt-4o-mini', 100, 50, 0, 45000, 0, :now "
                f"FROM {series}"
            ),
            {"rows": rows, "customers": customers, "now": now_us},
        )
    engine.dispose()


def growth(tmp: Path, runs: int, seconds: float) -> str:
    """Authorize throughput and GetCustomer latency as customers and the ledger grow."""
    out = [
        "## Growth with data\n",
        f"Customers inserted in bulk; at the largest size a {LEDGER_ROWS:,}-row ledger too. "
        "Authorize (h2load, c = 16) for one existing customer, and GetCustomer — the call "
        "behind the shim's `/customer/info` — (h2load, c = 16). Ratio = calls/s over the "
        "smallest size's.\n",
        "| backend | customers | ledger rows | Authorize calls/s | ratio | GetCustomer p50 ms "
        "| GetCustomer p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    now = int(time.time() * 1_000_000)
    for backend in backends():
        with database(backend, tmp) as url:
            if backend == "sqlite":
                run_migrate(url)
            have = 0
            base: float | None = None
            for size in GROWTH_SIZES:
                _grow(url, have, size, now)
                have = size
                ledger_rows = 0
                if size == GROWTH_SIZES[-1]:
                    _fill_ledger(url, size, LEDGER_ROWS, now)
                    ledger_rows = LEDGER_ROWS
                target = f"grow-{size // 2}"
                with budgetd(url, tmp) as (daemon,):
                    authorize = repeat(
                        lambda d=daemon, t=target: h2load_grpc(
                            d.address,
                            "/budgetd.v1.SpendService/Authorize",
                            spend_pb.AuthorizeRequest(
                                customer_id=t,
                                model="gpt-4o-mini",
                                input_tokens=100,
                                max_output_tokens=100,
                            ),
                            concurrency=16,
                            seconds=seconds,
                        ),
                        runs,
                    )
                    info = repeat(
                        lambda d=daemon, t=target: h2load_grpc(
                            d.address,
                            "/budgetd.v1.CustomerService/GetCustomer",
                            customer_pb.GetCustomerRequest(user_id=t),
                            concurrency=16,
                            seconds=seconds,
                            headers={"authorization": ADMIN[0][1]},
                        ),
                        runs,
                    )
                base = base or authorize.rps.median
                out.append(
                    f"| {backend} | {size:,} | {ledger_rows:,} | {authorize.rps.show()} | "
                    f"{authorize.rps.median / base:.2f}x | {info.p50_ms.show(2)} | "
                    f"{info.p99_ms.show(2)} |"
                )
    return "\n".join(out) + "\n"


MASTER_KEY = "sk-bench"
SHIM_CONFIG = """
models:
  gpt-4o-mini:
    base_url: ${FAKE_UPSTREAM_URL}
    upstream_model: gpt-4o-mini
"""
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello in one short sentence, please."}],
    "max_tokens": 16,
}


@contextmanager
def shim_stack(url: str, tmp: Path) -> Iterator[tuple[BudgetdProcess, ServiceProcess, str]]:
    """budgetd + the fake upstream + the shim; yields (budgetd, shim, upstream base URL)."""
    with ExitStack() as stack:
        (daemon,) = stack.enter_context(budgetd(url, tmp))
        upstream_port = free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
        upstream = ServiceProcess(
            "fake upstream",
            [
                sys.executable,
                "-m",
                "proxy_shim",
                "fake-upstream",
                "--addr",
                f"127.0.0.1:{upstream_port}",
                "--answer-tokens",
                "16",
            ],
            dict(os.environ),
            tmp / "upstream.log",
        ).start(f"http://127.0.0.1:{upstream_port}/health")
        stack.callback(upstream.stop)
        config = tmp / "shim.yaml"
        config.write_text(SHIM_CONFIG)
        shim_port = free_port()
        shim = ServiceProcess(
            "shim",
            [sys.executable, "-m", "proxy_shim", "serve"],
            {
                **os.environ,
                "SHIM_ADDR": f"127.0.0.1:{shim_port}",
                "SHIM_CONFIG": str(config),
                "BUDGETD_ADDR": daemon.address,
                "BUDGETD_MASTER_KEY": MASTER_KEY,
                "BUDGETD_ADMIN_TOKEN": ADMIN_TOKEN,
                "FAKE_UPSTREAM_URL": upstream_url,
            },
            tmp / "shim.log",
            port=shim_port,
        ).start(f"http://127.0.0.1:{shim_port}/health/readiness")
        stack.callback(shim.stop)
        yield daemon, shim, upstream_url


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set size (VmHWM), in MB."""
    return proc_mb(f"/proc/{pid}/status", "VmHWM:")


def pss_mb(pid: int) -> float:
    """A process's proportional set size now: pages shared with others counted in part."""
    return proc_mb(f"/proc/{pid}/smaps_rollup", "Pss:")


def proc_mb(path: str, field: str) -> float:
    """A ``field: <n> kB`` line of a /proc file, in MB."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def _visibility_lag(shim_url: str) -> float:
    """Seconds until a call's spend shows in /customer/info (0.0 when it shows at once)."""
    customer = f"visible-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=shim_url, headers=headers, timeout=10) as client:
        answer = client.post("/chat/completions", json={**CHAT, "user": customer})
        answer.raise_for_status()
        started = time.perf_counter()
        while client.get(f"/customer/info?end_user_id={customer}").json()["spend"] <= 0:
            if time.perf_counter() - started > 30:
                return float("inf")
            time.sleep(0.01)
        return 0.0 if time.perf_counter() - started < 0.01 else time.perf_counter() - started


async def _overspend_http(shim_url: str, calls: int, fits: int) -> tuple[int, float]:
    """(admitted, spend / max_budget) for ``calls`` concurrent chat calls through the shim."""
    customer = f"overspend-{uuid.uuid4().hex[:8]}"
    price = PriceTable().get("gpt-4o-mini")
    assert price is not None
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    limits = httpx.Limits(max_connections=calls)
    async with httpx.AsyncClient(
        base_url=shim_url, headers=headers, timeout=60, limits=limits
    ) as client:
        probe = await client.post("/chat/completions", json={**CHAT, "user": f"probe-{customer}"})
        usage = probe.json()["usage"]
        one_call = price.cost_nanos(
            TokenUsage(
                input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]
            )
        )
        # Exactly ``fits`` calls' actual cost; each call reserves at least that, so at most
        # ``fits`` can be admitted.
        max_budget_usd = str(Decimal(fits * one_call) / 10**9)
        created = await client.post(
            "/customer/new", json={"user_id": customer, "max_budget": max_budget_usd}
        )
        created.raise_for_status()
        answers = await asyncio.gather(
            *(
                client.post("/chat/completions", json={**CHAT, "user": customer})
                for _ in range(calls)
            )
        )
        info = (await client.get(f"/customer/info?end_user_id={customer}")).json()
        budget = info["litellm_budget_table"]["max_budget"]
    admitted = sum(1 for a in answers if a.status_code == 200)
    return admitted, info["spend"] / budget


def shim(tmp: Path, runs: int, seconds: float) -> str:
    """Through the shim vs straight to the fake upstream; memory; spend visibility; overspend."""
    body = json.dumps({**CHAT, "user": "bench-shim"}).encode()
    stream_body = json.dumps({**CHAT, "user": "bench-shim", "stream": True}).encode()
    direct_body = json.dumps(CHAT).encode()
    direct_stream = json.dumps({**CHAT, "stream": True}).encode()
    auth = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    plain = {"Content-Type": "application/json"}
    out = [
        "## The shim's cost\n",
        "budgetd (SQLite), the fake upstream and the shim on the same 2 cores; wrk, 1 thread, "
        "c connections, one customer with no budget limit (every call is authorized, "
        "forwarded and metered). Added latency = through the shim minus direct, at the "
        "median, same c. At c = 1 it is the shim's own cost per call (two budgetd calls, the "
        "outbox fsync, the forward); at c = 16 it also holds the queueing of a saturated "
        "machine (16 / throughput).\n",
        "| path | c | requests/s | p50 ms | p99 ms | added p50 ms | client CPU (cores) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with database("sqlite", tmp) as url, shim_stack(url, tmp) as (daemon, proxy, upstream):
        shim_url = f"http://127.0.0.1:{proxy.port}"
        for c in (1, 16):
            for label, target, payload, headers in (
                ("direct to the fake upstream", f"{upstream}/chat/completions", direct_body, plain),
                ("through the shim", f"{shim_url}/chat/completions", body, auth),
                ("direct, streaming", f"{upstream}/chat/completions", direct_stream, plain),
                ("through the shim, streaming", f"{shim_url}/chat/completions", stream_body, auth),
            ):
                result = repeat(
                    lambda t=target, p=payload, h=headers, c=c: wrk_post(
                        t, p, h, concurrency=c, seconds=seconds
                    ),
                    runs,
                )
                if label.startswith("direct"):
                    base = result
                added = result.p50_ms.median - base.p50_ms.median
                out.append(
                    f"| {label} | {c} | {result.rps.show()} | {result.p50_ms.show(2)} | "
                    f"{result.p99_ms.show(2)} | {added:+.2f} | {result.client_cpu.show(2)} | "
                    f"{result.errors} |"
                )
        lag = _visibility_lag(shim_url)
        admitted, ratio = asyncio.run(_overspend_http(shim_url, 256, 37))
        assert daemon.proc is not None and proxy.proc is not None
        budgetd_rss = peak_rss_mb(daemon.proc.pid)
        shim_rss = peak_rss_mb(proxy.proc.pid)
        budgetd_pss, shim_pss = pss_mb(daemon.proc.pid), pss_mb(proxy.proc.pid)
    out += [
        "",
        f"- Peak RSS (VmHWM) after these runs: budgetd {budgetd_rss:.0f} MB, shim "
        f"{shim_rss:.0f} MB (together {budgetd_rss + shim_rss:.0f} MB). RSS counts the library "
        f"pages both processes share (grpc, Python, OpenSSL) twice; their PSS at the end, which "
        f"splits shared pages: budgetd {budgetd_pss:.0f} MB, shim {shim_pss:.0f} MB (together "
        f"{budgetd_pss + shim_pss:.0f} MB).",
        f"- Spend visible in `/customer/info` {lag:.2f} s after the call returned.",
        f"- Overspend through the shim: 256 concurrent calls (max_tokens 16) for a customer "
        f"whose budget is exactly 37 calls' actual cost: {admitted} admitted (at most 37: "
        f"each call reserves its estimate, which is at least its cost), spend / max_budget = "
        f"{ratio:.4f}.",
        "",
        "LiteLLM 1.110.2 on the same kind of machine (from `../shared/ANCHORS.md`, 16 "
        "concurrent clients): ~90 requests/s and +12.8 ms p50 with no database (no customer "
        "features); 40-53 requests/s and +20.6 ms p50 with PostgreSQL and a budgeted "
        "customer; 35 requests/s streaming; 529-869 MB peak RSS; spend visible in "
        "`/customer/info` 8-20 s later.",
    ]
    return "\n".join(out) + "\n"


ALL: dict[str, Callable[[Path, int, float], str]] = {
    "shim": shim,
    "growth": growth,
    "transport": transport,
    "overspend": overspend,
}
