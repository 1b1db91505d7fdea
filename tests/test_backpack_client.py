"""
The Backpack client end to end against the embedded simulator (real sockets on 127.0.0.1), on
both backends under virtual clocks: public and private streams, signatures, error frames, books
in sync with the simulator's ground truth.
"""

from __future__ import annotations

from decimal import Decimal

import anyio
import pytest

from native_anyio import AuthError, LocalProtocolError, OrderBook, UnknownSymbolError, generate_keypair
from native_anyio.backpack import (
    BackpackConfig,
    BookDelta,
    BookSnapshot,
    BookStatus,
    Candle,
    Event,
    MarkPrice,
    OrderUpdate,
    SubscriptionError,
    Ticker,
    TopOfBook,
    Trade,
    open_backpack,
)
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

pytestmark = pytest.mark.virtual_time

SYMBOLS = ("SOL_USDC", "BTC_USDC_PERP", "AAPL.US_USDC_PERP")


def sim_config(**overrides: object) -> SimulatorConfig:
    values: dict[str, object] = {"symbols": SYMBOLS, "seed": 7, "update_rate": 40.0}
    values.update(overrides)
    return SimulatorConfig(**values)  # type: ignore[arg-type]


def client_config(sim, **overrides: object) -> BackpackConfig:
    values: dict[str, object] = {
        "rest_url": sim.rest_url,
        "ws_url": sim.ws_url,
        "unknown_symbol_timeout": 5.0,
    }
    values.update(overrides)
    return BackpackConfig(**values)  # type: ignore[arg-type]


async def collect(client, predicate, *, limit: int = 20_000) -> list[Event]:
    """Events until ``predicate(events)`` holds (bounded in count; callers bound time)."""
    events: list[Event] = []
    while not predicate(events):
        events.extend(await client.receive_events())
        assert len(events) < limit, "predicate never held"
    return events


def apply(book: OrderBook, event: BookSnapshot | BookDelta) -> None:
    if isinstance(event, BookSnapshot):
        book.load(event.bids, event.asks, event.sequence)
    else:
        book.apply(event.bids, event.asks)
        book.last_update_id = event.sequence


def assert_matches_truth(book: OrderBook, sim, symbol: str) -> None:
    truth = sim.book_at(symbol, book.last_update_id)
    assert book.bids() == list(truth.bids)
    assert book.asks() == list(truth.asks)


async def test_public_streams_deliver_every_channel_normalized():
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(
                client_config(sim),
                symbols=["SOL-USDC", "BTC_USDC_PERP"],
                channels=["trades", "bbo", "ticker", "candles", "funding", "book"],
            ) as client:
                wanted = {Trade, TopOfBook, Ticker, Candle, MarkPrice, BookSnapshot, BookDelta}
                events = await collect(client, lambda ev: wanted <= {type(e) for e in ev})
    symbols = {e.symbol for e in events if hasattr(e, "symbol")}
    assert symbols <= {"SOL-USDC", "BTC-USDC-PERP"}
    assert all(e.exchange == "BACKPACK" for e in events)
    trades = [e for e in events if isinstance(e, Trade)]
    truth = {t.id: t for s in ("SOL_USDC", "BTC_USDC_PERP") for t in sim.trades(s)}
    for trade in trades:
        wire = truth[trade.id]
        assert trade.price == wire.price
        assert trade.amount == wire.qty
        assert trade.side == ("sell" if wire.buyer_is_maker else "buy")
        assert isinstance(trade.price, Decimal)
    assert all(isinstance(e.mark_price, Decimal) for e in events if isinstance(e, MarkPrice))
    assert {e.symbol for e in events if isinstance(e, MarkPrice)} == {"BTC-USDC-PERP"}  # perps only


async def test_books_equal_ground_truth_after_every_update():
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                local = {s: OrderBook() for s in ("SOL-USDC", "BTC-USDC-PERP", "AAPL.US-USDC-PERP")}
                checked = 0
                while checked < 600:
                    for event in await client.receive_events():
                        if isinstance(event, (BookSnapshot, BookDelta)):
                            book = local[event.symbol]
                            apply(book, event)
                            assert_matches_truth(book, sim, event.symbol.replace("-", "_"))
                            live = client.book(event.symbol)
                            assert live is not None
                            checked += 1
                stats = client.statistics()
    assert stats.decode_errors == 0
    assert dict(stats.books) == dict.fromkeys(local, "live")


