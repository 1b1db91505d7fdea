"""
The cryptofeed bridge under a real ``FeedHandler`` (cryptofeed 2.4.1 or 3.0.x, whichever is
installed) against the embedded simulator on 127.0.0.1, embedded in the test's asyncio loop:
channels and types, books against ground truth, forced disconnects, a sequence gap, slow
callbacks, and the embedded stop paths. The blocking ``run()`` + signal paths are in
``test_bridge_process.py``, the Redis scale-out in ``test_bridge_redis.py``.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import time
from contextlib import asynccontextmanager
from decimal import Decimal

import anyio
import pytest

pytest.importorskip("cryptofeed")

from cryptofeed import FeedHandler
from cryptofeed.defines import (
    CANDLES,
    FUNDING,
    L2_BOOK,
    LIQUIDATIONS,
    OPEN_INTEREST,
    TICKER,
    TRADES,
)
from cryptofeed.exchanges import EXCHANGE_MAP
from cryptofeed.symbols import Symbols

from bridges.cryptofeed import CRYPTOFEED_3, BackpackFeed
from native_anyio import LivenessConfig, SessionConfig, UnknownSymbolError
from native_anyio.backpack import BackpackConfig
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.asyncio_only

FH_CONFIG = {"log": {"disabled": True}, "uvloop": False}
SYMBOLS = ("SOL_USDC", "BTC_USDC_PERP")
ALL_CHANNELS = (TRADES, L2_BOOK, TICKER, CANDLES, FUNDING, OPEN_INTEREST, LIQUIDATIONS)


@pytest.fixture(autouse=True)
def clean_symbols():
    Symbols.clear()
    yield
    Symbols.clear()


def sim_config(**overrides: object) -> SimulatorConfig:
    values: dict[str, object] = {"symbols": SYMBOLS, "seed": 11, "update_rate": 40.0}
    values.update(overrides)
    return SimulatorConfig(**values)  # type: ignore[arg-type]


def make_feed(sim, channels, callbacks, **kwargs) -> BackpackFeed:
    config = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url, unknown_symbol_timeout=5.0)
    kwargs.setdefault("symbols", ["SOL-USDC", "BTC-USDC-PERP"])
    return BackpackFeed(channels=list(channels), callbacks=callbacks, backpack_config=config, **kwargs)


@asynccontextmanager
async def running(fh: FeedHandler):
    """Run ``fh`` embedded in this loop; stop it gracefully; prove no task is left behind."""
    before = await settled_tasks()
    task = None
    if CRYPTOFEED_3:
        task = asyncio.get_running_loop().create_task(fh.run_async(install_signal_handlers=False))
    else:
        fh.run(start_loop=False, install_signal_handlers=False)
    try:
        yield task
    finally:
        started = time.monotonic()
        if CRYPTOFEED_3:
            fh.request_stop()
            await asyncio.wait({task}, timeout=15)
            assert task.done()
            task.result()
        else:
            await fh.stop_async()
        await wait_no_new_tasks(before)
        assert time.monotonic() - started < 10


async def settled_tasks() -> set[asyncio.Task]:
    """The tasks alive now, once the simulator's servers spawned their accept loops."""
    await anyio.sleep(0.1)
    return asyncio.all_tasks()


async def wait_no_new_tasks(before: set[asyncio.Task]) -> None:
    """cryptofeed 2.4.1 keeps no handle on its tasks: wait (bounded) until they are all done."""
    with anyio.move_on_after(10):
        while leftover := asyncio.all_tasks() - before - {asyncio.current_task()}:
            await asyncio.wait(leftover, timeout=0.5)
    leftover = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not leftover, [t.get_name() for t in leftover]


async def wait_until(predicate, *, timeout: float = 30.0, what: str = "") -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


