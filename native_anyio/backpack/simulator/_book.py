"""
Price-level books on integer units, the public :class:`TruthBook` snapshot, and the bounded
update history behind :meth:`Simulator.book_at`.

History rules: every update id's level changes are packed into a small ``bytes`` (16 bytes a
level: price, then size; asks are stored with a negated price), kept in a ring of at most
``limit`` updates. Every :data:`CHECKPOINT_EVERY` updates a full copy of both sides is kept, so
the book after any retained id is rebuilt by replaying at most that many updates.
"""

from __future__ import annotations

import bisect
import struct
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from ._numbers import to_decimal

if TYPE_CHECKING:
    from collections.abc import Iterable
    from decimal import Decimal

__all__ = ["CHECKPOINT_EVERY", "History", "Side", "TruthBook"]

#: Updates between two full checkpoints of the history.
CHECKPOINT_EVERY = 512

Level = tuple[int, int]


class Side:
    """One side of a book: size by price (integer units) plus the prices in ascending order."""

    __slots__ = ("_prices", "descending", "sizes")

    def __init__(self, descending: bool, sizes: dict[int, int] | None = None) -> None:
        self.descending = descending
        self.sizes: dict[int, int] = dict(sizes or {})
        self._prices = sorted(self.sizes)

    def __len__(self) -> int:
        return len(self._prices)

    def set(self, price: int, size: int) -> None:
        """Set the absolute size of a level; 0 deletes it (deleting an absent level is a no-op)."""
        if size:
            if price not in self.sizes:
                bisect.insort(self._prices, price)
            self.sizes[price] = size
        elif self.sizes.pop(price, None) is not None:
            del self._prices[bisect.bisect_left(self._prices, price)]

    def best(self) -> int | None:
        """The best price (highest bid, lowest ask), or None when empty."""
        if not self._prices:
            return None
        return self._prices[-1] if self.descending else self._prices[0]

    def worst(self) -> int | None:
        """The price farthest from the touch, or None when empty."""
        if not self._prices:
            return None
        return self._prices[0] if self.descending else self._prices[-1]

    def price_at(self, index: int) -> int:
        """The price ``index`` levels away from the best (0 is the best)."""
        return self._prices[-1 - index] if self.descending else self._prices[index]

    def levels(self, limit: int | None = None) -> list[Level]:
        """``(price, size)`` best first, at most ``limit`` of them."""
        prices = self._prices[::-1] if self.descending else self._prices
        if limit is not None:
            prices = prices[:limit]
        sizes = self.sizes
        return [(p, sizes[p]) for p in prices]


@final
@dataclass(frozen=True, slots=True)
class TruthBook:
    """
    The simulator's ground-truth book of one symbol after one update id.

    Attributes:
        symbol: the market.
        last_update_id: the update id this book is the state after.
        bids: ``(price, size)`` best (highest) first.
        asks: ``(price, size)`` best (lowest) first.
    """

    symbol: str
    last_update_id: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]

    @classmethod
    def build(cls, symbol: str, update_id: int, bids: Side, asks: Side, dp: int, ds: int) -> TruthBook:
        """Snapshot two sides (integer units) as Decimals."""

        def convert(side: Side) -> tuple[tuple[Decimal, Decimal], ...]:
            return tuple((to_decimal(p, dp), to_decimal(s, ds)) for p, s in side.levels())

        return cls(symbol, update_id, convert(bids), convert(asks))

    def top(self, n: int) -> TruthBook:
        """The same book cut to the ``n`` best levels of each side."""
        return TruthBook(self.symbol, self.last_update_id, self.bids[:n], self.asks[:n])


def pack_changes(bids: Iterable[Level], asks: Iterable[Level]) -> bytes:
    """Pack one update's level changes (asks with a negated price)."""
    flat: list[int] = []
    for price, size in bids:
        flat += (price, size)
    for price, size in asks:
        flat += (-price, size)
    return struct.pack(f"<{len(flat)}q", *flat)


def unpack_changes(blob: bytes) -> Iterable[tuple[int, int]]:
    """The packed ``(signed price, size)`` pairs of one update."""
    return struct.iter_unpack("<qq", blob)


def _apply(bids: dict[int, int], asks: dict[int, int], blob: bytes) -> None:
    for price, size in unpack_changes(blob):
        side, key = (bids, price) if price > 0 else (asks, -price)
        if size:
            side[key] = size
        else:
            side.pop(key, None)


class History:
    """Bounded per-symbol history of level changes with periodic checkpoints."""

    __slots__ = ("_checkpoints", "_events", "_first_id", "_limit")

    def __init__(self, update_id: int, bids: Side, asks: Side, limit: int) -> None:
        self._limit = limit
        self._events: deque[bytes] = deque()
        self._first_id = update_id + 1  # the id of _events[0]
        self._checkpoints: deque[tuple[int, dict[int, int], dict[int, int]]] = deque(
            [(update_id, dict(bids.sizes), dict(asks.sizes))]
        )

    @property
    def limit(self) -> int:
        """How many updates are kept."""
        return self._limit

    @property
    def oldest(self) -> int:
        """The oldest update id :meth:`book_at` can rebuild."""
        return self._checkpoints[0][0]

    @property
    def newest(self) -> int:
        """The newest update id recorded."""
        return self._first_id + len(self._events) - 1

    def append(self, update_id: int, packed: bytes, bids: Side, asks: Side) -> None:
        """Record update ``update_id`` (the next id); ``bids``/``asks`` are the sides after it."""
        if update_id != self.newest + 1:
            raise ValueError(f"update {update_id} does not follow {self.newest}")
        self._events.append(packed)
        if update_id % CHECKPOINT_EVERY == 0:
            self._checkpoints.append((update_id, dict(bids.sizes), dict(asks.sizes)))
        while len(self._events) > self._limit:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Forget the oldest update, rolling the oldest checkpoint over it when it depends on it."""
        blob = self._events.popleft()
        dropped = self._first_id
        self._first_id += 1
        update_id, bids, asks = self._checkpoints[0]
        if update_id != dropped - 1:
            return
        if len(self._checkpoints) > 1 and self._checkpoints[1][0] == dropped:
            self._checkpoints.popleft()
            return
        _apply(bids, asks, blob)
        self._checkpoints[0] = (dropped, bids, asks)

    def _replay(self, bids: dict[int, int], asks: dict[int, int], start: int, stop: int) -> None:
        """Apply updates ``start + 1 .. stop`` to ``bids``/``asks`` in place."""
        events = self._events
        for index in range(start + 1 - self._first_id, stop + 1 - self._first_id):
            _apply(bids, asks, events[index])

    def book_at(self, update_id: int) -> tuple[Side, Side]:
        """
        Both sides right after ``update_id``.

        Raises:
            LookupError: ``update_id`` is older than the retained history or not generated yet.
        """
        if not self.oldest <= update_id <= self.newest:
            raise LookupError(
                f"update {update_id} is outside the retained history {self.oldest}..{self.newest}"
            )
        index = bisect.bisect_right([c[0] for c in self._checkpoints], update_id) - 1
        start, bids, asks = self._checkpoints[index]
        bids, asks = dict(bids), dict(asks)
        self._replay(bids, asks, start, update_id)
        return Side(True, bids), Side(False, asks)
