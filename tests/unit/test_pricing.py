"""Tests for budgetd.pricing: exact integer costs, the shipped table and the price file."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import genai_prices
import pytest
from genai_prices import types as gp
from hypothesis import given, settings
from hypothesis import strategies as st

from budgetd.pricing import (
    ModelPrice,
    PriceFileError,
    PriceTable,
    PriceTier,
    TokenUsage,
    known_max_output_tokens,
    lookup_shipped,
    usd_per_mtok_to_nanos,
)
from budgetd.pricing.shipped import _convert_model

NANOS_PER_USD = 1_000_000_000


def flat(model: str, input_usd: str, output_usd: str, cached_usd: str | None = None) -> ModelPrice:
    """A flat ModelPrice from USD-per-MTok strings."""
    input_rate = usd_per_mtok_to_nanos(input_usd, model=model, field="input")
    return ModelPrice(
        model=model,
        input_nanos_per_mtok=input_rate,
        output_nanos_per_mtok=usd_per_mtok_to_nanos(output_usd, model=model, field="output"),
        cached_input_nanos_per_mtok=(
            input_rate
            if cached_usd is None
            else usd_per_mtok_to_nanos(cached_usd, model=model, field="cached")
        ),
    )


def genai_nanos(
    model: str,
    usage: TokenUsage,
    *,
    provider_id: str | None = None,
    at: datetime | None = None,
) -> int:
    """genai-prices' own total for ``usage``, in nanos rounded up, as the reference result."""
    calc = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cached_input_tokens,
            output_tokens=usage.output_tokens,
        ),
        model,
        provider_id=provider_id,
        genai_request_timestamp=at,
    )
    return math.ceil(calc.total_price * NANOS_PER_USD)


