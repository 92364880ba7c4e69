"""Model calls: ``/chat/completions``, ``/completions`` and ``/embeddings`` (and ``/v1/...``).

Flow: key -> customer id -> Authorize (gate) -> forward with the pooled httpx client -> settle
with the usage the upstream reported -> the upstream's answer, unchanged, plus headers
``x-budgetd-spend-usd``, ``x-budgetd-remaining-usd`` (omitted when unlimited) and
``x-budgetd-reservation-id``. An upstream error releases the reservation and passes through.

Streams (``stream: true``) are passed through chunk by chunk as they arrive. The shim asks the
upstream for usage (``stream_options.include_usage``) and charges the final chunk's usage. The
usage chunk (empty ``choices``) reaches the client too, even if it did not ask for it. Stream
headers are sent before the cost is known, so they carry the spend before the call and the
remaining budget after its reservation.

How a cut-off stream is charged: if the client disconnects, or the upstream fails mid-stream,
the call is settled with what is known: the prompt estimate as input and the output received so
far at 4 characters per token, rounded up (or the upstream's usage, if its final chunk arrived).
The settlement runs in a task of its own, so the client's disconnect cannot cancel it: the hold
is never leaked and the charge never dropped.

Every charge is written to the durable outbox (``proxy_shim.outbox``) before the response ends:
before the JSON answer is sent, before a stream's ``[DONE]`` is forwarded, and before a stream
whose upstream failed is closed. A shim killed after that point still charges the call (the
outbox's sender delivers it at the next start).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy_shim import estimate
from proxy_shim.customer_id import resolve_customer_id
from proxy_shim.errors import (
    InvalidRequest,
    NotFound,
    ShimError,
    UnprocessableField,
    UpstreamUnreachable,
)
from proxy_shim.gate import Admission, Settlement
from proxy_shim.metering import StreamMeter, fallback_usage, output_text_of, usage_from_json
from proxy_shim.observe import UPSTREAM_LATENCY, CallRecord
from proxy_shim.openai_schema import (
    CHAT_BODY,
    COMPLETIONS_BODY,
    EMBEDDINGS_BODY,
    MAX_OUTPUT_TOKENS,
)
from proxy_shim.state import ShimState
from proxy_shim.usd import header_usd

router = APIRouter(tags=["models"])

# Route kind -> upstream path.
_UPSTREAM_PATHS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
# Response headers of the upstream that describe its body, and so pass through with it.
_PASSED_HEADERS = ("content-type", "openai-processing-ms", "x-request-id")


@router.post("/chat/completions", openapi_extra=CHAT_BODY)
@router.post("/v1/chat/completions", openapi_extra=CHAT_BODY)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, gated and metered."""
    return await _proxy(request, "chat")


@router.post("/completions", openapi_extra=COMPLETIONS_BODY)
@router.post("/v1/completions", openapi_extra=COMPLETIONS_BODY)
async def completions(request: Request) -> Response:
    """OpenAI (legacy) completions, gated and metered."""
    return await _proxy(request, "completions")


@router.post("/embeddings", openapi_extra=EMBEDDINGS_BODY)
@router.post("/v1/embeddings", openapi_extra=EMBEDDINGS_BODY)
async def embeddings(request: Request) -> Response:
    """OpenAI embeddings, gated and metered (input tokens only)."""
    return await _proxy(request, "embeddings")


async def _proxy(request: Request, kind: str) -> Response:
    # Not the ``Shared`` dependency, nor ``request.url``: on the hot path, FastAPI's dependency
    # solving and Starlette's URL parsing are measurable, and neither is needed here.
    state: ShimState = request.app.state.shim
    record = CallRecord(route=request.scope["path"])
    try:
        state.keys.require(request, admin=False)
        body = await _json_object(request)
        route = _model_route(state, body)
        record.model = route.name
        max_output = _max_output_tokens(kind, body)
        stream = kind != "embeddings" and body.get("stream") is True
        record.stream = stream
        customer_id = resolve_customer_id(request.headers, body)
        record.customer_id = customer_id
        prompt_tokens = estimate.prompt_tokens(kind, body)
        admission = await state.gate.admit(
            customer_id,
            route,
            prompt_tokens,
            max_output,
            has_output=kind != "embeddings",
        )
    except ShimError as error:
        record.refused(_reason(error), error.status)
        record.emit()
        raise
    record.capped_max_tokens = admission.injected_max_tokens
    upstream_body = _upstream_body(body, admission, stream)
    url = route.base_url + _UPSTREAM_PATHS[kind]
    headers = {"content-type": "application/json"}
    key = route.upstream_api_key()
    if key:
        headers["authorization"] = f"Bearer {key}"
    content = json.dumps(upstream_body).encode()
    if stream:
        return await _stream(state, record, admission, url, headers, content)
    return await _once(state, record, admission, url, headers, content)


