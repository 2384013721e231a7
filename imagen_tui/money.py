"""Money as ImaGen shows it: exact `Decimal` estimates, rounded half up only
for display (totals to the cent, means to a hundredth of a cent)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDREDTH_CENT = Decimal("0.0001")


def dollars(amount: Decimal, places: Decimal = CENT) -> str:
    """`$1.24` for Decimal('1.235')."""
    return f"${amount.quantize(places, rounding=ROUND_HALF_UP)}"


def total_cost_text(total: Decimal, count: int, priced: int) -> str:
    """A group's total cost to the cent, saying how many images had no estimate."""
    unpriced = count - priced
    return dollars(total) + (f" (+{unpriced} unpriced)" if unpriced else "")


def cost_text(cost: Decimal | float | None, unknown: str = "?") -> str:
    """One image's (or a mean) cost to a hundredth of a cent; `unknown` when None.

    A float (a cost read back from an image's JSON metadata) is taken at its
    shortest decimal form, so 0.00125 shows as $0.0013 here as everywhere.
    """
    if cost is None:
        return unknown
    return dollars(cost if isinstance(cost, Decimal) else Decimal(repr(cost)), HUNDREDTH_CENT)