# --- converting USD prices -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "nanos"),
    [
        ("0.15", 150_000_000),
        (Decimal("2.50"), 2_500_000_000),
        (3, 3_000_000_000),
        ("0", 0),
        ("0.0375", 37_500_000),
        ("0.000000001", 1),
        ("0.1500000000000", 150_000_000),  # trailing zeros beyond 9 places are still exact
        (" 1.25 ", 1_250_000_000),
        ("1E+3", 1_000_000_000_000),
        ("0E-20", 0),
    ],
)
def test_usd_per_mtok_to_nanos_is_exact(value: Decimal | int | str, nanos: int) -> None:
    assert usd_per_mtok_to_nanos(value, model="m", field="f") == nanos


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0.0000000001", "more than 9 decimal places"),
        # 29 significant digits: Decimal's default context would round this to exactly 1.
        ("1.0000000000000000000000000001", "more than 9 decimal places"),
        ("-0.5", "negative"),
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        ("abc", "not a number"),
        ("1E+999999", "price above"),
        (0.5, "expected a Decimal"),
        (True, "expected a Decimal"),
    ],
)
def test_usd_per_mtok_to_nanos_rejects(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        usd_per_mtok_to_nanos(value, model="my-model", field="input_per_mtok")  # type: ignore[arg-type]
    assert "'my-model'" in str(info.value)
    assert "'input_per_mtok'" in str(info.value)


@settings(max_examples=300)
@given(st.decimals(min_value=0, max_value=1_000_000, places=12))
def test_usd_per_mtok_to_nanos_accepts_exactly_the_whole_nano_prices(value: Decimal) -> None:
    scaled = Fraction(value) * NANOS_PER_USD
    if scaled.denominator == 1:
        assert usd_per_mtok_to_nanos(value, model="m", field="f") == scaled.numerator
    else:
        with pytest.raises(ValueError, match="more than 9 decimal places"):
            usd_per_mtok_to_nanos(value, model="m", field="f")


# --- cost_nanos ------------------------------------------------------------------------------


def test_cost_of_gpt_4o_mini_matches_the_published_example() -> None:
    price = lookup_shipped("gpt-4o-mini")
    assert price is not None
    usage = TokenUsage(input_tokens=1000, output_tokens=500)
    # genai-prices: $0.00045 == 450_000 nanos.
    assert price.cost_nanos(usage) == 450_000
    assert genai_nanos("gpt-4o-mini", usage) == 450_000


def test_fractional_nanos_per_token_round_up() -> None:
    # $0.0375 / MTok is 37.5 nanos per token.
    price = flat("cheap", "0.0375", "0.0375")
    assert price.cost_nanos(TokenUsage(input_tokens=1)) == 38
    assert price.cost_nanos(TokenUsage(input_tokens=3)) == 113  # 112.5 -> 113
    assert price.cost_nanos(TokenUsage(input_tokens=2)) == 75  # exact, no rounding
    tiny = flat("tiny", "0.0001", "0")  # 0.1 nano per token
    assert tiny.cost_nanos(TokenUsage(input_tokens=1)) == 1
    assert tiny.cost_nanos(TokenUsage(input_tokens=10)) == 1
    assert tiny.cost_nanos(TokenUsage(input_tokens=11)) == 2


def test_one_rounding_per_call_not_per_component() -> None:
    price = flat("cheap", "0.0375", "0.0375", "0.0375")
    usage = TokenUsage(input_tokens=2, output_tokens=1, cached_input_tokens=1)
    # 37.5 * 3 = 112.5 -> 113; rounding each of the three components would give 38 * 3 = 114.
    assert price.cost_nanos(usage) == 113


def test_zero_usage_costs_nothing() -> None:
    assert flat("m", "1", "2").cost_nanos(TokenUsage()) == 0


def test_cached_tokens_are_priced_at_the_cached_rate() -> None:
    price = flat("gpt-4o-mini-like", "0.15", "0.60", "0.075")
    usage = TokenUsage(input_tokens=1000, output_tokens=0, cached_input_tokens=400)
    # 600 uncached * 150 + 400 cached * 75 nanos per 1000 tokens.
    assert price.cost_nanos(usage) == 90_000 + 30_000
    shipped = lookup_shipped("gpt-4o-mini")
    assert shipped is not None
    assert shipped.cached_input_nanos_per_mtok < shipped.input_nanos_per_mtok
    assert shipped.cost_nanos(usage) == genai_nanos("gpt-4o-mini", usage)


def test_cached_rate_defaults_to_input_rate_in_the_shipped_table() -> None:
    price = lookup_shipped("mistral-large-latest")
    assert price is not None
    assert price.cached_input_nanos_per_mtok == price.input_nanos_per_mtok


def test_tiers_switch_every_token_to_the_higher_rate_above_the_threshold() -> None:
    price = ModelPrice(
        model="tiered",
        input_nanos_per_mtok=1_000_000_000,
        output_nanos_per_mtok=2_000_000_000,
        cached_input_nanos_per_mtok=100_000_000,
        tiers=(PriceTier(200_000, 3_000_000_000, 4_000_000_000, 300_000_000),),
    )
    at_threshold = TokenUsage(
        input_tokens=200_000, output_tokens=1_000, cached_input_tokens=100_000
    )
    above = TokenUsage(input_tokens=200_001, output_tokens=1_000, cached_input_tokens=100_000)
    assert price.cost_nanos(at_threshold) == 100_000_000 + 10_000_000 + 2_000_000
    assert price.cost_nanos(above) == 300_003_000 + 30_000_000 + 4_000_000
    assert price.rates_for(200_000) == (1_000_000_000, 2_000_000_000, 100_000_000)
    assert price.rates_for(200_001) == (3_000_000_000, 4_000_000_000, 300_000_000)


@pytest.mark.parametrize(
    "usage",
    [
        TokenUsage(input_tokens=-1),
        TokenUsage(output_tokens=-1),
        TokenUsage(input_tokens=5, cached_input_tokens=-1),
        TokenUsage(input_tokens=5, cached_input_tokens=6),
    ],
)
def test_cost_nanos_rejects_invalid_usage(usage: TokenUsage) -> None:
    with pytest.raises(ValueError):
        flat("m", "1", "1").cost_nanos(usage)


@pytest.mark.parametrize("count", [1.0, True, Decimal(1)])
def test_cost_nanos_rejects_non_int_counts(count: object) -> None:
    with pytest.raises(TypeError):
        flat("m", "1", "1").cost_nanos(TokenUsage(output_tokens=count))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"input_nanos_per_mtok": -1}, "input_nanos_per_mtok"),
        ({"output_nanos_per_mtok": True}, "output_nanos_per_mtok"),
        ({"cached_input_nanos_per_mtok": 1.5}, "cached_input_nanos_per_mtok"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        (
            {"tiers": (PriceTier(10, 1, 1, 1), PriceTier(10, 2, 2, 2))},
            "tiers[1].above_input_tokens",
        ),
        ({"tiers": (PriceTier(10, -1, 1, 1),)}, "tiers[0].input_nanos_per_mtok"),
    ],
)
def test_model_price_rejects_invalid_fields(changes: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {
        "model": "bad-model",
        "input_nanos_per_mtok": 1,
        "output_nanos_per_mtok": 1,
        "cached_input_nanos_per_mtok": 1,
        **changes,
    }
    with pytest.raises(ValueError, match=re.escape(field)) as info:
        ModelPrice(**fields)  # type: ignore[arg-type]
    assert "'bad-model'" in str(info.value)


@st.composite
def priced_calls(draw: st.DrawFn) -> tuple[ModelPrice, TokenUsage]:
    rate = st.integers(min_value=0, max_value=10**13)  # up to $10,000 per MTok
    thresholds = draw(st.lists(st.integers(0, 2_000_000), max_size=3, unique=True))
    tiers = tuple(
        PriceTier(threshold, draw(rate), draw(rate), draw(rate)) for threshold in sorted(thresholds)
    )
    price = ModelPrice("prop", draw(rate), draw(rate), draw(rate), tiers=tiers)
    cached = draw(st.integers(0, 10**9))
    usage = TokenUsage(
        input_tokens=cached + draw(st.integers(0, 10**9)),
        output_tokens=draw(st.integers(0, 10**9)),
        cached_input_tokens=cached,
    )
    return price, usage


@settings(max_examples=500)
@given(priced_calls())
def test_cost_nanos_is_the_exact_cost_rounded_up(call: tuple[ModelPrice, TokenUsage]) -> None:
    price, usage = call
    rates = (price.input_nanos_per_mtok, price.output_nanos_per_mtok)
    cached_rate = price.cached_input_nanos_per_mtok
    for tier in price.tiers:
        if usage.input_tokens > tier.above_input_tokens:
            rates = (tier.input_nanos_per_mtok, tier.output_nanos_per_mtok)
            cached_rate = tier.cached_input_nanos_per_mtok
    exact = (
        Fraction(usage.input_tokens - usage.cached_input_tokens, 1_000_000) * rates[0]
        + Fraction(usage.cached_input_tokens, 1_000_000) * cached_rate
        + Fraction(usage.output_tokens, 1_000_000) * rates[1]
    )
    cost = price.cost_nanos(usage)
    assert type(cost) is int
    assert cost == math.ceil(exact)


# --- the shipped table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "provider_id"),
    [
        ("gpt-4o-mini", None),  # OpenAI
        ("gpt-4o-mini-2024-07-18", None),
        ("gpt-4.1", None),
        ("claude-3-5-sonnet-latest", None),  # Anthropic
        ("claude-sonnet-4-5", None),  # tiered above 200k input tokens
        ("gemini-2.0-flash", None),  # Google
        ("gemini-2.5-pro", None),  # tiered
        ("mistral-large-latest", None),  # Mistral
        ("llama-3.3-70b-versatile", "groq"),  # open weights, no provider pattern claims it
    ],
)
@pytest.mark.parametrize(
    "usage",
    [
        TokenUsage(input_tokens=1000, output_tokens=500),
        TokenUsage(input_tokens=12_345, output_tokens=678, cached_input_tokens=10_000),
        TokenUsage(input_tokens=250_000, output_tokens=4_000, cached_input_tokens=50_000),
    ],
)
def test_shipped_prices_agree_with_genai_prices(
    model: str, provider_id: str | None, usage: TokenUsage
) -> None:
    price = lookup_shipped(model)
    assert price is not None
    assert price.model == model
    assert price.cost_nanos(usage) == genai_nanos(model, usage, provider_id=provider_id)


