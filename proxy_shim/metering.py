"""What a call used, from the upstream's answer: a JSON body or a server-sent-event stream.

The upstream's reported ``usage`` is the truth we charge. When it is missing (an upstream that
does not report it, a stream cut off before its final chunk) we fall back to what we can count:
the prompt estimate plus the output received so far at 4 characters per token, rounded up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from budgetd.pricing import TokenUsage

OUTPUT_CHARS_PER_TOKEN = 4


def usage_from_mapping(usage: Any) -> TokenUsage | None:
    """A ``TokenUsage`` from an OpenAI ``usage`` object, or None if it is absent or malformed."""
    if not isinstance(usage, Mapping):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if completion is None:
        completion = 0
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    cached = details.get("cached_tokens", 0) if isinstance(details, Mapping) else 0
    cached = cached or 0
    counts = (prompt, completion, cached)
    if any(type(c) is not int or c < 0 for c in counts):
        return None
    assert isinstance(prompt, int) and isinstance(completion, int) and isinstance(cached, int)
    return TokenUsage(
        input_tokens=prompt, output_tokens=completion, cached_input_tokens=min(cached, prompt)
    )


def usage_from_json(body: bytes) -> TokenUsage | None:
    """The usage an upstream reported in a JSON answer, or None."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, Mapping):
        return None
    return usage_from_mapping(document.get("usage"))


def output_text_of(document: Mapping[str, Any]) -> str:
    """The generated text in a JSON answer or a stream chunk (chat or completions)."""
    parts: list[str] = []
    choices = document.get("choices")
    if not isinstance(choices, list):
        return ""
    for choice in choices:
        if not isinstance(choice, Mapping):
            continue
        for key in ("delta", "message"):
            inner = choice.get(key)
            if isinstance(inner, Mapping) and isinstance(inner.get("content"), str):
                parts.append(inner["content"])
        if isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    return "".join(parts)


def fallback_usage(prompt_tokens: int, output_chars: int) -> TokenUsage:
    """What to charge when the upstream reported no usage: estimate in, counted out."""
    return TokenUsage(
        input_tokens=prompt_tokens,
        output_tokens=math.ceil(output_chars / OUTPUT_CHARS_PER_TOKEN),
    )


class StreamMeter:
    """Watches an SSE byte stream as it passes through, without changing or holding it.

    Feed it the raw bytes in whatever pieces they arrive; it reassembles lines, reads each
    ``data:`` event, keeps the last ``usage`` seen (OpenAI sends it in the final chunk when
    ``stream_options.include_usage`` is set) and counts the characters of generated text.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self.usage: TokenUsage | None = None
        self.output_chars = 0
        self.done = False

    def feed(self, data: bytes) -> None:
        """Consume the next piece of the stream."""
        self._buffer += data
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return
            line = self._buffer[:newline].rstrip(b"\r")
            self._buffer = self._buffer[newline + 1 :]
            self._line(line)

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            event = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(event, Mapping):
            return
        self.output_chars += len(output_text_of(event))
        usage = usage_from_mapping(event.get("usage"))
        if usage is not None:
            self.usage = usage

    def usage_or_fallback(self, prompt_tokens: int) -> tuple[TokenUsage, bool]:
        """The reported usage, or the fallback; the flag says whether it was reported."""
        if self.usage is not None:
            return self.usage, True
        return fallback_usage(prompt_tokens, self.output_chars), False
