"""The one place where domain errors become gRPC status codes."""

from __future__ import annotations

import logging

import grpc

from budgetd import errors

log = logging.getLogger("budgetd.calls")

_CODES: tuple[tuple[type[errors.BudgetdError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_code(error: errors.BudgetdError) -> grpc.StatusCode:
    """The status code for a domain error; INTERNAL for one this table does not know."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def failure(error: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """(code, detail) a failed call answers with: a domain error's own; anything else is a bug,
    logged here with its traceback and answered INTERNAL without its details."""
    if isinstance(error, errors.BudgetdError):
        return status_code(error), error.message
    log.error("unhandled error in %s", method, exc_info=error)
    return grpc.StatusCode.INTERNAL, "internal error"
