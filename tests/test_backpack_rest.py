"""Backpack REST and configuration, against the embedded simulator over real sockets."""

from __future__ import annotations

import pickle
from decimal import Decimal

import anyio
import pytest

from native_anyio import (
    ApiError,
    AuthError,
    InvalidKeyError,
    LocalProtocolError,
    RateLimited,
    RequestInfo,
    build_signing_string,
    generate_keypair,
    verify_signature,
)
from native_anyio.backpack import BackpackConfig, BackpackRest, BackpackSymbols
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

SYMBOLS = ("SOL_USDC", "BTC_USDC_PERP", "AAPL.US_USDC_PERP")


def sim_config(**overrides: object) -> SimulatorConfig:
    values: dict[str, object] = {"symbols": SYMBOLS, "seed": 3, "closed_symbols": ("TON_USDC_PERP",)}
    values.update(overrides)
    return SimulatorConfig(**values)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- config


def test_config_defaults_point_at_the_real_endpoints_over_tls():
    config = BackpackConfig()
    assert config.rest_url == "https://api.backpack.exchange"
    assert config.ws_url == "wss://ws.backpack.exchange"
    assert config.window_ms == 5000
    assert not config.authenticated


def test_config_loads_credentials_from_the_environment_and_never_shows_the_secret():
    secret, key = generate_keypair()
    config = BackpackConfig.from_env({"BACKPACK_API_KEY": key, "BACKPACK_API_SECRET": secret})
    assert config.authenticated
    assert config.signer is not None
    assert config.signer.public_key == key
    for text in (repr(config), str(config), repr(config.signer)):
        assert secret not in text
    assert config.api_secret is None  # only the redacting signer holds it
    with pytest.raises(TypeError):
        pickle.dumps(config)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"window_ms": 60001}, ValueError),
        ({"window_ms": 0}, ValueError),
        ({"rest_url": "ftp://x"}, ValueError),
        ({"ws_url": "http://x"}, ValueError),
    ],
)
def test_config_refuses_bad_settings(kwargs: dict[str, object], error: type[Exception]):
    with pytest.raises(error):
        BackpackConfig(**kwargs)  # type: ignore[arg-type]


def test_signed_traffic_over_plain_transport_is_refused_unless_loopback():
    secret, key = generate_keypair()
    with pytest.raises(LocalProtocolError, match="plain"):
        BackpackConfig(api_key=key, api_secret=secret, ws_url="ws://example.com")
    with pytest.raises(LocalProtocolError, match="plain"):
        BackpackConfig(api_key=key, api_secret=secret, rest_url="http://10.0.0.1")
    assert BackpackConfig(
        api_key=key, api_secret=secret, ws_url="ws://127.0.0.1:1", rest_url="http://localhost:1"
    )
    # Public data over plain transport is fine anywhere.
    assert BackpackConfig(ws_url="ws://example.com", rest_url="http://example.com")


def test_a_wrong_key_fails_at_construction_without_revealing_the_secret():
    secret, _ = generate_keypair()
    _, other_key = generate_keypair()
    with pytest.raises(InvalidKeyError) as info:
        BackpackConfig(api_key=other_key, api_secret=secret)
    assert secret not in str(info.value)
    with pytest.raises(ValueError, match="together"):
        BackpackConfig(api_secret=secret)


# ----------------------------------------------------------------------------------- public REST


async def test_public_endpoints_decode_into_exact_structs():
    async with open_simulator(sim_config()) as sim:
        config = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url)
        with anyio.fail_after(30):
            async with BackpackRest(config) as rest:
                markets = await rest.markets()
                by_symbol = {m.symbol: m for m in markets}
                assert set(SYMBOLS) <= set(by_symbol)
                assert by_symbol["TON_USDC_PERP"].order_book_state != "Open"
                sol = await rest.market("SOL-USDC")
                assert sol.filters.price.tick_size > 0
                depth = await rest.depth("SOL_USDC", limit=20)
                truth = sim.book_at("SOL_USDC", depth.last_update_id)
                assert sorted(depth.bids, reverse=True) == list(truth.bids[:20])
                assert list(depth.asks) == list(truth.asks[:20])
                assert [p for p, _ in depth.bids] == sorted(p for p, _ in depth.bids)  # ascending on the wire
                ticker = await rest.ticker("SOL-USDC")
                assert ticker.symbol == "SOL_USDC"
                assert {t.symbol for t in await rest.tickers()} >= set(SYMBOLS)
                trades = await rest.trades("SOL_USDC", limit=5)
                assert all(isinstance(t.price, Decimal) for t in trades)
                start = await rest.time() // 1000 - 3600
                klines = await rest.klines("SOL_USDC", "1m", start)
                assert isinstance(klines, list)
                marks = await rest.mark_prices("BTC_USDC_PERP")
                assert [m.symbol for m in marks] == ["BTC_USDC_PERP"]
                interest = await rest.open_interest("BTC_USDC_PERP")
                assert [o.symbol for o in interest] == ["BTC_USDC_PERP"]
                assert (await rest.status()).status == "Ok"