def test_shipped_tiers_are_modelled() -> None:
    price = lookup_shipped("claude-sonnet-4-5")
    assert price is not None
    assert price.tiers
    small = TokenUsage(input_tokens=200_000)
    large = TokenUsage(input_tokens=200_001)
    assert price.cost_nanos(large) > price.cost_nanos(small) * 3 // 2


@pytest.mark.parametrize(
    ("ref", "same_as"),
    [
        ("openai/gpt-4o", "gpt-4o"),
        ("anthropic/claude-3-5-sonnet", "claude-3-5-sonnet-latest"),
        ("GPT-4o-Mini", "gpt-4o-mini"),
        ("groq/llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
    ],
)
def test_shipped_accepts_provider_refs_and_any_case(ref: str, same_as: str) -> None:
    price = lookup_shipped(ref)
    expected = lookup_shipped(same_as)
    assert price is not None
    assert expected is not None
    assert price.model == ref
    assert price.cost_nanos(TokenUsage(1000, 1000, 500)) == expected.cost_nanos(
        TokenUsage(1000, 1000, 500)
    )


def test_shipped_finds_hosted_open_weight_names() -> None:
    assert lookup_shipped("meta-llama/llama-3.1-70b-instruct") is not None


@pytest.mark.parametrize(
    "model",
    ["definitely-not-a-model-xyz", "", "   ", "tts-1", "whisper-1", "nosuchprovider/gpt-9"],
)
def test_shipped_unknown_or_not_token_priced_is_none(model: str) -> None:
    assert lookup_shipped(model) is None


def test_shipped_embedding_model_has_no_output_price() -> None:
    price = lookup_shipped("text-embedding-3-small")
    assert price is not None
    assert price.input_nanos_per_mtok > 0
    assert price.output_nanos_per_mtok == 0


def test_shipped_lookups_are_cached() -> None:
    assert lookup_shipped("gpt-4o") is lookup_shipped("gpt-4o")


@pytest.mark.parametrize("hour", [1, 20])
def test_shipped_time_dependent_prices_follow_the_call_time(hour: int) -> None:
    # DeepSeek prices by time of day; genai-prices' own choice at that time is the reference.
    at = datetime(2025, 6, 1, hour, tzinfo=UTC)
    price = lookup_shipped("deepseek-chat", at=at)
    assert price is not None
    usage = TokenUsage(input_tokens=100_000, output_tokens=10_000, cached_input_tokens=20_000)
    assert price.cost_nanos(usage) == genai_nanos("deepseek-chat", usage, at=at)


def test_shipped_prices_with_float_artifacts_are_not_priced() -> None:
    info = gp.ModelInfo(
        id="artifact",
        match=gp.ClauseEquals(equals="artifact"),
        prices=gp.ModelPrice(input_mtok=Decimal("1.0399999999999998"), output_mtok=Decimal(1)),
    )
    assert _convert_model("artifact", info) is None


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        ("gpt-4o", 16_384),
        ("gpt-4o-2024-08-06", 16_384),
        ("gpt-4o-2024-05-13", 4_096),
        ("openai/gpt-4o-mini", 16_384),
        ("gpt-4.1-nano-2025-04-14", 32_768),
        ("o3-mini-2025-01-31", 100_000),
        ("o1-preview-2024-09-12", 32_768),
        ("gpt-3.5-turbo-0125", 4_096),
        ("claude-3-5-sonnet-20241022", 8_192),
        ("claude-3-5-sonnet-latest", 8_192),
        ("claude-sonnet-4-20250514", 64_000),
        ("claude-opus-4-1-20250805", 32_000),
        ("gemini-2.5-flash-preview-05-20", 65_536),
        ("gemini-1.5-pro-002", 8_192),
        # A different model sharing a prefix must not inherit a (possibly lower) limit.
        ("claude-opus-4-6", None),
        ("gpt-4o-audio-preview", None),
        ("mistral-large-latest", None),
    ],
)
def test_known_max_output_tokens(model: str, limit: int | None) -> None:
    assert known_max_output_tokens(model) == limit


