"""
The scale-out recipe: ``BackpackFeed`` shards (one symbol each) under a real ``FeedHandler``
write through cryptofeed's Redis stream backend into a real ``redis-server`` on 127.0.0.1 that
the test starts (throw-away port and directory, no persistence) and stops. Read back: every
trade the simulator sent arrives exactly once, across a forced disconnect, and the books rebuilt
from the streams match the simulator's ground truth after every entry.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from decimal import Decimal

import anyio
import pytest

pytest.importorskip("cryptofeed")

import redis.asyncio as aioredis
from cryptofeed import FeedHandler
from cryptofeed.backends.redis import BookStream, TradeStream
from cryptofeed.defines import L2_BOOK, TRADES
from cryptofeed.symbols import Symbols

from bridges.cryptofeed import CRYPTOFEED_3, BackpackFeed
from native_anyio.backpack import BackpackConfig
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

pytestmark = pytest.mark.asyncio_only

SHARDS = ("SOL_USDC", "BTC_USDC_PERP")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_port(tmp_path):
    """A private redis-server on 127.0.0.1 for this test only."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: apt-get install -y redis-server (.ci/run installs it)"
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            assert proc.poll() is None, "redis-server exited"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def clean_symbols():
    Symbols.clear()
    yield
    Symbols.clear()


async def wait_until(predicate, timeout: float = 30.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


def rebuild_and_check(entries, sim, symbol: str) -> int:
    """Replay a book stream; every state must be the truth at some (non-decreasing) update id."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    latest = sim.book(symbol).last_update_id
    update_id = max(1, latest - 5000)
    snapshots = 0
    for _, fields in entries:
        if b"book" in fields:
            book = json.loads(fields[b"book"])
            bids = {Decimal(p): Decimal(s) for p, s in book["bid"].items()}
            asks = {Decimal(p): Decimal(s) for p, s in book["ask"].items()}
            snapshots += 1
        else:
            delta = json.loads(fields[b"delta"])
            for side, levels in ((bids, delta["bid"]), (asks, delta["ask"])):
                for price, size in levels:
                    if Decimal(size):
                        side[Decimal(price)] = Decimal(size)
                    else:
                        side.pop(Decimal(price))
        assert all(size > 0 for size in (*bids.values(), *asks.values()))
        while True:
            assert update_id <= latest, "a book state the simulator never had"
            try:
                truth = sim.book_at(symbol, update_id)
            except LookupError:  # before the retained history
                update_id += 1
                continue
            if dict(truth.bids) == bids and dict(truth.asks) == asks:
                break
            update_id += 1
    assert update_id == latest  # the last state is the simulator's current book
    return snapshots


# cryptofeed 2.4.1's Redis writer closes its client with redis-py's deprecated close(); as an
# error the warning would abort the writer before it disconnects its pool.
@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
async def test_trades_exactly_once_and_books_match_truth_through_redis(redis_port):
    seen: dict[str, list[int]] = {s: [] for s in SHARDS}

    def counter(symbol):
        async def on_trade(trade, receipt_timestamp):
            seen[symbol].append(int(trade.id))

        return on_trade

    config = SimulatorConfig(symbols=SHARDS, seed=5, auto=False, realtime_merge_chance=0.2)
    async with open_simulator(config) as sim:
        backpack = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url)
        fh = FeedHandler(config={"log": {"disabled": True}, "uvloop": False})
        for symbol in SHARDS:  # one shard per symbol (in production: one process per shard)
            trades = TradeStream(port=redis_port, numeric_type=str)
            books = BookStream(port=redis_port, numeric_type=str, snapshot_interval=50)
            fh.add_feed(BackpackFeed(symbols=[symbol], channels=[TRADES, L2_BOOK], backpack_config=backpack,
                                     callbacks={TRADES: [trades, counter(symbol)], L2_BOOK: books}))  # fmt: skip
        await anyio.sleep(0.1)
        before = asyncio.all_tasks()
        task = None
        if CRYPTOFEED_3:
            task = asyncio.get_running_loop().create_task(fh.run_async(install_signal_handlers=False))
        else:
            fh.run(start_loop=False, install_signal_handlers=False)
        with anyio.fail_after(90):
            for symbol in SHARDS:
                await sim.wait_subscribed(f"depth.{symbol}")
                await sim.wait_subscribed(f"trade.{symbol}")
            first = {s: max((t.id for t in sim.trades(s)), default=0) for s in SHARDS}
            for round_ in range(2):
                for _ in range(15):
                    for symbol in SHARDS:
                        await sim.step(symbol, 8)
                    await anyio.sleep(0.01)
                expected = {s: [t.id for t in sim.trades(s) if t.id > first[s]] for s in SHARDS}
                assert all(len(ids) >= 10 * (round_ + 1) for ids in expected.values())
                await wait_until(
                    lambda expected=expected: all(len(seen[s]) >= len(expected[s]) for s in SHARDS)
                )
                if round_ == 0:  # a forced disconnect between the rounds: our session reconnects
                    sim.faults.drop()
                    await sim.wait_connections(4)
                    for symbol in SHARDS:
                        await sim.wait_subscribed(f"depth.{symbol}")
                        await sim.wait_subscribed(f"trade.{symbol}")
                    for conn in sim.connections:
                        assert conn.open or conn.id <= 2
            await anyio.sleep(0.5)  # let the books settle on the last update
        # graceful stop: backends flush to Redis
        if CRYPTOFEED_3:
            fh.request_stop()
            await asyncio.wait({task}, timeout=20)
            task.result()
        else:
            await fh.stop_async()
        with anyio.fail_after(15):
            while leftover := asyncio.all_tasks() - before - {asyncio.current_task()}:
                await asyncio.wait(leftover, timeout=0.5)

        client = aioredis.Redis(host="127.0.0.1", port=redis_port)
        try:
            for symbol in SHARDS:
                name = symbol.replace("_", "-")
                entries = await client.xrange(f"trades-BACKPACK-{name}")
                ids = [int(fields[b"id"]) for _, fields in entries]
                assert len(ids) == len(set(ids)), "a trade arrived twice"
                assert sorted(ids) == expected[symbol], "a trade is missing"
                for _, fields in entries:
                    truth = next(t for t in sim.trades(symbol) if t.id == int(fields[b"id"]))
                    assert Decimal(fields[b"price"].decode()) == truth.price
                    assert Decimal(fields[b"amount"].decode()) == truth.qty
                book_entries = await client.xrange(f"book-BACKPACK-{name}")
                assert rebuild_and_check(book_entries, sim, symbol) >= 2  # rebuilt after the drop
        finally:
            await client.aclose()
