"""
Backpack REST response bodies (``backpack-protocol.md`` §5.1, §6) and their decoders.

Keys are camelCase on the wire (``rename="camel"``); unknown keys are ignored, and the many
nullable extras of a market are optional, so a new field or a ``null`` never breaks a catalogue.
Docs versus wire:

* depth ``lastUpdateId`` is a string on the wire (the Rust client also accepts an integer): it is
  always an ``int`` after decoding; ``timestamp`` is µs on the wire although the docs' example is
  ms-sized (see :func:`~native_anyio.backpack._normalize.epoch_seconds`);
* ticker and kline ``trades`` are strings on the wire: always ``int`` after decoding;
* kline ``start``/``end`` are naive-UTC datetimes separated by a space (``2026-09-01 16:53:00``);
* trades and open-interest ``timestamp`` are milliseconds.
"""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - msgspec resolves annotations at run time
from decimal import Decimal  # noqa: TC003 - msgspec resolves annotations at run time
from typing import Any, TypeVar, final

import msgspec

from .._errors import DecodeError
from ._wire_common import Count, Epoch, Id, Levels, Millis, check_levels, check_optional, checked_int

__all__ = [
    "ApiErrorBody",
    "MarginFunction",
    "Market",
    "MarketFilters",
    "MarkPriceEntry",
    "OpenInterestEntry",
    "PremiumBand",
    "PriceBand",
    "PriceFilter",
    "QuantityFilter",
    "RestDepth",
    "RestKline",
    "RestTicker",
    "RestTrade",
    "Status",
    "decode_api_error",
    "decode_depth",
    "decode_klines",
    "decode_mark_prices",
    "decode_market",
    "decode_markets",
    "decode_open_interest",
    "decode_status",
    "decode_ticker",
    "decode_tickers",
    "decode_trades",
]

T = TypeVar("T")


