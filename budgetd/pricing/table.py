"""The price table budgetd consults: operator overrides and aliases over the shipped prices.

Lookup order for a name: an override (a full price, or a partial change to a shipped price), then
an alias (``same_as``) resolved to its target's override-or-shipped price, then the shipped table.
Override and alias names match exactly (case-sensitive); shipped lookups follow genai-prices.

The price file is YAML::

    models:
      azure-gpt-3.5:
        same_as: gpt-3.5-turbo        # alias of another priced model (override or shipped)
      my-llama:
        input_per_mtok: "0.20"        # USD per 1M tokens: decimal string, int or YAML number
        output_per_mtok: 0.60
        cached_input_per_mtok: "0.10" # optional, defaults to the input price
        max_output_tokens: 8192       # optional
      gpt-4o:                         # a shipped model: only the fields given change
        output_per_mtok: "9.50"

Prices are best written as strings. YAML numbers are accepted; floats are converted with
``Decimal(str(value))``, i.e. their shortest repr, never through float arithmetic.

A partial override of a shipped model keeps the shipped value of every field it does not give; a
price it does give is flat (it replaces that rate in the model's input-size tiers too). Prices
from the file are otherwise flat: the file cannot declare tiers.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import yaml

from budgetd.pricing.price import ModelPrice, usd_per_mtok_to_nanos
from budgetd.pricing.shipped import known_max_output_tokens, lookup_shipped

__all__ = ("PriceFileError", "PriceTable")

_PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok")
_MODEL_FIELDS = frozenset({"same_as", "max_output_tokens", *_PRICE_FIELDS})


class PriceFileError(ValueError):
    """A price file that cannot be used; the message names the file and the model and field."""


@dataclass(frozen=True, slots=True)
class _Patch:
    """A partial override of a shipped model: None keeps the shipped value."""

    input_nanos_per_mtok: int | None = None
    output_nanos_per_mtok: int | None = None
    cached_input_nanos_per_mtok: int | None = None
    max_output_tokens: int | None = None

    def apply(self, base: ModelPrice, model: str) -> ModelPrice:
        """``base`` with this patch's fields replacing its own, named ``model``."""
        input_rate = self.input_nanos_per_mtok
        output_rate = self.output_nanos_per_mtok
        cached_rate = self.cached_input_nanos_per_mtok
        tiers = tuple(
            replace(
                tier,
                input_nanos_per_mtok=_either(input_rate, tier.input_nanos_per_mtok),
                output_nanos_per_mtok=_either(output_rate, tier.output_nanos_per_mtok),
                cached_input_nanos_per_mtok=_either(cached_rate, tier.cached_input_nanos_per_mtok),
            )
            for tier in base.tiers
        )
        return ModelPrice(
            model=model,
            input_nanos_per_mtok=_either(input_rate, base.input_nanos_per_mtok),
            output_nanos_per_mtok=_either(output_rate, base.output_nanos_per_mtok),
            cached_input_nanos_per_mtok=_either(cached_rate, base.cached_input_nanos_per_mtok),
            max_output_tokens=(
                base.max_output_tokens if self.max_output_tokens is None else self.max_output_tokens
            ),
            tiers=tiers,
        )


def _either(patched: int | None, shipped: int) -> int:
    return shipped if patched is None else patched


