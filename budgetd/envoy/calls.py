"""What an LLM call is, read out of the headers and body Envoy forwards.

Pure functions, no I/O: the ext_authz and ext_proc servicers hand them what Envoy sent and get a
:class:`LlmCall` back, which :func:`call_estimate` turns into the domain's ``CallEstimate``.

The customer is named, first match wins, by the configured headers (``x-litellm-customer-id``,
then ``x-litellm-end-user-id``), the JSON body's ``user``, then its ``metadata.user_id`` — the
order LiteLLM uses. A body Envoy cut at ``max_request_bytes`` (``x-envoy-auth-partial-body:
true``) is not valid JSON: the model and output limit are then looked for with a lenient scan of
the prefix, but the customer never is, because a ``"user"`` key in a prefix cannot be told apart
from one nested in a message or in metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from budgetd.domain.spend import CallEstimate
from budgetd.envoy.options import EnvoyOptions

PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body"

# A key followed by a string or integer value, not preceded by a backslash (which would make the
# quote part of an escaped string inside a message).
_MODEL_RE = re.compile(rb'(?<!\\)"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"')
_MAX_TOKENS_RE = re.compile(rb'(?<!\\)"(max_completion_tokens|max_tokens)"\s*:\s*(\d{1,9})\b')


@dataclass(frozen=True, slots=True)
class LlmCall:
    """The facts about a call that budgetd prices and charges."""

    customer_id: str | None
    # Where the customer id came from: a header name, "user", "metadata.user_id", or "".
    customer_source: str = ""
    model: str | None = None
    input_characters: int | None = None
    max_output_tokens: int | None = None
    stream: bool = False
    # Envoy cut the body: the customer may be hidden in the part not seen.
    body_cut: bool = False
    # The parsed JSON body, when there was one; ext_proc may rewrite it.
    document: Mapping[str, Any] | None = None


def lower_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header pairs as a dict with lower-case names; a repeated header keeps its first value."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        headers.setdefault(name.lower(), value)
    return headers


def read_call(
    headers: Mapping[str, str],
    body: bytes | None,
    options: EnvoyOptions,
    *,
    body_cut: bool = False,
) -> LlmCall:
    """Read a call from its (lower-cased) headers and its body as far as Envoy sent it.

    ``body`` is None when Envoy sent no body at all. ``body_cut`` is also taken from the
    ``x-envoy-auth-partial-body`` header, which ext_authz sets when it cut the body.
    """
    body_cut = body_cut or headers.get(PARTIAL_BODY_HEADER, "").lower() == "true"
    customer_id, source = _customer_from_headers(headers, options.customer_headers)
    document = None if body_cut or not body else _json_object(body)
    if document is None:
        model, max_output = _scan_prefix(body or b"")
        size = len(body or b"")
        declared = headers.get("content-length", "")
        if declared.isdigit():
            # The whole body's size is the safe (high) side of the prompt's size.
            size = max(size, int(declared))
        return LlmCall(
            customer_id=customer_id,
            customer_source=source,
            model=model,
            input_characters=size if model else None,
            max_output_tokens=max_output,
            body_cut=body_cut,
        )
    if customer_id is None:
        customer_id, source = _customer_from_body(document)
    return LlmCall(
        customer_id=customer_id,
        customer_source=source,
        model=_string(document.get("model")),
        input_characters=prompt_characters(document),
        max_output_tokens=_output_limit(document),
        stream=document.get("stream") is True,
        document=document,
    )


def call_estimate(call: LlmCall, options: EnvoyOptions, customer_id: str) -> CallEstimate:
    """The domain's estimate of ``call``: priced by tokens when the model is known."""
    if call.model:
        return CallEstimate(
            customer_id=customer_id,
            model=call.model,
            input_characters=call.input_characters or 0,
            max_output_tokens=call.max_output_tokens,
        )
    return CallEstimate(
        customer_id=customer_id, model="", estimated_cost_nanos=options.default_estimate_nanos
    )


def prompt_characters(document: Mapping[str, Any]) -> int:
    """Characters of a call's prompt: chat messages, or a completion's prompt, or inputs."""
    messages = document.get("messages")
    if isinstance(messages, list):
        return sum(
            len(message_text(message.get("content")))
            for message in messages
            if isinstance(message, Mapping)
        )
    total = 0
    for key in ("prompt", "input"):
        value = document.get(key)
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, list):
            total += sum(len(item) for item in value if isinstance(item, str))
    return total


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of parts carrying ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def with_stream_usage(document: Mapping[str, Any]) -> dict[str, Any] | None:
    """The body with ``stream_options.include_usage: true`` added, or None if it has it already.

    OpenAI sends a streamed call's usage only when asked; without it a stream can only be charged
    an estimate.
    """
    stream_options = document.get("stream_options")
    if isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True:
        return None
    if stream_options is not None and not isinstance(stream_options, Mapping):
        return None  # not ours to repair; the upstream will answer 400
    return {**document, "stream_options": {**(stream_options or {}), "include_usage": True}}


def _customer_from_headers(
    headers: Mapping[str, str], names: Iterable[str]
) -> tuple[str | None, str]:
    for name in names:
        value = headers.get(name, "").strip()
        if value:
            return value, name
    return None, ""


def _customer_from_body(document: Mapping[str, Any]) -> tuple[str | None, str]:
    user = _string(document.get("user"))
    if user:
        return user, "user"
    metadata = document.get("metadata")
    if isinstance(metadata, Mapping):
        user_id = _string(metadata.get("user_id"))
        if user_id:
            return user_id, "metadata.user_id"
    return None, ""


def _json_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _scan_prefix(body: bytes) -> tuple[str | None, int | None]:
    model_match = _MODEL_RE.search(body)
    model = None
    if model_match:
        try:
            model = json.loads(b'"' + model_match.group(1) + b'"')
        except ValueError:
            model = None
    limit_match = _MAX_TOKENS_RE.search(body)
    limit = int(limit_match.group(2)) if limit_match else None
    return (model if isinstance(model, str) and model.strip() else None), limit


def _output_limit(document: Mapping[str, Any]) -> int | None:
    # max_completion_tokens supersedes max_tokens in OpenAI's API; either may be sent.
    for key in ("max_completion_tokens", "max_tokens"):
        value = document.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _string(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
