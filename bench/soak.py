"""Soak: mixed traffic through the shim at 80% of its measured peak; memory and invariants.

Not a test and not in CI (it runs for minutes). Starts budgetd (SQLite), the fake upstream and
the shim, measures the shim's peak requests/s with wrk, then sends a paced mix for ``--minutes``:
70% chat calls, 20% streamed chat calls, 10% ``/customer/info`` reads, spread over customers
with own budgets, a tier and an rpm limit. It samples the resident memory of budgetd and the
shim every 10 s and, at the end, checks for every customer that spend equals the sum of its
ledger and that nothing is left reserved. Exits 1 when memory grew more than 10% (median of the
first minute against the last) or an invariant broke.

    .venv/bin/python -m bench.soak --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from bench.load import wrk_post
from bench.scenarios import CHAT, MASTER_KEY, database, proc_mb, shim_stack
from budgetd.v1 import spend_service_pb2 as spend_pb
from tests.support.client import ADMIN, Stubs

CUSTOMERS = 40
SAMPLE_SECONDS = 10.0


def rss_mb(pid: int) -> float:
    """Current resident set size of a process, in MB."""
    return proc_mb(f"/proc/{pid}/status", "VmRSS:")


async def _setup(client: httpx.AsyncClient) -> list[str]:
    """Customers with own budgets, on a tier, and with an rpm limit."""
    await client.post("/budget/new", json={"budget_id": "soak-tier", "max_budget": 5})
    ids = []
    for i in range(CUSTOMERS):
        user = f"soak-{i}"
        if i % 3 == 0:
            body = {"user_id": user, "budget_id": "soak-tier"}
        elif i % 3 == 1:
            body = {"user_id": user, "max_budget": 2, "rpm_limit": 600}
        else:
            body = {"user_id": user, "max_budget": 0.05}  # runs out: refusals are traffic too
        (await client.post("/customer/new", json=body)).raise_for_status()
        ids.append(user)
    return ids


async def _one(client: httpx.AsyncClient, customers: list[str], tally: dict[str, int]) -> None:
    customer = random.choice(customers)
    roll = random.random()
    try:
        if roll < 0.7:
            answer = await client.post("/chat/completions", json={**CHAT, "user": customer})
        elif roll < 0.9:
            async with client.stream(
                "POST", "/chat/completions", json={**CHAT, "user": customer, "stream": True}
            ) as answer:
                async for _ in answer.aiter_bytes():
                    pass
        else:
            answer = await client.get(f"/customer/info?end_user_id={customer}")
        tally[str(answer.status_code)] = tally.get(str(answer.status_code), 0) + 1
    except httpx.HTTPError as error:
        tally[type(error).__name__] = tally.get(type(error).__name__, 0) + 1


async def _soak(
    shim_url: str, rate: float, seconds: float, pids: dict[str, int]
) -> tuple[list[str], dict[str, int], dict[str, list[float]]]:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    limits = httpx.Limits(max_connections=64)
    samples: dict[str, list[float]] = {name: [] for name in pids}
    tally: dict[str, int] = {}
    # httpx on aiohttp's transport, as the shim: httpx's own costs about 1 ms of CPU a call,
    # which on 2 shared cores made the client, not the stack, the bottleneck.
    async with HttpxAiohttpClient(
        base_url=shim_url, headers=headers, timeout=60, limits=limits
    ) as client:
        customers = await _setup(client)
        gate = asyncio.Semaphore(64)
        tasks: set[asyncio.Task[None]] = set()

        async def paced(coro_customers: list[str]) -> None:
            async with gate:
                await _one(client, coro_customers, tally)

        started = time.monotonic()
        next_sample = started
        sent = 0
        while (now := time.monotonic()) - started < seconds:
            if now >= next_sample:
                for name, pid in pids.items():
                    samples[name].append(rss_mb(pid))
                next_sample += SAMPLE_SECONDS
            due = int((now - started) * rate) - sent
            for _ in range(due):
                task = asyncio.create_task(paced(customers))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            sent += max(due, 0)
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
    return customers, tally, samples


def main() -> int:
    """Run the soak and print its report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="budgetd-soak-") as tmp_name:
        tmp = Path(tmp_name)
        with database("sqlite", tmp) as url, shim_stack(url, tmp) as (daemon, proxy, _):
            shim_url = f"http://127.0.0.1:{proxy.port}"
            peak = wrk_post(
                f"{shim_url}/chat/completions",
                json.dumps({**CHAT, "user": "soak-peak"}).encode(),
                {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
                concurrency=16,
                seconds=5,
            ).rps
            rate = 0.8 * peak
            print(f"peak {peak:.0f} requests/s; soaking at {rate:.0f}/s for {seconds:.0f} s")
            assert daemon.proc is not None and proxy.proc is not None
            pids = {"budgetd": daemon.proc.pid, "shim": proxy.proc.pid}
            customers, tally, samples = asyncio.run(_soak(shim_url, rate, seconds, pids))
            time.sleep(3)  # let the last settlements and the outbox finish
            broken = _check(daemon.address, customers)
    print("answers:", dict(sorted(tally.items())))
    grew = False
    per_minute = max(1, int(60 / SAMPLE_SECONDS))
    for name, values in samples.items():
        first = statistics.median(values[:per_minute])
        last = statistics.median(values[-per_minute:])
        change = (last - first) / first
        grew |= change > 0.10
        print(
            f"{name}: RSS {first:.1f} MB in the first minute, {last:.1f} MB in the last "
            f"({change:+.1%}); peak {max(values):.1f} MB"
        )
    print("invariants:", "hold" if not broken else "BROKEN: " + "; ".join(broken))
    return 1 if grew or broken else 0


def _check(address: str, customers: list[str]) -> list[str]:
    """Every customer's spend equals its current window's ledger; nothing left reserved."""
    stubs = Stubs.connect(address)
    broken = []
    for customer in customers:
        spend = stubs.spend.GetSpend(spend_pb.GetSpendRequest(customer_id=customer), metadata=ADMIN)
        _, ledger_total = stubs.ledger_sum(customer)
        if spend.spend_nanos != ledger_total:
            broken.append(f"{customer}: spend {spend.spend_nanos} != ledger {ledger_total}")
        if spend.reserved_nanos:
            broken.append(f"{customer}: {spend.reserved_nanos} still reserved")
        if spend.HasField("max_budget_nanos") and spend.spend_nanos > spend.max_budget_nanos:
            broken.append(f"{customer}: spend over max_budget")
    stubs.close()
    return broken


if __name__ == "__main__":
    sys.exit(main())
