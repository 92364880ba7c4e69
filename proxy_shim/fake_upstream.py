"""A built-in fake OpenAI upstream, so the whole system (and its tests) runs offline.

It answers ``/v1/chat/completions`` (streaming included), ``/v1/completions`` and
``/v1/embeddings`` with deterministic text and realistic usage: prompt tokens are
``ceil(chars / 4)`` of the prompt text plus OpenAI's chat framing (4 per message, 3 for the
reply), completion tokens are ``min(max_tokens, N)`` where N is the configured answer length,
one token per word of the answer. A stream sends one chunk per word, optionally paced
(``chunk_delay``), then a usage chunk when ``stream_options.include_usage`` is true, then
``[DONE]``.

An upstream model named ``error-<status>`` (e.g. ``error-503``) answers with that HTTP status
and an OpenAI error body, so tests can exercise upstream failures through the config file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from proxy_shim.estimate import message_text

_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "budgetd",
    "keeps",
    "an",
    "exact",
    "ledger",
    "of",
    "every",
    "token",
    "spent",
    "by",
    "every",
    "customer",
    "so",
    "nobody",
    "overspends",
]
EMBEDDING_DIMENSIONS = 8


def fake_prompt_tokens(kind: str, body: Mapping[str, Any]) -> int:
    """The prompt tokens the fake reports: ceil(chars/4) plus chat framing."""
    if kind == "chat":
        messages = body.get("messages")
        total = 3
        for message in messages if isinstance(messages, list) else []:
            if isinstance(message, Mapping):
                total += 4 + math.ceil(len(message_text(message.get("content"))) / 4)
        return total
    value = body.get("prompt" if kind == "completions" else "input")
    items = value if isinstance(value, list) else [value]
    return sum(math.ceil(len(item) / 4) if isinstance(item, str) else 1 for item in items)


def answer_words(body: Mapping[str, Any], length: int) -> list[str]:
    """The deterministic answer: ``min(max_tokens, length)`` words."""
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    count = length if type(limit) is not int else max(0, min(limit, length))
    return [_WORDS[i % len(_WORDS)] for i in range(count)]


def _text(words: list[str]) -> str:
    # One token per word: every word but the first carries its leading space, as BPE does.
    return "".join(word if i == 0 else f" {word}" for i, word in enumerate(words))


def create_fake_upstream(*, answer_tokens: int = 24, chunk_delay: float = 0.0) -> Starlette:
    """The fake upstream app; ``chunk_delay`` seconds between stream chunks."""

    async def chat(request: Request) -> Response:
        return await _complete(request, "chat")

    async def completions(request: Request) -> Response:
        return await _complete(request, "completions")

    async def _complete(request: Request, kind: str) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        model = str(body.get("model", ""))
        if model.startswith("error-"):
            return _error(int(model.removeprefix("error-") or 500), "simulated upstream error")
        words = answer_words(body, answer_tokens)
        usage = {
            "prompt_tokens": fake_prompt_tokens(kind, body),
            "completion_tokens": len(words),
            "total_tokens": fake_prompt_tokens(kind, body) + len(words),
        }
        ident = (
            "chatcmpl-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
        )
        created = int(time.time())
        finish = "length" if len(words) < answer_tokens else "stop"
        if body.get("stream") is True:
            options = body.get("stream_options")
            with_usage = isinstance(options, Mapping) and options.get("include_usage") is True
            return StreamingResponse(
                _chunks(kind, ident, created, model, words, finish, usage if with_usage else None),
                media_type="text/event-stream",
            )
        text = _text(words)
        if kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            obj = "text_completion"
        return JSONResponse(
            {
                "id": ident,
                "object": obj,
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        )

    async def _chunks(
        kind: str,
        ident: str,
        created: int,
        model: str,
        words: list[str],
        finish: str,
        usage: dict[str, int] | None,
    ) -> AsyncIterator[bytes]:
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
            payload = {"id": ident, "object": obj, "created": created, "model": model}
            payload["choices"] = choices
            if usage is not None:
                payload["usage"] = None
            payload.update(extra or {})
            return f"data: {json.dumps(payload)}\n\n".encode()

        for i, word in enumerate(words):
            piece = word if i == 0 else f" {word}"
            if kind == "chat":
                delta: dict[str, Any] = {"content": piece}
                if i == 0:
                    delta["role"] = "assistant"
                choice = {"index": 0, "delta": delta, "finish_reason": None}
            else:
                choice = {"index": 0, "text": piece, "finish_reason": None}
            yield event([choice])
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
        last = (
            {"index": 0, "delta": {}, "finish_reason": finish}
            if kind == "chat"
            else {"index": 0, "text": "", "finish_reason": finish}
        )
        yield event([last])
        if usage is not None:
            yield event([], {"usage": usage})
        yield b"data: [DONE]\n\n"

    async def embeddings(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        model = str(body.get("model", ""))
        if model.startswith("error-"):
            return _error(int(model.removeprefix("error-") or 500), "simulated upstream error")
        value = body.get("input")
        items = value if isinstance(value, list) else [value]
        data = []
        for index, item in enumerate(items):
            digest = hashlib.sha256(json.dumps(item).encode()).digest()
            vector = [round(b / 255 - 0.5, 6) for b in digest[:EMBEDDING_DIMENSIONS]]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = fake_prompt_tokens("embeddings", body)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = []
    for prefix in ("", "/v1"):
        routes += [
            Route(f"{prefix}/chat/completions", chat, methods=["POST"]),
            Route(f"{prefix}/completions", completions, methods=["POST"]),
            Route(f"{prefix}/embeddings", embeddings, methods=["POST"]),
        ]
    routes.append(Route("/health", health, methods=["GET"]))
    return Starlette(routes=routes)


async def _body(request: Request) -> dict[str, Any] | Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _error(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "request body must be a JSON object")
    return body


def _error(status: int, message: str) -> Response:
    return JSONResponse(
        {"error": {"message": message, "type": "upstream_error", "param": None, "code": status}},
        status_code=status,
    )
