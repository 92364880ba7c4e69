"""The gateway token: only gateways that present it may reserve and charge.

With ``BUDGETD_GATEWAY_TOKEN`` set, the hot path — ``Authorize``, ``RecordSpend``,
``ReleaseReservation`` and Envoy's ext_authz, ext_proc and rate limit services — requires
``authorization: Bearer <gateway token>`` (or the admin token). One server interceptor checks it
before any handler runs, for unary and streaming methods alike; a refused call is counted and
logged like any other (never with the token) and answered ``UNAUTHENTICATED``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from budgetd.api.auth import GatewayAuth
from budgetd.envoy.observe import CallRecord
from budgetd.errors import Unauthenticated

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def method_paths(
    services: Iterable[tuple[ServiceDescriptor, Iterable[str]]],
) -> dict[str, MethodDescriptor]:
    """``/package.Service/Method`` of every method of each service except the excluded names."""
    return {
        f"/{service.full_name}/{method.name}": method
        for service, excluded in services
        for method in service.methods
        if method.name not in set(excluded)
    }


class GatewayTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls of the given methods that do not carry the gateway (or admin) token."""

    def __init__(self, auth: GatewayAuth, methods: dict[str, MethodDescriptor]) -> None:
        self._auth = auth
        self._refusals = {path: _refusal(method) for path, method in methods.items()}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Req, Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        method = handler_call_details.method
        refusal = self._refusals.get(method)
        if refusal is not None:
            try:
                self._auth.check(handler_call_details.invocation_metadata)
            except Unauthenticated as error:
                CallRecord(method).finish(grpc.StatusCode.UNAUTHENTICATED, error.message)
                return refusal
        return await continuation(handler_call_details)


_MESSAGE = "missing or wrong gateway token (authorization: Bearer ...)"


async def _refuse_unary(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _MESSAGE)


async def _refuse_stream(_requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _MESSAGE)


def _refusal(method: MethodDescriptor) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the method's shape that answers UNAUTHENTICATED without reading anything."""
    streaming_in, streaming_out = method.client_streaming, method.server_streaming
    if streaming_in and streaming_out:
        return grpc.stream_stream_rpc_method_handler(_refuse_stream)
    if streaming_in:
        return grpc.stream_unary_rpc_method_handler(_refuse_stream)
    if streaming_out:
        return grpc.unary_stream_rpc_method_handler(_refuse_unary)
    return grpc.unary_unary_rpc_method_handler(_refuse_unary)
