"""Prometheus metrics and the one structured log line per model call.

A ``CallRecord`` is filled in as a call proceeds and emitted exactly once, when its outcome is
known: on a refusal, after the charge of a JSON answer, or after a stream has been settled.
It never carries a key: only the customer id, the public model name, tokens, cost and decision.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

log = logging.getLogger("proxy_shim.calls")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "shim_requests_total", "HTTP requests by route, model and status.", ["route", "model", "status"]
)
LATENCY = Histogram(
    "shim_request_seconds",
    "HTTP request latency by route, model and status (streams: until the last chunk).",
    ["route", "model", "status"],
    buckets=_LATENCY_BUCKETS,
)
REFUSALS = Counter(
    "shim_refusals_total",
    "Model calls refused, by route, model and reason.",
    ["route", "model", "reason"],
)
UPSTREAM_LATENCY = Histogram(
    "shim_upstream_seconds",
    "Time to the upstream's response headers, by model and status.",
    ["model", "status"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS = Counter("shim_tokens_total", "Tokens metered, by model and kind.", ["model", "kind"])
SPEND = Counter("shim_spend_usd_total", "USD charged to customers, by model.", ["model"])
UNMETERED = Counter(
    "shim_unmetered_calls_total",
    "Calls served without a reservation, by reason: no customer id, or budgetd down under "
    "--fail-open (those are charged later, through the outbox).",
    ["reason"],
)


@dataclass
class CallRecord:
    """What one model call did, for its log line and metrics."""

    route: str
    model: str = ""
    customer_id: str | None = None
    stream: bool = False
    decision: str = "allowed"
    status: int = 200
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    usage_reported: bool = True
    capped_max_tokens: int | None = None
    started: float = field(default_factory=time.perf_counter)
    _emitted: bool = False

    def refused(self, reason: str, status: int) -> None:
        """Mark the call refused for ``reason`` with HTTP ``status``."""
        self.decision = reason
        self.status = status

    def emit(self) -> None:
        """Log the call and update the metrics; later calls are no-ops."""
        if self._emitted:
            return
        self._emitted = True
        elapsed = time.perf_counter() - self.started
        model = self.model or "-"
        status = str(self.status)
        REQUESTS.labels(self.route, model, status).inc()
        LATENCY.labels(self.route, model, status).observe(elapsed)
        if self.decision != "allowed":
            REFUSALS.labels(self.route, model, self.decision).inc()
        if self.input_tokens:
            TOKENS.labels(model, "input").inc(self.input_tokens)
        if self.output_tokens:
            TOKENS.labels(model, "output").inc(self.output_tokens)
        if self.cost_nanos:
            SPEND.labels(model).inc(self.cost_nanos / 1e9)
        fields = {
            "route": self.route,
            "model": self.model,
            "customer": self.customer_id,
            "stream": self.stream,
            "decision": self.decision,
            "status": self.status,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_nanos": self.cost_nanos,
            "usage_reported": self.usage_reported,
            "ms": round(elapsed * 1000, 3),
        }
        if self.capped_max_tokens is not None:
            fields["capped_max_tokens"] = self.capped_max_tokens
        log.info("call", extra={"fields": fields})
