"""Wraps every RPC of a servicer: admin auth, error mapping, metrics and one log line per call.

Servicer methods stay short (validate, call the domain, map the result) and raise domain errors;
this is the only place that turns them into gRPC statuses. The same wrapping serves the real
server and the in-process grpc_testing tests.

The real server runs the hot methods (Authorize, RecordSpend, ...) as asyncio handlers that hand
the servicer method to the store (``Database.submit_async``), keyed by the call's customer: on
SQLite the writer thread runs it, so a call costs no thread of its own and no turn-taking on the
write lock; on PostgreSQL the customer's lane batches it with the customer's other calls.
Everything else runs synchronously on the server's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from budgetd.api.auth import AdminAuth
from budgetd.api.metrics import CALLS, LATENCY
from budgetd.api.status import failure
from budgetd.store.deadlines import call_deadline

log = logging.getLogger("budgetd.calls")

Behavior = Callable[[Any, grpc.ServicerContext], Any]
AsyncBehavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class Submit(Protocol):
    """``Database.submit_async``: runs a function where the store wants it run."""

    def __call__(
        self, fn: Callable[..., Any], /, *args: Any, key: str | None = None
    ) -> asyncio.Future[Any]: ...


# Request fields worth a place in the call log; never credentials.
_LOGGED_FIELDS = ("customer_id", "user_id", "budget_id", "model", "request_id", "reservation_id")


class GuardedServicer:
    """A servicer whose RPC methods are wrapped by :func:`guard`."""

    def __init__(
        self,
        servicer: object,
        descriptor: ServiceDescriptor,
        auth: AdminAuth,
        admin_methods: Collection[str],
        *,
        hot_methods: Collection[str] = (),
        submit: Submit | None = None,
    ) -> None:
        """Wrap each method; with ``submit``, ``hot_methods`` become asyncio handlers."""
        for method in descriptor.methods:
            behavior = getattr(servicer, method.name)
            full_name = f"/{descriptor.full_name}/{method.name}"
            method_auth = auth if method.name in admin_methods else None
            wrapped: Behavior | AsyncBehavior
            if submit is not None and method.name in hot_methods:
                wrapped = guard_async(behavior, full_name, method_auth, submit)
            else:
                wrapped = guard(behavior, full_name, method_auth)
            setattr(self, method.name, wrapped)


def guard(behavior: Behavior, method: str, auth: AdminAuth | None) -> Behavior:
    """``behavior`` with auth (when ``auth`` is given), error mapping, metrics and logging."""

    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        detail = ""
        response = None
        try:
            if auth is not None:
                auth.check(context.invocation_metadata())
            # Store work ends with the call's deadline; one already past never reaches the store.
            with call_deadline(context.time_remaining()):
                response = behavior(request, context)
            return response
        except Exception as error:
            code, detail = failure(error, method)
        finally:
            _observe(method, request, response, code, detail, started)
        # Reached only from an except branch above.
        context.abort(code, detail)

    guarded.__name__ = getattr(behavior, "__name__", "rpc")
    return guarded


def guard_async(
    behavior: Behavior, method: str, auth: AdminAuth | None, submit: Submit
) -> AsyncBehavior:
    """:func:`guard` as an asyncio handler that runs ``behavior`` through ``submit``, keyed
    by the request's ``customer_id`` when it has one."""

    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        detail = ""
        response = None
        try:
            if auth is not None:
                auth.check(context.invocation_metadata())
            remaining = context.time_remaining()
            deadline = None if remaining is None else time.monotonic() + remaining
            key = getattr(request, "customer_id", "") or None
            response = await submit(_until, deadline, behavior, request, context, key=key)
            return response
        except Exception as error:
            code, detail = failure(error, method)
        finally:
            _observe(method, request, response, code, detail, started)
        await context.abort(code, detail)

    guarded.__name__ = getattr(behavior, "__name__", "rpc")
    return guarded


def _until(deadline: float | None, behavior: Behavior, request: Any, context: Any) -> Any:
    """``behavior`` under the call's deadline, measured from when the call arrived."""
    left = None if deadline is None else deadline - time.monotonic()
    with call_deadline(left):
        return behavior(request, context)


def _observe(
    method: str,
    request: Any,
    response: Any,
    code: grpc.StatusCode,
    detail: str,
    started: float,
) -> None:
    elapsed = time.perf_counter() - started
    CALLS.labels(method, code.name).inc()
    LATENCY.labels(method, code.name).observe(elapsed)
    _log_call(method, request, response, code, detail, elapsed)


def _log_call(
    method: str,
    request: Any,
    response: Any,
    code: grpc.StatusCode,
    detail: str,
    elapsed: float,
) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {"rpc": method, "code": code.name, "ms": round(elapsed * 1000, 3)}
    for name in _LOGGED_FIELDS:
        value = getattr(request, name, None)
        if value:
            fields[name] = value
    allowed = getattr(response, "allowed", None)
    if allowed is not None:
        fields["allowed"] = allowed
        if not allowed:
            fields["denial_reason"] = response.denial_reason
    if detail:
        fields["error"] = detail
    log.info("call", extra={"fields": fields})
