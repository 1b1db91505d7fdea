"""
Public websocket payloads, shaped like the recorded wire frames (protocol doc §3).

Every payload is a dict encoded with sorted keys (uppercase before lowercase, as on the wire);
``E``/``T`` are integer microseconds, prices and sizes are strings padded to the market's tick
and step, update and trade ids are JSON numbers, order ids strings, kline times naive ISO-8601.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ._numbers import iso_naive, padded

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from decimal import Decimal

    from ._engine import Fill
    from ._klines import Candle

__all__ = ["ENCODER", "WireFormat", "envelope"]

#: The one JSON encoder of the simulator: sorted keys, like every captured frame.
ENCODER = msgspec.json.Encoder(order="sorted")

Payload = dict[str, Any]


def envelope(stream: str, data: Payload) -> bytes:
    """``{"data":{...},"stream":"..."}`` as bytes."""
    return ENCODER.encode({"data": data, "stream": stream})


class WireFormat:
    """Builds the payloads of one market (its symbol and decimals are bound here)."""

    __slots__ = ("dp", "ds", "symbol")

    def __init__(self, symbol: str, dp: int, ds: int) -> None:
        self.symbol = symbol
        self.dp = dp
        self.ds = ds

    def price(self, units: int) -> str:
        """A price padded to the tick."""
        return padded(units, self.dp)

    def size(self, units: int) -> str:
        """A size padded to the step."""
        return padded(units, self.ds)

    def quote(self, units: int) -> str:
        """A quote amount (price units times size units)."""
        return padded(units, self.dp + self.ds)

    def levels(self, levels: Iterable[tuple[int, int]]) -> list[list[str]]:
        """``[[price, size], ...]`` padded."""
        dp, ds = self.dp, self.ds
        return [[padded(p, dp), padded(s, ds)] for p, s in levels]

    def depth(
        self,
        first: int,
        last: int,
        bids: Iterable[tuple[int, int]],
        asks: Iterable[tuple[int, int]],
        engine_us: int,
        event_us: int,
    ) -> Payload:
        """A depth delta covering update ids ``first..last``."""
        return {
            "E": event_us,
            "T": engine_us,
            "U": first,
            "a": self.levels(asks),
            "b": self.levels(bids),
            "e": "depth",
            "s": self.symbol,
            "u": last,
        }

    def book_ticker(
        self, top: tuple[int | None, int, int | None, int], update_id: int, engine_us: int, event_us: int
    ) -> Payload:
        """The best bid and ask after ``update_id`` (``null`` for an empty side)."""
        bid, bid_size, ask, ask_size = top
        return {
            "A": None if ask is None else self.size(ask_size),
            "B": None if bid is None else self.size(bid_size),
            "E": event_us,
            "T": engine_us,
            "a": None if ask is None else self.price(ask),
            "b": None if bid is None else self.price(bid),
            "e": "bookTicker",
            "s": self.symbol,
            "u": update_id,
        }

    def trade(self, fill: Fill, engine_us: int, event_us: int) -> Payload:
        """One public trade; ``m`` is true when the buyer was the maker."""
        return {
            "E": event_us,
            "T": engine_us,
            "a": str(fill.seller_order),
            "b": str(fill.buyer_order),
            "e": "trade",
            "m": fill.buyer_is_maker,
            "p": self.price(fill.price),
            "q": self.size(fill.qty),
            "s": self.symbol,
            "t": fill.trade_id,
        }

    def ticker(self, stats: Sequence[int], event_us: int) -> Payload:
        """24h statistics from ``(first, high, low, last, volume, quote_volume, trades)``; no ``T``."""
        first, high, low, last, volume, quote, trades = stats
        return {
            "E": event_us,
            "V": self.quote(quote),
            "c": self.price(last),
            "e": "ticker",
            "h": self.price(high),
            "l": self.price(low),
            "n": trades,
            "o": self.price(first),
            "s": self.symbol,
            "v": self.size(volume),
        }

    def mark_price(
        self, mark: int, index: Decimal, funding: Decimal, next_funding_ms: int, engine_us: int, event_us: int
    ) -> Payload:
        """Mark, index and funding of a perp; ``n`` is milliseconds."""
        return {
            "E": event_us,
            "T": engine_us,
            "e": "markPrice",
            "f": format(funding, "f"),
            "i": format(index, "f"),
            "n": next_funding_ms,
            "p": self.price(mark),
            "s": self.symbol,
        }

    def open_interest(self, contracts: int, event_us: int) -> Payload:
        """Open interest in contracts (no ``T``, as documented)."""
        return {"E": event_us, "e": "openInterest", "o": self.size(contracts), "s": self.symbol}

    def kline(self, candle: Candle, final: bool, event_us: int) -> Payload:
        """One candle; ``t``/``T`` are naive UTC ISO strings, ``X`` says whether it closed."""
        return {
            "E": event_us,
            "T": iso_naive(candle.end),
            "X": final,
            "c": self.price(candle.close),
            "e": "kline",
            "h": self.price(candle.high),
            "l": self.price(candle.low),
            "n": candle.trades,
            "o": self.price(candle.open),
            "s": self.symbol,
            "t": iso_naive(candle.start),
            "v": self.size(candle.volume),
        }

    def liquidation(self, side: str, price: int, qty: int, engine_us: int, event_us: int) -> Payload:
        """A liquidation executed at ``price`` (the last level reached) for ``qty``."""
        return {
            "E": event_us,
            "S": side,
            "T": engine_us,
            "e": "liquidation",
            "p": self.price(price),
            "q": self.size(qty),
            "s": self.symbol,
        }
