"""
Number and time formatting as Backpack writes it, on integer "units".

The engine keeps every price as an integer count of ``10**-dp`` and every size as a count of
``10**-ds``, where ``dp``/``ds`` are the decimals of the market's tick/step size. That makes the
two spellings Backpack uses trivial and exact:

* the socket pads to the tick/step: ``98.90``, ``0.00`` (:func:`padded`);
* REST strips trailing zeros: ``98.9``, ``0`` (:func:`stripped`).
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import Decimal

__all__ = [
    "decimal_text",
    "decimals_of",
    "iso_naive",
    "month_bounds",
    "padded",
    "space_datetime",
    "stripped",
    "to_decimal",
    "to_units",
    "unit_of",
]


def decimals_of(step: Decimal) -> int:
    """Decimals needed to write multiples of ``step`` (``0.01`` -> 2, ``1`` -> 0, ``1E+1`` -> 0)."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite Decimals only
    return max(0, -exponent)


def to_units(value: Decimal, decimals: int) -> int:
    """
    ``value`` as an integer count of ``10**-decimals``.

    Raises:
        ValueError: ``value`` has more decimals than that.
    """
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {decimals} decimals")
    return int(scaled)


def unit_of(step: Decimal, decimals: int) -> int:
    """The step size in units (``0.05`` with 2 decimals -> 5)."""
    return to_units(step, decimals)


def padded(units: int, decimals: int) -> str:
    """``units`` written with exactly ``decimals`` decimals: ``padded(9890, 2) == "98.90"``."""
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    digits = str(abs(units)).rjust(decimals + 1, "0")
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


def stripped(units: int, decimals: int) -> str:
    """``units`` without trailing zeros: ``stripped(9890, 2) == "98.9"``, ``stripped(0, 2) == "0"``."""
    text = padded(units, decimals)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def to_decimal(units: int, decimals: int) -> Decimal:
    """``units`` as a Decimal with the market's exponent (``Decimal("98.90")``)."""
    return Decimal(units).scaleb(-decimals)


def iso_naive(seconds: int) -> str:
    """Naive UTC ISO-8601 as in kline frames: ``"2025-08-06T22:00:00"``."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def space_datetime(seconds: int) -> str:
    """Naive UTC with a space as in REST klines: ``"2026-09-01 16:53:00"``."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def month_bounds(seconds: int) -> tuple[int, int]:
    """Start and end (Unix seconds, UTC) of the calendar month holding ``seconds``."""
    day = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    start = calendar.timegm((day.year, day.month, 1, 0, 0, 0))
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return start, calendar.timegm((year, month, 1, 0, 0, 0))


def decimal_text(value: Decimal) -> str:
    """A Decimal in plain notation without trailing zeros (``Decimal("1.500")`` -> ``"1.5"``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
