"""Money at the JSON edge: LiteLLM speaks USD numbers, budgetd speaks integer nano-USD.

Incoming numbers (floats, ints or numeric strings such as the seed's ``"max_budget": "0"``) go
through ``Decimal(str(x))`` so a float's shortest repr is what counts, never binary arithmetic.
Outgoing amounts become floats only when rendered into JSON.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from budgetd.money import nanos_to_usd, usd_to_nanos


def parse_usd(value: object) -> int:
    """A non-negative USD amount as nanos; ValueError (with a reason) for anything else.

    Accepts ints, floats and numeric strings; rejects booleans, NaN, infinities, negatives,
    amounts finer than a nano and amounts beyond int64 nanos.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, float | int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError("must be a number or a numeric string")
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text[:40]!r}") from exc
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    if amount < 0:
        raise ValueError("must not be negative")
    try:
        return usd_to_nanos(amount)
    except ValueError as exc:
        raise ValueError(f"{exc}") from exc


def render_usd(nanos: int) -> float:
    """Nanos as a float of USD, for JSON."""
    return float(nanos_to_usd(nanos))


def header_usd(nanos: int) -> str:
    """Nanos as an exact decimal string of USD, for headers."""
    return format(nanos_to_usd(nanos), "f")
