"""Wraps every RPC of a servicer: admin auth, error mapping, metrics and one log line per call.

Servicer methods stay short (validate, call the domain, map the result) and raise domain errors;
this is the only place that turns them into gRPC statuses. The same wrapping serves the real
server and the in-process grpc_testing tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from budgetd.api.auth import AdminAuth
from budgetd.api.metrics import CALLS, LATENCY
from budgetd.api.status import status_code
from budgetd.errors import BudgetdError
from budgetd.store.deadlines import call_deadline

log = logging.getLogger("budgetd.calls")

Behavior = Callable[[Any, grpc.ServicerContext], Any]
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
    ) -> None:
        for method in descriptor.methods:
            behavior = getattr(servicer, method.name)
            full_name = f"/{descriptor.full_name}/{method.name}"
            needs_admin = method.name in admin_methods
            setattr(self, method.name, guard(behavior, full_name, auth if needs_admin else None))


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
        except BudgetdError as error:
            code, detail = status_code(error), error.message
        except Exception:
            log.exception("unhandled error in %s", method)
            code, detail = grpc.StatusCode.INTERNAL, "internal error"
        finally:
            elapsed = time.perf_counter() - started
            CALLS.labels(method, code.name).inc()
            LATENCY.labels(method, code.name).observe(elapsed)
            _log_call(method, request, response, code, detail, elapsed)
        # Reached only from an except branch above.
        context.abort(code, detail)

    guarded.__name__ = getattr(behavior, "__name__", "rpc")
    return guarded


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
