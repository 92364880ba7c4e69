"""Customer id resolution, in LiteLLM's order."""

from __future__ import annotations

import pytest

from proxy_shim.customer_id import resolve_customer_id
from proxy_shim.errors import UnprocessableField


def test_header_wins_over_everything() -> None:
    headers = {"x-litellm-customer-id": "a", "x-litellm-end-user-id": "b"}
    body = {"user": "c", "metadata": {"user_id": "d"}}
    assert resolve_customer_id(headers, body) == "a"


def test_then_end_user_header_then_user_then_metadata() -> None:
    body = {"user": "c", "metadata": {"user_id": "d"}}
    assert resolve_customer_id({"x-litellm-end-user-id": "b"}, body) == "b"
    assert resolve_customer_id({}, body) == "c"
    assert resolve_customer_id({}, {"metadata": {"user_id": "d"}}) == "d"


def test_empty_values_count_as_absent() -> None:
    headers = {"x-litellm-customer-id": "  "}
    assert resolve_customer_id(headers, {"user": "", "metadata": {"user_id": "d"}}) == "d"
    assert resolve_customer_id({}, {"user": "", "metadata": "not-a-dict"}) is None
    assert resolve_customer_id({}, {}) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": 12}, "user"),
        ({"user": "x" * 257}, "user"),
        ({"user": "tab\there"}, "user"),
        ({"metadata": {"user_id": ["a"]}}, "metadata.user_id"),
    ],
)
def test_bad_ids_name_their_source(body: dict, field: str) -> None:
    with pytest.raises(UnprocessableField) as caught:
        resolve_customer_id({}, body)
    assert caught.value.param == field
