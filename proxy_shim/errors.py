"""The shim's error family and the ONE place that turns errors into OpenAI-shaped JSON.

Every refusal leaves the shim as ``{"error": {"message", "type", "param", "code"}}`` with the
HTTP status LiteLLM uses for it (``code`` is that status as a string, as LiteLLM sends it)::

    ShimError
    ├── AuthenticationFailed   401  missing or wrong key
    ├── PermissionDenied       403  a client key on an admin route
    ├── InvalidRequest         400  malformed JSON, conflicting fields, a state that forbids it
    ├── UnprocessableField     422  a field of the wrong type or out of range (names it)
    ├── NotFound               404  unknown customer, tier or model
    ├── RequestTimeout         408  a request body that stalls (SHIM_BODY_TIMEOUT_SECONDS)
    ├── PayloadTooLarge        413  a request body over SHIM_MAX_BODY_BYTES
    ├── HeadersTooLarge        431  request line and headers over SHIM_MAX_HEADER_BYTES
    ├── BudgetExceeded         429  type budget_exceeded
    ├── CustomerBlocked        403
    ├── RateLimited            429  with Retry-After
    ├── ModelNotAllowed        403
    ├── UpstreamUnreachable    502  the upstream could not be called at all
    ├── BudgetdUnavailable     503  budgetd unreachable (fail closed)
    └── InternalError          500

An upstream that answers with an error is not a ShimError: its status and body pass through.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("proxy_shim.errors")


class ShimError(Exception):
    """Base of every error the shim answers on purpose."""

    status = 500
    type = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})


class AuthenticationFailed(ShimError):
    """No key, or a key that is neither the master key nor a client key."""

    status = 401
    type = "authentication_error"


class PermissionDenied(ShimError):
    """A valid key that may not use this route."""

    status = 403
    type = "permission_error"


class InvalidRequest(ShimError):
    """A request that is malformed as a whole or conflicts with the current state."""

    status = 400
    type = "invalid_request_error"


class UnprocessableField(ShimError):
    """A field with the wrong type or value; ``param`` names it."""

    status = 422
    type = "invalid_request_error"


class NotFound(ShimError):
    """A named customer, tier or model does not exist."""

    status = 404
    type = "not_found"


class RequestTimeout(ShimError):
    """The client stopped sending its request body."""

    status = 408
    type = "invalid_request_error"


class PayloadTooLarge(ShimError):
    """The request body is larger than the shim accepts."""

    status = 413
    type = "invalid_request_error"


class HeadersTooLarge(ShimError):
    """The request line and headers are larger than the shim accepts."""

    status = 431
    type = "invalid_request_error"


class BudgetExceeded(ShimError):
    """The customer cannot afford the call."""

    status = 429
    type = "budget_exceeded"


class CustomerBlocked(ShimError):
    """The customer is blocked."""

    status = 403
    type = "blocked"


class RateLimited(ShimError):
    """A tpm/rpm or parallel-request limit; carries Retry-After."""

    status = 429
    type = "rate_limit_error"


class ModelNotAllowed(ShimError):
    """The customer may not use this model or region."""

    status = 403
    type = "model_not_allowed"


class UpstreamUnreachable(ShimError):
    """The upstream could not be reached or timed out before answering."""

    status = 502
    type = "upstream_error"


class BudgetdUnavailable(ShimError):
    """budgetd did not answer in time; the shim fails closed unless told otherwise."""

    status = 503
    type = "service_unavailable"


class InternalError(ShimError):
    """A bug or a misconfiguration; details go to the log, not to the caller."""

    status = 500
    type = "internal_error"


class ErrorObject(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None
    code: str


class ErrorEnvelope(BaseModel):
    """Every error answer of the shim: ``{"error": {...}}``."""

    error: ErrorObject


# Documents the error answers of every route in the OpenAPI schema (FastAPI's own 422 shape is
# never sent: validation errors are OpenAI-shaped too). Upstream errors pass through as they came.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorEnvelope, "description": "OpenAI-shaped error"},
    "5XX": {"model": ErrorEnvelope, "description": "OpenAI-shaped error"},
}


def error_body(
    message: str, error_type: str, status: int, param: str | None = None
) -> dict[str, Any]:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": str(status)}}


def error_response(error: ShimError) -> JSONResponse:
    """The HTTP answer for a ShimError."""
    return JSONResponse(
        error_body(error.message, error.type, error.status, error.param),
        status_code=error.status,
        headers=error.headers,
    )


def field_path(loc: tuple[int | str, ...]) -> str:
    """A dotted field name from a pydantic location, without FastAPI's 'body'/'query' prefix."""
    parts = list(loc)
    if parts and parts[0] in {"body", "query", "header", "path"}:
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "union[", "json-or-python[")) or part in {
            "int",
            "float",
            "str",
            "constrained-str",
            "decimal",
        }:
            continue  # pydantic names the union branch; the caller only cares about the field
        else:
            out += f".{part}" if out else part
    return out or "body"


async def _shim_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ShimError)
    if isinstance(exc, InternalError | BudgetdUnavailable):
        log.error("refused: %s", exc.message, extra={"fields": {"path": request.url.path}})
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(InvalidRequest("request body is not valid JSON", param="body"))
    field = field_path(tuple(first.get("loc", ("body",))))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = "field required"
    return error_response(UnprocessableField(f"{field}: {message}", param=field))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "not_found", 405: "invalid_request_error"}.get(exc.status_code, "error")
    return JSONResponse(
        error_body(str(exc.detail), kind, exc.status_code),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"fields": {"path": request.url.path}})
    return error_response(InternalError("internal error"))


def install(app: FastAPI) -> None:
    """Register the handlers that make every error an OpenAI-shaped answer."""
    app.add_exception_handler(ShimError, _shim_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
