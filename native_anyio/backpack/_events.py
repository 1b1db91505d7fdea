"""
The normalized events a user consumes, independent of Backpack's wire spelling.

Events are frozen msgspec Structs rather than slotted dataclasses: one is built per received
message and a Struct is cheaper to construct; it is also hashable, compares by value and encodes
itself. Each event is tagged with ``type``, so ``event.to_json()`` is one JSON line for the CLI
(``type``, ``exchange``, ``symbol``, ``timestamp``, ``receipt_timestamp``, then the event's
fields; Decimals as exact fixed-point strings, book levels as ``[price, size]`` pairs) and
``msgspec.json.decode(line, type=Event)`` reads it back. ``event.to_dict()`` is the same content
as plain Python objects.

Common fields: ``exchange`` (``"BACKPACK"``), ``symbol`` (normalized, ``SOL-USDC``), ``timestamp``
(exchange time, float seconds: the engine time ``T`` where the payload has one, else the event
time ``E``) and ``receipt_timestamp`` (float seconds, passed in by the caller).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, Literal, TypeAlias, final

import msgspec

__all__ = [
    "EXCHANGE",
    "BalanceUpdate",
    "BookDelta",
    "BookSide",
    "BookSnapshot",
    "BookState",
    "BookStatus",
    "Candle",
    "Event",
    "Liquidation",
    "MarkPrice",
    "OpenInterest",
    "OrderUpdate",
    "PositionSnapshot",
    "PositionUpdate",
    "PriceLevel",
    "Ticker",
    "TopOfBook",
    "Trade",
    "TradeSide",
]

EXCHANGE: Final = "BACKPACK"

#: ``"buy"`` or ``"sell"``.
TradeSide: TypeAlias = Literal["buy", "sell"]
#: The state of a local order book, reported by :class:`BookStatus`.
BookState: TypeAlias = Literal["syncing", "live", "resyncing", "failed"]
#: ``(price, size)``.
PriceLevel: TypeAlias = tuple[Decimal, Decimal]
#: One side of a book.
BookSide: TypeAlias = tuple[PriceLevel, ...]


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    exchange: str = EXCHANGE

    def to_dict(self) -> dict[str, Any]:
        """
        The event as JSON-ready builtins: ``type`` first, tuples as lists, and Decimals as
        fixed-point strings (``"0.00000001"``, where ``str(Decimal)`` would give ``"1E-8"``).
        """
        result: dict[str, Any] = _plain(msgspec.to_builtins(self, builtin_types=(Decimal,)))
        return result

    def to_json(self) -> bytes:
        """:meth:`to_dict` encoded as one line of JSON (no trailing newline)."""
        return _encode(self.to_dict())


_encode = msgspec.json.Encoder().encode


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        text = str(value)
        # fixed-point unless the exponent is absurd (a 10**6-digit string helps nobody)
        return format(value, "f") if "E" in text and -64 < value.adjusted() < 64 else text
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class _MarketEvent(_Event, frozen=True, kw_only=True):
    symbol: str
    timestamp: float
    receipt_timestamp: float


@final
class Trade(_MarketEvent, frozen=True, kw_only=True, tag="trade"):
    """A public trade. ``side`` is the taker's side (wire ``m`` true -> the taker sold)."""

    price: Decimal
    amount: Decimal
    side: TradeSide
    id: int


@final
class BookSnapshot(_MarketEvent, frozen=True, kw_only=True, tag="book_snapshot"):
    """A full book, best level first on both sides; ``sequence`` is the last update id."""

    bids: BookSide
    asks: BookSide
    sequence: int


@final
class BookDelta(_MarketEvent, frozen=True, kw_only=True, tag="book_delta"):
    """
    Absolute sizes at changed levels (size 0 deletes the level), in the order sent.

    ``first_sequence``/``sequence`` are the wire ``U``/``u``: a delta follows the previous one
    when ``first_sequence == previous.sequence + 1``.
    """

    bids: BookSide
    asks: BookSide
    first_sequence: int
    sequence: int


@final
class TopOfBook(_MarketEvent, frozen=True, kw_only=True, tag="top_of_book"):
    """The best bid and ask (``None`` when a side is empty); ``sequence`` is the depth update id."""

    bid_price: Decimal | None
    bid_size: Decimal | None
    ask_price: Decimal | None
    ask_size: Decimal | None
    sequence: int


@final
class Ticker(_MarketEvent, frozen=True, kw_only=True, tag="ticker"):
    """24 h rolling statistics; ``external`` for the ``externalTicker`` stream."""

    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int
    external: bool = False