def test_shipped_prices_carry_the_known_output_limit() -> None:
    price = lookup_shipped("claude-3-5-sonnet-latest")
    assert price is not None
    assert price.max_output_tokens == 8_192


# --- PriceTable and the price file -----------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(text, encoding="utf-8")
    return path


EXAMPLE = """
models:
  azure-gpt-3.5:
    same_as: gpt-3.5-turbo
  my-llama:
    input_per_mtok: "0.20"
    output_per_mtok: 0.60
    cached_input_per_mtok: "0.10"
    max_output_tokens: 8192
  plain-model:
    input_per_mtok: 1
    output_per_mtok: 1.5e-3
  gpt-4o:
    output_per_mtok: "9.50"
  azure-4o:
    same_as: gpt-4o
  llama-alias:
    same_as: my-llama
  alias-of-alias:
    same_as: llama-alias
"""


def test_price_file_new_model(tmp_path: Path) -> None:
    table = PriceTable.from_file(write(tmp_path, EXAMPLE))
    assert table.get("my-llama") == ModelPrice(
        model="my-llama",
        input_nanos_per_mtok=200_000_000,
        output_nanos_per_mtok=600_000_000,  # the YAML float 0.60 via Decimal("0.6")
        cached_input_nanos_per_mtok=100_000_000,
        max_output_tokens=8192,
    )
    plain = table.get("plain-model")
    assert plain is not None
    assert plain.input_nanos_per_mtok == 1_000_000_000
    assert plain.output_nanos_per_mtok == 1_500_000
    assert plain.cached_input_nanos_per_mtok == plain.input_nanos_per_mtok
    assert plain.max_output_tokens is None


