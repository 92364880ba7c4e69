"""Money as integer nano-USD.

Every amount inside budgetd is an ``int`` of nano-USD, so sums are exact and the ledger always
adds up to the spend. Decimal appears only where humans write prices (config files, the JSON edge).
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation, localcontext

NANOS_PER_USD = 1_000_000_000
# int64 in the protos and BIGINT in SQL: the largest amount we accept (~9.2 billion USD).
MAX_NANOS = 2**63 - 1


def usd_to_nanos(usd: Decimal | int | str) -> int:
    """Convert a USD amount to nanos exactly; raise ValueError if it is not a whole nano.

    Floats are refused on purpose: convert them with ``Decimal(str(x))`` at the edge, where the
    decision to trust their shortest repr is visible.
    """
    if isinstance(usd, bool | float):
        raise ValueError("money must be a Decimal, int or decimal string, not a float")
    try:
        value = Decimal(usd)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {usd!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {usd!r}")
    # Enough precision that no digit is ever rounded away before we look at it.
    with localcontext(Context(prec=100)):
        nanos = value * NANOS_PER_USD
        if nanos != nanos.to_integral_value():
            raise ValueError(f"more than 9 decimal places: {usd!r}")
    result = int(nanos)
    if abs(result) > MAX_NANOS:
        raise ValueError(f"amount out of range: {usd!r}")
    return result


def nanos_to_usd(nanos: int) -> Decimal:
    """The exact USD value of an amount of nanos."""
    return Decimal(nanos).scaleb(-9).normalize() if nanos else Decimal(0)