class _Rest(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    def __post_init__(self) -> None:
        check_optional(self)


class PriceBand(_Rest, frozen=True, kw_only=True):
    """``meanMarkPriceBand``."""

    max_multiplier: Decimal | None = None
    min_multiplier: Decimal | None = None


class PremiumBand(_Rest, frozen=True, kw_only=True):
    """``meanPremiumBand``."""

    tolerance_pct: Decimal | None = None


class PriceFilter(_Rest, frozen=True, kw_only=True):
    """``filters.price``: ``tick_size`` and ``min_price`` are required; the rest may be ``null``."""

    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal | None = None
    max_multiplier: Decimal | None = None
    min_multiplier: Decimal | None = None
    max_impact_multiplier: Decimal | None = None
    min_impact_multiplier: Decimal | None = None
    max_price_update_multiplier: Decimal | None = None
    min_price_update_multiplier: Decimal | None = None
    borrow_entry_fee_max_multiplier: Decimal | None = None
    borrow_entry_fee_min_multiplier: Decimal | None = None
    mean_mark_price_band: PriceBand | None = None
    mean_premium_band: PremiumBand | None = None
    discovery_bound_band: Any = None  # shape never seen non-null

    def __post_init__(self) -> None:
        check_optional(self)
        if self.tick_size <= 0:
            raise ValueError(f"tickSize must be positive, got {self.tick_size}")


class QuantityFilter(_Rest, frozen=True, kw_only=True):
    """``filters.quantity``."""

    step_size: Decimal
    min_quantity: Decimal
    max_quantity: Decimal | None = None

    def __post_init__(self) -> None:
        check_optional(self)
        if self.step_size <= 0:
            raise ValueError(f"stepSize must be positive, got {self.step_size}")


class MarketFilters(_Rest, frozen=True, kw_only=True):
    """A market's ``filters``."""

    price: PriceFilter
    quantity: QuantityFilter


class MarginFunction(_Rest, frozen=True, kw_only=True):
    """``imfFunction``/``mmfFunction``, e.g. ``{"type":"sqrt","base":"0.1","factor":"0.0002"}``."""

    type: str
    base: Decimal
    factor: Decimal


@final
class Market(_Rest, frozen=True, kw_only=True):
    """
    One entry of ``GET /api/v1/markets`` (or ``GET /api/v1/market``).

    ``market_type`` is ``SPOT PERP IPERP DATED PREDICTION RFQ`` (or newer); ``order_book_state``
    is ``Open Closed CancelOnly LimitOnly PostOnly``; ``funding_interval`` is in ms.
    """

    symbol: str
    base_symbol: str
    quote_symbol: str
    market_type: str
    order_book_state: str
    filters: MarketFilters
    created_at: str | None = None
    visible: bool | None = None
    funding_interval: Millis | None = None
    funding_rate_upper_bound: Decimal | None = None
    funding_rate_lower_bound: Decimal | None = None
    imf_function: MarginFunction | None = None
    mmf_function: MarginFunction | None = None
    open_interest_limit: Decimal | None = None
    position_limit_weight: Decimal | None = None
    rwa_market_type: str | None = None


@final
class RestDepth(_Rest, frozen=True, kw_only=True):
    """``GET /api/v1/depth``: both sides ascending by price (bids best-last); ``timestamp`` µs."""

    asks: Levels
    bids: Levels
    last_update_id: Id | str  # always an int after decoding
    timestamp: Epoch

    def __post_init__(self) -> None:
        check_levels(self.asks)
        check_levels(self.bids)
        if type(self.last_update_id) is not int:
            msgspec.structs.force_setattr(self, "last_update_id", checked_int(self.last_update_id))


class RestTicker(_Rest, frozen=True, kw_only=True):
    """``GET /api/v1/ticker(s)``; ``price_change_percent`` is a fraction (-0.029 = -2.9 %)."""

    symbol: str
    first_price: Decimal
    last_price: Decimal
    price_change: Decimal
    price_change_percent: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    quote_volume: Decimal | None = None
    trades: Count | str  # always an int after decoding

    def __post_init__(self) -> None:
        check_optional(self)
        if type(self.trades) is not int:
            msgspec.structs.force_setattr(self, "trades", checked_int(self.trades))


class RestTrade(_Rest, frozen=True, kw_only=True):
    """``GET /api/v1/trades``: ``timestamp`` is ms; ``is_buyer_maker`` true means the taker sold."""

    id: Id
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal | None = None
    timestamp: Millis
    is_buyer_maker: bool


class RestKline(_Rest, frozen=True, kw_only=True):
    """``GET /api/v1/klines``: naive-UTC ``start``/``end``; OHLC ``null`` without trades."""

    start: datetime
    end: datetime
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    volume: Decimal | None = None
    quote_volume: Decimal | None = None
    trades: Count | str = 0  # always an int after decoding

    def __post_init__(self) -> None:
        check_optional(self)
        if type(self.trades) is not int:
            msgspec.structs.force_setattr(self, "trades", checked_int(self.trades))


class MarkPriceEntry(_Rest, frozen=True, kw_only=True):
    """``GET /api/v1/markPrices``; ``next_funding_timestamp`` is ms."""

    symbol: str
    mark_price: Decimal
    index_price: Decimal | None = None
    funding_rate: Decimal | None = None
    next_funding_timestamp: Epoch | None = None


class OpenInterestEntry(_Rest, frozen=True, kw_only=True):
    """``GET /api/v1/openInterest``; ``timestamp`` is ms."""

    symbol: str
    open_interest: Decimal | None = None
    timestamp: Millis | None = None


class Status(_Rest, frozen=True, kw_only=True):
    """``GET /api/v1/status``: ``status`` is ``Ok`` or ``Maintenance``."""

    status: str
    message: str | None = None


class ApiErrorBody(_Rest, frozen=True, kw_only=True):
    """A JSON error body ``{"code":"INVALID_CLIENT_REQUEST","message":"..."}``."""

    code: str
    message: str


def _decode(decoder: msgspec.json.Decoder[T], payload: bytes, what: str) -> T:
    try:
        return decoder.decode(payload)
    # msgspec raises RecursionError for absurdly deep nesting, UnicodeDecodeError for bad UTF-8.
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise DecodeError(f"cannot decode {what}: {exc}", exchange="BACKPACK") from exc


_MARKETS = msgspec.json.Decoder(list[Market])
_MARKET = msgspec.json.Decoder(Market)
_DEPTH = msgspec.json.Decoder(RestDepth)
_TICKER = msgspec.json.Decoder(RestTicker)
_TICKERS = msgspec.json.Decoder(list[RestTicker])
_TRADES = msgspec.json.Decoder(list[RestTrade])
_KLINES = msgspec.json.Decoder(list[RestKline])
_MARK_PRICES = msgspec.json.Decoder(list[MarkPriceEntry])
_OPEN_INTEREST = msgspec.json.Decoder(list[OpenInterestEntry])
_STATUS = msgspec.json.Decoder(Status)
_API_ERROR = msgspec.json.Decoder(ApiErrorBody)


def decode_markets(payload: bytes) -> list[Market]:
    """
    Decode ``GET /api/v1/markets``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_MARKETS, payload, "markets")


def decode_market(payload: bytes) -> Market:
    """
    Decode ``GET /api/v1/market``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_MARKET, payload, "market")


def decode_depth(payload: bytes) -> RestDepth:
    """
    Decode ``GET /api/v1/depth``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_DEPTH, payload, "depth")


def decode_ticker(payload: bytes) -> RestTicker:
    """
    Decode ``GET /api/v1/ticker``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_TICKER, payload, "ticker")


def decode_tickers(payload: bytes) -> list[RestTicker]:
    """
    Decode ``GET /api/v1/tickers``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_TICKERS, payload, "tickers")


def decode_trades(payload: bytes) -> list[RestTrade]:
    """
    Decode ``GET /api/v1/trades[/history]``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_TRADES, payload, "trades")


def decode_klines(payload: bytes) -> list[RestKline]:
    """
    Decode ``GET /api/v1/klines``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_KLINES, payload, "klines")


def decode_mark_prices(payload: bytes) -> list[MarkPriceEntry]:
    """
    Decode ``GET /api/v1/markPrices``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_MARK_PRICES, payload, "markPrices")


def decode_open_interest(payload: bytes) -> list[OpenInterestEntry]:
    """
    Decode ``GET /api/v1/openInterest``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_OPEN_INTEREST, payload, "openInterest")


def decode_status(payload: bytes) -> Status:
    """
    Decode ``GET /api/v1/status``.

    Raises:
        DecodeError: the body does not match.
    """
    return _decode(_STATUS, payload, "status")


def decode_api_error(payload: bytes) -> ApiErrorBody:
    """
    Decode a JSON error body. Parameter-parse errors are plain text, not JSON.

    Raises:
        DecodeError: the body is not a JSON error body (e.g. plain text).
    """
    return _decode(_API_ERROR, payload, "error body")
