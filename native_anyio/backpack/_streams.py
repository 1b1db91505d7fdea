"""
Backpack stream names and symbol spellings.

Grammar (``backpack-protocol.md`` §2.6); only the leading type, and the interval of kline and
aggregated depth streams, are split off, because symbols themselves may contain dots
(``depth.AAPL.US_USDC_PERP``)::

    bookTicker|depth|markPrice|ticker|externalTicker|openInterest|trade|stockPrice . <symbol>
    depth . 200ms|600ms|1000ms . <symbol>
    kline . <interval> . <symbol>
    liquidation [. <symbol>]
    account.orderUpdate|account.positionUpdate|account.rfqUpdate [. <symbol>]
    account.balanceUpdate

A second segment of the form ``<digits>ms`` after ``depth`` is a depth window, so
``depth.100ms.X`` is refused (the server answers 4008 "Invalid depth window"), while
``depth.5.X`` is a well-formed name for the unknown symbol ``5.X`` (the server accepts it silently
and sends nothing; NEMA-WS). Unknown types are refused (the server answers 4006 "Invalid stream").

Symbols: the exchange spells them ``SOL_USDC``, ``SOL_USDC_PERP``, ``AAPL.US_USDC_PERP``,
``kPEPE_USDC_PERP`` (case-sensitive); the normalized spelling replaces ``_`` by ``-``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, final

from .._errors import LocalProtocolError

__all__ = [
    "DEPTH_WINDOWS",
    "INVALID_DEPTH_WINDOW",
    "INVALID_STREAM",
    "KLINE_INTERVALS",
    "InvalidStreamName",
    "StreamName",
    "exchange_symbol",
    "normalize_symbol",
    "parse_stream",
]

#: Kline intervals (REST ``KlineInterval``, applied to the socket by K4 and AE).
KLINE_INTERVALS: Final = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1month",
)  # fmt: skip
#: Aggregation windows of the ``depth.<window>.<symbol>`` streams.
DEPTH_WINDOWS: Final = ("200ms", "600ms", "1000ms")

_SYMBOL_REQUIRED: Final = frozenset(
    ("bookTicker", "depth", "kline", "markPrice", "ticker", "externalTicker", "openInterest", "trade",
     "stockPrice")
)  # fmt: skip
_SYMBOL_OPTIONAL: Final = frozenset(
    ("liquidation", "account.orderUpdate", "account.positionUpdate", "account.rfqUpdate")
)
_NO_SYMBOL: Final = frozenset(("account.balanceUpdate",))
_KINDS: Final = _SYMBOL_REQUIRED | _SYMBOL_OPTIONAL | _NO_SYMBOL

_SYMBOL_RE: Final = re.compile(r"[A-Za-z0-9]+(?:[._][A-Za-z0-9]+)*")
_WINDOW_RE: Final = re.compile(r"[0-9]+ms")

#: The server's error codes for a refused stream name (NEMA-WS).
INVALID_STREAM: Final = 4006
INVALID_DEPTH_WINDOW: Final = 4008

_CACHE: dict[str, StreamName] = {}
_CACHE_MAX: Final = 4096


class InvalidStreamName(LocalProtocolError, ValueError):
    """
    A stream name that Backpack does not accept.

    Attributes:
        name: the offending name (or its parts, joined back).
        code: the error code the server answers with: 4006 ("Invalid stream") or 4008 ("Invalid
            depth window"). For a bad kline interval the server's answer is unknown; 4006 is
            assumed.
    """

    def __init__(self, name: str, reason: str, *, code: int = INVALID_STREAM) -> None:
        super().__init__(f"invalid Backpack stream {name!r}: {reason}", exchange="BACKPACK", channel=name)
        self.name = name
        self.code = code


@final
@dataclass(frozen=True, slots=True)
class StreamName:
    """
    A validated Backpack stream name.

    ``str(stream)`` is the name to subscribe to. Construction validates, so every instance is a
    name the server accepts.

    Attributes:
        kind: the stream type, e.g. ``"trade"``, ``"depth"``, ``"kline"``, ``"account.orderUpdate"``.
        symbol: the exchange symbol (``"SOL_USDC"``), or ``None`` for all-market streams.
        interval: the kline interval (``"1h"``) or depth window (``"200ms"``), else ``None``.

    Raises:
        InvalidStreamName: the combination is not a valid stream.
    """

    kind: str
    symbol: str | None = None
    interval: str | None = None

    def __post_init__(self) -> None:
        _validate(self.kind, self.symbol, self.interval)

    def __str__(self) -> str:
        parts = [self.kind]
        if self.interval is not None:
            parts.append(self.interval)
        if self.symbol is not None:
            parts.append(self.symbol)
        return ".".join(parts)

    @property
    def is_private(self) -> bool:
        """Whether the stream needs a signed subscription (the ``account.*`` streams)."""
        return self.kind.startswith("account.")


def parse_stream(name: str) -> StreamName:
    """
    Parse a stream name, splitting only the leading type (and the interval or depth window).

    Results are cached (bounded), so calling this for every received frame is cheap.

    Raises:
        InvalidStreamName: unknown type, bad kline interval or depth window, missing or
            malformed symbol.
    """
    cached = _CACHE.get(name)
    if cached is not None:
        return cached
    parsed = _parse(name)
    if len(_CACHE) < _CACHE_MAX:
        _CACHE[name] = parsed
    return parsed


def _parse(name: str) -> StreamName:
    if name.startswith("account."):
        head, _, rest = name.partition(".")
        second, _, rest = rest.partition(".")
        kind = f"{head}.{second}"
    else:
        kind, _, rest = name.partition(".")
    if kind not in _KINDS:
        raise InvalidStreamName(name, f"unknown stream type {kind!r}")
    interval: str | None = None
    if kind == "kline":
        interval, _, rest = rest.partition(".")
    elif kind == "depth":
        first, _, remainder = rest.partition(".")
        if _WINDOW_RE.fullmatch(first):
            interval, rest = first, remainder
    if name.endswith("."):
        raise InvalidStreamName(name, "empty segment")
    return StreamName(kind, rest or None, interval)


def _validate(kind: str, symbol: str | None, interval: str | None) -> None:
    name = ".".join(part for part in (kind, interval, symbol) if part is not None)
    if kind not in _KINDS:
        raise InvalidStreamName(name, f"unknown stream type {kind!r}")
    if kind == "kline":
        if interval not in KLINE_INTERVALS:
            raise InvalidStreamName(name, f"kline interval must be one of {', '.join(KLINE_INTERVALS)}")
    elif kind == "depth":
        if interval is not None and interval not in DEPTH_WINDOWS:
            raise InvalidStreamName(
                name, f"depth window must be one of {', '.join(DEPTH_WINDOWS)}", code=INVALID_DEPTH_WINDOW
            )
    elif interval is not None:
        raise InvalidStreamName(name, f"{kind} streams take no interval")
    if symbol is None:
        if kind in _SYMBOL_REQUIRED:
            raise InvalidStreamName(name, "missing symbol")
    elif kind in _NO_SYMBOL:
        raise InvalidStreamName(name, f"{kind} takes no symbol")
    elif not _SYMBOL_RE.fullmatch(symbol):
        raise InvalidStreamName(name, f"malformed symbol {symbol!r}")


def normalize_symbol(symbol: str) -> str:
    """
    The normalized spelling of an exchange symbol: ``SOL_USDC_PERP`` -> ``SOL-USDC-PERP``.

    Dots and case are kept (``AAPL.US_USDC_PERP`` -> ``AAPL.US-USDC-PERP``, ``kPEPE_USDC_PERP`` ->
    ``kPEPE-USDC-PERP``). A symbol that is already normalized is returned unchanged.
    """
    return symbol.replace("_", "-")


def exchange_symbol(symbol: str) -> str:
    """
    The exchange spelling of a symbol given in either spelling: ``SOL-USDC`` -> ``SOL_USDC``.

    Raises:
        ValueError: the result is not a well-formed Backpack symbol.
    """
    result = symbol.replace("-", "_")
    if not _SYMBOL_RE.fullmatch(result):
        raise ValueError(f"malformed symbol {symbol!r}")
    return result
