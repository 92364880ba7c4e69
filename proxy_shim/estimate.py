"""How big a call's prompt is, before the upstream has counted it.

The estimate is deliberately a little high: real tokenizers average about 4 characters per
token on English text, we count 3, plus OpenAI's per-message framing overhead. Over-estimating
only holds a little too much budget for the duration of a call (the real usage is what gets
charged); under-estimating could admit a call the customer cannot afford.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

CHARS_PER_TOKEN = 3
# OpenAI's chat format wraps each message in a few tokens, and primes the reply with 3.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3


def text_tokens(text: str) -> int:
    """Estimated tokens of a piece of text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def chat_prompt_tokens(messages: Any) -> int:
    """Estimated prompt tokens of a chat call's ``messages``."""
    if not isinstance(messages, list):
        return TOKENS_PER_REPLY
    total = TOKENS_PER_REPLY
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        total += TOKENS_PER_MESSAGE + text_tokens(message_text(message.get("content")))
        name = message.get("name")
        if isinstance(name, str):
            total += text_tokens(name)
    return total


def prompt_tokens(route: str, body: Mapping[str, Any]) -> int:
    """Estimated prompt tokens of a call to ``route`` ("chat", "completions", "embeddings")."""
    if route == "chat":
        return chat_prompt_tokens(body.get("messages"))
    field = "prompt" if route == "completions" else "input"
    value = body.get(field)
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        # Lists of strings, or token arrays (one token each), or lists of token arrays.
        total = 0
        for item in value:
            if isinstance(item, str):
                total += text_tokens(item)
            elif isinstance(item, list):
                total += len(item)
            else:
                total += 1
        return total
    return 0
