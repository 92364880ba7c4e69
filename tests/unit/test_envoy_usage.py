"""Reading usage out of answers as they stream by, and what a call's hold ends as."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from budgetd.domain.records import Decision, DenialReason
from budgetd.envoy import refusals
from budgetd.envoy.calls import LlmCall
from budgetd.envoy.settlement import plan_settlement
from budgetd.envoy.usage import MAX_JSON_BYTES, ResponseMeter, usage_from_mapping
from budgetd.pricing import TokenUsage

USAGE = {"prompt_tokens": 30, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 4}}


def _sse(*events: object, newline: str = "\n") -> bytes:
    lines = [": keep-alive comment", "event: message"]
    for event in events:
        lines += [f"data: {json.dumps(event)}", ""]
    lines += ["data: [DONE]", ""]
    return newline.join(lines).encode()


STREAM = _sse(
    {"model": "gpt-4o-2024-08-06", "choices": [{"delta": {"role": "assistant"}}]},
    {"choices": [{"delta": {"content": "Hello"}}]},
    {"choices": [{"delta": {"content": " wörld"}}]},
    {"choices": [{"delta": {"tool_calls": [{"function": {"name": "f", "arguments": '{"a":1}'}}]}}]},
    {"choices": [], "usage": USAGE},
)


def test_usage_is_read_from_the_final_sse_chunk() -> None:
    meter = ResponseMeter("text/event-stream; charset=utf-8")
    meter.feed(STREAM)
    meter.finish()

    assert meter.usage == TokenUsage(input_tokens=30, output_tokens=7, cached_input_tokens=4)
    assert meter.model == "gpt-4o-2024-08-06"
    assert meter.output_chars == len("Hello wörld") + len('{"a":1}')


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_chunk_boundaries_do_not_matter(cuts: list[int]) -> None:
    meter = ResponseMeter("text/event-stream")
    edges = [0, *sorted(cuts), len(STREAM)]
    for start, end in itertools.pairwise(edges):
        meter.feed(STREAM[start:end])
    meter.finish()

    assert meter.usage == TokenUsage(input_tokens=30, output_tokens=7, cached_input_tokens=4)
    assert meter.bytes_seen == len(STREAM)


def test_crlf_streams_and_a_missing_final_newline_are_read() -> None:
    meter = ResponseMeter("text/event-stream")
    meter.feed(_sse({"usage": USAGE}, newline="\r\n").rstrip(b"\r\n").replace(b"data: [DONE]", b""))
    meter.finish()

    assert meter.usage is not None and meter.usage.input_tokens == 30


def test_a_stream_without_usage_still_counts_its_text() -> None:
    meter = ResponseMeter("text/event-stream")
    meter.feed(_sse({"choices": [{"delta": {"content": "abcdef"}}]}, "data: {broken", [1]))
    meter.finish()

    assert meter.usage is None
    assert meter.output_chars == 6


def test_a_json_answer_is_read_once_complete() -> None:
    answer = json.dumps(
        {"model": "m", "choices": [{"message": {"content": "four"}}], "usage": USAGE}
    ).encode()
    meter = ResponseMeter("application/json")
    meter.feed(answer[:10])
    assert meter.usage is None
    meter.feed(answer[10:])
    meter.finish()

    assert meter.usage is not None and meter.usage.output_tokens == 7
    assert meter.output_chars == 4


def test_an_oversized_json_answer_is_not_buffered() -> None:
    meter = ResponseMeter("application/json")
    meter.feed(b"x" * (MAX_JSON_BYTES + 1))
    meter.feed(b'{"usage": {"prompt_tokens": 1, "completion_tokens": 1}}')
    meter.finish()

    assert meter.usage is None


def test_usage_objects_in_both_namings_and_malformed_ones() -> None:
    responses_api = {"input_tokens": 5, "output_tokens": 2, "input_tokens_details": {}}
    assert usage_from_mapping(responses_api) == TokenUsage(5, 2, 0)
    # More cached than prompt tokens cannot be priced: clamp rather than fail the charge.
    clamped = usage_from_mapping({**USAGE, "prompt_tokens_details": {"cached_tokens": 99}})
    assert clamped == TokenUsage(30, 7, 30)
    for bad in (
        None,
        [],
        {},
        {"prompt_tokens": -1},
        {"prompt_tokens": 1.5},
        {"prompt_tokens": True},
    ):
        assert usage_from_mapping(bad) is None


CALL = LlmCall(customer_id="c", model="gpt-4o-mini", input_characters=300)


def _meter(data: bytes, content_type: str = "text/event-stream") -> ResponseMeter:
    meter = ResponseMeter(content_type)
    meter.feed(data)
    meter.finish()
    return meter


def test_reported_usage_is_charged_at_the_requested_model() -> None:
    plan = plan_settlement(CALL, 1000, 200, _meter(STREAM), chars_per_token=3)

    assert plan.charge and not plan.estimated
    assert (plan.model, plan.usage) == ("gpt-4o-mini", TokenUsage(30, 7, 4))


def test_without_usage_the_delivered_text_is_estimated() -> None:
    meter = _meter(_sse({"choices": [{"delta": {"content": "x" * 10}}]}))

    plan = plan_settlement(CALL, 1000, 200, meter, chars_per_token=3)

    assert plan.charge and plan.estimated
    assert plan.usage == TokenUsage(input_tokens=100, output_tokens=4)


def test_the_answer_model_prices_when_the_request_named_none() -> None:
    call = LlmCall(customer_id="c")

    listing = _meter(b'{"ok": true}', "application/json")

    assert plan_settlement(call, 1000, 200, _meter(STREAM), 3).model == "gpt-4o-2024-08-06"
    assert not plan_settlement(call, 1000, 200, listing, 3).charge
    assert plan_settlement(call, 1000, 200, listing, 3, default_model="d").model == "d"


def test_failures_and_empty_answers_release() -> None:
    assert not plan_settlement(CALL, 1000, None, None, 3).charge
    assert not plan_settlement(CALL, 1000, 500, _meter(STREAM), 3).charge
    assert not plan_settlement(CALL, 1000, 429, _meter(STREAM), 3).charge
    assert not plan_settlement(CALL, 1000, 200, _meter(b""), 3).charge


def _denied(reason: DenialReason, retry_after_us: int | None = None) -> Decision:
    return Decision(
        allowed=False,
        denial_reason=reason,
        message="why",
        reservation_id=None,
        held_nanos=0,
        spend_nanos=0,
        reserved_nanos=0,
        max_budget_nanos=0,
        retry_after_us=retry_after_us,
    )


def test_denials_map_to_http_statuses_and_openai_errors() -> None:
    budget = refusals.for_decision(_denied(DenialReason.BUDGET_EXCEEDED))
    blocked = refusals.for_decision(_denied(DenialReason.BLOCKED))
    model = refusals.for_decision(_denied(DenialReason.MODEL_NOT_ALLOWED))
    limited = refusals.for_decision(_denied(DenialReason.RATE_LIMITED, retry_after_us=1_200_000))

    assert (budget.http_status, budget.type) == (429, "budget_exceeded")
    assert (blocked.http_status, model.http_status, limited.http_status) == (403, 403, 429)
    assert json.loads(budget.body()) == {
        "error": {
            "message": "why",
            "type": "budget_exceeded",
            "param": None,
            "code": "budget_exceeded",
        }
    }
    assert ("retry-after", "2") in limited.headers()
    assert ("content-type", "application/json") in budget.headers()


def test_a_missing_customer_is_403_when_the_body_was_cut_else_400() -> None:
    headers = ("x-a",)

    assert refusals.missing_customer(body_cut=True, headers=headers).http_status == 403
    assert refusals.missing_customer(body_cut=False, headers=headers).http_status == 400
