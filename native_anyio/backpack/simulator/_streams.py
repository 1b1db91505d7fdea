"""
Backpack stream names: which are valid, which are private, and which error an invalid one gets.

Rules (protocol doc §2.2 and §2.6; NEMA-WS probes):

* ``<type>.<symbol>`` for ``bookTicker depth markPrice ticker openInterest trade liquidation
  externalTicker stockPrice``; ``liquidation`` alone covers every market;
* ``depth.<window>.<symbol>``: a first component shaped like ``<digits>ms`` is a window and must
  be ``200ms``, ``600ms`` or ``1000ms`` (else 4008 "Invalid depth window"); any other first
  component is part of the symbol (``depth.AAPL.US_USDC_PERP`` is realtime depth of a dotted
  symbol, ``depth.5.BTC_USDC_PERP`` is an unknown symbol: accepted, silent);
* ``kline.<interval>.<symbol>`` with a REST ``KlineInterval``; a bad interval is 4006
  (undocumented: our choice);
* private: ``account.orderUpdate[.<symbol>]``, ``account.positionUpdate[.<symbol>]``,
  ``account.rfqUpdate[.<symbol>]``, ``account.balanceUpdate``;
* anything else (unknown type, missing symbol, empty name) is 4006 "Invalid stream".

Symbols are not checked here: an unknown or closed symbol is accepted and simply never
published to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._klines import INTERVALS

__all__ = ["DEPTH_WINDOWS", "StreamError", "StreamRef", "parse_stream"]

#: Aggregation windows of ``depth.<window>.<symbol>``, in seconds.
DEPTH_WINDOWS: dict[str, float] = {"200ms": 0.2, "600ms": 0.6, "1000ms": 1.0}

_SYMBOL_STREAMS = frozenset(
    {
        "bookTicker",
        "depth",
        "markPrice",
        "ticker",
        "openInterest",
        "trade",
        "liquidation",
        "externalTicker",
        "stockPrice",
        "kline",
    }
)
_PRIVATE_WITH_SYMBOL = frozenset({"orderUpdate", "positionUpdate", "rfqUpdate"})
_WINDOW_SHAPE = re.compile(r"\d+ms")


class StreamError(Exception):
    """A stream name the server refuses, with the websocket error code to send."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


INVALID_STREAM = (4006, "Invalid stream")
INVALID_WINDOW = (4008, "Invalid depth window")


@dataclass(frozen=True, slots=True)
class StreamRef:
    """
    A valid stream name, parsed.

    Attributes:
        name: the stream name as subscribed.
        kind: ``depth``, ``kline``, ``account.orderUpdate``...
        symbol: the market, or None for ``liquidation`` and ``account.*`` without a symbol.
        arg: the depth window or kline interval, when the name has one.
    """

    name: str
    kind: str
    symbol: str | None = None
    arg: str | None = None

    @property
    def private(self) -> bool:
        """Whether subscribing needs a signature."""
        return self.kind.startswith("account.")


def parse_stream(name: str) -> StreamRef:
    """
    Parse one stream name.

    Raises:
        StreamError: 4006 or 4008, see the module rules.
    """
    kind, dot, rest = name.partition(".")
    if kind == "account":
        return _parse_private(name, rest)
    if kind not in _SYMBOL_STREAMS:
        raise StreamError(*INVALID_STREAM)
    if not dot:
        if kind == "liquidation":
            return StreamRef(name, kind)
        raise StreamError(*INVALID_STREAM)
    if kind == "depth":
        first, dot, symbol = rest.partition(".")
        if dot and _WINDOW_SHAPE.fullmatch(first):
            if first not in DEPTH_WINDOWS:
                raise StreamError(*INVALID_WINDOW)
            if not symbol:
                raise StreamError(*INVALID_STREAM)
            return StreamRef(name, kind, symbol, first)
    elif kind == "kline":
        interval, dot, symbol = rest.partition(".")
        if not dot or interval not in INTERVALS or not symbol:
            raise StreamError(*INVALID_STREAM)
        return StreamRef(name, kind, symbol, interval)
    if not rest:
        raise StreamError(*INVALID_STREAM)
    return StreamRef(name, kind, rest)


def _parse_private(name: str, rest: str) -> StreamRef:
    sub, dot, symbol = rest.partition(".")
    if sub == "balanceUpdate" and not dot:
        return StreamRef(name, "account.balanceUpdate")
    if sub not in _PRIVATE_WITH_SYMBOL or (dot and not symbol):
        raise StreamError(*INVALID_STREAM)
    return StreamRef(name, f"account.{sub}", symbol or None)
