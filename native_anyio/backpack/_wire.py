"""
Backpack websocket frames: public stream payloads, the envelope, and :func:`decode_frame`.

Every frame is decoded in one pass by a ``msgspec.json.Decoder`` built at import: the envelope
:class:`Frame` holds ``data`` as a union of structs tagged by the payload's ``e`` field, so data
frames (``{"data":{...},"stream":"trade.SOL_USDC"}``) and error frames
(``{"id":null,"error":{"code":4006,"message":"Invalid stream"}}``) share the decoder. The only
payload the tagged union cannot decode is the position snapshot, which has no ``e``: it takes a
fallback path keyed by the stream name (``account.positionUpdate[.<symbol>]``).

Docs versus wire (``backpack-protocol.md`` §8; the client accepts both forms):

* bookTicker ``u``: a number on the wire, a string in the docs -> ``update_id`` is always ``int``;
  ``a``/``A``/``b``/``B`` may be ``null`` (or absent) when a side of the book is empty;
* kline ``t``/``T``: naive-UTC ISO strings (docs, wire) or integer seconds (official Rust client,
  older docs) -> ``datetime | int``; OHLC may be ``null`` for an interval without trades;
* markPrice ``n``: milliseconds (docs, wire) or microseconds (older docs, Rust comment); ``f``,
  ``i``, ``n`` are absent on prediction markets and ``T`` is absent in the older docs;
* ``E``/``T`` quoted as strings appear only in ccxt's printed comments, never in a raw capture, so
  they must be JSON numbers (strict mode).

Strict mode throughout: no field is coerced from another JSON type.
"""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - msgspec resolves annotations at run time
from decimal import Decimal  # noqa: TC003 - msgspec resolves annotations at run time
from typing import TypeAlias, final

import msgspec
from msgspec import field

from .._errors import DecodeError
from ._wire_common import Count, Epoch, Id, Levels, Micros, WsEvent, checked_int
from ._wire_private import (
    Side,
    WsBalanceUpdate,
    WsOrderAccepted,
    WsOrderCancelled,
    WsOrderExpired,
    WsOrderFill,
    WsOrderModified,
    WsPosition,
    WsPositionAdjusted,
    WsPositionClosed,
    WsPositionOpened,
    WsPositionSnapshot,
    WsPositionUpdated,
    WsQuoteAccepted,
    WsQuoteCancelled,
    WsRfqAccepted,
    WsRfqActive,
    WsRfqCancelled,
    WsRfqCandidate,
    WsRfqFilled,
    WsRfqRefreshed,
    WsTriggerFailed,
    WsTriggerPlaced,
)

__all__ = [
    "Frame",
    "WsBookTicker",
    "WsDepth",
    "WsErrorBody",
    "WsExternalTicker",
    "WsKline",
    "WsLiquidation",
    "WsMarkPrice",
    "WsMessage",
    "WsOpenInterest",
    "WsTicker",
    "WsTrade",
    "decode_frame",
]


class WsBookTicker(WsEvent, frozen=True, kw_only=True, tag="bookTicker"):
    """``bookTicker.<symbol>``: the best bid and ask. ``update_id`` equals the depth stream's ``u``."""

    symbol: str = field(name="s")
    update_id: Id | str = field(name="u")  # always an int after decoding
    engine_time: Micros = field(name="T")
    ask_price: Decimal | None = field(default=None, name="a")
    ask_quantity: Decimal | None = field(default=None, name="A")
    bid_price: Decimal | None = field(default=None, name="b")
    bid_quantity: Decimal | None = field(default=None, name="B")

    def __post_init__(self) -> None:
        for value in (self.ask_price, self.ask_quantity, self.bid_price, self.bid_quantity):
            if value is not None and not value.is_finite():
                raise ValueError(f"not a finite decimal: {value}")
        if type(self.update_id) is not int:
            msgspec.structs.force_setattr(self, "update_id", checked_int(self.update_id))


