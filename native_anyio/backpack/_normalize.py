"""
Wire structs -> normalized events, through a dispatch table built once at import.

Sans-IO and pure: the receipt time is passed in. Units: ``E``/``T`` are µs; kline times are
naive-UTC datetimes (or integers); markPrice ``n`` and REST depth ``timestamp`` have a unit that
sources disagree on, resolved by magnitude in :func:`epoch_seconds`. Depth frames become
:class:`BookDelta` only; a :class:`BookSnapshot` comes from REST via :func:`snapshot_from_rest`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final

from .._errors import DecodeError
from ._events import (
    BalanceUpdate,
    BookDelta,
    BookSnapshot,
    Candle,
    Event,
    Liquidation,
    MarkPrice,
    OpenInterest,
    OrderUpdate,
    PositionSnapshot,
    PositionUpdate,
    Ticker,
    TopOfBook,
    Trade,
)
from ._streams import normalize_symbol
from ._wire import (
    WsBookTicker,
    WsDepth,
    WsExternalTicker,
    WsKline,
    WsLiquidation,
    WsMarkPrice,
    WsOpenInterest,
    WsTicker,
    WsTrade,
)
from ._wire_private import (
    ORDER_EVENTS,
    POSITION_EVENTS,
    RFQ_EVENTS,
    WsBalanceUpdate,
    WsOrderUpdate,
    WsPosition,
    WsPositionSnapshot,
    WsPositionUpdate,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._streams import StreamName
    from ._wire import WsMessage
    from ._wire_rest import RestDepth

__all__ = ["epoch_seconds", "normalize", "snapshot_from_rest"]

_US: Final = 1_000_000
_price = itemgetter(0)


def normalize(data: WsMessage, stream: StreamName, receipt_timestamp: float) -> Event | None:
    """
    Convert one decoded payload into its normalized event.

    Args:
        data: ``Frame.data`` from :func:`decode_frame`.
        stream: the parsed ``Frame.stream`` (kline intervals and snapshot filters come from it).
        receipt_timestamp: when the frame was received, float seconds.

    Returns:
        the event, or ``None`` for payloads without a normalized form (RFQ updates).

    Raises:
        DecodeError: a kline payload on a stream that is not a kline stream.
    """
    return _CONVERTERS[type(data)](data, stream, receipt_timestamp)


def snapshot_from_rest(symbol: str, depth: RestDepth, receipt_timestamp: float) -> BookSnapshot:
    """
    A :class:`BookSnapshot` from ``GET /api/v1/depth`` (both sides arrive ascending by price).

    Args:
        symbol: the market, in either spelling.
        depth: the decoded REST body.
        receipt_timestamp: when the response was received, float seconds.
    """
    return BookSnapshot(
        symbol=normalize_symbol(symbol),
        timestamp=epoch_seconds(depth.timestamp),
        receipt_timestamp=receipt_timestamp,
        bids=tuple(sorted(depth.bids, key=_price, reverse=True)),
        asks=tuple(sorted(depth.asks, key=_price)),
        sequence=int(depth.last_update_id),
    )


def epoch_seconds(value: int) -> float:
    """
    Seconds since the epoch from an integer whose unit is inferred from its magnitude.

    Below 1e11 it is seconds, below 1e14 milliseconds, below 1e17 microseconds, else
    nanoseconds; each bound is the year 5138 in the smaller unit, so present-day values of any
    unit are told apart. Used where sources disagree on the unit (kline ``t``/``T`` integers,
    markPrice ``n``, REST depth ``timestamp``).
    """
    if value < 100_000_000_000:
        return float(value)
    if value < 100_000_000_000_000:
        return value / 1_000
    if value < 100_000_000_000_000_000:
        return value / _US
    return value / 1_000_000_000


def _kline_time(value: datetime | int) -> float:
    if isinstance(value, int):
        return epoch_seconds(value)
    if value.tzinfo is None:  # the wire sends naive UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _trade(d: WsTrade, stream: StreamName, receipt: float) -> Trade:
    return Trade(
        symbol=normalize_symbol(d.symbol),
        timestamp=d.engine_time / _US,
        receipt_timestamp=receipt,
        price=d.price,
        amount=d.quantity,
        side="sell" if d.buyer_is_maker else "buy",
        id=d.trade_id,
    )


def _depth(d: WsDepth, stream: StreamName, receipt: float) -> BookDelta:
    return BookDelta(
        symbol=normalize_symbol(d.symbol),
        timestamp=d.engine_time / _US,
        receipt_timestamp=receipt,
        bids=d.bids,
        asks=d.asks,
        first_sequence=d.first_update_id,
        sequence=d.last_update_id,
    )


def _book_ticker(d: WsBookTicker, stream: StreamName, receipt: float) -> TopOfBook:
    return TopOfBook(
        symbol=normalize_symbol(d.symbol),
        timestamp=d.engine_time / _US,
        receipt_timestamp=receipt,
        bid_price=d.bid_price,
        bid_size=d.bid_quantity,
        ask_price=d.ask_price,
        ask_size=d.ask_quantity,
        sequence=int(d.update_id),
    )


def _ticker(d: WsTicker, stream: StreamName, receipt: float) -> Ticker:
    return Ticker(
        symbol=normalize_symbol(d.symbol),
        timestamp=d.event_time / _US,
        receipt_timestamp=receipt,
        open=d.open,
        high=d.high,
        low=d.low,
        last=d.close,
        volume=d.volume,
        quote_volume=d.quote_volume,
        trades=d.trades,
        external=type(d) is WsExternalTicker,
    )


def _kline(d: WsKline, stream: StreamName, receipt: float) -> Candle:
    if stream.kind != "kline" or stream.interval is None:
        raise DecodeError(f"kline payload on stream {stream}", exchange="BACKPACK", channel=str(stream))
    return Candle(
        symbol=normalize_symbol(d.symbol),
        timestamp=d.event_time / _US,
        receipt_timestamp=receipt,
        interval=stream.interval,
        start=_kline_time(d.start),
        end=_kline_time(d.end),
        open=d.open,
        high=d.high,
        low=d.low,
        close=d.close,
        volume=d.volume,
        trades=d.trades,
        closed=d.closed,
    )


def _mark_price(d: WsMarkPrice, stream: StreamName, receipt: float) -> MarkPrice:
    next_funding = d.next_funding_time
    return MarkPrice(
        symbol=normalize_symbol(d.symbol),
        timestamp=(d.engine_time if d.engine_time is not None else d.event_time) / _US,
        receipt_timestamp=receipt,
        mark_price=d.mark_price,
        index_price=d.index_price,
        funding_rate=d.funding_rate,
        next_funding_time=None if next_funding is None else epoch_seconds(next_funding),
    )


def _open_interest(d: WsOpenInterest, stream: StreamName, receipt: float) -> OpenInterest:
    return OpenInterest(
        symbol=normalize_symbol(d.symbol),
        timestamp=(d.engine_time if d.engine_time is not None else d.event_time) / _US,
        receipt_timestamp=receipt,
        open_interest=d.open_interest,
    )


def _liquidation(d: WsLiquidation, stream: StreamName, receipt: float) -> Liquidation:
    return Liquidation(
        symbol=normalize_symbol(d.symbol),
        timestamp=d.engine_time / _US,
        receipt_timestamp=receipt,
        price=d.price,
        amount=d.quantity,
        side="buy" if d.side == "Bid" else "sell",
    )


def _order(d: WsOrderUpdate, stream: StreamName, receipt: float) -> OrderUpdate:
    return OrderUpdate(
        symbol=normalize_symbol(d.symbol),
        timestamp=d.engine_time / _US,
        receipt_timestamp=receipt,
        event=type(d).__struct_config__.tag,  # type: ignore[arg-type]  # every subclass is tagged
        order_id=d.order_id,
        client_order_id=d.client_order_id,
        side="buy" if d.side == "Bid" else "sell",
        order_type=d.order_type.lower(),
        status=d.status,
        time_in_force=d.time_in_force,
        price=d.price,
        quantity=d.quantity,
        quote_quantity=d.quote_quantity,
        trigger_price=d.trigger_price,
        trigger_quantity=d.trigger_quantity,
        take_profit_trigger_price=d.take_profit_trigger_price,
        stop_loss_trigger_price=d.stop_loss_trigger_price,
        executed_quantity=d.executed_quantity,
        executed_quote_quantity=d.executed_quote_quantity,
        fill_price=d.fill_price,
        fill_quantity=d.fill_quantity,
        trade_id=d.trade_id,
        maker=d.is_maker,
        fee=d.fee,
        fee_asset=d.fee_symbol,
        post_only=d.post_only,
        reduce_only=d.reduce_only,
        origin=d.origin,
        expiry_reason=d.expiry_reason,
    )


def _position(d: WsPositionUpdate | WsPosition, event: str, receipt: float) -> PositionUpdate:
    micros = d.engine_time if d.engine_time is not None else d.event_time
    return PositionUpdate(
        symbol=normalize_symbol(d.symbol),
        timestamp=receipt if micros is None else micros / _US,
        receipt_timestamp=receipt,
        event=event,
        position_id=str(d.position_id),
        net_quantity=d.net_quantity,
        net_exposure_quantity=d.net_exposure_quantity,
        net_exposure_notional=d.net_exposure_notional,
        entry_price=d.entry_price,
        break_even_price=d.break_even_price,
        mark_price=d.mark_price,
        liquidation_price=d.estimated_liquidation_price,
        initial_margin_fraction=d.initial_margin_fraction,
        maintenance_margin_fraction=d.maintenance_margin_fraction,
        realized_pnl=d.pnl_realized,
        unrealized_pnl=d.pnl_unrealized,
    )


def _position_update(d: WsPositionUpdate, stream: StreamName, receipt: float) -> PositionUpdate:
    return _position(d, type(d).__struct_config__.tag, receipt)  # type: ignore[arg-type]


def _position_snapshot(d: WsPositionSnapshot, stream: StreamName, receipt: float) -> PositionSnapshot:
    positions = tuple(_position(p, "snapshot", receipt) for p in d.positions)
    return PositionSnapshot(
        symbol=None if stream.symbol is None else normalize_symbol(stream.symbol),
        timestamp=max((p.timestamp for p in positions), default=receipt),
        receipt_timestamp=receipt,
        positions=positions,
    )


def _balance(d: WsBalanceUpdate, stream: StreamName, receipt: float) -> BalanceUpdate:
    return BalanceUpdate(
        timestamp=(d.engine_time if d.engine_time is not None else d.event_time) / _US,
        receipt_timestamp=receipt,
        asset=d.asset,
        available=d.available,
        locked=d.locked,
        staked=d.staked,
    )


def _no_event(d: object, stream: StreamName, receipt: float) -> None:
    return None


def _build_table() -> dict[type, Callable[[Any, StreamName, float], Event | None]]:
    table: dict[type, Callable[[Any, StreamName, float], Event | None]] = {
        WsTrade: _trade,
        WsDepth: _depth,
        WsBookTicker: _book_ticker,
        WsTicker: _ticker,
        WsExternalTicker: _ticker,
        WsKline: _kline,
        WsMarkPrice: _mark_price,
        WsOpenInterest: _open_interest,
        WsLiquidation: _liquidation,
        WsPositionSnapshot: _position_snapshot,
        WsBalanceUpdate: _balance,
    }
    table.update(dict.fromkeys(ORDER_EVENTS, _order))
    table.update(dict.fromkeys(POSITION_EVENTS, _position_update))
    table.update(dict.fromkeys(RFQ_EVENTS, _no_event))
    return table


_CONVERTERS: Final = _build_table()
