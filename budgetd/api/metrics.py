"""Prometheus metrics of the gRPC API."""

from prometheus_client import Counter, Histogram

CALLS = Counter(
    "budgetd_grpc_calls_total", "gRPC calls by method and status code.", ["method", "code"]
)
LATENCY = Histogram(
    "budgetd_grpc_call_seconds",
    "gRPC call latency by method and status code.",
    ["method", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DECISIONS = Counter(
    "budgetd_authorize_decisions_total",
    "Authorize decisions by outcome: allowed, or the denial reason.",
    ["outcome"],
)
