"""Load generators for the benchmarks, run as separate processes so they are measured apart.

- gRPC unary calls with a fixed request: ``h2load`` (nghttp2-client, native), many streams on
  one connection; its per-request log gives the latency percentiles.
- gRPC calls whose request must change each time (RecordSpend's request_id): a Python grpc.aio
  process (``python -m bench.pyload``).
- HTTP: ``wrk`` with a Lua script for POST bodies.

Every runner returns a :class:`LoadResult` with the load generator's CPU share (its CPU time over
the wall time, in cores), so a reader can see whether the client was the bottleneck.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Throughput and latency of one run."""

    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    errors: int
    client_cpu: float  # cores used by the load generator on average


def require(tool: str) -> str:
    """The path of a native tool, or exit with how to install it."""
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"{tool} not found: apt-get install nghttp2-client wrk")
    return path


def grpc_frame(message: Message) -> bytes:
    """A message as one gRPC length-prefixed frame."""
    body = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(body)) + body


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


def h2load_grpc(
    address: str,
    method: str,
    request: Message,
    *,
    concurrency: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Unary gRPC calls with one fixed request, ``concurrency`` streams on one connection."""
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.bin"
        body.write_bytes(grpc_frame(request))
        log = Path(tmp) / "requests.log"
        cpu_before = _children_cpu()
        started = time.perf_counter()
        subprocess.run(
            [
                require("h2load"),
                f"--duration={seconds:g}",
                "--warm-up-time=1",
                "-c1",
                f"-m{concurrency}",
                f"--log-file={log}",
                "-d",
                str(body),
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                *[arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")],
                f"http://{address}{method}",
            ],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before
        latencies: list[float] = []
        errors = 0
        for line in log.read_text().splitlines():
            _start, status, micros = line.split("\t")[:3]
            if status == "200":
                latencies.append(int(micros) / 1000)
            else:
                errors += 1
    latencies.sort()
    return LoadResult(
        rps=len(latencies) / seconds,
        p50_ms=_percentile(latencies, 0.5),
        p99_ms=_percentile(latencies, 0.99),
        ok=len(latencies),
        errors=errors,
        client_cpu=cpu / wall,
    )


def python_grpc(
    address: str, scenario: str, *, concurrency: int, seconds: float, customer: str
) -> LoadResult:
    """Calls whose request changes each time, from a separate Python grpc.aio process."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.pyload",
            address,
            scenario,
            str(concurrency),
            str(seconds),
            customer,
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ},
    ).stdout
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    values = dict(item.split("=") for item in out.split())
    return LoadResult(
        rps=float(values["rps"]),
        p50_ms=float(values["p50"]),
        p99_ms=float(values["p99"]),
        ok=int(values["ok"]),
        errors=int(values["errors"]),
        client_cpu=cpu / wall,
    )


# Prints how many answers were not 2xx/3xx, for the error column.
_WRK_DONE = """done = function(summary, latency, requests)
  io.write(string.format("non200=%d\\n", summary.errors.status))
end"""
_WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_post(
    url: str, body: bytes, headers: dict[str, str], *, concurrency: int, seconds: float
) -> LoadResult:
    """HTTP POSTs of one body with ``concurrency`` connections on 1 thread."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body)}"]
        lines += [
            f"wrk.headers[{_lua_string(k.encode())}] = {_lua_string(v.encode())}"
            for k, v in headers.items()
        ]
        lines.append(_WRK_DONE)
        script.write_text("\n".join(lines) + "\n")
        cpu_before = _children_cpu()
        started = time.perf_counter()
        out = subprocess.run(
            [
                require("wrk"),
                "-t1",
                f"-c{concurrency}",
                f"-d{seconds:g}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        wall = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before
    latency = {q: float(v) * _WRK_UNIT[u] for q, v, u in _WRK_LATENCY.findall(out)}
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non200 = int(re.search(r"non200=(\d+)", out).group(1))  # type: ignore[union-attr]
    return LoadResult(
        rps=requests / seconds,
        p50_ms=latency.get("50", float("nan")),
        p99_ms=latency.get("99", float("nan")),
        ok=requests - non200,
        errors=non200,
        client_cpu=cpu / wall,
    )


def _lua_string(raw: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in raw) + '"'