class WsDepth(WsEvent, frozen=True, kw_only=True, tag="depth"):
    """
    ``depth[.<window>].<symbol>``: absolute sizes at changed levels (size 0 deletes a level).

    ``first_update_id``/``last_update_id`` are ``U``/``u``; the next frame's ``U`` is this ``u + 1``.
    Levels keep the wire order (not always sorted in realtime frames).
    """

    symbol: str = field(name="s")
    first_update_id: Id = field(name="U")
    last_update_id: Id = field(name="u")
    engine_time: Micros = field(name="T")
    asks: Levels = field(name="a")
    bids: Levels = field(name="b")

    def __post_init__(self) -> None:
        if self.last_update_id < self.first_update_id:
            raise ValueError(f"u={self.last_update_id} < U={self.first_update_id}")
        # check_levels() of both sides, inlined: one of the hottest checks (a depth frame is most traffic).
        for price, size in self.asks + self.bids:
            if not (price.is_finite() and size.is_finite()) or price.is_signed() or size.is_signed():
                raise ValueError(f"invalid level [{price}, {size}]")


class WsKline(WsEvent, frozen=True, kw_only=True, tag="kline"):
    """``kline.<interval>.<symbol>``: the interval is only in the stream name."""

    symbol: str = field(name="s")
    start: datetime | Epoch = field(name="t")
    end: datetime | Epoch = field(name="T")
    open: Decimal | None = field(default=None, name="o")
    high: Decimal | None = field(default=None, name="h")
    low: Decimal | None = field(default=None, name="l")
    close: Decimal | None = field(default=None, name="c")
    volume: Decimal | None = field(default=None, name="v")
    trades: Count = field(default=0, name="n")
    closed: bool = field(default=False, name="X")


class WsTrade(WsEvent, frozen=True, kw_only=True, tag="trade"):
    """``trade.<symbol>``: one public trade. ``buyer_is_maker`` true means the taker sold."""

    symbol: str = field(name="s")
    price: Decimal = field(name="p")
    quantity: Decimal = field(name="q")
    trade_id: Id = field(name="t")
    buyer_is_maker: bool = field(name="m")
    engine_time: Micros = field(name="T")
    buyer_order_id: str | None = field(default=None, name="b")
    seller_order_id: str | None = field(default=None, name="a")

    def __post_init__(self) -> None:
        if not (self.price.is_finite() and self.quantity.is_finite()):
            raise ValueError(f"not a finite price/quantity: {self.price}/{self.quantity}")


class WsTicker(WsEvent, frozen=True, kw_only=True, tag="ticker"):
    """``ticker.<symbol>``: 24 h rolling statistics, about once a second (no ``T``)."""

    symbol: str = field(name="s")
    open: Decimal = field(name="o")
    close: Decimal = field(name="c")
    high: Decimal = field(name="h")
    low: Decimal = field(name="l")
    volume: Decimal = field(name="v")
    quote_volume: Decimal = field(name="V")
    trades: Count = field(name="n")


class WsExternalTicker(WsTicker, frozen=True, tag="externalTicker"):
    """``externalTicker.<symbol>``: same fields as ``ticker`` (K4; payload never captured)."""


class WsMarkPrice(WsEvent, frozen=True, kw_only=True, tag="markPrice"):
    """``markPrice.<symbol>``; ``f``/``i``/``n`` are absent on prediction markets."""

    symbol: str = field(name="s")
    mark_price: Decimal = field(name="p")
    engine_time: Micros | None = field(default=None, name="T")
    funding_rate: Decimal | None = field(default=None, name="f")
    index_price: Decimal | None = field(default=None, name="i")
    next_funding_time: Epoch | None = field(default=None, name="n")  # ms on the wire


class WsOpenInterest(WsEvent, frozen=True, kw_only=True, tag="openInterest"):
    """``openInterest.<symbol>``: open interest in contracts, every 60 s."""

    symbol: str = field(name="s")
    open_interest: Decimal = field(name="o")
    engine_time: Micros | None = field(default=None, name="T")


class WsLiquidation(WsEvent, frozen=True, kw_only=True, tag="liquidation"):
    """``liquidation[.<symbol>]``: a liquidation (no capture exists; shape from the docs)."""

    symbol: str = field(name="s")
    price: Decimal = field(name="p")
    quantity: Decimal = field(name="q")
    side: Side = field(name="S")
    engine_time: Micros = field(name="T")


