"""
Backpack REST: the public market-data endpoints and signed account endpoints.

Built on the toolkit's :class:`~native_anyio.RestClient` (retries for idempotent requests,
``Retry-After`` gate, client-side rate limit at Backpack's 2000 requests/minute). Signed requests
carry ``X-API-Key``/``X-Signature``/``X-Timestamp``/``X-Window`` over
``instruction=<name>&<sorted params>&timestamp=<ms>&window=<ms>``, signed afresh on every attempt.
Error bodies, JSON (``{"code": ..., "message": ...}``) or plain text, become
:class:`~native_anyio.ApiError` (``AuthError`` for 401/403, ``RateLimited`` for 429/418).
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import TYPE_CHECKING, Any, final

import msgspec

from .._errors import AuthError, DecodeError, LocalProtocolError
from .._ratelimit import RateLimiter
from .._rest import RestClient
from ._config import BackpackConfig
from ._streams import KLINE_INTERVALS, exchange_symbol
from ._wire_rest import (
    Market,
    MarkPriceEntry,
    OpenInterestEntry,
    RestDepth,
    RestKline,
    RestTicker,
    RestTrade,
    Status,
    decode_depth,
    decode_klines,
    decode_mark_prices,
    decode_market,
    decode_markets,
    decode_open_interest,
    decode_status,
    decode_ticker,
    decode_tickers,
    decode_trades,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from .._health import Health, Instrumentation
    from .._rest_support import ParamValue, RequestInfo, RestStatistics

__all__ = ["DEPTH_LIMITS", "KLINE_INTERVALS", "BackpackRest"]

EXCHANGE = "BACKPACK"
_log = logging.getLogger("native_anyio.backpack")


def _is_clock_error(exc: AuthError) -> bool:
    text = f"{exc} {getattr(exc, 'body', '')}".lower()
    return "expired" in text or "timestamp" in text


DEPTH_LIMITS = ("5", "10", "20", "50", "100", "500", "1000")


@final
class BackpackRest:
    """
    Backpack's REST API. Use as ``async with BackpackRest(config) as rest:``.

    Every method is a checkpoint and may raise the toolkit's errors: ``ApiError`` (with the
    venue's ``code``), ``AuthError``, ``RateLimited``, ``ConnectError``, ``RequestTimeout``,
    ``DecodeError``.
    """

    def __init__(
        self,
        config: BackpackConfig | None = None,
        *,
        rate_limiter: RateLimiter | None = None,
        hooks: Sequence[Instrumentation] = (),
    ) -> None:
        self.config = config or BackpackConfig()
        limiter = rate_limiter if rate_limiter is not None else RateLimiter(2000, 60.0)
        self._client = RestClient(
            self.config.rest_url,
            timeout=self.config.request_timeout,
            rate_limiter=limiter,
            proxy=self.config.proxy,
            exchange=EXCHANGE,
            hooks=hooks,
            headers={"Content-Type": "application/json; charset=utf-8"},
            # The same wall clock as the signatures: an HTTP-date Retry-After is converted with it.
            clock=self.config.clock or time.time,
        )

    #: The last measured server clock offset (seconds, server minus local), or ``None``.
    clock_offset: float | None = None

    def __repr__(self) -> str:
        return f"BackpackRest({self.config.rest_url!r})"

    async def __aenter__(self) -> BackpackRest:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.__aexit__(exc_type, exc, tb)

    def statistics(self) -> RestStatistics:
        """The underlying REST client's counters."""
        return self._client.statistics()

    def health(self) -> Health:
        """The underlying REST client's health."""
        return self._client.health()

    # ------------------------------------------------------------------ public market data

    async def _get(self, path: str, params: Mapping[str, ParamValue] | None = None) -> bytes:
        response = await self._client.request("GET", path, params=params)
        return response.content

    async def markets(self, *market_types: str) -> list[Market]:
        """``GET /api/v1/markets`` (optionally filtered by ``SPOT``, ``PERP``, ...)."""
        if market_types:
            # An exploded array parameter: marketType=SPOT&marketType=PERP.
            query = "&".join(f"marketType={t}" for t in market_types)
            return decode_markets(await self._get(f"/api/v1/markets?{query}"))
        return decode_markets(await self._get("/api/v1/markets"))

    async def market(self, symbol: str) -> Market:
        """``GET /api/v1/market?symbol=``."""
        return decode_market(await self._get("/api/v1/market", {"symbol": exchange_symbol(symbol)}))

    async def ticker(self, symbol: str, *, interval: str | None = None) -> RestTicker:
        """``GET /api/v1/ticker`` (24 h unless ``interval`` is ``1d``/``1w``)."""
        params: dict[str, ParamValue] = {"symbol": exchange_symbol(symbol), "interval": interval}
        return decode_ticker(await self._get("/api/v1/ticker", params))

    async def tickers(self, *, interval: str | None = None) -> list[RestTicker]:
        """``GET /api/v1/tickers``."""
        return decode_tickers(await self._get("/api/v1/tickers", {"interval": interval}))

    async def depth(self, symbol: str, *, limit: int | str | None = None) -> RestDepth:
        """
        ``GET /api/v1/depth``: an order-book snapshot (both sides ascending on the wire).

        Raises:
            LocalProtocolError: ``limit`` is not one of 5, 10, 20, 50, 100, 500, 1000.
        """
        if limit is not None and str(limit) not in DEPTH_LIMITS:
            raise LocalProtocolError(f"depth limit must be one of {', '.join(DEPTH_LIMITS)}, got {limit!r}")
        params: dict[str, ParamValue] = {
            "symbol": exchange_symbol(symbol),
            "limit": None if limit is None else str(limit),
        }
        return decode_depth(await self._get("/api/v1/depth", params))

    async def trades(self, symbol: str, *, limit: int | None = None) -> list[RestTrade]:
        """``GET /api/v1/trades`` (recent trades; ``limit`` at most 1000)."""
        return decode_trades(
            await self._get("/api/v1/trades", {"symbol": exchange_symbol(symbol), "limit": limit})
        )

    async def klines(
        self,
        symbol: str,
        interval: str,
        start_time: int,
        *,
        end_time: int | None = None,
        price_type: str | None = None,
    ) -> list[RestKline]:
        """
        ``GET /api/v1/klines``; ``start_time``/``end_time`` are Unix seconds.

        Raises:
            LocalProtocolError: an unknown interval.
        """
        if interval not in KLINE_INTERVALS:
            raise LocalProtocolError(f"unknown kline interval {interval!r}")
        params: dict[str, ParamValue] = {
            "symbol": exchange_symbol(symbol),
            "interval": interval,
            "startTime": start_time,
            "endTime": end_time,
            "priceType": price_type,
        }
        return decode_klines(await self._get("/api/v1/klines", params))

    async def mark_prices(self, symbol: str | None = None) -> list[MarkPriceEntry]:
        """``GET /api/v1/markPrices``."""
        params = {"symbol": exchange_symbol(symbol) if symbol else None}
        return decode_mark_prices(await self._get("/api/v1/markPrices", params))

    async def open_interest(self, symbol: str | None = None) -> list[OpenInterestEntry]:
        """``GET /api/v1/openInterest``."""
        params = {"symbol": exchange_symbol(symbol) if symbol else None}
        return decode_open_interest(await self._get("/api/v1/openInterest", params))

    async def status(self) -> Status:
        """``GET /api/v1/status``."""
        return decode_status(await self._get("/api/v1/status"))

    async def time(self) -> int:
        """``GET /api/v1/time``: the server time, Unix milliseconds (a text body)."""
        text = (await self._get("/api/v1/time")).decode("ascii", "replace").strip()
        if not text.isdigit():
            raise DecodeError(
                f"server time is not an integer: {text[:40]!r}", exchange=EXCHANGE, request="GET /api/v1/time"
            )
        return int(text)

    # ------------------------------------------------------------------ signed

    def _signer_for(
        self, instruction: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
    ) -> Any:
        signer = self.config.signer
        if signer is None:
            raise LocalProtocolError("this request needs api_key and api_secret")

        def sign(_info: RequestInfo) -> Mapping[str, str]:
            return signer.headers(instruction, params, window_ms=self.config.window_ms)

        return sign

    async def signed_request(
        self,
        method: str,
        path: str,
        instruction: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        idempotent: bool | None = None,
    ) -> bytes:
        """
        A signed request: ``params`` go in the query (GET/DELETE style), ``body`` as JSON.

        The signature covers the body when there is one, else the query (Backpack's rule).

        Raises:
            LocalProtocolError: no credentials configured.
        """
        signed = body if body is not None else {k: v for k, v in (params or {}).items() if v is not None}
        sign = self._signer_for(instruction, signed)
        try:
            response = await self._client.request(
                method, path, params=params, json=body, idempotent=idempotent, sign=sign
            )
        except AuthError as exc:
            # A timestamp outside the window: our clock disagrees with the server's. Re-sync once;
            # resend only a request that is safe to repeat (an order may have been seen).
            if not _is_clock_error(exc):
                raise
            await self.sync_clock()
            safe = idempotent if idempotent is not None else method.upper() in ("GET", "HEAD", "OPTIONS")
            if not safe:
                raise
            response = await self._client.request(
                method, path, params=params, json=body, idempotent=idempotent, sign=sign
            )
        return response.content

    async def sync_clock(self, samples: int = 5) -> float:
        """
        Estimate the server clock offset from ``/api/v1/time`` and apply it to signatures.

        The offset is the median, over ``samples`` requests, of server time minus the midpoint
        of each round trip. The signing window is never widened to compensate.

        Returns:
            the offset in seconds (server minus local).

        Raises:
            LocalProtocolError: no credentials configured (there is nothing to sign).
        """
        signer = self.config.signer
        if signer is None:
            raise LocalProtocolError(
                "clock sync applies to signed requests: configure api_key and api_secret"
            )
        clock = self.config.clock or time.time
        offsets = []
        for _ in range(max(1, samples)):
            sent = clock()
            server_ms = await self.time()
            received = clock()
            offsets.append(server_ms / 1000 - (sent + received) / 2)
        offset = statistics.median(offsets)
        signer.clock_offset = offset
        self.clock_offset = offset
        if abs(offset) > 1.0:
            _log.warning(
                "Backpack server clock differs from ours by %.3f s; signatures now use the server's", offset
            )
        return offset

    async def balances(self) -> dict[str, Any]:
        """``GET /api/v1/capital`` (instruction ``balanceQuery``): ``{asset: {available, locked, staked}}``."""
        result: dict[str, Any] = msgspec.json.decode(
            await self.signed_request("GET", "/api/v1/capital", "balanceQuery")
        )
        return result

    async def execute_order(self, **order: Any) -> dict[str, Any]:
        """
        ``POST /api/v1/order`` (instruction ``orderExecute``); never retried automatically.

        Args:
            order: Backpack order fields, e.g. ``symbol``, ``side`` (``Bid``/``Ask``), ``orderType``,
                ``quantity``, ``price``, ``clientId``.
        """
        if "symbol" in order:
            order["symbol"] = exchange_symbol(str(order["symbol"]))
        raw = await self.signed_request("POST", "/api/v1/order", "orderExecute", body=order, idempotent=False)
        result: dict[str, Any] = msgspec.json.decode(raw)
        return result

    async def cancel_order(
        self, symbol: str, *, order_id: str | None = None, client_id: int | None = None
    ) -> dict[str, Any]:
        """``DELETE /api/v1/order`` (instruction ``orderCancel``)."""
        body: dict[str, Any] = {"symbol": exchange_symbol(symbol)}
        if order_id is not None:
            body["orderId"] = order_id
        if client_id is not None:
            body["clientId"] = client_id
        raw = await self.signed_request("DELETE", "/api/v1/order", "orderCancel", body=body, idempotent=False)
        result: dict[str, Any] = msgspec.json.decode(raw)
        return result

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """``GET /api/v1/orders`` (instruction ``orderQueryAll``)."""
        params: dict[str, ParamValue] = {"symbol": exchange_symbol(symbol) if symbol else None}
        result: list[dict[str, Any]] = msgspec.json.decode(
            await self.signed_request("GET", "/api/v1/orders", "orderQueryAll", params=params)
        )
        return result
