"""
One simulated market as clients see it: the published book, trades and statistics, and the
frames of every public stream of the symbol.

The engine (:mod:`._engine`) generates updates; this class *publishes* them, in id order:
stamping the engine time ``T`` (wall clock in µs, strictly increasing per symbol), applying them
to the published truth, and queuing frames for subscribers:

* ``depth.<s>``: one frame per update (``U == u``), except that with probability
  ``realtime_merge_chance`` an update joins the previous frame (``U < u``), as under load;
* ``depth.<w>.<s>``: every update also goes into the three window aggregates, flushed by the
  simulator's 200 ms clock; levels ascending on both sides;
* ``bookTicker.<s>``: when the best bid or ask (price or size) changed, with ``u`` the update id;
* ``trade.<s>``, and ``liquidation`` / ``liquidation.<s>`` for liquidation takes on perps.

Updates generated ahead of publication (to serve a REST snapshot that *leads* the socket) wait
in :attr:`Market.pending` and are published first.
"""

from __future__ import annotations

import random
from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING

from ._book import Side, TruthBook
from ._engine import BookEvent, Fill, MarketEngine
from ._faults import DepthFrame
from ._klines import KlineBook
from ._payloads import WireFormat, envelope
from ._streams import DEPTH_WINDOWS

if TYPE_CHECKING:
    from ._config import MarketSpec, SimulatorConfig
    from ._hub import Hub

__all__ = ["Market"]

TradeRow = tuple[int, int, int, bool, int]  # id, price, qty, buyer_is_maker, time_us


class _Aggregate:
    """The changes of one aggregation window since its last flush."""

    __slots__ = ("asks", "bids", "first", "last", "time_us")

    def __init__(self) -> None:
        self.first = 0
        self.last = 0
        self.time_us = 0
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def add(self, event: BookEvent) -> None:
        if not self.first:
            self.first = event.update_id
        self.last = event.update_id
        self.time_us = event.time_us
        self.bids.update(event.bids)
        self.asks.update(event.asks)