async def test_rest_errors_become_typed_errors():
    async with open_simulator(sim_config()) as sim:
        config = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url)
        with anyio.fail_after(30):
            async with BackpackRest(config) as rest:
                with pytest.raises(ApiError) as json_error:
                    await rest.depth("NOPE_USDC")
                assert json_error.value.status_code == 400
                assert json_error.value.code == "INVALID_CLIENT_REQUEST"
                assert json_error.value.exchange == "BACKPACK"
                # A parameter the server cannot parse: a plain-text 400.
                with pytest.raises(ApiError) as text_error:
                    await rest._client.request(
                        "GET", "/api/v1/depth", params={"symbol": "SOL_USDC", "limit": "30"}
                    )
                assert text_error.value.status_code == 400
                assert "limit" in text_error.value.body
                with pytest.raises(ApiError) as missing:
                    await rest._client.request("GET", "/api/v1/nope")
                assert missing.value.status_code == 404
                with pytest.raises(LocalProtocolError):
                    await rest.depth("SOL_USDC", limit=30)  # refused locally, never sent


@pytest.mark.virtual_time
async def test_429_honours_retry_after_then_surfaces_a_typed_error_when_exhausted():
    async with open_simulator(sim_config()) as sim:
        config = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url)
        async with BackpackRest(config) as rest:
            with anyio.fail_after(120):
                sim.faults.rate_limit_rest(1, retry_after=2.0)
                t0 = anyio.current_time()
                status = await rest.status()  # idempotent: retried after Retry-After
                assert status.status == "Ok"
                assert anyio.current_time() - t0 == pytest.approx(2.0, abs=0.05)
                sim.faults.rate_limit_rest(10, retry_after=1.0)
                with pytest.raises(RateLimited) as info:
                    await rest.status()
                assert info.value.status_code == 429
                assert info.value.retry_after is not None
                answered = [f for f in sim.fault_log if f.kind == "rate_limit_rest"]
                assert len(answered) == 1 + 4  # the first 429, then every attempt of the exhausted request
                sim.faults.clear()
                sim.faults.rate_limit_rest(1)  # no Retry-After: the backoff decides
                assert (await rest.status()).status == "Ok"


# ----------------------------------------------------------------------------------- signed REST


async def test_signed_requests_verify_on_the_server_and_follow_the_sorted_parameter_rule():
    async with open_simulator(sim_config()) as sim:
        config = BackpackConfig(
            rest_url=sim.rest_url, ws_url=sim.ws_url, api_key=sim.api_key, api_secret=sim.api_secret
        )
        with anyio.fail_after(30):
            async with BackpackRest(config) as rest:
                balances = await rest.balances()
                assert "USDC" in balances
                price = sim.book("SOL_USDC").bids[0][0] - Decimal(1)
                order = await rest.execute_order(
                    symbol="SOL-USDC",
                    side="Bid",
                    orderType="Limit",
                    quantity="0.5",
                    price=str(price),
                    clientId=7,
                )
                assert order["symbol"] == "SOL_USDC"
                open_orders = await rest.open_orders("SOL_USDC")
                assert [o["id"] for o in open_orders] == [order["id"]]
                cancelled = await rest.cancel_order("SOL_USDC", order_id=order["id"])
                assert cancelled["status"] == "Cancelled"
                assert await rest.open_orders("SOL_USDC") == []


def test_the_signed_string_matches_the_documented_rule_including_a_batch_body():
    # The doc's examples (backpack-protocol.md 6.4), byte for byte.
    single = build_signing_string(
        "orderCancel", {"symbol": "BTC_USDT", "orderId": 28}, timestamp_ms=1614550000000, window_ms=5000
    )
    assert single == "instruction=orderCancel&orderId=28&symbol=BTC_USDT&timestamp=1614550000000&window=5000"
    batch = build_signing_string(
        "orderExecute",
        [
            {
                "symbol": "SOL_USDC_PERP",
                "side": "Bid",
                "orderType": "Limit",
                "price": "141",
                "quantity": "12",
            },
            {
                "symbol": "SOL_USDC_PERP",
                "side": "Bid",
                "orderType": "Limit",
                "price": "140",
                "quantity": "11",
            },
        ],
        timestamp_ms=1750793021519,
        window_ms=5000,
    )
    assert batch == (
        "instruction=orderExecute&orderType=Limit&price=141&quantity=12&side=Bid&symbol=SOL_USDC_PERP"
        "&instruction=orderExecute&orderType=Limit&price=140&quantity=11&side=Bid&symbol=SOL_USDC_PERP"
        "&timestamp=1750793021519&window=5000"
    )