async def _send(
    state: ShimState,
    record: CallRecord,
    admission: Admission,
    request: httpx.Request,
    *,
    stream: bool,
) -> httpx.Response | Response:
    """The upstream's answer, or (after releasing the reservation) what to answer instead.

    An unreachable upstream raises UpstreamUnreachable; an upstream error is passed through
    as it came. In both cases nothing is charged.
    """
    started = time.perf_counter()
    try:
        upstream = await state.http.send(request, stream=stream)
    except httpx.HTTPError as error:
        await state.gate.release(admission)
        record.refused("upstream_unreachable", 502)
        record.emit()
        raise UpstreamUnreachable(f"upstream unreachable: {type(error).__name__}") from None
    except BaseException:
        # Cancelled while waiting: nothing was answered, so nothing is charged.
        state.gate.in_background(state.gate.release(admission))
        raise
    UPSTREAM_LATENCY.labels(admission.model.name, str(upstream.status_code)).observe(
        time.perf_counter() - started
    )
    if upstream.status_code < 400:
        return upstream
    try:
        error_body = await upstream.aread()
    finally:
        await upstream.aclose()
    await state.gate.release(admission)
    record.refused("upstream_error", upstream.status_code)
    record.emit()
    return Response(error_body, status_code=upstream.status_code, headers=_passed(upstream))


def _passed(upstream: httpx.Response) -> dict[str, str]:
    return {k: v for k in _PASSED_HEADERS if (v := upstream.headers.get(k))}


async def _once(
    state: ShimState,
    record: CallRecord,
    admission: Admission,
    url: str,
    headers: dict[str, str],
    content: bytes,
) -> Response:
    request = state.http.build_request("POST", url, content=content, headers=headers)
    upstream = await _send(state, record, admission, request, stream=False)
    if isinstance(upstream, Response):
        return upstream
    usage = usage_from_json(upstream.content)
    if usage is None:
        record.usage_reported = False
        usage = fallback_usage(admission.prompt_tokens, _output_chars(upstream.content))
    settlement = await state.gate.settle(admission, usage)
    _record_usage(record, usage, settlement)
    record.emit()
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        headers={**_passed(upstream), **_budget_headers(admission, settlement)},
    )


async def _stream(
    state: ShimState,
    record: CallRecord,
    admission: Admission,
    url: str,
    headers: dict[str, str],
    content: bytes,
) -> Response:
    request = state.http.build_request(
        "POST", url, content=content, headers={**headers, "accept-encoding": "identity"}
    )
    upstream = await _send(state, record, admission, request, stream=True)
    if isinstance(upstream, Response):
        return upstream
    passed = _passed(upstream)

    meter = StreamMeter()
    settling: asyncio.Task[None] | None = None

    async def finish() -> None:
        usage, reported = meter.usage_or_fallback(admission.prompt_tokens)
        record.usage_reported = reported
        if not meter.done:
            record.decision = "allowed_cut_off"
        settlement = await state.gate.settle(admission, usage)
        _record_usage(record, usage, settlement)
        record.emit()

    def settle_once() -> asyncio.Task[None]:
        # Spawning is synchronous, so it works even from a finally running inside a cancelled
        # scope (client gone), and the task it starts cannot be cancelled by that scope.
        nonlocal settling
        if settling is None:
            settling = state.gate.in_background(finish())
        return settling

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_bytes():
                meter.feed(chunk)
                if meter.done:
                    # Charge before the client sees the end of the stream: the charge is in
                    # the outbox (fsynced) before [DONE] is forwarded, and spend read after a
                    # finished stream includes it. Shielded: a disconnect now must not cancel
                    # the charge.
                    await asyncio.shield(settle_once())
                yield chunk
        except httpx.HTTPError:
            # The upstream failed mid-stream: charge what was delivered before the connection
            # to the client is closed.
            await asyncio.shield(settle_once())
            raise
        finally:
            settle_once()
            state.gate.in_background(upstream.aclose())

    headers_out = {
        **passed,
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
        **_budget_headers(admission, None),
    }
    return _SettlingStream(chunks(), settle_once, headers=headers_out)