class Market:
    """Published state and public streams of one open symbol."""

    def __init__(self, spec: MarketSpec, config: SimulatorConfig, hub: Hub) -> None:
        self.spec = spec
        self.symbol = s = spec.symbol
        self.engine = engine = MarketEngine(spec, config.seed, config.history)
        self.fmt = WireFormat(s, engine.dp, engine.ds)
        self.hub = hub
        self.rng = random.Random(f"{config.seed}:{s}:publish")
        self._periodic_rng = random.Random(f"{config.seed}:{s}:periodic")  # timing-dependent draws
        self.merge_chance = config.realtime_merge_chance
        self.open_interest_every = max(1, round(config.open_interest_interval))
        self.bids = Side(True, engine.bids.sizes)
        self.asks = Side(False, engine.asks.sizes)
        self.update_id = engine.last_id
        self.pending: deque[BookEvent] = deque()
        self.trades: deque[TradeRow] = deque(maxlen=config.trade_history)
        self.time_us = 0
        self.klines = KlineBook()
        mid = engine.mid
        #: 24h statistics: first, high, low, last, volume, quote volume, trade count.
        self.stats = [mid, mid, mid, mid, 0, 0, 0]
        self.open_interest = engine.step * engine._lot * self.rng.randint(200, 2000)
        self.funding = Decimal("0.0000125")
        self.top = self._top()
        self._aggregates = {window: _Aggregate() for window in DEPTH_WINDOWS}
        self.streams = {
            kind: f"{kind}.{s}"
            for kind in ("depth", "bookTicker", "trade", "liquidation", "ticker", "markPrice", "openInterest")
        }

    def _top(self) -> tuple[int | None, int, int | None, int]:
        bid, ask = self.bids.best(), self.asks.best()
        bid_size = 0 if bid is None else self.bids.sizes[bid]
        ask_size = 0 if ask is None else self.asks.sizes[ask]
        return (bid, bid_size, ask, ask_size)

    def book(self) -> TruthBook:
        """The published ground truth."""
        return TruthBook.build(
            self.symbol, self.update_id, self.bids, self.asks, self.engine.dp, self.engine.ds
        )

    def book_at(self, update_id: int) -> TruthBook:
        """The ground truth after ``update_id`` (raises LookupError outside the history)."""
        bids, asks = self.engine.history.book_at(update_id)
        return TruthBook.build(self.symbol, update_id, bids, asks, self.engine.dp, self.engine.ds)

    def snapshot(self, offset: int) -> tuple[int, Side, Side]:
        """The REST snapshot ``offset`` updates behind the socket (negative: ahead of it)."""
        if offset == 0:
            return self.update_id, self.bids, self.asks
        if offset < 0:
            offset = max(offset, -self.engine.history.limit // 2)  # stay within the history
            while len(self.pending) < -offset:
                self.pending.append(self.engine.next_event())
        target = max(self.update_id - offset, self.engine.history.oldest)
        return (target, *self.engine.history.book_at(target))

    # -- publishing ----------------------------------------------------------------------------

    def advance(self, n: int, now_us: int) -> None:
        """Publish the next ``n`` updates (pending ones first)."""
        events = [self.pending.popleft() if self.pending else self.engine.next_event() for _ in range(n)]
        self.publish(events, now_us)

    def take(
        self, side: str, qty: int, limit: int | None, order_id: int, now_us: int
    ) -> tuple[list[Fill], int]:
        """An account's taker order against the book; returns its fills and the unfilled rest."""
        if self.pending:
            self.advance(len(self.pending), now_us)
        event, remaining = self.engine.take("Bid" if side == "Bid" else "Ask", qty, limit, order_id)
        if event is None:
            return [], remaining
        self.publish([event], now_us)
        return event.fills, remaining

    def publish(self, events: list[BookEvent], now_us: int) -> None:
        """Apply ``events`` to the published truth and queue their frames."""
        hub, streams = self.hub, self.streams
        group: list[BookEvent] = []
        for event in events:
            event.time_us = self.time_us = max(now_us, self.time_us + 1)
            merge = self.rng.random() < self.merge_chance
            if group and not merge:
                self._publish_depth(group)
                group = []
            group.append(event)
            self._apply(event)
            if event.fills:
                self._on_fills(event)
            top = self._top()
            if top != self.top:
                self.top = top
                if hub.has(streams["bookTicker"]):
                    payload = self.fmt.book_ticker(top, event.update_id, event.time_us, event.time_us)
                    hub.publish(streams["bookTicker"], envelope(streams["bookTicker"], payload))
        if group:
            self._publish_depth(group)

    def _apply(self, event: BookEvent) -> None:
        for price, size in event.bids:
            self.bids.set(price, size)
        for price, size in event.asks:
            self.asks.set(price, size)
        self.update_id = event.update_id
        for aggregate in self._aggregates.values():
            aggregate.add(event)

    def _publish_depth(self, group: list[BookEvent]) -> None:
        stream = self.streams["depth"]
        if not self.hub.has(stream):
            return
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for event in group:
            bids.update(event.bids)
            asks.update(event.asks)
        last = group[-1]
        data = self.fmt.depth(
            group[0].update_id, last.update_id, bids.items(), asks.items(), last.time_us, last.time_us
        )
        self._send_depth(stream, data)

    def _send_depth(self, stream: str, data: dict[str, object]) -> None:
        first, last = data["U"], data["u"]
        assert isinstance(first, int)
        assert isinstance(last, int)
        frame = DepthFrame(
            self.symbol, stream, first, last, data, envelope(stream, data), self.spec.step_size
        )
        self.hub.publish_depth(frame)

    def flush_aggregate(self, window: str, now_us: int) -> None:
        """Send and reset the ``window`` aggregate (nothing when no update happened in it)."""
        aggregate = self._aggregates[window]
        if not aggregate.first:
            return
        self._aggregates[window] = _Aggregate()
        stream = f"depth.{window}.{self.symbol}"
        if self.hub.has(stream):
            data = self.fmt.depth(
                aggregate.first,
                aggregate.last,
                sorted(aggregate.bids.items()),
                sorted(aggregate.asks.items()),
                aggregate.time_us,
                max(now_us, aggregate.time_us),
            )
            self._send_depth(stream, data)

    def _on_fills(self, event: BookEvent) -> None:
        hub, fmt, stats = self.hub, self.fmt, self.stats
        trade_stream = self.streams["trade"]
        publish_trades = hub.has(trade_stream)
        for fill in event.fills:
            self.trades.append((fill.trade_id, fill.price, fill.qty, fill.buyer_is_maker, event.time_us))
            quote = fill.price * fill.qty
            stats[1], stats[2], stats[3] = max(stats[1], fill.price), min(stats[2], fill.price), fill.price
            stats[4] += fill.qty
            stats[5] += quote
            stats[6] += 1
            self.klines.on_trade(event.time_us // 1_000_000, fill.price, fill.qty, quote)
            if self.spec.is_perp:
                delta = fill.qty if self.rng.random() < 0.5 else -fill.qty
                self.open_interest = max(0, self.open_interest + delta)
            if publish_trades:
                hub.publish(
                    trade_stream, envelope(trade_stream, fmt.trade(fill, event.time_us, event.time_us))
                )
        if event.liquidation and event.taker_side is not None:
            qty = sum(fill.qty for fill in event.fills)
            payload = fmt.liquidation(
                event.taker_side, event.fills[-1].price, qty, event.time_us, event.time_us
            )
            for stream in ("liquidation", self.streams["liquidation"]):
                if hub.has(stream):
                    hub.publish(stream, envelope(stream, payload))

    # -- periodic streams (the simulator calls these on its 1 s clock) --------------------------

    def index_price(self) -> Decimal:
        """The index price: the mid with a small seeded deviation, 8 decimals."""
        mid = Decimal(self.engine.mid).scaleb(-self.engine.dp)
        deviation = Decimal(self._periodic_rng.randint(-500, 500)).scaleb(-7)
        return (mid * (1 + deviation)).quantize(Decimal("0.00000001"))

    def publish_second(self, second: int, now_us: int) -> None:
        """
        Ticker every second, markPrice (perps) every second, openInterest (perps) every
        ``open_interest_interval`` seconds (Backpack: 60).
        """
        hub, fmt, streams = self.hub, self.fmt, self.streams
        if hub.has(streams["ticker"]):
            hub.publish(streams["ticker"], envelope(streams["ticker"], fmt.ticker(self.stats, now_us)))
        if not self.spec.is_perp:
            return
        step = Decimal(self._periodic_rng.randint(-20, 20)).scaleb(-7)
        self.funding = (self.funding + step).quantize(Decimal("1E-7"))
        if hub.has(streams["markPrice"]):
            next_funding = (now_us // 3_600_000_000 + 1) * 3_600_000
            payload = fmt.mark_price(
                self.engine.mid, self.index_price(), self.funding, next_funding, now_us, now_us
            )
            hub.publish(streams["markPrice"], envelope(streams["markPrice"], payload))
        if second % self.open_interest_every == 0 and hub.has(streams["openInterest"]):
            payload = fmt.open_interest(self.open_interest, now_us)
            hub.publish(streams["openInterest"], envelope(streams["openInterest"], payload))

    def publish_klines(self, now_us: int) -> None:
        """Close ended candles; send finals and changed candles to subscribed kline streams."""
        self.klines.roll(now_us // 1_000_000)
        for interval, candle, final in self.klines.take_updates():
            stream = f"kline.{interval}.{self.symbol}"
            if self.hub.has(stream):
                self.hub.publish(stream, envelope(stream, self.fmt.kline(candle, final, now_us)))
