"""
Public REST endpoints, answered as recorded on the wire (protocol doc §5.1, §6.2, §6.3).

Conventions: JSON objects with sorted keys and ``application/json; charset=utf-8``; decimals as
strings without trailing zeros; parameter errors as a plain-text 400 in poem's wording
(``failed to parse parameter `limit`: ...``); an unknown symbol is a JSON 400
``INVALID_CLIENT_REQUEST`` "Invalid market symbol" (``/markPrices``: "Symbol not found"); a closed
market's data endpoints answer 404 ``RESOURCE_NOT_FOUND`` "Not Found".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._klines import INTERVALS
from ._numbers import decimal_text, space_datetime, stripped
from ._private import ApiFailure

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ...testing._http import HttpRequest
    from ._config import MarketSpec
    from ._faults import FaultController
    from ._market import Market

__all__ = ["PublicApi", "market_entry"]

DEPTH_LIMITS = ("5", "10", "20", "50", "100", "500", "1000")
MARKET_TYPES = ("SPOT", "PERP", "IPERP", "DATED", "PREDICTION", "RFQ")


def bad_param(name: str, type_name: str, missing: bool = False) -> ApiFailure:
    """The plain-text 400 of a query parameter that is missing or does not parse."""
    reason = (
        f'Type "{type_name}" expects an input value.'
        if missing
        else (f'failed to parse "{type_name}": Expect a valid enumeration value.')
    )
    return ApiFailure(400, "", f"failed to parse parameter `{name}`: {reason}", plain=True)


def market_entry(spec: MarketSpec) -> dict[str, Any]:
    """One ``Market`` object of ``/api/v1/markets`` (shape of the recorded spot/perp entries)."""
    perp = spec.is_perp
    tick, step = decimal_text(spec.tick_size), decimal_text(spec.step_size)
    price_filter = {
        "borrowEntryFeeMaxMultiplier": None if perp else "1.01",
        "borrowEntryFeeMinMultiplier": None if perp else "0.99",
        "discoveryBoundBand": None,
        "maxImpactMultiplier": "1.05" if perp else "1.01",
        "maxMultiplier": "2",
        "maxPrice": None,
        "maxPriceUpdateMultiplier": "1.005",
        "meanMarkPriceBand": {"maxMultiplier": "1.15", "minMultiplier": "0.87"},
        "meanPremiumBand": {"tolerancePct": "0.05"} if perp else None,
        "minImpactMultiplier": "0.96" if perp else "0.99",
        "minMultiplier": "0.25",
        "minPrice": tick,
        "minPriceUpdateMultiplier": "0.995",
        "tickSize": tick,
    }
    sqrt = {"base": "0.1", "factor": "0.00020936", "type": "sqrt"}
    return {
        "baseSymbol": spec.base,
        "createdAt": "2025-01-21T06:34:54.691858",
        "filters": {
            "price": price_filter,
            "quantity": {"maxQuantity": None, "minQuantity": step, "stepSize": step},
        },
        "fundingInterval": 3600000 if perp else None,
        "fundingRateLowerBound": "-150" if perp else None,
        "fundingRateUpperBound": "150" if perp else None,
        "imfFunction": sqrt if perp else None,
        "marketType": spec.market_type,
        "mmfFunction": {**sqrt, "base": "0.05", "factor": "0.00012561"} if perp else None,
        "openInterestLimit": "20000000" if perp else "0",
        "orderBookState": spec.state,
        "positionLimitWeight": "4" if perp else None,
        "quoteSymbol": spec.quote,
        "rwaMarketType": "STOCK" if spec.base.endswith(".US") else None,
        "symbol": spec.symbol,
        "visible": True,
    }


class PublicApi:
    """The public market-data endpoints over the simulator's markets."""

    def __init__(
        self,
        markets: Mapping[str, Market],
        closed: Mapping[str, MarketSpec],
        faults: FaultController,
        now_us: Callable[[], int],
    ) -> None:
        self._markets = markets
        self._closed = closed
        self._faults = faults
        self._now_us = now_us
        self.routes: dict[str, Callable[[HttpRequest], Any]] = {
            "/api/v1/status": lambda r: {"message": None, "status": "Ok"},
            "/api/v1/ping": lambda r: "pong",
            "/api/v1/time": lambda r: str(self._now_us() // 1000),
            "/api/v1/markets": self.markets,
            "/api/v1/market": self.market,
            "/api/v1/ticker": self.ticker,
            "/api/v1/tickers": self.tickers,
            "/api/v1/depth": self.depth,
            "/api/v1/trades": self.trades,
            "/api/v1/klines": self.klines,
            "/api/v1/markPrices": self.mark_prices,
            "/api/v1/openInterest": self.open_interest,
        }

    def _market(self, request: HttpRequest) -> Market:
        """The open market of ``?symbol=`` (closed: 404; unknown: 400)."""
        symbol = self._symbol_param(request)
        if symbol in self._markets:
            return self._markets[symbol]
        if symbol in self._closed:
            raise ApiFailure(404, "RESOURCE_NOT_FOUND", "Not Found")
        raise ApiFailure(400, "INVALID_CLIENT_REQUEST", "Invalid market symbol")

    @staticmethod
    def _symbol_param(request: HttpRequest) -> str:
        symbol = request.params.get("symbol")
        if symbol is None:
            raise bad_param("symbol", "MarketSymbol", missing=True)
        return symbol

    def markets(self, request: HttpRequest) -> list[dict[str, Any]]:
        """``GET /api/v1/markets[?marketType=...]``."""
        wanted = [value for key, value in request.query if key == "marketType"]
        if any(value not in MARKET_TYPES for value in wanted):
            raise bad_param("marketType", "MarketType")
        specs = [m.spec for m in self._markets.values()] + list(self._closed.values())
        return [market_entry(s) for s in specs if not wanted or s.market_type in wanted]

    def market(self, request: HttpRequest) -> dict[str, Any]:
        """``GET /api/v1/market?symbol=`` (closed markets are listed too)."""
        symbol = self._symbol_param(request)
        if symbol in self._closed:
            return market_entry(self._closed[symbol])
        return market_entry(self._market(request).spec)

    def _interval(self, request: HttpRequest, allowed: tuple[str, ...], default: str | None) -> str:
        value = request.params.get("interval", default)
        if value is None:
            raise bad_param("interval", "KlineInterval", missing=True)
        if value not in allowed:
            raise bad_param("interval", "KlineInterval" if default is None else "TickerInterval")
        return value

    def _ticker(self, market: Market) -> dict[str, Any]:
        first, high, low, last, volume, quote, trades = market.stats
        dp, ds = market.engine.dp, market.engine.ds
        change = last - first
        percent = f"{change / first:.6f}" if first else "0"
        return {
            "firstPrice": stripped(first, dp),
            "high": stripped(high, dp),
            "lastPrice": stripped(last, dp),
            "low": stripped(low, dp),
            "priceChange": stripped(change, dp),
            "priceChangePercent": percent,
            "quoteVolume": stripped(quote, dp + ds),
            "symbol": market.symbol,
            "trades": str(trades),
            "volume": stripped(volume, ds),
        }

    def ticker(self, request: HttpRequest) -> dict[str, Any]:
        """``GET /api/v1/ticker?symbol=[&interval=1d|1w]`` (rolling since the simulator started)."""
        market = self._market(request)
        self._interval(request, ("1d", "1w"), "1d")
        return self._ticker(market)

    def tickers(self, request: HttpRequest) -> list[dict[str, Any]]:
        """``GET /api/v1/tickers`` for every open market."""
        self._interval(request, ("1d", "1w"), "1d")
        return [self._ticker(m) for m in self._markets.values()]

    def depth(self, request: HttpRequest) -> dict[str, Any]:
        """``GET /api/v1/depth?symbol=[&limit=]``: both sides ascending, nearest ``limit`` levels."""
        market = self._market(request)
        limit = request.params.get("limit", "1000")
        if limit not in DEPTH_LIMITS:
            raise bad_param("limit", "DepthLimit")
        offset = self._faults.take_snapshot_offset(market.symbol)
        update_id, bids, asks = market.snapshot(offset)
        if offset:
            kind = "snapshot_lag" if offset > 0 else "snapshot_lead"
            self._faults.record(kind, None, market.symbol, lastUpdateId=update_id, socket=market.update_id)
        dp, ds, n = market.engine.dp, market.engine.ds, int(limit)
        return {
            "asks": [[stripped(p, dp), stripped(q, ds)] for p, q in asks.levels(n)],
            "bids": [[stripped(p, dp), stripped(q, ds)] for p, q in reversed(bids.levels(n))],
            "lastUpdateId": str(update_id),
            "timestamp": self._now_us(),
        }

    def trades(self, request: HttpRequest) -> list[dict[str, Any]]:
        """``GET /api/v1/trades?symbol=[&limit=]``: newest first, timestamps in ms."""
        market = self._market(request)
        raw = request.params.get("limit", "100")
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
            raise ApiFailure(
                400, "", "failed to parse parameter `limit`: must be between 1 and 1000", plain=True
            )
        dp, ds = market.engine.dp, market.engine.ds
        rows = list(market.trades)[-int(raw) :]
        return [
            {
                "id": t,
                "isBuyerMaker": m,
                "price": stripped(p, dp),
                "quantity": stripped(q, ds),
                "quoteQuantity": stripped(p * q, dp + ds),
                "timestamp": us // 1000,
            }
            for t, p, q, m, us in reversed(rows)
        ]

    def klines(self, request: HttpRequest) -> list[dict[str, Any]]:
        """``GET /api/v1/klines?symbol=&interval=&startTime=[&endTime=]`` (Unix seconds)."""
        market = self._market(request)
        interval = self._interval(request, tuple(INTERVALS), None)
        bounds = []
        for name, default in (("startTime", None), ("endTime", str(self._now_us() // 1_000_000 + 1))):
            raw = request.params.get(name, default)
            if raw is None:
                raise bad_param(name, "i64", missing=True)
            if not raw.lstrip("-").isdigit():
                raise ApiFailure(400, "", f"failed to parse parameter `{name}`: invalid digit", plain=True)
            bounds.append(int(raw))
        if request.params.get("priceType", "Last") not in ("Last", "Index", "Mark"):
            raise bad_param("priceType", "KlinePriceType")
        dp, ds = market.engine.dp, market.engine.ds
        return [
            {
                "close": stripped(c.close, dp),
                "end": space_datetime(c.end),
                "high": stripped(c.high, dp),
                "low": stripped(c.low, dp),
                "open": stripped(c.open, dp),
                "quoteVolume": stripped(c.quote_volume, dp + ds),
                "start": space_datetime(c.start),
                "trades": str(c.trades),
                "volume": stripped(c.volume, ds),
            }
            for c in market.klines.candles(interval, bounds[0], bounds[1])
        ]

    def _perps(self, request: HttpRequest, message: str) -> list[Market]:
        symbol = request.params.get("symbol")
        perps = [m for m in self._markets.values() if m.spec.is_perp]
        if symbol is None:
            return perps
        found = [m for m in perps if m.symbol == symbol]
        if not found:
            raise ApiFailure(400, "INVALID_CLIENT_REQUEST", message)
        return found

    def mark_prices(self, request: HttpRequest) -> list[dict[str, Any]]:
        """``GET /api/v1/markPrices[?symbol=]`` for perps."""
        next_funding = (self._now_us() // 3_600_000_000 + 1) * 3_600_000
        return [
            {
                "fundingRate": format(m.funding, "f"),
                "indexPrice": format(m.index_price(), "f"),
                "markPrice": stripped(m.engine.mid, m.engine.dp),
                "nextFundingTimestamp": next_funding,
                "symbol": m.symbol,
            }
            for m in self._perps(request, "Symbol not found")
        ]

    def open_interest(self, request: HttpRequest) -> list[dict[str, Any]]:
        """``GET /api/v1/openInterest[?symbol=]`` for perps (timestamp in ms)."""
        now_ms = self._now_us() // 1000
        return [
            {"openInterest": stripped(m.open_interest, m.engine.ds), "symbol": m.symbol, "timestamp": now_ms}
            for m in self._perps(request, "Invalid market symbol")
        ]