class BookChecker:
    """An L2_BOOK callback that checks every book it receives against the simulator's truth."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.log: dict[str, list[tuple[str, int]]] = {}
        self.last: dict[str, int] = {}

    async def __call__(self, book, receipt_timestamp: float) -> None:
        symbol = book.symbol
        log = self.log.setdefault(symbol, [])
        seq = book.sequence_number
        assert isinstance(seq, int)
        if book.delta is None:
            log.append(("snapshot", seq))
        else:
            assert log, "a delta before the first snapshot"
            assert book.raw.first_sequence == self.last[symbol] + 1, "a delta across a gap"
            assert set(book.delta) == {"bid", "ask"}
            for price, size in (*book.delta["bid"], *book.delta["ask"]):
                assert isinstance(price, Decimal)
                assert isinstance(size, Decimal)
            log.append(("delta", seq))
        self.last[symbol] = seq
        bids, asks = book.book.bids.to_dict(), book.book.asks.to_dict()
        assert all(size > 0 for size in (*bids.values(), *asks.values())), "a size-0 level"
        truth = self.sim.book_at(symbol.replace("-", "_"), seq)
        assert bids == dict(truth.bids)
        assert asks == dict(truth.asks)
        assert isinstance(book.timestamp, float)
        assert abs(receipt_timestamp - time.time()) < 30

    def snapshots(self, symbol: str) -> int:
        return sum(1 for kind, _ in self.log.get(symbol, ()) if kind == "snapshot")

    def count(self, symbol: str) -> int:
        return len(self.log.get(symbol, ()))


def test_construction_touches_no_network_and_is_registered(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access during construction")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    feed = BackpackFeed(symbols=["SOL_USDC", "BTC-USDC-PERP"], channels=[TRADES, L2_BOOK])
    assert feed.subscription == {
        "trades": ["SOL_USDC", "BTC_USDC_PERP"],
        "book": ["SOL_USDC", "BTC_USDC_PERP"],
    }
    assert EXCHANGE_MAP["BACKPACK"] is BackpackFeed
    fh = FeedHandler(config=FH_CONFIG)
    fh.add_feed("BACKPACK", symbols=["ETH-USDC"], channels=[TICKER])
    fh.add_feed(BackpackFeed(subscription={CANDLES: ["SOL-USDC-PERP"]}))
    feeds = list(fh.feeds.values()) if isinstance(fh.feeds, dict) else list(fh.feeds)
    assert [type(f) for f in feeds] == [BackpackFeed, BackpackFeed]
    assert feeds[0].subscription == {"bbo": ["ETH_USDC"]}
    assert {k: list(v) for k, v in feeds[1].subscription.items()} == {
        "candles": ["SOL_USDC_PERP"]
    }  # 2.4.1: sets
    # both feeds' symbols stay known to cryptofeed (the registry is merged, not replaced)
    assert {"SOL-USDC", "ETH-USDC", "SOL-USDC-PERP"} <= set(Symbols.get("BACKPACK")[0])


def test_cryptofeed_reconnect_machinery_is_refused():
    with pytest.raises(ValueError, match="timeout"):
        BackpackFeed(symbols=["SOL-USDC"], channels=[TRADES], timeout=30)
    with pytest.raises(ValueError, match="retries"):
        BackpackFeed(symbols=["SOL-USDC"], channels=[TRADES], retries=5)
    with pytest.raises(ValueError, match="slow_consumer"):
        BackpackFeed(
            symbols=["SOL-USDC"], channels=[TRADES], session_config=SessionConfig(slow_consumer="block")
        )


async def test_every_channel_arrives_as_cryptofeed_types():
    got: dict[str, list] = {}

    async def collect(obj, receipt_timestamp):
        got.setdefault(type(obj).__name__, []).append((obj, receipt_timestamp))

    wanted = {"Trade", "OrderBook", "Ticker", "Candle", "Funding", "OpenInterest", "Liquidation"}
    async with open_simulator(sim_config(update_rate=100.0, open_interest_interval=1.0)) as sim:
        feed = make_feed(sim, ALL_CHANNELS, dict.fromkeys(ALL_CHANNELS, collect), candle_closed_only=False)
        fh = FeedHandler(config=FH_CONFIG)
        fh.add_feed(feed)
        async with running(fh):
            await wait_until(lambda: wanted <= set(got) and len(got["Trade"]) >= 20, timeout=60)
        truth = {t.id: t for s in SYMBOLS for t in sim.trades(s)}
    now = time.time()
    for name, items in got.items():
        for obj, receipt in items:
            assert obj.exchange == "BACKPACK"
            assert obj.symbol in {"SOL-USDC", "BTC-USDC-PERP"}
            assert abs(obj.timestamp - now) < 120, name  # float seconds, not ms/us
            assert abs(receipt - now) < 120
    for trade, _ in got["Trade"]:
        wire = truth[int(trade.id)]
        assert (trade.price, trade.amount) == (wire.price, wire.qty)
        assert isinstance(trade.price, Decimal)
        assert isinstance(trade.amount, Decimal)
        assert trade.side == ("sell" if wire.buyer_is_maker else "buy")
    ids = [t.id for t, _ in got["Trade"]]
    assert len(ids) == len(set(ids))
    for ticker, _ in got["Ticker"]:
        assert isinstance(ticker.bid, Decimal)
        assert ticker.bid < ticker.ask
    for funding, _ in got["Funding"]:
        assert funding.symbol == "BTC-USDC-PERP"
        assert isinstance(funding.rate, Decimal)
    for oi, _ in got["OpenInterest"]:
        assert isinstance(oi.open_interest, Decimal)
    for candle, _ in got["Candle"]:
        assert candle.interval == "1m"
        assert candle.stop > candle.start
        assert isinstance(candle.open, Decimal)


async def test_books_match_ground_truth_snapshot_first_then_sequenced_deltas():
    async with open_simulator(sim_config()) as sim:
        checker = BookChecker(sim)
        feed = make_feed(sim, [L2_BOOK], {L2_BOOK: checker})
        fh = FeedHandler(config=FH_CONFIG)
        fh.add_feed(feed)
        async with running(fh):
            await wait_until(
                lambda: all(checker.count(s) >= 150 for s in ("SOL-USDC", "BTC-USDC-PERP")), timeout=60
            )
            stats = feed.statistics()
    for symbol in ("SOL-USDC", "BTC-USDC-PERP"):
        assert checker.log[symbol][0][0] == "snapshot"
        assert checker.snapshots(symbol) == 1
    assert stats.opens == 1
    assert stats.session is not None
    assert stats.session.reconnects == 0
    assert set(stats.live_books) == {"SOL-USDC", "BTC-USDC-PERP"}


@pytest.mark.parametrize("fault", ["close", "drop"])
async def test_forced_disconnects_one_reconnect_each_and_books_rebuilt(fault):
    drops = 3
    trades: list = []

    async def on_trade(trade, receipt_timestamp):
        trades.append(trade)

    async with open_simulator(sim_config()) as sim:
        checker = BookChecker(sim)
        feed = make_feed(sim, [L2_BOOK, TRADES], {L2_BOOK: checker, TRADES: on_trade})
        fh = FeedHandler(config=FH_CONFIG)
        fh.add_feed(feed)
        async with running(fh):
            await wait_until(
                lambda: all(checker.count(s) >= 20 for s in checker.log) and len(checker.log) == 2
            )
            for i in range(drops):
                counts = {s: checker.count(s) for s in checker.log}
                if fault == "close":
                    sim.faults.close(code=1001)
                else:
                    sim.faults.drop()
                # books come back from a fresh snapshot after every drop, then flow again
                await wait_until(
                    lambda i=i, counts=counts: all(
                        checker.snapshots(s) == i + 2 and checker.count(s) >= counts[s] + 10 for s in counts
                    ),
                    timeout=30,
                )
            stats = feed.statistics()
    assert stats.opens == 1  # cryptofeed never reopened: our session owned every reconnect
    assert stats.session is not None
    assert stats.session.reconnects == drops
    assert len(sim.connections) == drops + 1
    ids = [t.id for t in trades]
    assert len(ids) == len(set(ids))


async def test_gap_pauses_book_then_resumes_from_fresh_snapshot():
    async with open_simulator(sim_config()) as sim:
        checker = BookChecker(sim)
        feed = make_feed(sim, [L2_BOOK], {L2_BOOK: checker})
        fh = FeedHandler(config=FH_CONFIG)
        fh.add_feed(feed)
        async with running(fh):
            await wait_until(
                lambda: len(checker.log) == 2 and all(checker.count(s) >= 20 for s in checker.log)
            )
            before = checker.count("SOL-USDC")
            sim.faults.jump_sequence("SOL_USDC", 5)
            await wait_until(
                lambda: checker.snapshots("SOL-USDC") == 2 and checker.count("SOL-USDC") > before + 10
            )
            stats = feed.statistics()
    after_gap = checker.log["SOL-USDC"][before:]
    first_snapshot = next(i for i, (kind, _) in enumerate(after_gap) if kind == "snapshot")
    # up to the gap, deltas continued (checked contiguous in BookChecker); then a snapshot that
    # skips the jumped ids: nothing was delivered across the gap
    jumped_from = checker.log["SOL-USDC"][before + first_snapshot - 1][1]
    assert after_gap[first_snapshot][1] > jumped_from + 5
    assert checker.snapshots("BTC-USDC-PERP") == 1  # the other symbol was not touched
    assert stats.session is not None
    assert stats.session.reconnects == 0
    assert stats.opens == 1


async def test_slow_callbacks_are_bounded_and_never_starve_pongs():
    max_queue, max_buffer = 200, 2
    samples: list[tuple[int, int]] = []

    async def slow_book(book, receipt_timestamp):
        await checker(book, receipt_timestamp)
        await asyncio.sleep(0.01)

    config = sim_config(symbols=("SOL_USDC",), update_rate=300.0, ping_interval=0.5, pong_timeout=1.0)
    async with open_simulator(config) as sim:
        checker = BookChecker(sim)
        session = SessionConfig(
            max_queue=max_queue,
            liveness=LivenessConfig(ping_interval=1.0, ping_timeout=2.0, server_ping_interval=0.5),
        )
        feed = make_feed(sim, [L2_BOOK], {L2_BOOK: slow_book}, symbols=["SOL-USDC"], session_config=session,
                         max_buffer=max_buffer)  # fmt: skip
        fh = FeedHandler(config=FH_CONFIG)
        fh.add_feed(feed)
        async with running(fh):
            with anyio.fail_after(60):
                while True:
                    stats = feed.statistics()
                    if stats.session is not None:
                        samples.append((stats.buffered, stats.session.queue_depth))
                        if (
                            stats.session.slow_consumer_disconnects >= 1
                            and checker.snapshots("SOL-USDC") >= 2
                        ):
                            break
                    await anyio.sleep(0.05)
    assert max(b for b, _ in samples) <= max_buffer
    assert max(q for _, q in samples) <= 2 * max_queue  # max_queue plus one socket batch
    assert stats.max_lag > 0.1  # the lag is reported
    for info in sim.connections:
        assert info.close_reason != "pong timeout"  # our pongs kept flowing
        assert info.pongs_received >= info.pings_sent - 1
    assert stats.opens == 1


async def test_stop_while_callback_is_slow_is_bounded():
    gate = asyncio.Event()

    async def stuck(trade, receipt_timestamp):
        gate.set()
        await asyncio.sleep(0.5)

    async with open_simulator(sim_config(update_rate=200.0)) as sim:
        feed = make_feed(sim, [TRADES], {TRADES: stuck})
        fh = FeedHandler(config=FH_CONFIG)
        fh.add_feed(feed)
        started = None
        async with running(fh):
            with anyio.fail_after(30):
                await gate.wait()
            await anyio.sleep(1.0)  # batches pile up behind the slow callback
            started = time.monotonic()
        # the rest of the batch is abandoned once the connection is closed
        assert time.monotonic() - started < 3


async def test_hard_cancel_cancels_the_anyio_task_group():
    trades: list = []

    async def on_trade(trade, receipt_timestamp):
        trades.append(trade)

    async with open_simulator(sim_config(update_rate=100.0)) as sim:
        feed = make_feed(sim, [TRADES, L2_BOOK], {TRADES: on_trade})
        fh = FeedHandler(config=FH_CONFIG)
        fh.add_feed(feed)
        before = await settled_tasks()
        if CRYPTOFEED_3:
            task = asyncio.get_running_loop().create_task(fh.run_async(install_signal_handlers=False))
        else:
            fh.run(start_loop=False, install_signal_handlers=False)
            task = None
        await wait_until(lambda: len(trades) >= 5)
        conn = feed._connections[-1]
        client = conn.client
        assert client is not None
        runner = conn._runner
        started = time.monotonic()
        if CRYPTOFEED_3:
            task.cancel()  # the 3.x hard path (second signal, or cancelling run_async)
            await asyncio.wait({task}, timeout=15)
            assert task.cancelled()
        else:
            # 2.4.1's hard path is loop teardown: every task on the loop is cancelled
            for t in asyncio.all_tasks() - before - {asyncio.current_task()}:
                t.cancel()
        await wait_no_new_tasks(before)
        assert time.monotonic() - started < 10
        assert runner.cancelled()
        assert client.session.statistics().state == "closed"
        assert not conn.is_open


async def test_fatal_session_error_ends_the_feed_loudly_not_in_a_retry_loop():
    reported: list[BaseException] = []
    async with open_simulator(sim_config()) as sim:
        feed = make_feed(sim, [TRADES], {}, symbols=["NOPE-USDC"])
        fh = FeedHandler(config=FH_CONFIG)
        fh.add_feed(feed)
        before = await settled_tasks()
        with anyio.fail_after(30):
            if CRYPTOFEED_3:
                with pytest.raises(BaseExceptionGroup) as group:
                    await fh.run_async(install_signal_handlers=False)
                assert group.value.subgroup(UnknownSymbolError) is not None
            else:
                loop = asyncio.get_running_loop()
                previous = loop.get_exception_handler()
                loop.set_exception_handler(lambda _loop, context: reported.append(context["exception"]))
                try:
                    fh.run(start_loop=False, install_signal_handlers=False)
                    while not reported:  # cryptofeed's untracked task: reported when collected
                        gc.collect()
                        await anyio.sleep(0.05)
                finally:
                    loop.set_exception_handler(previous)
                assert isinstance(reported[0], UnknownSymbolError)
                await fh.stop_async()
        await wait_no_new_tasks(before)
    assert feed.statistics().opens == 1  # no retry loop around a fatal error
    assert len(sim.connections) <= 1
