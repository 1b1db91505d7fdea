"""
The Backpack simulator's REST API (public shapes and errors, signed endpoints, rate limits) and
its private websocket streams driven by signed orders.
"""

from __future__ import annotations

import email.utils
from decimal import Decimal
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from native_anyio import Ed25519Signer, generate_keypair
from native_anyio.backpack.simulator import (
    RawWsClient,
    Simulator,
    SimulatorConfig,
    open_raw_ws,
    open_simulator,
)

GUARD = 20
EPOCH = 1_788_367_430.25
JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


def fixed_clock() -> float:
    return EPOCH


def config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "symbols": ("SOL_USDC", "BTC_USDC_PERP", "AAPL.US_USDC_PERP", "kPEPE_USDC_PERP"),
        "seed": 2,
        "auto": False,
        "clock": fixed_clock,
        "ping_interval": None,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


def signer(sim: Simulator, skew: float = 0.0) -> Ed25519Signer:
    return Ed25519Signer(sim.api_secret, public_key=sim.api_key, clock=sim.config.now, clock_offset=skew)


def no_trailing_zero(value: str) -> bool:
    return "." not in value or not value.endswith("0")


# -- public endpoints ------------------------------------------------------------------------------


async def test_public_endpoint_shapes() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            await sim.step("SOL_USDC", 400)
            markets = (await client.get("/api/v1/markets")).json()
            states = {m["symbol"]: m["orderBookState"] for m in markets}
            assert states == {**dict.fromkeys(sim.symbols, "Open"), "TON_USDC_PERP": "Closed"}
            perp = next(m for m in markets if m["symbol"] == "AAPL.US_USDC_PERP")
            assert (perp["marketType"], perp["fundingInterval"], perp["rwaMarketType"]) == (
                "PERP",
                3600000,
                "STOCK",
            )
            assert perp["filters"]["price"]["tickSize"] == "0.01"
            assert [m["symbol"] for m in (await client.get("/api/v1/markets?marketType=SPOT")).json()] == [
                "SOL_USDC"
            ]
            response = await client.get("/api/v1/markets", params={"marketType": "NOPE"})
            assert (response.status_code, response.headers["content-type"]) == (400, TEXT)

            market = await client.get("/api/v1/market", params={"symbol": "kPEPE_USDC_PERP"})
            assert market.json()["filters"]["quantity"]["stepSize"] == "1"
            assert (await client.get("/api/v1/market?symbol=TON_USDC_PERP")).json()[
                "orderBookState"
            ] == "Closed"

            ticker = (await client.get("/api/v1/ticker", params={"symbol": "SOL_USDC"})).json()
            assert list(ticker) == sorted(ticker)
            assert set(ticker) == {
                "firstPrice",
                "high",
                "lastPrice",
                "low",
                "priceChange",
                "priceChangePercent",
                "quoteVolume",
                "symbol",
                "trades",
                "volume",
            }
            assert ticker["trades"] == str(len(sim.trades("SOL_USDC")))
            tickers = (await client.get("/api/v1/tickers")).json()
            assert [t["symbol"] for t in tickers] == list(sim.symbols)

            trades = (await client.get("/api/v1/trades", params={"symbol": "SOL_USDC", "limit": "5"})).json()
            truth = sim.trades("SOL_USDC")[-5:][::-1]  # newest first
            assert [t["id"] for t in trades] == [t.id for t in truth]
            assert all(t["timestamp"] == truth[0].time // 1000 for t in trades[:1])
            assert all(no_trailing_zero(t["price"]) for t in trades)

            marks = (await client.get("/api/v1/markPrices")).json()
            assert [m["symbol"] for m in marks] == ["BTC_USDC_PERP", "AAPL.US_USDC_PERP", "kPEPE_USDC_PERP"]
            assert set(marks[0]) == {
                "fundingRate",
                "indexPrice",
                "markPrice",
                "nextFundingTimestamp",
                "symbol",
            }
            assert marks[0]["nextFundingTimestamp"] % 3_600_000 == 0
            interest = (await client.get("/api/v1/openInterest", params={"symbol": "BTC_USDC_PERP"})).json()
            assert set(interest[0]) == {"openInterest", "symbol", "timestamp"}
            assert interest[0]["timestamp"] == int(EPOCH * 1000)

            status = await client.get("/api/v1/status")
            assert (status.headers["content-type"], status.content) == (
                JSON,
                b'{"message":null,"status":"Ok"}',
            )
            ping, now = await client.get("/api/v1/ping"), await client.get("/api/v1/time")
            assert (ping.headers["content-type"], ping.text) == (TEXT, "pong")
            assert (now.headers["content-type"], now.text) == (TEXT, str(int(EPOCH * 1000)))


async def test_depth_snapshot_shape() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            await sim.step("SOL_USDC", 50)
            response = await client.get("/api/v1/depth", params={"symbol": "SOL_USDC", "limit": "5"})
            assert response.headers["content-type"] == JSON
            assert response.content.startswith(b'{"asks":[["')
            snapshot = response.json()
            assert list(snapshot) == ["asks", "bids", "lastUpdateId", "timestamp"]
            truth = sim.book("SOL_USDC")
            assert snapshot["lastUpdateId"] == str(truth.last_update_id)
            assert snapshot["timestamp"] == int(EPOCH * 1_000_000)  # µs
            asks = [(Decimal(p), Decimal(q)) for p, q in snapshot["asks"]]
            bids = [(Decimal(p), Decimal(q)) for p, q in snapshot["bids"]]
            assert asks == list(truth.asks[:5])  # ascending: best first
            assert bids == list(truth.bids[:5])[::-1]  # ascending: best last
            assert all(no_trailing_zero(v) for level in snapshot["asks"] + snapshot["bids"] for v in level)
            full = (await client.get("/api/v1/depth", params={"symbol": "SOL_USDC"})).json()
            assert len(full["bids"]) == len(truth.bids)


@pytest.mark.parametrize(
    ("path", "params", "status", "body"),
    [
        (
            "/api/v1/depth",
            {"symbol": "SOL_USDC", "limit": "30"},
            400,
            'failed to parse parameter `limit`: failed to parse "DepthLimit": Expect a valid enumeration value.',
        ),
        (
            "/api/v1/depth",
            {},
            400,
            'failed to parse parameter `symbol`: Type "MarketSymbol" expects an input value.',
        ),
        (
            "/api/v1/depth",
            {"symbol": "NOPE_USDC"},
            400,
            {"code": "INVALID_CLIENT_REQUEST", "message": "Invalid market symbol"},
        ),
        (
            "/api/v1/market",
            {"symbol": "NOPE_USDC"},
            400,
            {"code": "INVALID_CLIENT_REQUEST", "message": "Invalid market symbol"},
        ),
        (
            "/api/v1/depth",
            {"symbol": "TON_USDC_PERP"},
            404,
            {"code": "RESOURCE_NOT_FOUND", "message": "Not Found"},
        ),
        (
            "/api/v1/markPrices",
            {"symbol": "TON_USDC_PERP"},
            400,
            {"code": "INVALID_CLIENT_REQUEST", "message": "Symbol not found"},
        ),
        (
            "/api/v1/klines",
            {"symbol": "SOL_USDC", "interval": "1m"},
            400,
            'failed to parse parameter `startTime`: Type "i64" expects an input value.',
        ),
        (
            "/api/v1/klines",
            {"symbol": "SOL_USDC", "interval": "7m", "startTime": "0"},
            400,
            'failed to parse parameter `interval`: failed to parse "KlineInterval": Expect a valid enumeration value.',
        ),
        (
            "/api/v1/trades",
            {"symbol": "SOL_USDC", "limit": "1001"},
            400,
            "failed to parse parameter `limit`: must be between 1 and 1000",
        ),
        ("/api/v1/nope", {}, 404, "not found"),
        ("/wapi/v1/capital/deposits", {}, 404, "not found"),
    ],
)
async def test_rest_errors(
    path: str, params: dict[str, str], status: int, body: str | dict[str, str]
) -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            response = await client.get(path, params=params)
    assert response.status_code == status
    if isinstance(body, str):
        assert (response.headers["content-type"], response.text) == (TEXT, body)
    else:
        assert response.headers["content-type"] == JSON
        assert response.content == msgspec.json.encode(body, order="sorted")


async def test_klines_from_trades() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            await sim.step("SOL_USDC", 300)
            params = {"symbol": "SOL_USDC", "interval": "1m", "startTime": str(int(EPOCH) - 3600)}
            klines = (await client.get("/api/v1/klines", params=params)).json()
    trades = sim.trades("SOL_USDC")
    assert len(klines) == 1  # one minute of (fixed) wall clock
    kline = klines[0]
    assert list(kline) == ["close", "end", "high", "low", "open", "quoteVolume", "start", "trades", "volume"]
    assert kline["trades"] == str(len(trades))
    assert Decimal(kline["open"]) == trades[0].price
    assert Decimal(kline["close"]) == trades[-1].price
    assert Decimal(kline["high"]) == max(t.price for t in trades)
    assert Decimal(kline["volume"]) == sum(t.qty for t in trades)
    assert kline["start"] == "2026-09-02 16:43:00"
    assert kline["end"] == "2026-09-02 16:44:00"


# -- signed endpoints ------------------------------------------------------------------------------


async def test_signed_capital_and_auth_errors() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            sign = signer(sim)
            response = await client.get("/api/v1/capital", headers=sign.headers("balanceQuery"))
            assert response.status_code == 200
            assert response.json()["USDC"] == {"available": "100000", "locked": "0", "staked": "0"}

            async def refused(headers: dict[str, str]) -> tuple[int, dict[str, str]]:
                answer = await client.get("/api/v1/capital", headers=headers)
                return answer.status_code, answer.json()

            invalid = (401, {"code": "INVALID_CLIENT_REQUEST", "message": "Invalid signature"})
            assert await refused({}) == invalid
            assert await refused(sign.headers("orderQueryAll")) == invalid  # wrong instruction
            other = Ed25519Signer(generate_keypair()[0], clock=fixed_clock)
            assert await refused(other.headers("balanceQuery")) == invalid  # unknown key
            expired = sign.headers("balanceQuery", timestamp_ms=int(EPOCH * 1000) - 5001)
            assert await refused(expired) == (
                401,
                {"code": "INVALID_CLIENT_REQUEST", "message": "Request has expired"},
            )
            wide = sign.headers("balanceQuery", timestamp_ms=int(EPOCH * 1000) - 50_000, window_ms=60_000)
            assert (await client.get("/api/v1/capital", headers=wide)).status_code == 200
            future = sign.headers("balanceQuery", timestamp_ms=int(EPOCH * 1000) + 6000)
            assert (await refused(future))[1]["message"] == "Request timestamp is in the future"
            too_wide = {**sign.headers("balanceQuery"), "X-Window": "60001"}
            assert await refused(too_wide) == (
                400,
                {"code": "INVALID_CLIENT_REQUEST", "message": "Invalid window"},
            )
            no_window = {k: v for k, v in sign.headers("balanceQuery").items() if k != "X-Window"}
            assert (await client.get("/api/v1/capital", headers=no_window)).status_code == 200  # 5000 default


async def private_client(sim: Simulator, ws: RawWsClient, *streams: str) -> None:
    await ws.subscribe(*streams, signature=signer(sim).ws_signature())
    for stream in streams:
        await sim.wait_subscribed(stream)


async def test_orders_drive_private_streams() -> None:
    streams = ("account.orderUpdate", "account.balanceUpdate", "account.orderUpdate.SOL_USDC")
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await private_client(sim, ws, *streams)
            assert sim.subscriptions(1)[0].signed
            sign = signer(sim)
            async with httpx.AsyncClient(base_url=sim.rest_url) as client:
                # A resting bid far below the touch: accepted, funds locked.
                body = {
                    "symbol": "SOL_USDC",
                    "side": "Bid",
                    "orderType": "Limit",
                    "quantity": "2",
                    "price": "50",
                    "clientId": 7,
                    "postOnly": True,
                }
                response = await client.post(
                    "/api/v1/order", json=body, headers=sign.headers("orderExecute", body)
                )
                order = response.json()
                assert (response.status_code, order["status"], order["clientId"]) == (200, "New", 7)
                accepted = await ws.receive_stream("account.orderUpdate")
                assert accepted["e"] == "orderAccepted"
                assert accepted["i"] == order["id"]
                assert (accepted["X"], accepted["o"], accepted["t"], accepted["y"], accepted["c"]) == (
                    "New",
                    "LIMIT",
                    None,
                    True,
                    7,
                )
                assert (await ws.receive_stream("account.orderUpdate.SOL_USDC"))["i"] == order["id"]
                lock = await ws.receive_stream("account.balanceUpdate")
                assert (lock["a"], lock["A"], lock["L"]) == ("USDC", "99900", "100")
                listed = await client.get(
                    "/api/v1/orders",
                    params={"symbol": "SOL_USDC"},
                    headers=sign.headers("orderQueryAll", {"symbol": "SOL_USDC"}),
                )
                assert [o["id"] for o in listed.json()] == [order["id"]]

                cancel = {"symbol": "SOL_USDC", "orderId": order["id"]}
                response = await client.request(
                    "DELETE", "/api/v1/order", json=cancel, headers=sign.headers("orderCancel", cancel)
                )
                assert response.json()["status"] == "Cancelled"
                cancelled = await ws.receive_stream("account.orderUpdate")
                assert (cancelled["e"], cancelled["X"]) == ("orderCancelled", "Cancelled")
                assert (await ws.receive_stream("account.balanceUpdate"))["L"] == "0"

                # A market buy takes liquidity: fills, a trade and a depth update on the public side.
                best_ask = sim.book("SOL_USDC").asks[0]
                body = {"symbol": "SOL_USDC", "side": "Bid", "orderType": "Market", "quantity": "0.01"}
                response = await client.post(
                    "/api/v1/order", json=body, headers=sign.headers("orderExecute", body)
                )
                assert response.json()["status"] == "Filled"
                kinds = [(await ws.receive_stream("account.orderUpdate"))["e"] for _ in range(2)]
                assert kinds == ["orderAccepted", "orderFill"]
                trade = sim.trades("SOL_USDC")[-1]
                assert (trade.price, trade.qty, trade.buyer_is_maker) == (best_ask[0], Decimal("0.01"), False)
                sol = await ws.receive_stream("account.balanceUpdate")
                assert sol["a"] == "SOL"
                book = sim.book("SOL_USDC")
                assert (
                    book.asks[0] == (best_ask[0], best_ask[1] - Decimal("0.01"))
                    or book.asks[0][0] > best_ask[0]
                )


async def test_order_errors() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            sign = signer(sim)

            async def place(body: dict[str, Any]) -> httpx.Response:
                return await client.post(
                    "/api/v1/order", json=body, headers=sign.headers("orderExecute", body)
                )

            ask = str(sim.book("SOL_USDC").asks[0][0])
            crossing = {
                "symbol": "SOL_USDC",
                "side": "Bid",
                "orderType": "Limit",
                "quantity": "1",
                "price": ask,
                "postOnly": True,
            }
            assert (await place(crossing)).json()["code"] == "INVALID_ORDER"
            huge = {
                "symbol": "SOL_USDC",
                "side": "Bid",
                "orderType": "Limit",
                "quantity": "100000",
                "price": "50",
            }
            assert (await place(huge)).json() == {
                "code": "INSUFFICIENT_FUNDS",
                "message": "Insufficient funds",
            }
            bad_side = await place(
                {"symbol": "SOL_USDC", "side": "Buy", "orderType": "Limit", "quantity": "1"}
            )
            assert bad_side.status_code == 400
            assert bad_side.text.startswith("Bad Request parse request payload error:")
            unknown = await place({"symbol": "NOPE", "side": "Bid", "orderType": "Market", "quantity": "1"})
            assert unknown.json()["message"] == "Invalid market symbol"
            tick = {
                "symbol": "SOL_USDC",
                "side": "Bid",
                "orderType": "Limit",
                "quantity": "1",
                "price": "50.001",
            }
            assert (await place(tick)).json() == {"code": "INVALID_ORDER", "message": "Invalid price"}
            missing = {"symbol": "SOL_USDC", "orderId": "1"}
            response = await client.request(
                "DELETE", "/api/v1/order", json=missing, headers=sign.headers("orderCancel", missing)
            )
            assert response.json() == {"code": "INVALID_CLIENT_REQUEST", "message": "Order not found"}


async def test_perp_fill_updates_positions_and_snapshot_on_subscribe() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            sign = signer(sim)
            async with open_raw_ws(sim.ws_url) as ws:
                await private_client(sim, ws, "account.positionUpdate")
                body = {"symbol": "BTC_USDC_PERP", "side": "Ask", "orderType": "Market", "quantity": "0.001"}
                await client.post("/api/v1/order", json=body, headers=sign.headers("orderExecute", body))
                opened = await ws.receive_stream("account.positionUpdate")
                assert (opened["e"], opened["q"], opened["s"]) == (
                    "positionOpened",
                    "-0.001",
                    "BTC_USDC_PERP",
                )
                assert isinstance(opened["i"], int)
                assert isinstance(opened["B"], str)
            async with open_raw_ws(sim.ws_url) as ws:
                await ws.subscribe("account.positionUpdate.BTC_USDC_PERP", signature=sign.ws_signature())
                snapshot = await ws.receive_stream("account.positionUpdate.BTC_USDC_PERP")
                assert "e" not in snapshot
                assert (snapshot["q"], snapshot["i"]) == ("-0.001", opened["i"])


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "skew",
        "window",
        "bad",
        "shape",
    ],
)
async def test_private_subscribe_needs_a_valid_signature(signature: str | None) -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            sign = signer(sim)
            now_ms = int(EPOCH * 1000)
            request: dict[str, Any] = {
                "method": "SUBSCRIBE",
                "params": ["depth.SOL_USDC", "account.orderUpdate"],
            }
            if signature == "skew":  # signed 5001 ms ago with a 5000 ms window: expired
                request["signature"] = sign.ws_signature(timestamp_ms=now_ms - 5001)
            elif signature == "window":
                request["signature"] = [*sign.ws_signature(timestamp_ms=now_ms)[:3], "60001"]
            elif signature == "bad":
                good = sign.ws_signature()
                request["signature"] = [good[0], signer(sim).sign("instruction=subscribe"), good[2], good[3]]
            elif signature == "shape":
                request["signature"] = "nope"
            await ws.send_json(request)
            assert (
                await ws.receive_text() == b'{"id":null,"error":{"code":4003,"message":"Invalid signature"}}'
            )
            assert sim.subscriptions(1)[0].errors == (4003,)
            assert sim.connection(1).subscriptions == frozenset()  # nothing of that request
            # The socket stays usable, and UNSUBSCRIBE is never checked.
            await ws.unsubscribe("account.orderUpdate")
            await ws.subscribe(
                "account.balanceUpdate", signature=sign.ws_signature(timestamp_ms=now_ms - 4000)
            )
            await sim.wait_subscribed("account.balanceUpdate")


