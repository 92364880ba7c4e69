"""The request bodies of the model routes, for the OpenAPI document (``/openapi.json``).

The model routes read their JSON themselves (they pass it on to the upstream nearly untouched),
so FastAPI cannot infer these schemas. They state what the shim reads; every other field of
OpenAI's API is allowed and passed through.
"""

from __future__ import annotations

from typing import Any

_CUSTOMER = {
    "user": {"type": "string", "description": "The customer the call is metered to"},
    "metadata": {
        "type": "object",
        "properties": {"user_id": {"type": "string"}},
        "description": "metadata.user_id names the customer when `user` does not",
    },
}
# Far beyond any model's output, and small enough that its reservation fits int64 nano-USD.
MAX_OUTPUT_TOKENS = 1_000_000_000
_OUTPUT = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_OUTPUT_TOKENS,
    "description": "Output limit (tokens)",
}


def _body(properties: dict[str, Any], required: list[str], summary: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": required,
        "properties": {
            "model": {"type": "string", "description": "A model of the shim's config"},
            **properties,
            **_CUSTOMER,
        },
        "additionalProperties": True,
    }
    return {
        "requestBody": {
            "required": True,
            "description": summary,
            "content": {"application/json": {"schema": schema}},
        }
    }


CHAT_BODY = _body(
    {
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"type": "string"},
                    "content": {
                        "anyOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "object"}},
                            {"type": "null"},
                        ]
                    },
                },
            },
        },
        "max_tokens": _OUTPUT,
        "max_completion_tokens": _OUTPUT,
        "stream": {"type": "boolean"},
    },
    ["model", "messages"],
    "An OpenAI chat completion request",
)
COMPLETIONS_BODY = _body(
    {
        "prompt": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "max_tokens": _OUTPUT,
        "stream": {"type": "boolean"},
    },
    ["model", "prompt"],
    "An OpenAI (legacy) completion request",
)
EMBEDDINGS_BODY = _body(
    {"input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}},
    ["model", "input"],
    "An OpenAI embeddings request",
)
