"""
K-line (candle) aggregation of one symbol's trades, for every Backpack interval.

Rules:

* a candle exists once its period has a trade (periods without trades have no candle, on the
  socket or in REST);
* candle periods are aligned to UTC: fixed lengths from the epoch, weeks from Monday, months by
  calendar;
* a candle whose period has ended is closed when the next trade or :meth:`KlineBook.roll` sees
  that time; closed candles are kept (at most ``history`` per interval) and each one is reported
  once as *final* (``X: true``) by :meth:`KlineBook.take_updates`;
* the socket gets an open candle at most once per :meth:`take_updates` call (the publisher calls
  it once a second), and only when a trade changed it since the previous call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ._numbers import month_bounds

__all__ = ["INTERVALS", "Candle", "KlineBook", "candle_bounds"]

#: Interval name -> length in seconds (0: calendar month).
INTERVALS: dict[str, int] = {
    "1s": 1,
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
    "3d": 259200,
    "1w": 604800,
    "1month": 0,
}

_MONDAY = 4 * 86400  # 1970-01-05, the first Monday after the epoch


def candle_bounds(interval: str, seconds: int) -> tuple[int, int]:
    """Start and end (Unix seconds) of the ``interval`` candle holding ``seconds``."""
    length = INTERVALS[interval]
    if length == 0:
        return month_bounds(seconds)
    origin = _MONDAY if interval == "1w" else 0
    start = (seconds - origin) // length * length + origin
    return start, start + length


@dataclass(slots=True)
class Candle:
    """One candle; prices and volumes in integer units of the market."""

    start: int
    end: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int
    dirty: bool = True


class KlineBook:
    """The candles of every interval of one symbol."""

    __slots__ = ("_closed", "_current", "_finals", "_history")

    def __init__(self, history: int = 500) -> None:
        self._history = history
        self._current: dict[str, Candle] = {}
        self._closed: dict[str, deque[Candle]] = {name: deque(maxlen=history) for name in INTERVALS}
        self._finals: deque[tuple[str, Candle]] = deque(maxlen=len(INTERVALS) * 4)

    def on_trade(self, seconds: int, price: int, qty: int, quote: int) -> None:
        """Add one trade at Unix time ``seconds``."""
        self.roll(seconds)
        for name in INTERVALS:
            candle = self._current.get(name)
            if candle is None:
                start, end = candle_bounds(name, seconds)
                self._current[name] = Candle(start, end, price, price, price, price, qty, quote, 1)
                continue
            candle.high = max(candle.high, price)
            candle.low = min(candle.low, price)
            candle.close = price
            candle.volume += qty
            candle.quote_volume += quote
            candle.trades += 1
            candle.dirty = True

    def roll(self, seconds: int) -> None:
        """Close every candle whose period ended at or before ``seconds``."""
        for name, candle in list(self._current.items()):
            if candle.end <= seconds:
                del self._current[name]
                self._closed[name].append(candle)
                self._finals.append((name, candle))

    def take_updates(self) -> list[tuple[str, Candle, bool]]:
        """``(interval, candle, final)`` to publish: each final once, then changed open candles."""
        out = [(name, candle, True) for name, candle in self._finals]
        self._finals.clear()
        for name, candle in self._current.items():
            if candle.dirty:
                candle.dirty = False
                out.append((name, candle, False))
        return out

    def candles(self, interval: str, start: int, end: int) -> list[Candle]:
        """Candles of ``interval`` starting in ``[start, end)``, oldest first (open one included)."""
        found = [c for c in self._closed[interval] if start <= c.start < end]
        current = self._current.get(interval)
        if current is not None and start <= current.start < end:
            found.append(current)
        return found