def test_price_file_alias_of_shipped_model(tmp_path: Path) -> None:
    table = PriceTable.from_file(write(tmp_path, EXAMPLE))
    alias = table.get("azure-gpt-3.5")
    shipped = lookup_shipped("gpt-3.5-turbo")
    assert alias is not None
    assert shipped is not None
    assert alias.model == "azure-gpt-3.5"
    assert alias.input_nanos_per_mtok == shipped.input_nanos_per_mtok
    assert alias.output_nanos_per_mtok == shipped.output_nanos_per_mtok
    assert alias.max_output_tokens == 4_096


def test_price_file_alias_chain_to_override(tmp_path: Path) -> None:
    table = PriceTable.from_file(write(tmp_path, EXAMPLE))
    price = table.get("alias-of-alias")
    assert price is not None
    assert price.model == "alias-of-alias"
    assert price.input_nanos_per_mtok == 200_000_000


def test_price_file_partial_override_of_shipped_model(tmp_path: Path) -> None:
    table = PriceTable.from_file(write(tmp_path, EXAMPLE))
    shipped = lookup_shipped("gpt-4o")
    assert shipped is not None
    for name in ("gpt-4o", "azure-4o"):
        price = table.get(name)
        assert price is not None
        assert price.model == name
        assert price.output_nanos_per_mtok == 9_500_000_000
        assert price.input_nanos_per_mtok == shipped.input_nanos_per_mtok
        assert price.cached_input_nanos_per_mtok == shipped.cached_input_nanos_per_mtok
        assert price.max_output_tokens == shipped.max_output_tokens


def test_price_file_partial_override_of_tiered_model_is_flat_for_that_field(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, 'models:\n  claude-sonnet-4-5:\n    input_per_mtok: "2"\n')
    price = PriceTable.from_file(path).get("claude-sonnet-4-5")
    shipped = lookup_shipped("claude-sonnet-4-5")
    assert price is not None
    assert shipped is not None
    assert price.tiers
    assert all(tier.input_nanos_per_mtok == 2_000_000_000 for tier in price.tiers)
    assert price.rates_for(300_000)[1] == shipped.rates_for(300_000)[1]


def test_price_file_leaves_other_models_shipped(tmp_path: Path) -> None:
    table = PriceTable.from_file(write(tmp_path, EXAMPLE))
    assert table.get("gpt-4o-mini") == lookup_shipped("gpt-4o-mini")
    assert table.get("definitely-not-a-model-xyz") is None


def test_price_file_may_list_no_models(tmp_path: Path) -> None:
    table = PriceTable.from_file(write(tmp_path, "models: {}\n"))
    assert table.get("gpt-4o") == lookup_shipped("gpt-4o")


def model_file(name: str, body: str) -> str:
    return f"models:\n  {name}:\n" + "".join(f"    {line}\n" for line in body.splitlines())


