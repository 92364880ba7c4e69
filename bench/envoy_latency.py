"""Latency budgetd adds to a call through Envoy: Envoy alone vs Envoy + ext_authz (+ ext_proc).

Not a test. Starts the test upstream (``tests.envoy.upstream``), one ``budgetd serve`` on a fresh
SQLite file and three Envoys from ``examples/envoy/``: ``ext_authz.yaml`` with the ext_authz
filter taken out (the baseline: same listener, route, access log and upstream), ``ext_authz.yaml``
as is, and ``ext_proc.yaml``. Sends N sequential chat calls (one client, one kept-alive
connection) to each and prints a Markdown table of the client-side latency.

Run from the repository root::

    .venv/bin/python -m bench.envoy_latency --requests 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc
import yaml

from budgetd.v1 import customer_service_pb2 as customer_pb
from budgetd.v1 import customer_service_pb2_grpc as customer_grpc
from budgetd.v1 import resources_pb2 as res
from tests.envoy.envoyproc import EXAMPLES, EnvoyProcess, UpstreamProcess
from tests.support.client import ADMIN
from tests.support.processes import BudgetdProcess

CUSTOMER = "bench-customer"
BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello in one word."}],
        "max_tokens": 16,
    }
).encode()


def without_ext_authz(template: str) -> str:
    """The ext_authz example with its ext_authz filter removed: Envoy alone."""
    # ${NAME} placeholders are not YAML inside flow mappings: park them as plain words.
    config = yaml.safe_load(re.sub(r"\$\{(\w+)\}", r"PLACEHOLDER_\1", template))
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                manager = network_filter["typed_config"]
                manager["http_filters"] = [
                    f
                    for f in manager["http_filters"]
                    if f["name"] != "envoy.filters.http.ext_authz"
                ]
    text = str(yaml.safe_dump(config, sort_keys=False))
    return re.sub(r"PLACEHOLDER_(\w+)", r"${\1}", text)


def measure(port: int, requests: int, warmup: int) -> list[float]:
    """Latencies in ms of ``requests`` sequential calls on one kept-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"content-type": "application/json", "x-litellm-customer-id": CUSTOMER}
    samples: list[float] = []
    try:
        for i in range(warmup + requests):
            started = time.perf_counter()
            connection.request("POST", "/v1/chat/completions", body=BODY, headers=headers)
            reply = connection.getresponse()
            reply.read()
            elapsed = (time.perf_counter() - started) * 1000
            if reply.status != 200:
                raise RuntimeError(f"call {i} answered {reply.status}")
            if i >= warmup:
                samples.append(elapsed)
    finally:
        connection.close()
    return samples


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@contextmanager
def envoy(
    config: str, workdir: Path, budgetd: BudgetdProcess, upstream: UpstreamProcess, **kw: Any
) -> Iterator[EnvoyProcess]:
    """An Envoy running ``config`` in front of the upstream, calling ``budgetd``."""
    process = EnvoyProcess(
        config,
        workdir,
        BUDGETD_HOST="127.0.0.1",
        BUDGETD_PORT=budgetd.port,
        UPSTREAM_HOST="127.0.0.1",
        UPSTREAM_PORT=upstream.port,
        **kw,
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--sqlite-synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="budgetd's BUDGETD_SQLITE_SYNCHRONOUS (FULL: an fsync per reservation)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="envoy-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        upstream = UpstreamProcess(workdir / "upstream.log").start()
        stack.callback(upstream.stop)
        budgetd = BudgetdProcess(
            f"sqlite:///{workdir / 'budgetd.db'}",
            workdir / "budgetd.log",
            BUDGETD_SQLITE_SYNCHRONOUS=args.sqlite_synchronous,
        )
        budgetd.start()
        stack.callback(budgetd.stop)
        with grpc.insecure_channel(budgetd.address) as channel:
            # A budget that never runs out: every call takes the full reserve path.
            customer_grpc.CustomerServiceStub(channel).CreateCustomer(
                customer_pb.CreateCustomerRequest(
                    customer=res.Customer(
                        user_id=CUSTOMER, limits=res.BudgetLimits(max_budget_nanos=10**15)
                    )
                ),
                metadata=ADMIN,
            )
        baseline = without_ext_authz((EXAMPLES / "ext_authz.yaml").read_text())
        rows = []
        for label, config, template in (
            ("Envoy alone", "baseline.yaml", baseline),
            ("Envoy + budgetd ext_authz", "ext_authz.yaml", None),
            ("Envoy + budgetd ext_proc (gate and meter)", "ext_proc.yaml", None),
        ):
            with envoy(config, workdir, budgetd, upstream, template=template) as proxy:
                samples = measure(proxy.port, args.requests, args.warmup)
            rows.append((label, samples))

    base_p50 = percentile(rows[0][1], 50)
    base_p99 = percentile(rows[0][1], 99)
    print(f"{args.requests} sequential calls after {args.warmup} warm-up, one connection,")
    print(
        f"{os.cpu_count()} CPUs, budgetd on SQLite (synchronous={args.sqlite_synchronous}), "
        "Envoy 1.40.0\n"
    )
    print("| path | p50 ms | p99 ms | mean ms | added p50 ms | added p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, samples in rows:
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(
            f"| {label} | {p50:.2f} | {p99:.2f} | {statistics.fmean(samples):.2f} "
            f"| {p50 - base_p50:+.2f} | {p99 - base_p99:+.2f} |"
        )


if __name__ == "__main__":
    main()
