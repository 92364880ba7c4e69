"""Metrics and the one log line per call of the Envoy servicers.

The budgetd.v1 servicers get these from :func:`budgetd.api.guard.guard`, which logs fields of the
request message; Envoy's messages carry no such fields (the customer is found inside headers or
the body), so these servicers collect the fields as they learn them and hand them over here.
The metric families are the same ones, labelled with Envoy's method names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from budgetd.api.metrics import CALLS, LATENCY
from budgetd.api.status import failure

log = logging.getLogger("budgetd.calls")


T = TypeVar("T")


def answered(record: CallRecord, context: grpc.ServicerContext, compute: Callable[[], T]) -> T:
    """``compute()``'s answer, or the RPC error a domain error maps to; the call is recorded.

    Like :func:`budgetd.api.guard.guard` for the budgetd.v1 servicers: domain errors become their
    status code, anything else INTERNAL without its details.
    """
    try:
        response = compute()
    except Exception as error:
        code, detail = record.failed(error)
        context.abort(code, detail)
    record.finish()
    return response


async def answered_async(
    record: CallRecord, context: grpc.aio.ServicerContext[Any, Any], answer: Awaitable[T]
) -> T:
    """:func:`answered` for an asyncio handler whose answer is computed elsewhere."""
    try:
        response = await answer
    except Exception as error:
        code, detail = record.failed(error)
        await context.abort(code, detail)
    record.finish()
    return response


class CallRecord:
    """What one Envoy call did; :meth:`finish` counts it and logs it once."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.fields: dict[str, Any] = {}
        self._started = time.perf_counter()
        self._finished = False

    def failed(self, error: Exception) -> tuple[grpc.StatusCode, str]:
        """Record a failed call; returns the (code, detail) to abort it with."""
        code, detail = failure(error, self.method)
        self.finish(code, detail)
        return code, detail

    def finish(self, code: grpc.StatusCode = grpc.StatusCode.OK, detail: str = "") -> None:
        """Record the call's status; later calls do nothing."""
        if self._finished:
            return
        self._finished = True
        elapsed = time.perf_counter() - self._started
        CALLS.labels(self.method, code.name).inc()
        LATENCY.labels(self.method, code.name).observe(elapsed)
        if not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "rpc": self.method,
            "code": code.name,
            "ms": round(elapsed * 1000, 3),
        }
        fields.update((key, value) for key, value in self.fields.items() if value is not None)
        if detail:
            fields["error"] = detail
        log.info("call", extra={"fields": fields})
