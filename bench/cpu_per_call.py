"""CPU time per call, by budgetd thread: where an Authorize's cost goes, next to Health/Check's.

    .venv/bin/python -m bench.cpu_per_call [--backend sqlite|postgres] [--seconds 4]

Starts one budgetd, drives it with h2load (c = 16, one connection) and reads each thread's CPU
time from /proc before and after: the main thread (the event loop: gRPC and the handlers), then
the others (the SQLite writer or the PostgreSQL lane is the busy one; gRPC has its own).
Per-call figures, unlike calls/s, barely move when the machine is busy, so they show what a
change to the hot path saved.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from grpc_health.v1 import health_pb2

from bench import scenarios
from bench.load import h2load_grpc
from tests.support.client import Stubs

_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[tuple[str, str], float]:
    """CPU seconds so far of each thread of ``pid``, keyed by (thread id, name)."""
    seconds = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds[(tid, name)] = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    return seconds


def main() -> None:
    """Print calls/s and CPU microseconds per call by thread for Health/Check and Authorize."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="budgetd-cpu-") as tmp,
        scenarios.database(args.backend, Path(tmp)) as url,
        scenarios.budgetd(url, Path(tmp)) as (daemon,),
    ):
        stubs = Stubs.connect(daemon.address)
        assert stubs.spend.Authorize(scenarios.AUTHORIZE).allowed
        stubs.close()
        assert daemon.proc is not None
        calls = (
            ("/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest()),
            ("/budgetd.v1.SpendService/Authorize", scenarios.AUTHORIZE),
        )
        for method, request in calls:
            before = thread_cpu(daemon.proc.pid)
            result = h2load_grpc(
                daemon.address, method, request, concurrency=16, seconds=args.seconds
            )
            after = thread_cpu(daemon.proc.pid)
            # h2load's one-second warm-up is load too: count its calls at the measured rate.
            calls_made = result.ok * (args.seconds + 1) / args.seconds
            print(f"{method} ({args.backend}, c=16): {result.rps:.0f} calls/s")
            total = 0.0
            for key, spent in sorted(after.items(), key=lambda item: -item[1]):
                used = spent - before.get(key, 0.0)
                total += used
                if used / calls_made * 1e6 >= 5:
                    # Python does not name its threads for the OS: only the main one is known.
                    tid, name = key
                    label = "main (event loop)" if tid == str(daemon.proc.pid) else f"{name} {tid}"
                    print(f"  {label:<22} {used / calls_made * 1e6:6.0f} us/call")
            print(f"  {'all threads':<22} {total / calls_made * 1e6:6.0f} us/call")


if __name__ == "__main__":
    main()