class PriceTable:
    """Prices by model name: overrides, then aliases, then genai-prices' shipped snapshot."""

    def __init__(
        self,
        overrides: Mapping[str, ModelPrice] | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        """Build a table from full-price ``overrides`` and ``aliases`` (name -> target name).

        Overrides win over the shipped prices; an alias takes its target's override-or-shipped
        price. Alias chains are resolved here, once. Raises ValueError if an alias is circular,
        names a model with no price, or is also an override name.
        """
        self._init(overrides or {}, aliases or {}, {})

    def _init(
        self,
        overrides: Mapping[str, ModelPrice],
        aliases: Mapping[str, str],
        patches: Mapping[str, _Patch],
    ) -> None:
        # Stored under the name asked for so that get() returns them without copying.
        self._overrides: dict[str, ModelPrice] = {
            name: price if price.model == name else replace(price, model=name)
            for name, price in overrides.items()
        }
        self._patches: dict[str, _Patch] = dict(patches)
        for name in aliases:
            if name in self._overrides or name in self._patches:
                raise ValueError(f"model {name!r}: is both an alias (same_as) and a priced model")
        self._aliases: dict[str, str] = {
            name: self._resolve_alias(name, aliases) for name in aliases
        }

    def _resolve_alias(self, name: str, aliases: Mapping[str, str]) -> str:
        """Follow ``same_as`` from ``name`` to a priced model; reject cycles and unknown targets."""
        chain = [name]
        target = aliases[name]
        while True:
            if target == name and len(chain) == 1:
                raise ValueError(f"model {name!r}: field 'same_as' refers to itself")
            if target in chain:
                cycle = " -> ".join([*chain, target])
                raise ValueError(f"model {name!r}: field 'same_as' forms a cycle: {cycle}")
            if target not in aliases:
                break
            chain.append(target)
            target = aliases[target]
        priced = target in self._overrides or target in self._patches
        if not priced and lookup_shipped(target) is None:
            raise ValueError(
                f"model {name!r}: field 'same_as' names {target!r}, which has no price"
            )
        return target

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PriceTable:
        """Load a YAML price file (format in the module docstring).

        Raises PriceFileError naming the file, and the model and field where one is at fault, for
        a missing or unreadable file, invalid YAML, unknown keys, a price that is negative,
        not a finite number, a boolean or finer than 9 decimal USD, a bad ``same_as`` (unknown
        target, cycle, or combined with other fields), a new model without an input or output
        price, or a non-positive ``max_output_tokens``.
        """
        try:
            with open(path, encoding="utf-8") as file:
                document = yaml.load(file, Loader=_UniqueKeyLoader)
        except FileNotFoundError as exc:
            raise PriceFileError(f"price file {os.fspath(path)!r} does not exist") from exc
        except OSError as exc:
            raise PriceFileError(f"price file {os.fspath(path)!r}: cannot read: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise PriceFileError(f"price file {os.fspath(path)!r}: not UTF-8: {exc}") from exc
        except yaml.YAMLError as exc:
            raise PriceFileError(f"price file {os.fspath(path)!r}: invalid YAML: {exc}") from exc
        try:
            overrides, aliases, patches = _parse_document(document)
            table = cls.__new__(cls)
            table._init(overrides, aliases, patches)
        except ValueError as exc:
            raise PriceFileError(f"price file {os.fspath(path)!r}: {exc}") from exc
        return table

    def get(self, model: str, *, at: datetime | None = None) -> ModelPrice | None:
        """The price of ``model`` (its ``model`` field is the name asked for), or None if unknown.

        ``at`` is the call time for the few shipped prices that depend on it (default: now).
        """
        if (price := self._overrides.get(model)) is not None:
            return price
        if (patch := self._patches.get(model)) is not None:
            return self._patched(model, model, patch, at)
        if (target := self._aliases.get(model)) is not None:
            return self._priced(target, model, at)
        return lookup_shipped(model, at=at)

    def _priced(self, name: str, asked: str, at: datetime | None) -> ModelPrice | None:
        """The override-or-shipped price of ``name``, renamed to ``asked``."""
        if (price := self._overrides.get(name)) is not None:
            return replace(price, model=asked)
        if (patch := self._patches.get(name)) is not None:
            return self._patched(name, asked, patch, at)
        shipped = lookup_shipped(name, at=at)
        return None if shipped is None else replace(shipped, model=asked)

    @staticmethod
    def _patched(name: str, asked: str, patch: _Patch, at: datetime | None) -> ModelPrice | None:
        base = lookup_shipped(name, at=at)
        # Patches are only made for shipped names, so base is None only if genai-prices changed
        # under a running process; then there is nothing to patch.
        return None if base is None else patch.apply(base, asked)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys instead of keeping the last one.

    A price file listing a model twice is almost certainly an editing mistake, and silently
    using the second entry would bill with a price the operator may not have meant.
    """


def _construct_unique_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode
) -> dict[Hashable, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        # Keys brought in by a YAML merge (<<: *anchor) may be overridden on purpose; only keys
        # written twice in the same mapping are mistakes.
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable: construct_mapping below reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node)


_MERGE_TAG = "tag:yaml.org,2002:merge"
_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _parse_document(
    document: object,
) -> tuple[dict[str, ModelPrice], dict[str, str], dict[str, _Patch]]:
    if not isinstance(document, dict):
        raise ValueError("the file must be a mapping with a 'models' key")
    unknown = sorted(str(key) for key in document if key != "models")
    if unknown:
        raise ValueError(f"unknown top-level key(s) {unknown}; only 'models' is allowed")
    models = document.get("models")
    if not isinstance(models, dict):
        raise ValueError("'models' must be a mapping of model name to its entry")
    overrides: dict[str, ModelPrice] = {}
    aliases: dict[str, str] = {}
    patches: dict[str, _Patch] = {}
    for name, entry in models.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"model name {name!r} must be a non-empty string")
        if not isinstance(entry, dict):
            raise ValueError(f"model {name!r}: entry must be a mapping of fields, got {entry!r}")
        _parse_entry(name, entry, overrides, aliases, patches)
    return overrides, aliases, patches


def _parse_entry(
    name: str,
    entry: dict[Any, Any],
    overrides: dict[str, ModelPrice],
    aliases: dict[str, str],
    patches: dict[str, _Patch],
) -> None:
    unknown = sorted(str(key) for key in entry if key not in _MODEL_FIELDS)
    if unknown:
        allowed = ", ".join(sorted(_MODEL_FIELDS))
        raise ValueError(f"model {name!r}: unknown field(s) {unknown}; allowed: {allowed}")
    if "same_as" in entry:
        others = sorted(str(key) for key in entry if key != "same_as")
        if others:
            raise ValueError(
                f"model {name!r}: field 'same_as' cannot be combined with {others}: an alias "
                "takes every field from its target"
            )
        target = entry["same_as"]
        if not isinstance(target, str) or not target.strip():
            raise ValueError(
                f"model {name!r}: field 'same_as' must be a model name, got {target!r}"
            )
        aliases[name] = target
        return

    rates = {
        field: _parse_price(name, field, entry[field]) for field in _PRICE_FIELDS if field in entry
    }
    max_output = None
    if "max_output_tokens" in entry:
        max_output = _parse_max_output(name, entry["max_output_tokens"])

    if lookup_shipped(name) is not None:
        patches[name] = _Patch(
            input_nanos_per_mtok=rates.get("input_per_mtok"),
            output_nanos_per_mtok=rates.get("output_per_mtok"),
            cached_input_nanos_per_mtok=rates.get("cached_input_per_mtok"),
            max_output_tokens=max_output,
        )
        return
    for required in ("input_per_mtok", "output_per_mtok"):
        if required not in rates:
            raise ValueError(
                f"model {name!r}: field {required!r} is required: the model is not in the "
                "shipped price table, so there is no price to start from"
            )
    input_rate = rates["input_per_mtok"]
    overrides[name] = ModelPrice(
        model=name,
        input_nanos_per_mtok=input_rate,
        output_nanos_per_mtok=rates["output_per_mtok"],
        cached_input_nanos_per_mtok=rates.get("cached_input_per_mtok", input_rate),
        max_output_tokens=max_output if max_output is not None else known_max_output_tokens(name),
    )


def _parse_price(model: str, field: str, value: object) -> int:
    """A price field in USD per 1M tokens -> nanos per 1M tokens, exactly."""
    # bool first: YAML's true/yes/on are ints to Python, and never a price.
    if isinstance(value, bool):
        raise ValueError(f"model {model!r}: field {field!r}: a boolean is not a price: {value!r}")
    if isinstance(value, float):
        # The shortest repr is what the operator typed (0.6 -> "0.6"); see the module docstring.
        return usd_per_mtok_to_nanos(Decimal(str(value)), model=model, field=field)
    if isinstance(value, int | str | Decimal):
        return usd_per_mtok_to_nanos(value, model=model, field=field)
    raise ValueError(
        f"model {model!r}: field {field!r}: expected a number or decimal string, got {value!r}"
    )


def _parse_max_output(model: str, value: object) -> int:
    if type(value) is not int or value <= 0:
        raise ValueError(
            f"model {model!r}: field 'max_output_tokens' must be a positive integer, got {value!r}"
        )
    return value