# -- rate limits -------------------------------------------------------------------------------------


async def test_configured_rate_limit_answers_429_without_retry_after() -> None:
    with anyio.fail_after(GUARD):
        async with (
            open_simulator(config(rest_rate_limit=3)) as sim,
            httpx.AsyncClient(base_url=sim.rest_url) as c,
        ):
            statuses = [(await c.get("/api/v1/ping")).status_code for _ in range(3)]
            limited = await c.get("/api/v1/ping")
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json() == {"code": "TOO_MANY_REQUESTS", "message": "Too many requests"}
    assert "retry-after" not in limited.headers


@pytest.mark.virtual_time
async def test_configured_rate_limit_window_slides() -> None:
    with anyio.fail_after(100):  # virtual seconds
        async with (
            open_simulator(config(rest_rate_limit=2)) as sim,
            httpx.AsyncClient(base_url=sim.rest_url) as c,
        ):
            assert [(await c.get("/api/v1/ping")).status_code for _ in range(3)] == [200, 200, 429]
            await anyio.sleep(60)
            assert (await c.get("/api/v1/ping")).status_code == 200


async def test_rate_limit_fault_with_retry_after_forms() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            sim.faults.rate_limit_rest(2, retry_after=5)
            first, second, third = [await client.get("/api/v1/depth?symbol=SOL_USDC") for _ in range(3)]
            assert (first.status_code, first.headers["retry-after"]) == (429, "5")
            assert (second.status_code, third.status_code) == (429, 200)
            sim.faults.rate_limit_rest(1, retry_after=30, http_date=True, path="/api/v1/ticker")
            assert (await client.get("/api/v1/ping")).status_code == 200  # another path
            dated = await client.get("/api/v1/ticker?symbol=SOL_USDC")
            when = email.utils.parsedate_to_datetime(dated.headers["retry-after"])
            assert when.timestamp() == int(EPOCH + 30)
            sim.faults.rate_limit_rest()
            bare = await client.get("/api/v1/ping")
            assert (bare.status_code, "retry-after" in bare.headers) == (429, False)
            assert bare.json()["code"] == "TOO_MANY_REQUESTS"
            log = [r for r in sim.fault_log if r.kind == "rate_limit_rest"]
            assert [r.detail["path"] for r in log] == [
                "/api/v1/depth",
                "/api/v1/depth",
                "/api/v1/ticker",
                "/api/v1/ping",
            ]
