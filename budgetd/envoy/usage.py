"""Reading what a call used out of an OpenAI-style answer as its bytes go by.

Two shapes: a JSON answer (``usage`` at the top level), read once complete, and a server-sent
event stream (``text/event-stream``) whose ``data:`` lines are JSON chunks, the last of them
carrying ``usage`` when the call asked for ``stream_options.include_usage``. The meter never
holds a chunk back: it copies nothing but the current unfinished SSE line (or, for JSON, the
answer up to a cap) and can be fed chunk by chunk as Envoy forwards them.

Alongside the usage it counts the characters of generated text, so a call whose answer carries
no usage (a stream cut short, an upstream that does not report it) can still be charged an
estimate of what it produced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from budgetd.pricing import TokenUsage

# A JSON answer larger than this is not buffered for its usage (it is charged by estimate).
MAX_JSON_BYTES = 16 * 1024 * 1024
# An SSE line longer than this is skipped rather than buffered without bound.
MAX_SSE_LINE_BYTES = 1024 * 1024


def usage_from_mapping(usage: Any) -> TokenUsage | None:
    """A TokenUsage from an OpenAI ``usage`` object (chat or responses naming), or None."""
    if not isinstance(usage, Mapping):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not _count(prompt) or not _count(completion):
        return None
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    cached = details.get("cached_tokens", 0) if isinstance(details, Mapping) else 0
    if not _count(cached):
        cached = 0
    return TokenUsage(
        input_tokens=prompt, output_tokens=completion, cached_input_tokens=min(cached, prompt)
    )


class ResponseMeter:
    """Accumulates what an answer says about its usage; feed it the body chunk by chunk."""

    def __init__(self, content_type: str = "") -> None:
        self.streaming = content_type.split(";")[0].strip().lower() == "text/event-stream"
        self.usage: TokenUsage | None = None
        self.model: str | None = None
        self.output_chars = 0
        self.bytes_seen = 0
        self._buffer = bytearray()
        self._overflow = False

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body."""
        self.bytes_seen += len(chunk)
        if self._overflow and not self.streaming:
            return
        self._buffer += chunk
        if not self.streaming:
            if len(self._buffer) > MAX_JSON_BYTES:
                self._overflow = True
                self._buffer.clear()
            return
        *lines, rest = bytes(self._buffer).split(b"\n")
        self._buffer = bytearray(rest)
        for line in lines:
            self._line(line)
        if len(self._buffer) > MAX_SSE_LINE_BYTES:
            self._buffer.clear()

    def finish(self) -> None:
        """The body is complete: read what is left."""
        data, self._buffer = bytes(self._buffer), bytearray()
        if self.streaming:
            self._line(data)
        elif not self._overflow and data:
            try:
                document = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                return
            if isinstance(document, Mapping):
                self._document(document, delta=False)

    def _line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line.startswith(b"data:"):
            return  # comments, event names, ids, blank separators
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]":
            return
        try:
            event = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return
        if isinstance(event, Mapping):
            self._document(event, delta=True)

    def _document(self, document: Mapping[str, Any], *, delta: bool) -> None:
        usage = usage_from_mapping(document.get("usage"))
        if usage is not None:
            self.usage = usage
        model = document.get("model")
        if isinstance(model, str) and model:
            self.model = model
        choices = document.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if isinstance(choice, Mapping):
                self.output_chars += _generated_chars(choice, delta=delta)


def _generated_chars(choice: Mapping[str, Any], *, delta: bool) -> int:
    """Characters a choice generated: text, or the arguments of the tools it calls."""
    part = choice.get("delta" if delta else "message")
    if not isinstance(part, Mapping):
        text = choice.get("text")  # the completions API
        return len(text) if isinstance(text, str) else 0
    total = 0
    content = part.get("content")
    if isinstance(content, str):
        total += len(content)
    tool_calls = part.get("tool_calls")
    if isinstance(tool_calls, list):
        for tool_call in tool_calls:
            function = tool_call.get("function") if isinstance(tool_call, Mapping) else None
            arguments = function.get("arguments") if isinstance(function, Mapping) else None
            if isinstance(arguments, str):
                total += len(arguments)
    return total


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