# (file text, the model the message must name, the field it must name)
REJECTED_FILES = [
    pytest.param(
        model_file("new-m", "input_per_mtok: 1\noutput_per_mtok: 1\ncolour: 1"),
        "new-m",
        "colour",
        id="unknown-key",
    ),
    pytest.param(
        model_file("new-m", 'input_per_mtok: "-0.1"\noutput_per_mtok: 1'),
        "new-m",
        "input_per_mtok",
        id="negative",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: 1\noutput_per_mtok: .nan"),
        "new-m",
        "output_per_mtok",
        id="yaml-nan",
    ),
    pytest.param(
        model_file("new-m", 'input_per_mtok: "NaN"\noutput_per_mtok: 1'),
        "new-m",
        "input_per_mtok",
        id="string-nan",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: .inf\noutput_per_mtok: 1"),
        "new-m",
        "input_per_mtok",
        id="yaml-inf",
    ),
    pytest.param(
        model_file("new-m", 'input_per_mtok: "-Infinity"\noutput_per_mtok: 1'),
        "new-m",
        "input_per_mtok",
        id="string-infinity",
    ),
    pytest.param(
        model_file("new-m", 'input_per_mtok: "cheap"\noutput_per_mtok: 1'),
        "new-m",
        "input_per_mtok",
        id="non-numeric-string",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: [1]\noutput_per_mtok: 1"),
        "new-m",
        "input_per_mtok",
        id="list",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok:\noutput_per_mtok: 1"),
        "new-m",
        "input_per_mtok",
        id="null-price",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: 2024-01-01\noutput_per_mtok: 1"),
        "new-m",
        "input_per_mtok",
        id="date",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: true\noutput_per_mtok: 1"),
        "new-m",
        "input_per_mtok",
        id="boolean",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: 1\noutput_per_mtok: yes"),
        "new-m",
        "output_per_mtok",
        id="yaml-1.1-boolean",
    ),
    pytest.param(
        model_file("new-m", 'input_per_mtok: "0.0000000001"\noutput_per_mtok: 1'),
        "new-m",
        "input_per_mtok",
        id="too-many-decimals",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: 0.1234567891\noutput_per_mtok: 1"),
        "new-m",
        "input_per_mtok",
        id="float-with-too-many-decimals",
    ),
    pytest.param(
        model_file("gpt-4o", 'cached_input_per_mtok: "-1"'),
        "gpt-4o",
        "cached_input_per_mtok",
        id="shipped-model-bad-price",
    ),
    pytest.param(
        model_file("al", "same_as: definitely-not-a-model-xyz"),
        "al",
        "same_as",
        id="same_as-unknown",
    ),
    pytest.param(model_file("al", "same_as: al"), "al", "same_as", id="same_as-itself"),
    pytest.param(
        "models:\n  a:\n    same_as: b\n  b:\n    same_as: a\n",
        "'a'",
        "same_as",
        id="same_as-cycle",
    ),
    pytest.param(
        "models:\n  a:\n    same_as: b\n  b:\n    same_as: c\n  c:\n    same_as: a\n",
        "'a'",
        "same_as",
        id="same_as-long-cycle",
    ),
    pytest.param(model_file("al", "same_as: 3"), "al", "same_as", id="same_as-not-a-string"),
    pytest.param(
        model_file("al", 'same_as: gpt-4o\ninput_per_mtok: "1"'),
        "al",
        "input_per_mtok",
        id="same_as-with-a-price",
    ),
    pytest.param(
        model_file("new-m", "output_per_mtok: 1"),
        "new-m",
        "input_per_mtok",
        id="new-model-without-input",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: 1"),
        "new-m",
        "output_per_mtok",
        id="new-model-without-output",
    ),
    pytest.param(model_file("new-m", "{}"), "new-m", "input_per_mtok", id="new-model-empty-entry"),
    pytest.param(
        model_file("gpt-4o", "max_output_tokens: 0"),
        "gpt-4o",
        "max_output_tokens",
        id="max_output_tokens-zero",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: 1\noutput_per_mtok: 1\nmax_output_tokens: -5"),
        "new-m",
        "max_output_tokens",
        id="max_output_tokens-negative",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: 1\noutput_per_mtok: 1\nmax_output_tokens: 8192.0"),
        "new-m",
        "max_output_tokens",
        id="max_output_tokens-float",
    ),
    pytest.param(
        model_file("new-m", 'input_per_mtok: 1\noutput_per_mtok: 1\nmax_output_tokens: "8192"'),
        "new-m",
        "max_output_tokens",
        id="max_output_tokens-string",
    ),
    pytest.param(
        model_file("new-m", "input_per_mtok: 1\noutput_per_mtok: 1\nmax_output_tokens: true"),
        "new-m",
        "max_output_tokens",
        id="max_output_tokens-boolean",
    ),
]