async def test_unknown_and_closed_symbols_are_reported_instead_of_hanging():
    async with open_simulator(sim_config(closed_symbols=("TON_USDC_PERP",))) as sim:
        with anyio.fail_after(60):
            async with open_backpack(client_config(sim)) as client:
                with pytest.raises(UnknownSymbolError) as unknown:
                    await client.subscribe(["NOPE_USDC_PERP"], ["trades"])
                assert unknown.value.symbol == "NOPE_USDC_PERP"
                with pytest.raises(UnknownSymbolError):
                    await client.subscribe(["TON-USDC-PERP"], ["book"])
                with pytest.raises(LocalProtocolError, match="unknown channel"):
                    await client.subscribe(["SOL_USDC"], ["nope"])
                with pytest.raises(LocalProtocolError, match="private"):
                    await client.subscribe(["SOL_USDC"], ["orders"])
                assert client.session.subscriptions == ()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('{"method":"SUBSCRIBE","params":["nope.SOL_USDC"]}', 4006),
        ('{"method":"SUBSCRIBE","params":["depth.100ms.SOL_USDC"]}', 4008),
        ("this is not json", 4002),
        ('{"method":"SUBSCRIBE","params":{"op":"x"}}', 4002),
    ],
)
async def test_server_error_frames_surface_as_typed_errors_and_the_client_keeps_running(raw: str, code: int):
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(60):
            async with open_backpack(
                client_config(sim), symbols=["SOL_USDC"], channels=["trades", "bbo"]
            ) as client:
                await collect(client, lambda ev: any(isinstance(e, TopOfBook) for e in ev))
                await client.session.send(raw)
                with pytest.raises(SubscriptionError) as info:
                    await collect(client, lambda ev: False)
                assert info.value.code == code
                assert info.value.exchange == "BACKPACK"
                # Not fatal: the same client keeps delivering.
                more = await collect(client, lambda ev: any(isinstance(e, TopOfBook) for e in ev))
                assert more
                assert client.statistics().error_frames == 1


async def test_private_streams_are_signed_and_deliver_order_updates():
    async with open_simulator(sim_config()) as sim:
        config = client_config(sim, api_key=sim.api_key, api_secret=sim.api_secret)
        with anyio.fail_after(60):
            async with open_backpack(
                config, symbols=["SOL_USDC"], channels=["orders", "balances", "bbo"]
            ) as client:
                await collect(client, lambda ev: any(isinstance(e, TopOfBook) for e in ev))
                book = sim.book("SOL_USDC")
                price = book.bids[0][0] - Decimal("1")  # rests on the book: accepted, not filled
                await client.rest.execute_order(
                    symbol="SOL-USDC",
                    side="Bid",
                    orderType="Limit",
                    quantity="1",
                    price=str(price),
                    clientId=42,
                )
                events = await collect(client, lambda ev: any(isinstance(e, OrderUpdate) for e in ev))
    [order] = [e for e in events if isinstance(e, OrderUpdate)]
    assert order.symbol == "SOL-USDC"
    assert order.price == price
    [subscribe] = [r for r in sim.subscriptions() if "account.orderUpdate" in r.params]
    assert subscribe.signed


async def test_private_signatures_are_fresh_on_every_reconnect():
    async with open_simulator(sim_config()) as sim:
        config = client_config(sim, api_key=sim.api_key, api_secret=sim.api_secret)
        with anyio.fail_after(120):
            async with open_backpack(config, symbols=["SOL_USDC"], channels=["orders", "bbo"]) as client:
                await collect(client, lambda ev: any(isinstance(e, TopOfBook) for e in ev))
                for connection in (2, 3, 4):
                    await anyio.sleep(2.0)
                    sim.faults.close(code=1001)
                    await sim.wait_subscribed("account.orderUpdate", conn_id=connection)
                    await collect(client, lambda ev: any(isinstance(e, TopOfBook) for e in ev))
    signed = [r for r in sim.subscriptions() if "account.orderUpdate" in r.params]
    assert len(signed) == 4  # one per connection, exactly once
    assert [r.conn_id for r in signed] == [1, 2, 3, 4]
    assert all(r.signed and not r.errors for r in signed)  # each verified on the server's clock