@final
class Candle(_MarketEvent, frozen=True, kw_only=True, tag="candle"):
    """A kline; ``start``/``end`` are float seconds; OHLC are ``None`` for an interval without trades."""

    interval: str
    start: float
    end: float
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal | None
    volume: Decimal | None
    trades: int
    closed: bool


@final
class MarkPrice(_MarketEvent, frozen=True, kw_only=True, tag="mark_price"):
    """Mark price and funding; the funding fields are ``None`` on prediction markets."""

    mark_price: Decimal
    index_price: Decimal | None
    funding_rate: Decimal | None
    next_funding_time: float | None


@final
class OpenInterest(_MarketEvent, frozen=True, kw_only=True, tag="open_interest"):
    """Open interest in contracts."""

    open_interest: Decimal


@final
class Liquidation(_MarketEvent, frozen=True, kw_only=True, tag="liquidation"):
    """A liquidation; ``side`` is the liquidation order's side (``Bid`` -> ``"buy"``)."""

    price: Decimal
    amount: Decimal
    side: TradeSide


@final
class OrderUpdate(_MarketEvent, frozen=True, kw_only=True, tag="order_update"):
    """
    A change to one of the account's orders.

    ``event`` is Backpack's event name (``orderAccepted``, ``orderFill``, ...), ``status`` its
    order state (``New``, ``PartiallyFilled``, ``Filled``, ...), ``order_type`` is lower case
    (``"limit"``, ``"market"``). Fill fields are set on ``orderFill`` only.
    """

    event: str
    order_id: str
    client_order_id: int | None
    side: TradeSide
    order_type: str
    status: str
    time_in_force: str | None
    price: Decimal | None
    quantity: Decimal | None
    quote_quantity: Decimal | None
    trigger_price: Decimal | None
    trigger_quantity: Decimal | None
    take_profit_trigger_price: Decimal | None
    stop_loss_trigger_price: Decimal | None
    executed_quantity: Decimal | None
    executed_quote_quantity: Decimal | None
    fill_price: Decimal | None
    fill_quantity: Decimal | None
    trade_id: int | None
    maker: bool | None
    fee: Decimal | None
    fee_asset: str | None
    post_only: bool | None
    reduce_only: bool | None
    origin: str | None
    expiry_reason: str | None


@final
class PositionUpdate(_MarketEvent, frozen=True, kw_only=True, tag="position_update"):
    """
    One position. ``net_quantity`` is negative when short; ``event`` is Backpack's event name, or
    ``"snapshot"`` for a position of the snapshot sent on subscription.
    """

    event: str
    position_id: str
    net_quantity: Decimal
    net_exposure_quantity: Decimal | None
    net_exposure_notional: Decimal | None
    entry_price: Decimal | None
    break_even_price: Decimal | None
    mark_price: Decimal | None
    liquidation_price: Decimal | None
    initial_margin_fraction: Decimal | None
    maintenance_margin_fraction: Decimal | None
    realized_pnl: Decimal | None
    unrealized_pnl: Decimal | None


@final
class PositionSnapshot(_Event, frozen=True, kw_only=True, tag="position_snapshot"):
    """
    The open positions sent on subscription to ``account.positionUpdate[.<symbol>]``.

    ``symbol`` is the stream's symbol filter (``None`` for all markets).
    """

    symbol: str | None
    timestamp: float
    receipt_timestamp: float
    positions: tuple[PositionUpdate, ...]


@final
class BalanceUpdate(_Event, frozen=True, kw_only=True, tag="balance_update"):
    """New balances of one asset. A balance belongs to no market: ``symbol`` is always ``None``."""

    symbol: None = None
    timestamp: float
    receipt_timestamp: float
    asset: str
    available: Decimal
    locked: Decimal
    staked: Decimal | None


@final
class BookStatus(_MarketEvent, frozen=True, kw_only=True, tag="book_status"):
    """A local order book changed state (``syncing``, ``live``, ``resyncing``, ``failed``)."""

    state: BookState
    reason: str = ""


Event: TypeAlias = (
    Trade | BookSnapshot | BookDelta | TopOfBook | Ticker | Candle | MarkPrice | OpenInterest | Liquidation
    | OrderUpdate | PositionUpdate | PositionSnapshot | BalanceUpdate | BookStatus
)  # fmt: skip
"""Every normalized event (a tagged union on ``type``)."""
