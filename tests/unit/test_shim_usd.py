"""USD parsing and rendering at the JSON edge, and output caps from a remaining budget."""

from __future__ import annotations

import pytest

from budgetd.pricing import ModelPrice, TokenUsage
from proxy_shim.gate import affordable_output_tokens
from proxy_shim.usd import header_usd, parse_usd, render_usd


@pytest.mark.parametrize(
    ("value", "nanos"),
    [
        ("0", 0),
        (0, 0),
        (4, 4_000_000_000),
        (0.1, 100_000_000),
        ("0.000000001", 1),
        (" 2.5 ", 2_500_000_000),
        (1e-9, 1),
    ],
)
def test_parse_usd_accepts_numbers_and_numeric_strings(value: object, nanos: int) -> None:
    assert parse_usd(value) == nanos


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        "abc",
        "",
        "NaN",
        "inf",
        float("nan"),
        float("inf"),
        -1,
        "-0.5",
        "0.0000000001",
        "1e30",
        [1],
        {"a": 1},
    ],
)
def test_parse_usd_rejects_everything_else(value: object) -> None:
    with pytest.raises(ValueError):
        parse_usd(value)


def test_rendering() -> None:
    assert render_usd(1_413_000) == 0.001413
    assert render_usd(0) == 0.0
    assert header_usd(41_500) == "0.0000415"
    assert header_usd(4_000_000_000) == "4"


PRICE = ModelPrice(
    "m",
    input_nanos_per_mtok=1_000_000_000,
    output_nanos_per_mtok=3_000_000_000,
    cached_input_nanos_per_mtok=1_000_000_000,
)


def test_affordable_output_tokens_fit_the_remaining_budget() -> None:
    for remaining in (0, 999, 10_000, 10_001, 12_345, 1_000_000):
        tokens = affordable_output_tokens(PRICE, 10, remaining, limit=100_000)
        if tokens:
            assert PRICE.cost_nanos(TokenUsage(10, tokens)) <= remaining
        assert PRICE.cost_nanos(TokenUsage(10, tokens + 1)) > remaining or tokens == 100_000


def test_affordable_output_tokens_bounded_by_the_limit() -> None:
    assert affordable_output_tokens(PRICE, 10, 10**12, limit=50) == 50
    assert affordable_output_tokens(PRICE, 10, 9_999, limit=50) == 0