async def test_a_bad_signature_ends_the_session_with_an_auth_error_once():
    other_secret, other_key = generate_keypair()  # a valid key pair the simulator does not know
    async with open_simulator(sim_config()) as sim:
        config = client_config(sim, api_key=other_key, api_secret=other_secret)
        with anyio.fail_after(60), pytest.raises(AuthError) as info:
            async with open_backpack(config, symbols=["SOL_USDC"], channels=["orders"]) as client:
                await collect(client, lambda ev: False)
    assert "signature" in str(info.value).lower()
    assert other_secret not in str(info.value)
    assert len(sim.connections) == 1  # fatal: no reconnect loop


async def test_an_expired_signature_window_is_rejected():
    async with open_simulator(sim_config(clock_offset=-3600.0)) as sim:  # the server lives an hour behind
        config = client_config(sim, api_key=sim.api_key, api_secret=sim.api_secret)
        with anyio.fail_after(60), pytest.raises(AuthError):
            async with open_backpack(config, symbols=["SOL_USDC"], channels=["orders"]) as client:
                await collect(client, lambda ev: False)


async def test_book_status_events_and_resync_after_a_reconnect():
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=["SOL_USDC"], channels=["book"]) as client:
                await collect(client, lambda ev: any(isinstance(e, BookSnapshot) for e in ev))
                sim.faults.close(code=1001)
                events = await collect(
                    client,
                    lambda ev: (
                        any(isinstance(e, BookSnapshot) for e in ev)
                        and any(isinstance(e, BookStatus) for e in ev)
                    ),
                )
    states = [e.state for e in events if isinstance(e, BookStatus)]
    assert states[0] == "syncing"  # disconnected: fail-closed until the fresh snapshot
    assert "live" in states
    first_snapshot = next(i for i, e in enumerate(events) if isinstance(e, BookSnapshot))
    first_status = next(i for i, e in enumerate(events) if isinstance(e, BookStatus))
    assert first_status < first_snapshot
    assert not any(isinstance(e, BookDelta) for e in events[first_status:first_snapshot])


async def test_periodic_verification_catches_a_silently_corrupted_level_and_resyncs():
    """
    C8: a corrupted size that keeps U/u continuous is found within one verification period. The
    market is stepped by hand so no later update overwrites (heals) the corrupted level.
    """
    symbols = ("SOL_USDC", "BTC_USDC_PERP")
    async with open_simulator(sim_config(auto=False, symbols=symbols)) as sim:
        with anyio.fail_after(120):
            async with open_backpack(
                client_config(sim), symbols=symbols, channels=["book"], verify_interval=1.0, verify_depth=500
            ) as client:
                for symbol in symbols:
                    await sim.wait_subscribed(f"depth.{symbol}")
                for _ in range(50):  # step until both books are live (bounded)
                    if all(client.book(s) is not None for s in symbols):
                        break
                    for symbol in symbols:
                        await sim.step(symbol, 1)
                    with anyio.move_on_after(0.2):
                        await collect(client, lambda ev: False)
                with anyio.move_on_after(2.5):  # clean verification rounds first
                    await collect(client, lambda ev: False)
                clean = client.statistics()
                assert clean.verifications >= 2
                assert clean.verification_mismatches == 0
                sim.faults.corrupt_level("SOL_USDC")
                await sim.step("SOL_USDC", 1)
                corrupted_at = anyio.current_time()
                events = await collect(
                    client,
                    lambda ev: any(isinstance(e, BookStatus) and "verification" in e.reason for e in ev),
                )
                detected_at = anyio.current_time()
                for _ in range(50):  # the market moves on; the book resyncs from a fresh snapshot
                    if client.book("SOL_USDC") is not None:
                        break
                    await sim.step("SOL_USDC", 1)
                    with anyio.move_on_after(0.2):
                        events += await collect(client, lambda ev: False)
                stats = client.statistics()
                book = client.book("SOL_USDC")
                assert book is not None
                assert_matches_truth(book, sim, "SOL_USDC")  # rebuilt from a fresh snapshot
    assert [f.kind for f in sim.fault_log] == ["corrupt_level"]
    assert detected_at - corrupted_at <= 1.0 + 0.5  # within one period (plus the REST round trip)
    assert stats.verification_mismatches == 1
    [status] = [e for e in events if isinstance(e, BookStatus) and "verification" in e.reason]
    assert status.symbol == "SOL-USDC"
    assert status.state == "resyncing"
    assert not any(isinstance(e, BookStatus) and e.symbol == "BTC-USDC-PERP" for e in events)
