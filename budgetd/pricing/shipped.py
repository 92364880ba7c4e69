"""The shipped price table: genai-prices' bundled data snapshot, converted to integer nanos.

Only the snapshot bundled with the installed ``genai-prices`` is read (``get_snapshot()`` without
ever starting ``UpdatePrices``), so lookups work offline and the same version prices the same way.

Name resolution: the first of these that finds a model decides.

1. ``provider/model`` where ``provider`` is a provider id genai-prices knows (``openai/gpt-4o``,
   ``vertex_ai/gemini-2.0-flash``): ``model`` in that provider, with its fallback providers.
2. The whole name as genai-prices' own ``calc_price`` resolves it without a ``provider_id``:
   the provider whose model pattern claims the name (``gpt-*``, ``claude*``, ``*gemini*``, ...).
3. Every provider in snapshot order. This is what finds hosted open-weight names no provider
   pattern claims (``llama-3.3-70b-versatile``, ``meta-llama/llama-3.1-70b-instruct``). Hosts
   price the same weights differently and the first in snapshot order wins, so deployments that
   care should pin a host with ``provider/model`` or a price-file entry.

Only text-token prices are used (``input_mtok``, ``output_mtok``, ``cache_read_mtok``): budgetd's
``TokenUsage`` has no audio/image/cache-write counts, and per-request or per-search fees are not
token prices. A model with neither an input nor an output token price (image-only, speech,
per-request, or listed without prices) resolves to ``None``, never to another model's price; a
model with only an input price (embeddings) gets an output price of 0. Service-tier
``price_variants`` (batch, flex, priority) are ignored: standard rates apply.

A few upstream entries carry float artifacts (``1.0399999999999998``): more than 9 decimals, which
``usd_per_mtok_to_nanos`` rejects. Such a model also resolves to ``None`` rather than raising on
the hot path or being silently rounded; a price-file entry can price it.

Prices that change over time (genai-prices' conditional prices: a new price from a start date,
DeepSeek's time-of-day rates) are converted once per name and chosen per call, the way
genai-prices' ``ModelInfo.get_prices`` does: the last condition active at the call time wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

from genai_prices import types as gp
from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

from budgetd.pricing.price import ModelPrice, PriceTier, usd_per_mtok_to_nanos

__all__ = ("KNOWN_MAX_OUTPUT_TOKENS", "known_max_output_tokens", "lookup_shipped")

# When a conditional genai-prices price applies; None means always.
_Constraint = gp.StartDateConstraint | gp.TimeOfDateConstraint | None

# Model output limits in tokens, from the vendor model pages (platform.openai.com/docs/models,
# docs.anthropic.com "Models overview", ai.google.dev/gemini-api/docs/models). A key applies to
# the name itself and to the name plus a snapshot suffix (see ``known_max_output_tokens``).
# budgetd may use this as the worst-case output of a call that does not cap it, so a value below
# the real limit would under-reserve: when in doubt a model is left out (None = unknown).
# Mistral is left out on purpose: its docs give context windows, not a separate output limit.
KNOWN_MAX_OUTPUT_TOKENS: dict[str, int] = {
    # OpenAI
    "gpt-3.5-turbo": 4_096,
    "gpt-4o": 16_384,
    "gpt-4o-2024-05-13": 4_096,  # the first gpt-4o snapshot had the older 4k limit
    "chatgpt-4o-latest": 16_384,
    "gpt-4o-mini": 16_384,
    "gpt-4.1": 32_768,
    "gpt-4.1-mini": 32_768,
    "gpt-4.1-nano": 32_768,
    "o1": 100_000,
    "o1-preview": 32_768,
    "o1-mini": 65_536,
    "o1-pro": 100_000,
    "o3": 100_000,
    "o3-mini": 100_000,
    "o3-pro": 100_000,
    "o4-mini": 100_000,
    # Anthropic
    "claude-3-haiku": 4_096,
    "claude-3-sonnet": 4_096,
    "claude-3-opus": 4_096,
    "claude-3-5-haiku": 8_192,
    "claude-3-5-sonnet": 8_192,
    "claude-3-7-sonnet": 64_000,  # 128k only with the output-128k beta header
    "claude-sonnet-4": 64_000,
    "claude-sonnet-4-0": 64_000,
    "claude-opus-4": 32_000,
    "claude-opus-4-0": 32_000,
    "claude-opus-4-1": 32_000,
    "claude-sonnet-4-5": 64_000,
    "claude-haiku-4-5": 64_000,
    "claude-opus-4-5": 64_000,
    # Google
    "gemini-1.5-pro": 8_192,
    "gemini-1.5-flash": 8_192,
    "gemini-1.5-flash-8b": 8_192,
    "gemini-2.0-flash": 8_192,
    "gemini-2.0-flash-lite": 8_192,
    "gemini-2.5-pro": 65_536,
    "gemini-2.5-flash": 65_536,
    "gemini-2.5-flash-lite": 65_536,
}

# Suffixes that name a snapshot of the same model rather than a different model: dates
# (-2024-08-06, -20241022, -0125, -2411), -latest, -001, -exp, -preview[-05-06]. Anything else
# (claude-opus-4-6, gpt-4o-audio-preview-...) is another model whose limit we do not know; a plain
# prefix match would give claude-opus-4-6 the 32k limit of claude-opus-4 and under-reserve it.
_SNAPSHOT_SUFFIX = re.compile(
    r"(?P<base>.+?)-(?:latest|\d{4}-\d{2}-\d{2}|\d{8}|\d{3,4}|exp|preview(?:-\d{2}-\d{2})?)"
)


def known_max_output_tokens(model: str) -> int | None:
    """The output limit of ``model`` from ``KNOWN_MAX_OUTPUT_TOKENS``, or None if unknown.

    Matches the name exactly, or its family name once one snapshot suffix is removed
    (``gpt-4o-2024-08-06`` -> ``gpt-4o``). Case-insensitive; a ``provider/`` prefix is ignored.
    """
    name = model.rsplit("/", 1)[-1].lower()
    if (limit := KNOWN_MAX_OUTPUT_TOKENS.get(name)) is not None:
        return limit
    if match := _SNAPSHOT_SUFFIX.fullmatch(name):
        return KNOWN_MAX_OUTPUT_TOKENS.get(match.group("base"))
    return None


@dataclass(frozen=True, slots=True)
class _ShippedEntry:
    """The converted prices of one resolved name: one, or several chosen by time."""

    # (constraint, price) in genai-prices' order; a None constraint is always active.
    variants: tuple[tuple[_Constraint, ModelPrice], ...]

    def select(self, at: datetime | None) -> ModelPrice:
        if len(self.variants) == 1:
            return self.variants[0][1]
        when = at if at is not None else datetime.now(tz=UTC)
        # Same rule as genai-prices' ModelInfo.get_prices: the last active condition wins,
        # falling back to the first price.
        for constraint, price in reversed(self.variants):
            if constraint is None or constraint.active(when):
                return price
        return self.variants[0][1]


def lookup_shipped(model: str, *, at: datetime | None = None) -> ModelPrice | None:
    """The shipped price of ``model`` in integer nanos per 1M tokens, or None if unknown.

    ``model`` may be a bare name (``gpt-4o-mini-2024-07-18``) or ``provider/model``; see the
    module docstring for the resolution order. The returned ``ModelPrice.model`` is ``model`` as
    given. ``at`` is the call time for the few time-dependent prices (default: now, UTC).
    Resolution and conversion are cached per name, so repeated lookups are dictionary hits.
    """
    entry = _shipped_entry(model)
    return None if entry is None else entry.select(at)


# Bounded because model names come from callers: unknown names must not grow memory forever.
@lru_cache(maxsize=4096)
def _shipped_entry(model: str) -> _ShippedEntry | None:
    if not model.strip():
        return None
    info = next(_candidates(model), None)
    return None if info is None else _convert_model(model, info)


def _candidates(model: str) -> Iterator[gp.ModelInfo]:
    """genai-prices models that ``model`` may name, best first (see the module docstring).

    A generator so that the later, slower steps only run when the earlier ones find nothing.
    """
    snapshot = get_snapshot()
    providers = snapshot.providers
    provider_id, slash, rest = model.partition("/")
    if slash and provider_id and rest:
        provider = find_provider_by_id(providers, provider_id)
        if provider is not None:
            info = provider.find_model(rest, all_providers=providers)
            if info is not None:
                yield info
    try:
        _, info = snapshot.find_provider_model(model, None, None, None)
    except LookupError:
        pass
    else:
        yield info
    for provider in providers:
        info = provider.find_model(model)
        if info is not None:
            yield info


def _convert_model(model: str, info: gp.ModelInfo) -> _ShippedEntry | None:
    """Convert every price of ``info``; None if any lacks token prices or is not exact."""
    max_output = known_max_output_tokens(model) or known_max_output_tokens(info.id)
    if isinstance(info.prices, gp.ModelPrice):
        sources: list[tuple[_Constraint, gp.ModelPrice]] = [(None, info.prices)]
    else:
        sources = [(conditional.constraint, conditional.prices) for conditional in info.prices]
    variants: list[tuple[_Constraint, ModelPrice]] = []
    for constraint, source in sources:
        try:
            price = _convert_price(model, source, max_output)
        except ValueError:
            # Float artifacts in the upstream data: unpriceable, see the module docstring.
            return None
        if price is None:
            return None
        variants.append((constraint, price))
    return _ShippedEntry(tuple(variants)) if variants else None


def _convert_price(model: str, source: gp.ModelPrice, max_output: int | None) -> ModelPrice | None:
    input_price = source.input_mtok
    output_price = source.output_mtok
    if input_price is None and output_price is None:
        return None
    zero = Decimal(0)
    if input_price is None:
        input_price = zero
    if output_price is None:
        output_price = zero
    cached_price = source.cache_read_mtok
    if cached_price is None:
        cached_price = input_price

    def nanos_at(price: Decimal | gp.TieredPrices, threshold: int, field: str) -> int:
        return usd_per_mtok_to_nanos(_rate_above(price, threshold), model=model, field=field)

    # genai-prices tiers each price key separately; merging their thresholds gives one row per
    # distinct rate combination, which prices every call exactly as per-key tiers would.
    thresholds = sorted(
        {
            tier.start
            for price in (input_price, output_price, cached_price)
            if isinstance(price, gp.TieredPrices)
            for tier in price.tiers
        }
    )
    tiers = tuple(
        PriceTier(
            above_input_tokens=threshold,
            input_nanos_per_mtok=nanos_at(input_price, threshold, "input_mtok"),
            output_nanos_per_mtok=nanos_at(output_price, threshold, "output_mtok"),
            cached_input_nanos_per_mtok=nanos_at(cached_price, threshold, "cache_read_mtok"),
        )
        for threshold in thresholds
    )
    return ModelPrice(
        model=model,
        input_nanos_per_mtok=nanos_at(input_price, -1, "input_mtok"),
        output_nanos_per_mtok=nanos_at(output_price, -1, "output_mtok"),
        cached_input_nanos_per_mtok=nanos_at(cached_price, -1, "cache_read_mtok"),
        max_output_tokens=max_output,
        tiers=tiers,
    )


def _rate_above(price: Decimal | gp.TieredPrices, threshold: int) -> Decimal:
    """The rate genai-prices applies to a call whose input is just above ``threshold`` tokens.

    A tier applies once the input exceeds its start, so just above ``threshold`` the applicable
    tier is the one with the greatest start <= ``threshold``; -1 selects the base rate.
    """
    if not isinstance(price, gp.TieredPrices):
        return price
    started = [tier for tier in price.tiers if tier.start <= threshold]
    return max(started, key=lambda tier: tier.start).price if started else price.base
