"""Reading a call (customer, model, size, limit) out of what Envoy forwards."""

from __future__ import annotations

import json

import pytest

from budgetd.envoy.calls import call_estimate, read_call, with_stream_usage
from budgetd.envoy.options import EnvoyOptions
from budgetd.settings import Settings

OPTIONS = EnvoyOptions()


def _body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_headers_win_over_the_body_in_litellm_order() -> None:
    body = _body(model="m", user="from-body", metadata={"user_id": "from-metadata"})
    both = {"x-litellm-customer-id": "a", "x-litellm-end-user-id": "b"}

    assert read_call(both, body, OPTIONS).customer_id == "a"
    assert read_call({"x-litellm-end-user-id": "b"}, body, OPTIONS).customer_id == "b"
    assert read_call({}, body, OPTIONS).customer_id == "from-body"
    assert read_call({}, _body(metadata={"user_id": "m1"}), OPTIONS).customer_id == "m1"


@pytest.mark.parametrize("user", ["", "   ", 42, None, ["x"]])
def test_an_empty_or_non_string_user_names_nobody(user: object) -> None:
    call = read_call({"x-litellm-customer-id": " "}, _body(model="m", user=user), OPTIONS)

    assert call.customer_id is None


def test_the_header_list_is_configurable() -> None:
    settings = Settings(envoy_customer_headers=" X-Tenant , x-user,")
    options = EnvoyOptions.from_settings(settings)

    assert options.customer_headers == ("x-tenant", "x-user")
    assert read_call({"x-user": "u"}, None, options).customer_id == "u"
    assert read_call({"x-litellm-customer-id": "c"}, None, options).customer_id is None


def test_a_chat_body_gives_model_prompt_size_limit_and_stream() -> None:
    body = _body(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "abc"},
            {"role": "user", "content": [{"type": "text", "text": "defg"}, {"type": "image"}]},
            {"role": "assistant", "content": None},
        ],
        max_tokens=50,
        max_completion_tokens=40,
        stream=True,
    )

    call = read_call({}, body, OPTIONS)

    assert (call.model, call.input_characters, call.max_output_tokens) == ("gpt-4o-mini", 7, 40)
    assert call.stream and not call.body_cut


def test_completion_and_embedding_inputs_count_too() -> None:
    assert read_call({}, _body(model="m", prompt="12345"), OPTIONS).input_characters == 5
    assert read_call({}, _body(model="m", input=["ab", "cd", 7]), OPTIONS).input_characters == 4


@pytest.mark.parametrize("limit", [True, -1, "12", 1.5])
def test_a_malformed_output_limit_is_ignored(limit: object) -> None:
    assert read_call({}, _body(model="m", max_tokens=limit), OPTIONS).max_output_tokens is None


def test_a_cut_body_never_names_the_customer_but_still_gives_model_and_limit() -> None:
    body = (
        b'{"model": "gpt-4o", "max_completion_tokens": 77, "messages": [{"role": "user", '
        b'"content": "he said \\"model\\": \\"cheap\\" and \\"user\\": \\"x\\"'
    )
    headers = {"x-envoy-auth-partial-body": "true", "content-length": "90000"}

    call = read_call(headers, body + b"\xc3", OPTIONS)  # cut inside a UTF-8 character

    assert call.body_cut
    assert call.customer_id is None
    assert (call.model, call.max_output_tokens) == ("gpt-4o", 77)
    assert call.input_characters == 90000  # the whole body's size, the safe side


def test_a_cut_body_with_a_customer_header_is_fine() -> None:
    headers = {"x-envoy-auth-partial-body": "true", "x-litellm-customer-id": "c"}

    call = read_call(headers, b'{"messages": [{"content": "aaaa', OPTIONS)

    assert (call.customer_id, call.model, call.body_cut) == ("c", None, True)


@pytest.mark.parametrize("body", [None, b"", b"not json", b"[1, 2]", b"\xff\xfe"])
def test_no_json_object_means_no_model(body: bytes | None) -> None:
    call = read_call({"x-litellm-customer-id": "c"}, body, OPTIONS)

    assert (call.customer_id, call.model, call.document) == ("c", None, None)


def test_the_estimate_prices_tokens_when_the_model_is_known() -> None:
    call = read_call({}, _body(model="m", user="u", messages=[{"content": "abc"}]), OPTIONS)

    estimate = call_estimate(call, OPTIONS, "u")

    assert (estimate.model, estimate.input_characters, estimate.max_output_tokens) == ("m", 3, None)
    assert estimate.estimated_cost_nanos is None


def test_without_a_model_the_default_estimate_is_held() -> None:
    options = EnvoyOptions(default_estimate_nanos=123)

    estimate = call_estimate(read_call({}, None, options), options, "u")

    assert (estimate.model, estimate.estimated_cost_nanos) == ("", 123)


def test_stream_usage_is_requested_once_and_other_options_are_kept() -> None:
    asked = with_stream_usage({"stream": True, "stream_options": {"x": 1}})

    assert asked == {"stream": True, "stream_options": {"x": 1, "include_usage": True}}
    assert with_stream_usage(asked) is None
    assert with_stream_usage({"stream_options": "bogus"}) is None