class _SettlingStream(StreamingResponse):
    """A StreamingResponse that settles even when the body iterator is abandoned mid-way.

    Starlette stops iterating when the client goes away, but leaves a generator suspended at
    its ``yield`` to the garbage collector; this closes it (running its ``finally``) at once.
    """

    def __init__(self, content: AsyncIterator[bytes], on_end: Any, headers: Mapping[str, str]):
        super().__init__(content, headers=headers, media_type="text/event-stream")
        self._on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                closer = getattr(self.body_iterator, "aclose", None)
                if closer is not None:
                    await closer()
            self._on_end()


def _record_usage(record: CallRecord, usage: Any, settlement: Settlement) -> None:
    record.input_tokens = usage.input_tokens
    record.output_tokens = usage.output_tokens
    record.cost_nanos = settlement.cost_nanos


def _budget_headers(admission: Admission, settlement: Settlement | None) -> dict[str, str]:
    if not admission.metered:
        return {}
    headers = {"x-budgetd-reservation-id": admission.reservation_id}
    spend = settlement.spend_nanos if settlement else admission.spend_nanos
    remaining = settlement.remaining_nanos if settlement else admission.remaining_nanos
    if settlement is not None and settlement.spend_nanos is None:
        return headers  # the charge did not reach budgetd: no figures to report
    if spend is not None:
        headers["x-budgetd-spend-usd"] = header_usd(spend)
    if remaining is not None:
        headers["x-budgetd-remaining-usd"] = header_usd(max(remaining, 0))
    return headers


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("request body is not valid JSON", param="body") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", param="body")
    return body


def _model_route(state: ShimState, body: Mapping[str, Any]) -> Any:
    model = body.get("model")
    if model is None:
        raise UnprocessableField("model: field required", param="model")
    if not isinstance(model, str):
        raise UnprocessableField("model: must be a string", param="model")
    route = state.config.models.get(model)
    if route is None:
        known = ", ".join(sorted(state.config.models))
        raise NotFound(f"model {model[:100]!r} does not exist; available: {known}", param="model")
    return route


def _max_output_tokens(kind: str, body: Mapping[str, Any]) -> int | None:
    if kind == "embeddings":
        return None
    fields = ("max_completion_tokens", "max_tokens") if kind == "chat" else ("max_tokens",)
    for field in fields:
        value = body.get(field)
        if value is None:
            continue
        if type(value) is not int or value < 0:
            raise UnprocessableField(f"{field}: must be a non-negative integer", param=field)
        if value > MAX_OUTPUT_TOKENS:
            # Far beyond any model; its reservation would not fit budgetd's int64 amounts.
            raise UnprocessableField(f"{field}: must be at most {MAX_OUTPUT_TOKENS}", param=field)
        return value
    return None


def _upstream_body(body: Mapping[str, Any], admission: Admission, stream: bool) -> dict[str, Any]:
    out = dict(body)
    out["model"] = admission.model.upstream_model
    if admission.injected_max_tokens is not None:
        out["max_tokens"] = admission.injected_max_tokens
    if stream:
        options = out.get("stream_options")
        out["stream_options"] = {
            **(options if isinstance(options, Mapping) else {}),
            "include_usage": True,
        }
    return out


def _output_chars(content: bytes) -> int:
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return 0
    return len(output_text_of(document)) if isinstance(document, Mapping) else 0


def _reason(error: ShimError) -> str:
    return error.type