@pytest.mark.parametrize(("text", "model", "field"), REJECTED_FILES)
def test_price_file_rejects(tmp_path: Path, text: str, model: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PriceFileError) as info:
        PriceTable.from_file(path)
    message = str(info.value)
    assert model in message
    assert field in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "mapping with a 'models' key"),
        ("- a\n- b\n", "mapping with a 'models' key"),
        ("models: [a]\n", "'models' must be a mapping"),
        ("models:\n  gpt-4o:\nprices: {}\n", "unknown top-level key"),
        ("models:\n  new-m: 0.5\n", "'new-m': entry must be a mapping"),
        ("models:\n  new-m:\n", "'new-m': entry must be a mapping"),
        ("models:\n  123:\n    same_as: gpt-4o\n", "model name 123"),
        ("models:\n  a:\n    same_as: gpt-4o\n  a:\n    same_as: gpt-4\n", "duplicate key 'a'"),
        ("models: {a: [}\n", "invalid YAML"),
    ],
)
def test_price_file_rejects_malformed_documents(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(PriceFileError, match=re.escape(problem)):
        PriceTable.from_file(write(tmp_path, text))


def test_price_file_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = """
models:
  base-model: &base
    input_per_mtok: "1"
    output_per_mtok: "2"
  derived-model:
    <<: *base
    output_per_mtok: "3"
"""
    price = PriceTable.from_file(write(tmp_path, text)).get("derived-model")
    assert price is not None
    assert price.input_nanos_per_mtok == 1_000_000_000
    assert price.output_nanos_per_mtok == 3_000_000_000


def test_price_file_missing_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "prices.yaml"
    with pytest.raises(PriceFileError, match=re.escape(str(path))):
        PriceTable.from_file(path)


def test_price_file_not_utf8_is_a_price_file_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_bytes(b"models:\n  caf\xe9:\n    same_as: gpt-4o\n")
    with pytest.raises(PriceFileError, match="not UTF-8"):
        PriceTable.from_file(path)


def test_price_file_error_is_a_value_error() -> None:
    assert issubclass(PriceFileError, ValueError)


def test_price_table_from_mappings() -> None:
    mine = flat("whatever-name", "1", "2")
    table = PriceTable(
        overrides={"mine": mine, "gpt-4o": flat("x", "0.5", "0.5")},
        aliases={"also-mine": "mine", "old-4o": "gpt-4o", "mini": "gpt-4o-mini"},
    )
    price = table.get("mine")
    assert price is not None
    assert price.model == "mine"
    assert price.input_nanos_per_mtok == 1_000_000_000
    alias = table.get("also-mine")
    assert alias is not None
    assert alias.model == "also-mine"
    overridden = table.get("old-4o")  # aliases resolve to the override, not the shipped price
    assert overridden is not None
    assert overridden.input_nanos_per_mtok == 500_000_000
    mini = table.get("mini")
    shipped_mini = lookup_shipped("gpt-4o-mini")
    assert mini is not None
    assert shipped_mini is not None
    assert mini.input_nanos_per_mtok == shipped_mini.input_nanos_per_mtok
    assert PriceTable().get("gpt-4o") == lookup_shipped("gpt-4o")


@pytest.mark.parametrize(
    ("aliases", "problem"),
    [
        ({"a": "definitely-not-a-model-xyz"}, "has no price"),
        ({"a": "a"}, "refers to itself"),
        ({"a": "b", "b": "a"}, "cycle"),
        ({"mine": "gpt-4o"}, "both an alias"),
    ],
)
def test_price_table_rejects_bad_aliases(aliases: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PriceTable(overrides={"mine": flat("mine", "1", "1")}, aliases=aliases)
