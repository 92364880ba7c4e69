"""A gRPC load process for calls that must differ each time: ``python -m bench.pyload``.

Arguments: address, scenario (``record_spend`` or ``health``), concurrency, seconds,
customer id. Prints ``rps= p50= p99= ok= errors=`` on one line.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from budgetd.v1 import spend_service_pb2 as spend_pb
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc


async def main(
    address: str, scenario: str, concurrency: int, seconds: float, customer: str
) -> None:
    """Run the load and print its figures."""
    latencies: list[float] = []
    errors = 0
    prefix = uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = spend_grpc.SpendServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            nonlocal errors
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                started = time.perf_counter()
                try:
                    if scenario == "record_spend":
                        await stub.RecordSpend(
                            spend_pb.RecordSpendRequest(
                                request_id=f"{prefix}-{w}-{i}",
                                customer_id=customer,
                                model="gpt-4o-mini",
                                usage=spend_pb.Usage(input_tokens=100, output_tokens=50),
                            )
                        )
                    elif scenario == "health":
                        await health.Check(health_pb2.HealthCheckRequest())
                    else:
                        raise SystemExit(f"unknown scenario {scenario}")
                    latencies.append((time.perf_counter() - started) * 1000)
                except grpc.RpcError:
                    errors += 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    latencies.sort()
    n = len(latencies)
    p50 = latencies[n // 2] if n else float("nan")
    p99 = latencies[min(n - 1, int(n * 0.99))] if n else float("nan")
    print(f"rps={n / seconds:.1f} p50={p50:.3f} p99={p99:.3f} ok={n} errors={errors}")


if __name__ == "__main__":
    address, scenario, concurrency, seconds, customer = sys.argv[1:6]
    asyncio.run(main(address, scenario, int(concurrency), float(seconds), customer))