async def test_signed_request_headers_carry_a_verifiable_signature():
    secret, key = generate_keypair()
    config = BackpackConfig(api_key=key, api_secret=secret, clock=lambda: 1614550000.0)
    rest = BackpackRest(config)
    sign = rest._signer_for("orderCancel", {"orderId": 28, "symbol": "BTC_USDT"})
    headers = sign(RequestInfo(method="DELETE", path="/api/v1/order"))
    assert headers["X-Timestamp"] == "1614550000000"
    assert headers["X-Window"] == "5000"
    assert headers["X-API-Key"] == key
    message = "instruction=orderCancel&orderId=28&symbol=BTC_USDT&timestamp=1614550000000&window=5000"
    assert verify_signature(key, message, headers["X-Signature"])


async def test_a_bad_rest_signature_is_an_auth_error():
    async with open_simulator(sim_config()) as sim:
        secret, key = generate_keypair()  # valid, but not a key the simulator knows
        config = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url, api_key=key, api_secret=secret)
        with anyio.fail_after(30):
            async with BackpackRest(config) as rest:
                with pytest.raises(AuthError) as info:
                    await rest.balances()
                assert secret not in str(info.value)
                with pytest.raises(LocalProtocolError):
                    await BackpackRest(BackpackConfig(rest_url=sim.rest_url)).balances()


# ----------------------------------------------------------------------------------- symbols


async def test_symbol_service_hides_markets_that_are_not_open_unless_asked():
    async with open_simulator(sim_config()) as sim:
        config = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url)
        with anyio.fail_after(30):
            async with BackpackRest(config) as rest:
                symbols = BackpackSymbols(rest)
                markets = await symbols.markets()
                assert "TON-USDC-PERP" not in markets
                assert {"SOL-USDC", "BTC-USDC-PERP", "AAPL.US-USDC-PERP"} <= set(markets)
                assert (await symbols.market("AAPL.US_USDC_PERP")).symbol == "AAPL.US_USDC_PERP"
                assert await symbols.exchange_symbol_of("BTC-USDC-PERP") == "BTC_USDC_PERP"
                everything = BackpackSymbols(rest, include_closed=True)
                assert "TON-USDC-PERP" in await everything.markets()


# ----------------------------------------------------------------------------------- clock skew


@pytest.mark.parametrize("offset", [-90.0, -30.0, -3.0, 0.0, 3.0, 30.0, 90.0])
async def test_clock_skew_table_with_and_without_time_sync(offset: float):
    """G4: beyond the 5 s window, unsynchronized signatures fail; after sync every offset works."""
    async with open_simulator(sim_config(clock_offset=offset)) as sim:
        config = BackpackConfig(
            rest_url=sim.rest_url, ws_url=sim.ws_url, api_key=sim.api_key, api_secret=sim.api_secret
        )
        with anyio.fail_after(30):
            async with BackpackRest(config) as rest:
                price = str(sim.book("SOL_USDC").bids[0][0] - 1)
                order = {
                    "symbol": "SOL_USDC",
                    "side": "Bid",
                    "orderType": "Limit",
                    "quantity": "1",
                    "price": price,
                }
                if abs(offset) > 5:
                    with pytest.raises(AuthError):
                        await rest.execute_order(**order)  # not idempotent: never resent
                    assert rest.clock_offset == pytest.approx(offset, abs=0.5)  # but the clock was re-synced
                else:
                    await rest.execute_order(**order)
                measured = await rest.sync_clock()
                assert measured == pytest.approx(offset, abs=0.5)
                assert config.signer is not None
                assert config.signer.window_ms == 5000  # never widened
                await rest.execute_order(**order)  # synchronized: accepted at every offset


async def test_an_expired_idempotent_request_is_resynced_and_retried_once():
    async with open_simulator(sim_config(clock_offset=-90.0)) as sim:
        config = BackpackConfig(
            rest_url=sim.rest_url, ws_url=sim.ws_url, api_key=sim.api_key, api_secret=sim.api_secret
        )
        with anyio.fail_after(30):
            async with BackpackRest(config) as rest:
                assert "USDC" in await rest.balances()  # GET: 401 expired -> sync -> one retry
                assert rest.clock_offset == pytest.approx(-90.0, abs=0.5)
