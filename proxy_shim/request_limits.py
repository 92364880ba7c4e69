"""Limits on each request, before and while a route reads it: an ASGI middleware.

- **Headers**: the request line and headers together at most ``SHIM_MAX_HEADER_BYTES``, else
  431 (the HTTP server already refuses, with a bare 400, a header block that keeps growing past
  twice that without ending; see ``proxy_shim.serving``).
- **Body size**: at most ``SHIM_MAX_BODY_BYTES``, else 413. A ``Content-Length`` over the limit
  is refused before any of the body is read; a body sent without one (chunked) is counted as it
  is read and refused as soon as it passes the limit, so a huge body is never held in memory
  (the server reads at most 64 KiB ahead).
- **Body stalls**: each piece of the body within ``SHIM_BODY_TIMEOUT_SECONDS`` of the last,
  else 408.

Every refusal is an OpenAI-shaped error with ``connection: close``, whatever the route would
have answered, and the rest of the body is never read.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy_shim.errors import (
    HeadersTooLarge,
    PayloadTooLarge,
    RequestTimeout,
    ShimError,
    error_body,
)


class _Refused(Exception):
    """Raised into the app from ``receive`` once the body broke a limit."""


@dataclass
class _Request:
    received: int = 0
    body_done: bool = False
    response_started: bool = False
    refusal: ShimError | None = None


class RequestLimits:
    """Refuse headers over ``max_header_bytes`` (431), bodies over ``max_body_bytes`` (413) and
    bodies stalling for ``body_idle_seconds`` (408)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header_bytes: int,
        max_body_bytes: int,
        body_idle_seconds: float,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_bytes = max_body_bytes
        self.idle_seconds = body_idle_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _head_size(scope) > self.max_header_bytes:
            await _answer(
                send,
                HeadersTooLarge(
                    f"request line and headers are larger than {self.max_header_bytes} bytes "
                    "(SHIM_MAX_HEADER_BYTES)",
                    param="headers",
                ),
            )
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer(send, self._too_large())
            return
        request = _Request()

        async def limited_receive() -> Message:
            if request.body_done:
                return await receive()  # e.g. a stream listening for the client to go away
            try:
                async with asyncio.timeout(self.idle_seconds):
                    message = await receive()
            except TimeoutError:
                request.refusal = RequestTimeout(
                    f"request body stalled for more than {self.idle_seconds:g} seconds",
                    param="body",
                )
                raise _Refused from None
            if message["type"] == "http.request":
                request.received += len(message.get("body", b""))
                if request.received > self.max_bytes:
                    request.refusal = self._too_large()
                    raise _Refused
                request.body_done = not message.get("more_body", False)
            else:
                request.body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            if request.refusal is not None:
                return  # the route's own answer gives way to the refusal
            if message["type"] == "http.response.start":
                request.response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if request.refusal is None:
                raise
        if request.refusal is not None and not request.response_started:
            await _answer(send, request.refusal)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body is larger than {self.max_bytes} bytes (SHIM_MAX_BODY_BYTES)",
            param="body",
        )


def _head_size(scope: Scope) -> int:
    """About what the request line and headers took on the wire."""
    line = len(scope["method"]) + len(scope.get("raw_path") or b"") + len(scope["query_string"])
    return line + 16 + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before the app sees it
    return None


async def _answer(send: Send, error: ShimError) -> None:
    body = json.dumps(error_body(error.message, error.type, error.status, error.param)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read: the connection cannot carry another call.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
