"""Prometheus metrics of the store."""

from prometheus_client import Histogram

STORE_LATENCY = Histogram(
    "budgetd_store_transaction_seconds",
    "Time spent in one store transaction, by kind (read or write).",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
