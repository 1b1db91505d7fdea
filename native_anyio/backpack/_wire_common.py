"""
Pieces shared by the Backpack wire structs: constrained integers, price levels, decimal checks.

Every wire struct is a frozen msgspec Struct decoded in strict mode. Prices and sizes are
``Decimal`` (msgspec decodes them losslessly from JSON strings *and* numbers). Non-finite
decimals (``NaN``, ``Infinity``, ``sNaN``: ``Decimal()`` accepts them) are rejected in
``__post_init__``, because a NaN price cannot key an order book and an sNaN raises on comparison.
msgspec turns the ``ValueError`` raised there into a ``ValidationError``.
"""

from __future__ import annotations

import types
import typing
from decimal import Decimal
from typing import Annotated, Final, TypeAlias

import msgspec

__all__ = [
    "Count",
    "Epoch",
    "Id",
    "Level",
    "Levels",
    "Micros",
    "Millis",
    "WsEvent",
    "check_levels",
    "check_optional",
    "checked_int",
]

_I64_MAX: Final = 2**63 - 1

#: A timestamp in microseconds (``E``, ``T``). Bounded so that conversions to float never overflow.
Micros: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=_I64_MAX)]
#: A timestamp in milliseconds (markPrice ``n``, RFQ ``w``/``W``, REST trades).
Millis: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=_I64_MAX)]
#: An update, trade, order or RFQ id. The official Rust client models them as ``u64``; msgspec
#: bounds only fit ``int64``, which is ample (observed ids are below 2**57).
Id: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=_I64_MAX)]
#: An epoch timestamp whose unit varies between sources (kline seconds, markPrice ``n``, REST depth).
Epoch: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=_I64_MAX)]
#: A non-negative count (number of trades).
Count: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=_I64_MAX)]
#: One order-book level: ``[price, size]``.
Level: TypeAlias = tuple[Decimal, Decimal]
#: A side of a book as sent: a sequence of levels.
Levels: TypeAlias = tuple[Level, ...]

_DECIMAL_FIELDS: dict[type, tuple[str, ...]] = {}


def check_levels(levels: Levels) -> None:
    """
    Reject a level whose price or size is non-finite or negative.

    Raises:
        ValueError: a bad level (msgspec reports it as a ``ValidationError``).
    """
    for price, size in levels:
        if not (price.is_finite() and size.is_finite()) or price.is_signed() or size.is_signed():
            raise ValueError(f"invalid level [{price}, {size}]")


def check_optional(struct: msgspec.Struct) -> None:
    """
    Reject any non-finite ``Decimal`` field of ``struct`` (the generic, slower check).

    Raises:
        ValueError: a non-finite decimal.
    """
    cls = type(struct)
    names = _DECIMAL_FIELDS.get(cls)
    if names is None:
        names = _DECIMAL_FIELDS[cls] = _decimal_fields(cls)
    for name in names:
        value = getattr(struct, name)
        if value is not None and not value.is_finite():
            raise ValueError(f"{name} is not a finite decimal: {value}")


def _decimal_fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    names = []
    for info in msgspec.structs.fields(cls):
        kind = info.type
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            if Decimal in typing.get_args(kind):
                names.append(info.name)
        elif kind is Decimal:
            names.append(info.name)
    return tuple(names)


def checked_int(value: int | str) -> int:
    """
    An id sent either as a JSON number or as a string of ASCII digits.

    Raises:
        ValueError: a string that is not plain ASCII digits, or beyond the ``int64`` range.
    """
    if type(value) is int:
        return value
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        raise ValueError(f"expected an integer or a string of digits, got {value!r}")
    number = int(value)
    if number > _I64_MAX:
        raise ValueError(f"id out of range: {value}")
    return number


class WsEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="e"):
    """
    Base of every tagged websocket payload: the tag is the ``e`` field (the event type).

    Attributes:
        event_time: ``E``, when the server emitted the event (µs).
    """

    event_time: Micros = msgspec.field(name="E")

    def __post_init__(self) -> None:
        # Subclasses on hot streams replace this generic check with a hand-written one.
        check_optional(self)
