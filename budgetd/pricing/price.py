"""Exact integer prices for LLM calls.

A price is integer nano-USD per 1,000,000 tokens ("per MTok"), so $0.15 / 1M tokens is stored as
``150_000_000``. A call's cost is::

    ceil(((input - cached) * input_rate + cached * cached_rate + output * output_rate) / 1_000_000)

computed in ``int`` arithmetic with exactly ONE rounding per call, upwards to the next whole nano:
rounding each component separately would over-charge by up to 2 nanos per call and make the cost
of a call depend on how it is split. Rounding up (never down) means budgetd never records less
than the provider can bill.

Tiered prices: some models charge a higher rate for *every* token of a call once the call's prompt
exceeds a threshold (e.g. above 200k input tokens). We model these exactly, the way genai-prices
does: ``ModelPrice.tiers`` holds ``PriceTier`` rows sorted by ``above_input_tokens``; the rates of
the last tier whose threshold the call's ``input_tokens`` (cached tokens included) is strictly
greater than replace the base rates for the whole call. A table without tiers is a flat price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from budgetd.money import usd_to_nanos

__all__ = (
    "MAX_USD_PER_MTOK",
    "TOKENS_PER_MTOK",
    "ModelPrice",
    "PriceTier",
    "TokenUsage",
    "usd_per_mtok_to_nanos",
)

TOKENS_PER_MTOK = 1_000_000

# No real model costs $1 per token; anything above this is a typo (or an attempt to make the
# Decimal arithmetic overflow), so we refuse it instead of carrying a nonsense price.
MAX_USD_PER_MTOK = Decimal(1_000_000)


def usd_per_mtok_to_nanos(value: Decimal | int | str, *, model: str, field: str) -> int:
    """Convert a USD-per-1M-tokens price to integer nanos per 1M tokens, exactly.

    Raises ValueError naming ``model`` and ``field`` if the value is not a finite, non-negative
    number of at most 9 decimal places (a finer price cannot be represented in nanos) or exceeds
    ``MAX_USD_PER_MTOK``. Floats and booleans are refused: callers holding a float must decide to
    trust its shortest repr with ``Decimal(str(x))`` before calling.
    """
    where = f"model {model!r}: field {field!r}"
    if isinstance(value, bool | float):
        raise ValueError(f"{where}: expected a Decimal, int or decimal string, got {value!r}")
    try:
        price = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"{where}: not a number: {value!r}") from exc
    if not price.is_finite():
        raise ValueError(f"{where}: not a finite number: {value!r}")
    if price < 0:
        raise ValueError(f"{where}: negative price: {value!r}")
    # Compared before converting so that a huge exponent cannot overflow the Decimal context.
    if price > MAX_USD_PER_MTOK:
        raise ValueError(f"{where}: price above {MAX_USD_PER_MTOK} USD per 1M tokens: {value!r}")
    # Counted on the digits rather than left to usd_to_nanos's Decimal multiplication, which
    # rounds at the context's 28 significant digits and so would accept 1.000...0001 as 1.
    if _decimal_places(price) > 9:
        raise ValueError(
            f"{where}: {value!r} USD per 1M tokens has more than 9 decimal places, "
            "which cannot be represented in nanos"
        )
    return usd_to_nanos(price)


def _decimal_places(value: Decimal) -> int:
    """How many decimal places a finite Decimal really needs (trailing zeros do not count)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked by the caller
    significant = "".join(map(str, digits)).rstrip("0")
    if not significant:
        return 0
    return max(0, -(exponent + len(digits) - len(significant)))


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one call, in the OpenAI convention.

    ``input_tokens`` counts ALL prompt tokens, the cached ones included; ``cached_input_tokens`` is
    the part of them billed at the cached-input rate, so it must not exceed ``input_tokens``.
    Not validated here: ``ModelPrice.cost_nanos`` checks before pricing.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Rates that replace a model's base rates when a call's input exceeds a threshold."""

    above_input_tokens: int
    input_nanos_per_mtok: int
    output_nanos_per_mtok: int
    cached_input_nanos_per_mtok: int


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """The price of one model, in integer nano-USD per 1M tokens.

    ``cached_input_nanos_per_mtok`` equals the input rate when the source has no cached rate.
    ``max_output_tokens`` is the model's output limit if known (``None`` otherwise).
    ``tiers`` are input-size price tiers, ascending by threshold (see the module docstring).
    """

    model: str
    input_nanos_per_mtok: int
    output_nanos_per_mtok: int
    cached_input_nanos_per_mtok: int
    max_output_tokens: int | None = None
    tiers: tuple[PriceTier, ...] = ()

    def __post_init__(self) -> None:
        _check_rate(self.model, "input_nanos_per_mtok", self.input_nanos_per_mtok)
        _check_rate(self.model, "output_nanos_per_mtok", self.output_nanos_per_mtok)
        _check_rate(self.model, "cached_input_nanos_per_mtok", self.cached_input_nanos_per_mtok)
        if self.max_output_tokens is not None and (
            type(self.max_output_tokens) is not int or self.max_output_tokens <= 0
        ):
            raise ValueError(
                f"model {self.model!r}: field 'max_output_tokens' must be a positive int or None, "
                f"got {self.max_output_tokens!r}"
            )
        previous = -1
        for index, tier in enumerate(self.tiers):
            where = f"tiers[{index}]"
            threshold = tier.above_input_tokens
            if type(threshold) is not int or threshold <= previous:
                raise ValueError(
                    f"model {self.model!r}: field '{where}.above_input_tokens' must be a "
                    f"non-negative int greater than the previous tier's, got {threshold!r}"
                )
            previous = threshold
            _check_rate(self.model, f"{where}.input_nanos_per_mtok", tier.input_nanos_per_mtok)
            _check_rate(self.model, f"{where}.output_nanos_per_mtok", tier.output_nanos_per_mtok)
            _check_rate(
                self.model,
                f"{where}.cached_input_nanos_per_mtok",
                tier.cached_input_nanos_per_mtok,
            )

    def rates_for(self, input_tokens: int) -> tuple[int, int, int]:
        """The ``(input, output, cached_input)`` rates applying to a call with this prompt size."""
        for tier in reversed(self.tiers):
            if input_tokens > tier.above_input_tokens:
                return (
                    tier.input_nanos_per_mtok,
                    tier.output_nanos_per_mtok,
                    tier.cached_input_nanos_per_mtok,
                )
        return (
            self.input_nanos_per_mtok,
            self.output_nanos_per_mtok,
            self.cached_input_nanos_per_mtok,
        )

    def cost_nanos(self, usage: TokenUsage) -> int:
        """The exact cost of a call in nano-USD, rounded up once to a whole nano.

        Raises ValueError for negative counts or ``cached_input_tokens > input_tokens``, and
        TypeError for counts that are not ints (a float would silently break exactness). The
        caller is expected to have validated already; this is a guard against ledger corruption.
        """
        input_tokens = usage.input_tokens
        output_tokens = usage.output_tokens
        cached_tokens = usage.cached_input_tokens
        for name, count in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cached_input_tokens", cached_tokens),
        ):
            if type(count) is not int:
                raise TypeError(f"{name} must be an int, got {count!r}")
            if count < 0:
                raise ValueError(f"{name} must not be negative, got {count}")
        if cached_tokens > input_tokens:
            raise ValueError(
                f"cached_input_tokens ({cached_tokens}) exceeds input_tokens ({input_tokens})"
            )
        input_rate, output_rate, cached_rate = self.rates_for(input_tokens)
        numerator = (
            (input_tokens - cached_tokens) * input_rate
            + cached_tokens * cached_rate
            + output_tokens * output_rate
        )
        # Ceiling division in ints: -(-a // b) == ceil(a / b) for b > 0.
        return -(-numerator // TOKENS_PER_MTOK)


def _check_rate(model: str, field: str, value: object) -> None:
    # type() rather than isinstance(): bool is an int subclass and True is not a price.
    if type(value) is not int or value < 0:
        raise ValueError(
            f"model {model!r}: field {field!r} must be a non-negative int of nanos per 1M tokens, "
            f"got {value!r}"
        )
