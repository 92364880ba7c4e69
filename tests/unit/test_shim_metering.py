"""Usage extraction from JSON answers and SSE streams."""

from __future__ import annotations

import json

from budgetd.pricing import TokenUsage
from proxy_shim.metering import StreamMeter, fallback_usage, usage_from_json


def test_usage_from_json_answer() -> None:
    body = json.dumps(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        }
    ).encode()
    assert usage_from_json(body) == TokenUsage(10, 5, 4)


def test_embeddings_usage_has_no_completion() -> None:
    body = b'{"data": [], "usage": {"prompt_tokens": 7, "total_tokens": 7}}'
    assert usage_from_json(body) == TokenUsage(7, 0, 0)


def test_missing_or_malformed_usage_is_none() -> None:
    assert usage_from_json(b"not json") is None
    assert usage_from_json(b"[]") is None
    assert usage_from_json(b'{"usage": null}') is None
    assert usage_from_json(b'{"usage": {"prompt_tokens": -1, "completion_tokens": 1}}') is None
    assert usage_from_json(b'{"usage": {"prompt_tokens": 1.5, "completion_tokens": 1}}') is None
    assert usage_from_json(b'{"usage": {"prompt_tokens": true, "completion_tokens": 1}}') is None


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def test_stream_usage_from_final_chunk_across_split_pieces() -> None:
    stream = (
        _event({"choices": [{"delta": {"content": "Hello"}}], "usage": None})
        + _event({"choices": [{"delta": {"content": " world"}}], "usage": None})
        + _event({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}})
        + b"data: [DONE]\n\n"
    )
    meter = StreamMeter()
    for i in range(0, len(stream), 7):  # arbitrary chunk boundaries, mid-line and mid-UTF-8
        meter.feed(stream[i : i + 7])
    assert meter.done
    assert meter.output_chars == len("Hello world")
    assert meter.usage_or_fallback(100) == (TokenUsage(9, 2, 0), True)


def test_cut_off_stream_falls_back_to_counted_output() -> None:
    meter = StreamMeter()
    meter.feed(_event({"choices": [{"delta": {"content": "abcdefghi"}}]}))
    meter.feed(b'data: {"choices": [{"delta": {"content": "tru')  # cut mid-event
    assert not meter.done
    assert meter.usage_or_fallback(12) == (TokenUsage(12, 3, 0), False)
    assert fallback_usage(5, 0) == TokenUsage(5, 0, 0)


def test_completions_stream_text_is_counted() -> None:
    meter = StreamMeter()
    meter.feed(_event({"choices": [{"text": "abcd"}]}) + b": keep-alive comment\r\n\r\n")
    assert meter.output_chars == 4
