"""
The ground-truth market of one symbol, sans-IO: a seeded generator of book updates and trades.

Each call to :meth:`MarketEngine.next_event` makes one engine event with one new update id:

* 18 %: a taker trade against the touch (a partial fill of the best level, or the best level and
  part of the next); the consumed levels are part of the same update, and perps turn about 3 %
  of these into liquidations;
* 70 %: a resting level changes size, is deleted, or a new level appears behind the touch;
* 12 %: the spread moves: a level improves inside the spread, or the best level is pulled.

Both sides are kept between :data:`MIN_LEVELS` and :data:`MAX_LEVELS` levels (far levels are added
or trimmed in the same update), the book is never crossed and never empty, and the mid price
reverts towards its initial value. Every random choice comes from one ``random.Random`` seeded
with ``"<seed>:<symbol>"``, so a seed fixes the whole sequence. Time is not read here: the
publisher stamps events when it sends them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from ._book import History, Side, pack_changes
from ._numbers import decimals_of, to_units, unit_of

if TYPE_CHECKING:
    from ._config import MarketSpec

__all__ = ["MAX_LEVELS", "MIN_LEVELS", "BookEvent", "Fill", "MarketEngine"]

MIN_LEVELS = 12
MAX_LEVELS = 60
_INITIAL_LEVELS = 30
_LEVEL_NOTIONAL = Decimal(500)  # typical resting size, in quote units

TakerSide = Literal["Bid", "Ask"]


@dataclass(slots=True)
class Fill:
    """One trade: a taker against one resting level."""

    trade_id: int
    price: int
    qty: int
    buyer_is_maker: bool
    buyer_order: int
    seller_order: int


@dataclass(slots=True)
class BookEvent:
    """One engine event: one update id, its level changes (absolute sizes) and its trades."""

    update_id: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    fills: list[Fill] = field(default_factory=list)
    taker_side: TakerSide | None = None
    liquidation: bool = False
    time_us: int = 0


class MarketEngine:
    """
    Generates the book of one market.

    Args:
        spec: the market.
        seed: the simulator seed.
        history_limit: update ids kept for :meth:`History.book_at`.
    """

    def __init__(self, spec: MarketSpec, seed: int, history_limit: int) -> None:
        self.spec = spec
        self.rng = random.Random(f"{seed}:{spec.symbol}")
        self.dp = decimals_of(spec.tick_size)
        self.ds = decimals_of(spec.step_size)
        self.tick = unit_of(spec.tick_size, self.dp)
        self.step = unit_of(spec.step_size, self.ds)
        self._lot = max(1, int(_LEVEL_NOTIONAL / (spec.price * spec.step_size)))
        mid = to_units(spec.price.quantize(spec.tick_size), self.dp)
        self.initial_mid = max(mid, 4 * self.tick)
        self.bids = Side(descending=True)
        self.asks = Side(descending=False)
        self._seed_book()
        rng = self.rng
        self.last_id = rng.randrange(100_000_000, 5_000_000_000)
        self.next_trade_id = rng.randrange(1_000_000, 400_000_000)
        self._next_order_id = rng.randrange(1_000_000_000, 60_000_000_000)
        self.history = History(self.last_id, self.bids, self.asks, history_limit)

    def _seed_book(self) -> None:
        rng, tick = self.rng, self.tick
        best_bid = self.initial_mid - tick * rng.randint(0, 1)
        best_ask = best_bid + tick * rng.randint(1, 3)
        bid, ask = best_bid, best_ask
        for _ in range(_INITIAL_LEVELS):
            if bid >= tick:
                self.bids.set(bid, self._size())
            self.asks.set(ask, self._size())
            bid -= tick * (1 + (rng.random() < 0.2))
            ask += tick * (1 + (rng.random() < 0.2))

    def _size(self) -> int:
        return max(1, int(self._lot * self.rng.lognormvariate(0.0, 0.9))) * self.step

    def new_order_id(self) -> int:
        """A fresh order id (maker, taker or account order)."""
        self._next_order_id += self.rng.randint(1, 40)
        return self._next_order_id

    @property
    def mid(self) -> int:
        """The mid price in units (rounded down to a tick)."""
        bid, ask = self.bids.best(), self.asks.best()
        if bid is None or ask is None:
            return self.initial_mid
        return (bid + ask) // 2 // self.tick * self.tick

    def _up_chance(self) -> float:
        """Chance that the next move pushes the price up (mean-reverting)."""
        drift = (self.mid - self.initial_mid) / self.initial_mid
        return 0.5 - max(-0.3, min(0.3, drift * 10))

    def next_event(self) -> BookEvent:
        """Generate the next update of the market (see the module rules)."""
        rng = self.rng
        changes: tuple[dict[int, int], dict[int, int]] = ({}, {})
        fills: list[Fill] = []
        taker: TakerSide | None = None
        roll = rng.random()
        if roll < 0.18:
            taker = "Bid" if rng.random() < self._up_chance() else "Ask"
            fills = self._random_take(taker, changes)
        elif roll < 0.88:
            self._modify(changes)
        else:
            self._shift(changes)
        self._maintain(changes)
        if not changes[0] and not changes[1]:
            best = self.bids.best()
            assert best is not None  # never empty
            self._set(True, best, self.bids.sizes[best] + self.step, changes)
        liquidation = bool(fills) and self.spec.is_perp and rng.random() < 0.03
        return self._finish(changes, fills, taker, liquidation)

    def take(
        self, side: TakerSide, qty: int, limit: int | None, taker_order: int
    ) -> tuple[BookEvent | None, int]:
        """
        An account's taker order: walk the opposite side while it crosses ``limit``.

        Returns the event (None when nothing crossed) and the unfilled quantity.
        """
        changes: tuple[dict[int, int], dict[int, int]] = ({}, {})
        fills, remaining = self._walk(side, qty, limit, changes, taker_order, max_levels=50)
        if not fills:
            return None, qty
        self._maintain(changes)
        return self._finish(changes, fills, side, False), remaining

    def _finish(
        self,
        changes: tuple[dict[int, int], dict[int, int]],
        fills: list[Fill],
        taker: TakerSide | None,
        liquidation: bool,
    ) -> BookEvent:
        self.last_id += 1
        bids, asks = list(changes[0].items()), list(changes[1].items())
        self.history.append(self.last_id, pack_changes(bids, asks), self.bids, self.asks)
        return BookEvent(self.last_id, bids, asks, fills, taker, liquidation)

    def _set(
        self, is_bid: bool, price: int, size: int, changes: tuple[dict[int, int], dict[int, int]]
    ) -> None:
        (self.bids if is_bid else self.asks).set(price, size)
        changes[0 if is_bid else 1][price] = size

    def _random_take(self, taker: TakerSide, changes: tuple[dict[int, int], dict[int, int]]) -> list[Fill]:
        rng = self.rng
        book = self.asks if taker == "Bid" else self.bids
        levels = book.levels(2)
        best_size = levels[0][1]
        qty = self.step * rng.randint(1, max(1, best_size // self.step))
        if rng.random() < 0.25 and len(levels) > 1:
            qty = best_size + self.step * rng.randint(1, max(1, levels[1][1] // self.step))
        fills, _ = self._walk(taker, qty, None, changes, self.new_order_id(), max_levels=3)
        return fills

    def _walk(
        self,
        taker: TakerSide,
        qty: int,
        limit: int | None,
        changes: tuple[dict[int, int], dict[int, int]],
        taker_order: int,
        *,
        max_levels: int,
    ) -> tuple[list[Fill], int]:
        buying = taker == "Bid"
        book = self.asks if buying else self.bids
        fills: list[Fill] = []
        remaining = qty
        while remaining > 0 and len(fills) < max_levels:
            price = book.best()
            if price is None or (limit is not None and (price > limit if buying else price < limit)):
                break
            size = book.sizes[price]
            fill = min(size, remaining)
            if fill == size and len(book) == 1:
                fill = size - self.step  # never empty a side
                if fill <= 0:
                    break
            self._set(not buying, price, size - fill, changes)
            maker = self.new_order_id()
            buyer, seller = (taker_order, maker) if buying else (maker, taker_order)
            fills.append(Fill(self.next_trade_id, price, fill, not buying, buyer, seller))
            self.next_trade_id += 1
            remaining -= fill
        return fills, remaining

    def _modify(self, changes: tuple[dict[int, int], dict[int, int]]) -> None:
        rng, tick = self.rng, self.tick
        is_bid = rng.random() < 0.5
        book = self.bids if is_bid else self.asks
        if rng.random() < 0.65:
            price = book.price_at(min(int(rng.expovariate(0.35)), len(book) - 1))
            delete = rng.random() < 0.3 and len(book) > MIN_LEVELS
            self._set(is_bid, price, 0 if delete else self._size(), changes)
            return
        best = book.best()
        assert best is not None
        distance = tick * (1 + int(rng.expovariate(0.3)))
        price = best - distance if is_bid else best + distance
        if price >= tick:
            self._set(is_bid, price, self._size(), changes)

    def _shift(self, changes: tuple[dict[int, int], dict[int, int]]) -> None:
        rng, tick = self.rng, self.tick
        bid, ask = self.bids.best(), self.asks.best()
        assert bid is not None
        assert ask is not None
        up = rng.random() < self._up_chance()
        gap = (ask - bid) // tick
        if gap > 1 and rng.random() < 0.6:
            offset = tick * rng.randint(1, gap - 1)
            self._set(up, bid + offset if up else ask - offset, self._size(), changes)
        elif up and len(self.asks) > MIN_LEVELS:
            self._set(False, ask, 0, changes)
        elif not up and len(self.bids) > MIN_LEVELS:
            self._set(True, bid, 0, changes)

    def _maintain(self, changes: tuple[dict[int, int], dict[int, int]]) -> None:
        rng, tick = self.rng, self.tick
        for is_bid, book in ((True, self.bids), (False, self.asks)):
            worst = book.worst()
            assert worst is not None
            if len(book) < MIN_LEVELS:
                distance = tick * rng.randint(1, 3)
                price = worst - distance if is_bid else worst + distance
                if price >= tick:
                    self._set(is_bid, price, self._size(), changes)
            elif len(book) > MAX_LEVELS:
                self._set(is_bid, worst, 0, changes)
