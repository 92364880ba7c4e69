"""What the shim's durable charge outbox costs a call: ``python -m bench.outbox_cost``.

Part 1 (always): ``Outbox.charge`` against an instant fake budgetd, so what is measured is the
outbox alone: the SQLite insert + fsync (group-committed across concurrent calls), the
RecordSpend call of a fake that answers at once, and the (non-durable, not awaited) delete. The
baseline is the same fake RecordSpend without the outbox. Sequential, then concurrent callers.

Part 2 (``--e2e``): real processes (budgetd on SQLite, the fake upstream, the shim) and
sequential chat calls through the shim, with the outbox file on the given directory (default:
a temporary directory on the same disk as /tmp) and then on /dev/shm (tmpfs: fsync costs
nothing there), so the difference is the fsync on the real hot path.

    .venv/bin/python -m bench.outbox_cost [--dir DIR] [--calls 2000] [--e2e]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from budgetd.pricing import TokenUsage
from budgetd.v1 import spend_service_pb2 as spend_pb
from proxy_shim import outbox as outbox_module
from proxy_shim.outbox import Charge, Outbox, new_request_id


class InstantBudgetd:
    """RecordSpend that answers at once."""

    async def record_spend(
        self, request: spend_pb.RecordSpendRequest
    ) -> spend_pb.RecordSpendResponse:
        return spend_pb.RecordSpendResponse(charged_nanos=request.cost_nanos)

    async def release(self, reservation_id: str) -> int:
        return 0


def _charge() -> Charge:
    return Charge(
        request_id=new_request_id(),
        customer_id="bench",
        model="gpt-4o-mini",
        usage=TokenUsage(input_tokens=120, output_tokens=40),
        cost_nanos=42_000,
        reservation_id="0b7a2c52-0a53-4d53-a6a2-5c2b3f0e9d11",
    )


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _measure(directory: Path, calls: int, concurrency: int, use_outbox: bool) -> str:
    budgetd = InstantBudgetd()
    path = directory / f"bench-outbox-{concurrency}-{use_outbox}.db"
    box = Outbox(path, budgetd, grace_seconds=3600)
    await box.open()
    batches: list[int] = []
    commit = outbox_module._Writer._commit

    def counting(file: outbox_module.OutboxFile, batch: list[outbox_module._Op]) -> None:
        if any(op.durable for op in batch):
            batches.append(len(batch))
        commit(file, batch)

    outbox_module._Writer._commit = staticmethod(counting)  # type: ignore[method-assign]
    latencies: list[float] = []
    queue = list(range(calls))

    async def worker() -> None:
        while queue:
            queue.pop()
            started = time.perf_counter()
            if use_outbox:
                await box.charge(_charge())
            else:
                await budgetd.record_spend(_charge().request())
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await box.close()
    outbox_module._Writer._commit = staticmethod(commit)  # type: ignore[method-assign]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    per_commit = f"{statistics.mean(batches):5.1f}" if batches else "    -"
    return (
        f"| {'outbox' if use_outbox else 'no outbox'} | {concurrency:3d} | "
        f"{calls / elapsed:8.0f} | {_ms(latencies, 0.5):6.2f} | {_ms(latencies, 0.99):6.2f} | "
        f"{per_commit} |"
    )


def micro(directory: Path, calls: int) -> None:
    """Part 1."""
    print(f"outbox file in {directory}; {calls} charges per row\n")
    print("| path | callers | charges/s | p50 ms | p99 ms | writes per fsync |")
    print("|---|---:|---:|---:|---:|---:|")
    for concurrency in (1, 16, 64):
        for use_outbox in (False, True):
            print(asyncio.run(_measure(directory, calls, concurrency, use_outbox)), flush=True)


def e2e(directory: Path, calls: int) -> None:
    """Part 2: through the shim (needs the repository's test helpers)."""
    import httpx

    from tests.support.crash import call_body, shim_client, start_shim
    from tests.support.processes import BudgetdProcess, ServiceProcess, free_port

    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp)
        port = free_port()
        upstream = ServiceProcess(
            "upstream",
            [sys.executable, "-m", "proxy_shim", "fake-upstream", "--addr", f"127.0.0.1:{port}"],
            dict(os.environ),
            root / "upstream.log",
        ).start(f"http://127.0.0.1:{port}/health")
        budgetd = BudgetdProcess(f"sqlite:///{root / 'budgetd.db'}", root / "budgetd.log")
        budgetd.start()
        try:
            print("\n| outbox file on | calls | p50 ms | p99 ms |")
            print("|---|---:|---:|---:|")
            with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
                for where in (root, Path(shm), root, Path(shm)):
                    shim = start_shim(
                        f"http://127.0.0.1:{port}/v1",
                        budgetd.address,
                        where / "outbox.db",
                        root / "shim.log",
                    )
                    try:
                        latencies = []
                        with shim_client(shim) as client:
                            for i in range(calls + 50):
                                started = time.perf_counter()
                                reply = client.post(
                                    "/chat/completions", json=call_body(f"bench-{i % 20}")
                                )
                                if i >= 50:  # warm-up
                                    latencies.append(time.perf_counter() - started)
                                assert reply.status_code == 200, reply.text
                    except httpx.HTTPError as error:
                        print(f"failed: {error}")
                    finally:
                        shim.stop()
                    label = "tmpfs (/dev/shm)" if str(where).startswith("/dev/shm") else "disk"
                    print(
                        f"| {label} | {calls} | {_ms(latencies, 0.5):.2f} | "
                        f"{_ms(latencies, 0.99):.2f} |",
                        flush=True,
                    )
        finally:
            budgetd.stop()
            upstream.stop()


def main() -> None:
    """Run the measurements and print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--e2e", action="store_true", help="also measure through the shim")
    args = parser.parse_args()
    micro(args.dir, args.calls)
    if args.e2e:
        e2e(args.dir, min(args.calls, 1000))


if __name__ == "__main__":
    main()