WsMessage: TypeAlias = (
    WsBookTicker | WsDepth | WsKline | WsTrade | WsTicker | WsExternalTicker | WsMarkPrice | WsOpenInterest
    | WsLiquidation | WsOrderAccepted | WsOrderCancelled | WsOrderExpired | WsOrderFill | WsOrderModified
    | WsTriggerPlaced | WsTriggerFailed | WsPositionAdjusted | WsPositionOpened | WsPositionClosed
    | WsPositionUpdated | WsPositionSnapshot | WsRfqActive | WsRfqAccepted | WsRfqRefreshed | WsRfqCancelled
    | WsRfqCandidate | WsRfqFilled | WsQuoteAccepted | WsQuoteCancelled | WsBalanceUpdate
)  # fmt: skip
"""Every payload a :class:`Frame` can carry."""


class WsErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The ``error`` of an error frame: 4002 Parse error, 4003 Invalid signature, 4006, 4008."""

    code: int
    message: str


@final
class Frame(msgspec.Struct, frozen=True, kw_only=True):
    """
    One websocket frame: a data frame (``data`` and ``stream``) or an error frame (``error``).

    Attributes:
        data: the decoded payload.
        stream: the stream name the payload belongs to.
        error: the error of an error frame.
        id: the request id of an error frame (always ``null`` in practice).
    """

    data: WsMessage | None = None
    stream: str | None = None
    error: WsErrorBody | None = None
    id: int | str | None = None


class _Envelope(msgspec.Struct, frozen=True):
    data: msgspec.Raw = msgspec.Raw(b"")  # empty when absent (``Raw | None`` means "null only")
    stream: str | None = None
    id: int | str | None = None


class _Untagged(msgspec.Struct, frozen=True):
    e: None = None  # present with any value other than null: not a snapshot


_decode = msgspec.json.Decoder(Frame).decode
_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_check_untagged = msgspec.json.Decoder(_Untagged | list[_Untagged]).decode
_decode_positions = msgspec.json.Decoder(WsPosition | list[WsPosition]).decode


def decode_frame(payload: bytes) -> Frame:
    """
    Decode one websocket frame.

    Returns:
        a :class:`Frame` with ``data`` and ``stream`` set, or with ``error`` set.

    Raises:
        DecodeError: malformed JSON (including invalid UTF-8 and absurdly deep nesting), a payload that does not match its struct (wrong types,
            missing fields, non-finite decimals, ``u < U``, unknown ``e``), or a frame that is
            neither a data frame nor an error frame. The msgspec error is chained.
    """
    try:
        frame = _decode(payload)
    except msgspec.ValidationError as exc:
        frame = _decode_untagged(payload, exc)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        # Not only DecodeError: msgspec raises RecursionError for JSON nested deeper than it follows
        # and UnicodeDecodeError for invalid UTF-8 inside a string (a binary frame is not checked).
        raise DecodeError(f"malformed frame: {exc}", exchange="BACKPACK") from exc
    if frame.error is None and (frame.data is None or frame.stream is None):
        raise DecodeError("frame has neither data and stream nor error", exchange="BACKPACK")
    return frame


def _decode_untagged(payload: bytes, error: msgspec.ValidationError) -> Frame:
    # Only reached when the one-pass decode failed: cost here does not matter.
    try:
        envelope = _decode_envelope(payload)
        stream = envelope.stream
        if not envelope.data or stream is None or not _is_position_stream(stream):
            raise error
        try:
            _check_untagged(envelope.data)
        except msgspec.ValidationError:
            raise error from None  # it has an ``e``: the tagged decode's error says what is wrong
        positions = _decode_positions(envelope.data)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise DecodeError(f"invalid frame: {exc}", exchange="BACKPACK") from exc
    if isinstance(positions, WsPosition):
        positions = [positions]
    return Frame(data=WsPositionSnapshot(positions=tuple(positions)), stream=stream, id=envelope.id)


def _is_position_stream(stream: str) -> bool:
    return stream == "account.positionUpdate" or stream.startswith("account.positionUpdate.")
