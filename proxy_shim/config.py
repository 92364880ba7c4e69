"""The shim's config file: which public model names exist, where they go, and what they cost.

YAML::

    models:
      azure-gpt-3.5:                          # the name callers send as "model"
        base_url: https://api.example.com/v1  # ${VAR} and ${VAR:-default} are expanded
        upstream_model: gpt-3.5-turbo         # the name sent upstream; priced by this name
        api_key_env: OPENAI_API_KEY           # optional: env var holding the upstream key
        price:                                # optional: USD per 1M tokens, overrides the table
          input_per_mtok: "0.50"
          output_per_mtok: "1.50"
          cached_input_per_mtok: "0.25"       # optional, defaults to the input price
        max_output_tokens: 4096               # optional: the model's output limit
        region: eu                            # optional: "eu" or "us"
    client_keys:                              # optional: keys that may call models only
      - sk-client-1

Prices are resolved once at start-up: the override if given, else budgetd's ``PriceTable`` by
``upstream_model``. A model with neither is a start-up error naming it: a model must never be
served at a silent $0.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from budgetd.pricing import ModelPrice, PriceTable, usd_per_mtok_to_nanos

_MODEL_FIELDS = frozenset(
    {"base_url", "upstream_model", "api_key_env", "price", "max_output_tokens", "region"}
)
_PRICE_FIELDS = frozenset({"input_per_mtok", "output_per_mtok", "cached_input_per_mtok"})
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


class ConfigError(ValueError):
    """A config file the shim cannot start with; the message names the file, model and field."""


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """One public model name and everything needed to call and price it."""

    name: str
    base_url: str
    upstream_model: str
    price: ModelPrice
    max_output_tokens: int | None = None
    api_key_env: str | None = None
    region: str | None = None

    def upstream_api_key(self) -> str | None:
        """The upstream key, read from the environment at call time (never stored or logged)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True, slots=True)
class ShimConfig:
    """The parsed config file."""

    models: Mapping[str, ModelRoute]
    client_keys: tuple[str, ...] = ()


def default_config_path() -> Path:
    """The quick-start config shipped inside the package."""
    return Path(str(resources.files("proxy_shim").joinpath("default_config.yaml")))


def load_config(path: Path | None, prices: PriceTable | None = None) -> ShimConfig:
    """Read and validate a config file (the packaged default when ``path`` is None)."""
    source = path or default_config_path()
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {str(source)!r}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(source)!r}: invalid YAML: {exc}") from exc
    try:
        return parse_config(document, prices or PriceTable())
    except ValueError as exc:
        raise ConfigError(f"config {str(source)!r}: {exc}") from exc


def parse_config(document: Any, prices: PriceTable) -> ShimConfig:
    """A ``ShimConfig`` from a loaded YAML document; ValueError names the model and field."""
    if not isinstance(document, dict):
        raise ValueError("must be a mapping with a 'models' key")
    unknown = sorted(str(k) for k in document if k not in {"models", "client_keys"})
    if unknown:
        raise ValueError(f"unknown top-level key(s) {unknown}")
    models = document.get("models")
    if not isinstance(models, dict) or not models:
        raise ValueError("'models' must be a non-empty mapping of model name to its entry")
    routes = {}
    for name, entry in models.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"model name {name!r} must be a non-empty string")
        routes[name] = _parse_model(name, entry, prices)
    keys = document.get("client_keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise ValueError("'client_keys' must be a list of non-empty strings")
    return ShimConfig(models=routes, client_keys=tuple(keys))


def _parse_model(name: str, entry: Any, prices: PriceTable) -> ModelRoute:
    if not isinstance(entry, dict):
        raise ValueError(f"model {name!r}: entry must be a mapping")
    unknown = sorted(str(k) for k in entry if k not in _MODEL_FIELDS)
    if unknown:
        raise ValueError(f"model {name!r}: unknown field(s) {unknown}")
    base_url = _expand(_required_str(name, entry, "base_url"))
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"model {name!r}: field 'base_url' must be an http(s) URL")
    upstream = _required_str(name, entry, "upstream_model")
    max_output = entry.get("max_output_tokens")
    if max_output is not None and (type(max_output) is not int or max_output <= 0):
        raise ValueError(f"model {name!r}: field 'max_output_tokens' must be a positive integer")
    region = entry.get("region")
    if region is not None and region not in {"eu", "us"}:
        raise ValueError(f"model {name!r}: field 'region' must be 'eu' or 'us'")
    api_key_env = entry.get("api_key_env")
    if api_key_env is not None and (not isinstance(api_key_env, str) or not api_key_env):
        raise ValueError(f"model {name!r}: field 'api_key_env' must be a variable name")
    if "price" in entry:
        price = _parse_price(name, entry["price"])
    else:
        found = prices.get(upstream)
        if found is None:
            raise ValueError(
                f"model {name!r}: upstream model {upstream!r} has no known price; "
                "add a 'price' entry (USD per 1M tokens)"
            )
        price = found
    return ModelRoute(
        name=name,
        base_url=base_url.rstrip("/"),
        upstream_model=upstream,
        price=price,
        max_output_tokens=max_output,
        api_key_env=api_key_env,
        region=region,
    )


def _parse_price(name: str, value: Any) -> ModelPrice:
    if not isinstance(value, dict):
        raise ValueError(f"model {name!r}: field 'price' must be a mapping")
    unknown = sorted(str(k) for k in value if k not in _PRICE_FIELDS)
    if unknown:
        raise ValueError(f"model {name!r}: unknown price field(s) {unknown}")
    rates = {}
    for field in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok"):
        if field not in value:
            continue
        raw = value[field]
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"model {name!r}: field 'price.{field}' must be a number")
        # A YAML float's shortest repr is what the operator typed.
        amount = Decimal(str(raw)) if isinstance(raw, float) else raw
        rates[field] = usd_per_mtok_to_nanos(amount, model=name, field=f"price.{field}")
    for field in ("input_per_mtok", "output_per_mtok"):
        if field not in rates:
            raise ValueError(f"model {name!r}: field 'price.{field}' is required")
    return ModelPrice(
        model=name,
        input_nanos_per_mtok=rates["input_per_mtok"],
        output_nanos_per_mtok=rates["output_per_mtok"],
        cached_input_nanos_per_mtok=rates.get("cached_input_per_mtok", rates["input_per_mtok"]),
    )


def _required_str(name: str, entry: Mapping[str, Any], field: str) -> str:
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"model {name!r}: field {field!r} is required (a string)")
    return value


def _expand(text: str) -> str:
    """Expand ``${VAR}`` / ``${VAR:-default}`` so one file serves several deployments."""

    def replace(match: re.Match[str]) -> str:
        value = os.environ.get(match.group("name"))
        if value:
            return value
        default = match.group("default")
        if default is None:
            raise ValueError(f"environment variable {match.group('name')!r} is not set")
        return default

    return _VAR.sub(replace, text)
