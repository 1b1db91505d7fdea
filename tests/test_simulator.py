"""
The Backpack simulator on the wire: byte-faithful frames, depth continuity and snapshot replay,
websocket error codes, determinism and lifecycle.

Every test talks to the real servers over loopback with a raw websocket client
(``open_raw_ws``: frames exactly as sent) and httpx.
"""

from __future__ import annotations

import itertools
import re
import sys
from decimal import Decimal
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from native_anyio import HandshakeRejected
from native_anyio._frames import OP_PING, OP_PONG, OP_TEXT
from native_anyio.backpack.simulator import (
    RawWsClient,
    Simulator,
    SimulatorConfig,
    TruthBook,
    open_raw_ws,
    open_simulator,
    serve_simulator,
)

GUARD = 20  # seconds: every I/O test runs under anyio.fail_after(GUARD)
EPOCH = 1_788_367_430.25


def fixed_clock() -> float:
    return EPOCH


def config(**overrides: Any) -> SimulatorConfig:
    """A quiet simulator: markets move only on step(), a fixed wall clock, no server pings."""
    values: dict[str, Any] = {
        "symbols": ("SOL_USDC", "BTC_USDC_PERP", "AAPL.US_USDC_PERP"),
        "seed": 1,
        "auto": False,
        "clock": fixed_clock,
        "ping_interval": None,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


async def subscribe(sim: Simulator, ws: RawWsClient, *streams: str) -> None:
    await ws.subscribe(*streams)
    for stream in streams:
        await sim.wait_subscribed(stream)


async def frames_until(ws: RawWsClient, stream: str, last_u: int) -> list[dict[str, Any]]:
    """Every ``stream`` payload up to the one whose ``u`` is ``last_u``."""
    out: list[dict[str, Any]] = []
    while True:
        data = await ws.receive_stream(stream)
        out.append(data)
        if data["u"] >= last_u:
            return out


def apply(book: dict[str, dict[Decimal, Decimal]], data: dict[str, Any]) -> None:
    for key, side in (("b", "bids"), ("a", "asks")):
        for price, size in data[key]:
            if Decimal(size):
                book[side][Decimal(price)] = Decimal(size)
            else:
                book[side].pop(Decimal(price), None)


def as_truth(symbol: str, update_id: int, book: dict[str, dict[Decimal, Decimal]]) -> TruthBook:
    bids = tuple(sorted(book["bids"].items(), reverse=True))
    asks = tuple(sorted(book["asks"].items()))
    return TruthBook(symbol, update_id, bids, asks)


async def rest_book(rest_url: str, symbol: str) -> tuple[int, dict[str, dict[Decimal, Decimal]]]:
    async with httpx.AsyncClient(base_url=rest_url) as client:
        snapshot = (await client.get("/api/v1/depth", params={"symbol": symbol})).json()
    book = {
        "bids": {Decimal(p): Decimal(q) for p, q in snapshot["bids"]},
        "asks": {Decimal(p): Decimal(q) for p, q in snapshot["asks"]},
    }
    return int(snapshot["lastUpdateId"]), book


# -- byte-faithful frames --------------------------------------------------------------------------


async def test_frames_are_byte_faithful() -> None:
    streams = ("depth.SOL_USDC", "bookTicker.SOL_USDC", "trade.SOL_USDC", "depth.BTC_USDC_PERP")
    shapes = {
        "depth": {"E", "T", "U", "a", "b", "e", "s", "u"},
        "bookTicker": {"A", "B", "E", "T", "a", "b", "e", "s", "u"},
        "trade": {"E", "T", "a", "b", "e", "m", "p", "q", "s", "t"},
    }
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await subscribe(sim, ws, *streams)
            await sim.step("SOL_USDC", 60)
            await sim.step("BTC_USDC_PERP", 5)
            seen: dict[str, list[dict[str, Any]]] = {s: [] for s in streams}
            while not all(seen.values()) or len(seen["depth.SOL_USDC"]) < 55:
                raw = await ws.receive_text()
                message = msgspec.json.decode(raw)
                # Sorted keys everywhere (uppercase first), compact separators: byte-identical.
                assert raw == msgspec.json.encode(message, order="sorted")
                assert raw.startswith(b'{"data":{')
                assert list(message) == ["data", "stream"]
                data, stream = message["data"], message["stream"]
                assert set(data) == shapes[data["e"]]
                assert isinstance(data["E"], int)
                assert isinstance(data["T"], int)
                assert data["E"] >= data["T"] >= int(EPOCH * 1_000_000)  # µs since the epoch
                seen[stream].append(data)
    price2, size2 = re.compile(r"\d+\.\d{2}"), re.compile(r"\d+\.\d{2}")
    for data in seen["depth.SOL_USDC"]:
        assert data["s"] == "SOL_USDC"
        assert isinstance(data["U"], int)
        assert isinstance(data["u"], int)
        assert 1 <= len(data["a"]) + len(data["b"]) <= 6
        for price, size in data["a"] + data["b"]:
            assert price2.fullmatch(price)
            assert size2.fullmatch(size)
    for data in seen["depth.BTC_USDC_PERP"]:
        for price, size in data["a"] + data["b"]:
            assert re.fullmatch(r"\d+\.\d", price)
            assert re.fullmatch(r"\d+\.\d{5}", size)
    trade = seen["trade.SOL_USDC"][0]
    assert isinstance(trade["t"], int)
    assert isinstance(trade["m"], bool)
    assert isinstance(trade["a"], str)
    assert isinstance(trade["b"], str)
    for ticker in seen["bookTicker.SOL_USDC"]:
        # u is a JSON number and the update id of a depth update of the same engine event.
        assert isinstance(ticker["u"], int)
        assert any(d["U"] <= ticker["u"] <= d["u"] for d in seen["depth.SOL_USDC"])
        truth = sim.book_at("SOL_USDC", ticker["u"])
        assert (Decimal(ticker["b"]), Decimal(ticker["B"])) == truth.bids[0]
        assert (Decimal(ticker["a"]), Decimal(ticker["A"])) == truth.asks[0]


async def test_sim_trades_match_trade_frames() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await subscribe(sim, ws, "trade.SOL_USDC")
            await sim.step("SOL_USDC", 100)
            trades = sim.trades("SOL_USDC")
            assert len(trades) > 5
            for trade in trades:
                data = await ws.receive_stream("trade.SOL_USDC")
                assert (data["t"], Decimal(data["p"]), Decimal(data["q"]), data["m"], data["T"]) == (
                    trade.id,
                    trade.price,
                    trade.qty,
                    trade.buyer_is_maker,
                    trade.time,
                )
            assert [t.id for t in trades] == list(range(trades[0].id, trades[0].id + len(trades)))


# -- order book sync -------------------------------------------------------------------------------


@pytest.mark.parametrize("merge", [0.0, 0.5])
async def test_depth_is_continuous_and_replays_to_the_truth(merge: float) -> None:
    symbol, stream = "AAPL.US_USDC_PERP", "depth.AAPL.US_USDC_PERP"
    with anyio.fail_after(GUARD):
        async with open_simulator(config(realtime_merge_chance=merge)) as sim, open_raw_ws(sim.ws_url) as ws:
            await subscribe(sim, ws, stream)
            await sim.step(symbol, 20)
            snapshot_id, book = await rest_book(sim.rest_url, symbol)
            assert snapshot_id == sim.book(symbol).last_update_id
            await sim.step(symbol, 300)
            frames = await frames_until(ws, stream, sim.book(symbol).last_update_id)
    merged = 0
    for before, after in itertools.pairwise(frames):
        assert after["U"] == before["u"] + 1
        merged += after["U"] < after["u"]
    assert (merged > 0) == (merge > 0)
    applied = 0
    for data in frames:
        if data["u"] <= snapshot_id:
            continue
        assert data["U"] <= snapshot_id + 1 or applied
        apply(book, data)
        applied += 1
        assert as_truth(symbol, data["u"], book) == sim.book_at(symbol, data["u"])
    assert applied > 100
    assert as_truth(symbol, frames[-1]["u"], book) == sim.book(symbol)


@pytest.mark.virtual_time
@pytest.mark.parametrize(("window", "seconds"), [("200ms", 0.2), ("600ms", 0.6), ("1000ms", 1.0)])
async def test_aggregated_depth_covers_every_update(window: str, seconds: float) -> None:
    symbol, stream = "SOL_USDC", f"depth.{window}.SOL_USDC"
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim:
            t0 = anyio.current_time()
            async with open_raw_ws(sim.ws_url) as ws:
                await subscribe(sim, ws, stream)
                snapshot_id, book = await rest_book(sim.rest_url, symbol)
                for _ in range(3):
                    await sim.step(symbol, 40)
                    last = sim.book(symbol).last_update_id
                    while snapshot_id < last:
                        frame = await ws.receive()
                        # Flushed on the window's clock: exact multiples of the window.
                        periods = (frame.at - t0) / seconds
                        assert periods == pytest.approx(round(periods), abs=1e-6)
                        data = frame.json()["data"]
                        assert data["U"] == snapshot_id + 1
                        for key in ("a", "b"):
                            prices = [Decimal(p) for p, _ in data[key]]
                            assert prices == sorted(prices)  # ascending on both sides
                        apply(book, data)
                        snapshot_id = data["u"]
                        assert as_truth(symbol, data["u"], book) == sim.book_at(symbol, data["u"])
                assert anyio.current_time() - t0 == pytest.approx(3 * seconds, abs=1e-6)


@pytest.mark.virtual_time
async def test_time_driven_market_syncs_like_a_client() -> None:
    """The NEMA rule: buffer, snapshot, drop u <= L, first kept U <= L+1 <= u, then U == prev u + 1."""
    symbol, stream = "BTC_USDC_PERP", "depth.BTC_USDC_PERP"
    cfg = config(auto=True, update_rates={"BTC_USDC_PERP": 400.0}, realtime_merge_chance=0.2)
    with anyio.fail_after(GUARD):
        async with open_simulator(cfg) as sim, open_raw_ws(sim.ws_url) as ws:
            await subscribe(sim, ws, stream)
            buffered = [await ws.receive_stream(stream) for _ in range(30)]
            sim.faults.snapshot_offset(symbol, 12, count=1)  # REST trails the socket, as observed
            snapshot_id, book = await rest_book(sim.rest_url, symbol)
            kept = [d for d in buffered if d["u"] > snapshot_id]
            assert kept[0]["U"] <= snapshot_id + 1 <= kept[0]["u"]
            applied = 0
            last = snapshot_id
            while applied < 500:
                data = kept.pop(0) if kept else await ws.receive_stream(stream)
                assert data["U"] == last + 1 or applied == 0
                apply(book, data)
                last = data["u"]
                applied += 1
                assert as_truth(symbol, last, book) == sim.book_at(symbol, last)


# -- websocket errors ----------------------------------------------------------------------------


def error(code: int, message: str) -> bytes:
    return b'{"id":null,"error":{"code":%d,"message":"%s"}}' % (code, message.encode())


PARSE_ERROR = error(4002, "Parse error")


@pytest.mark.parametrize(
    "request_text",
    [
        b"not json",
        b'{"method":"FOO","params":["depth.SOL_USDC"],"id":9}',
        b'{"method":"SUBSCRIBE","params":{"op":"subscribe","channels":["trade.SOL_USDC"]}}',
        b'{"method":"SUBSCRIBE","params":[1]}',
        b'["SUBSCRIBE"]',
        b'{"params":["depth.SOL_USDC"]}',
    ],
)
async def test_parse_errors_keep_the_socket_open(request_text: bytes) -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await ws.send_text(request_text)
            assert await ws.receive_text() == PARSE_ERROR
            await ws.send_frame(OP_PING, b"still there")
            frame = await ws.receive()
            assert (frame.opcode, frame.payload) == (OP_PONG, b"still there")
            await subscribe(sim, ws, "depth.SOL_USDC")
            await sim.step("SOL_USDC")
            assert (await ws.receive_json())["stream"] == "depth.SOL_USDC"


async def test_stream_errors_and_silence_for_unknown_symbols() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await ws.send_json({"method": "SUBSCRIBE", "params": ["nope.SOL_USDC"], "id": 9})
            assert await ws.receive_text() == error(4006, "Invalid stream")
            await ws.subscribe("depth.100ms.BTC_USDC_PERP")
            assert await ws.receive_text() == error(4008, "Invalid depth window")
            await ws.subscribe("kline.7m.SOL_USDC")
            assert await ws.receive_text() == error(4006, "Invalid stream")
            # Unknown, closed and oddly formed symbols: accepted, no reply, no frames.
            silent = ["depth.NOPE_USDC_PERP", "depth.TON_USDC_PERP", "depth.5.BTC_USDC_PERP", "trade.NOPE"]
            await ws.subscribe(*silent)
            # A mixed request: the valid stream is subscribed, the invalid one reported.
            await ws.subscribe("depth.SOL_USDC", "bad.SOL_USDC")
            assert await ws.receive_text() == error(4006, "Invalid stream")
            await sim.wait_subscribed("depth.SOL_USDC")
            await sim.step("SOL_USDC")
            message = await ws.receive_json()
            assert message["stream"] == "depth.SOL_USDC"  # nothing was sent for the silent ones
            log = sim.subscriptions(1)
            assert [r.errors for r in log] == [(4006,), (4008,), (4006,), (), (4006,)]
            assert log[3].params == tuple(silent)
            assert sim.connection(1).subscriptions >= set(silent)


async def test_duplicate_subscribe_and_unsubscribe() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await subscribe(sim, ws, "depth.SOL_USDC")
            await subscribe(sim, ws, "depth.SOL_USDC")  # twice: no duplicate delivery
            await sim.step("SOL_USDC")
            first = await ws.receive_stream("depth.SOL_USDC")
            await sim.step("SOL_USDC")
            second = await ws.receive_stream("depth.SOL_USDC")
            assert second["U"] == first["u"] + 1
            await ws.unsubscribe("depth.SOL_USDC", "trade.NEVER_SUBSCRIBED")
            await subscribe(sim, ws, "bookTicker.BTC_USDC_PERP")
            assert "depth.SOL_USDC" not in sim.connection(1).subscriptions
            await sim.step("SOL_USDC", 20)
            await sim.step("BTC_USDC_PERP", 30)
            message = await ws.receive_json()
            assert message["stream"] == "bookTicker.BTC_USDC_PERP"
            assert [r.method for r in sim.subscriptions(1)] == [
                "SUBSCRIBE",
                "SUBSCRIBE",
                "UNSUBSCRIBE",
                "SUBSCRIBE",
            ]


# -- determinism -----------------------------------------------------------------------------------


async def first_frames(seed: int, count: int) -> list[bytes]:
    streams = ("depth.SOL_USDC", "bookTicker.SOL_USDC", "trade.SOL_USDC", "depth.BTC_USDC_PERP")
    async with (
        open_simulator(config(seed=seed, realtime_merge_chance=0.1)) as sim,
        open_raw_ws(sim.ws_url) as ws,
    ):
        await subscribe(sim, ws, *streams)
        for _ in range(4):
            await sim.step("SOL_USDC", 30)
            await sim.step("BTC_USDC_PERP", 30)
        return [await ws.receive_text() for _ in range(count)]


async def test_same_seed_gives_the_same_first_200_frames() -> None:
    with anyio.fail_after(GUARD):
        one = await first_frames(7, 200)
        two = await first_frames(7, 200)
        other = await first_frames(8, 200)
    assert one == two
    assert one != other


async def test_exports() -> None:
    import inspect

    import native_anyio.backpack.simulator as simulator

    public = {name for name in dir(simulator) if not name.startswith("_")}
    modules = {name for name in public if inspect.ismodule(getattr(simulator, name))}
    assert set(simulator.__all__) == public - modules - {"annotations"}
    assert sorted(simulator.__all__) == simulator.__all__
    for name in simulator.__all__:
        obj = getattr(simulator, name)
        assert obj.__module__ == "native_anyio.backpack.simulator"
        final = inspect.isclass(obj) and not issubclass(obj, BaseException)
        if final and sys.version_info >= (3, 11):  # typing.final sets __final__ from 3.11 on
            assert getattr(obj, "__final__", False), name


async def test_truth_queries_raise_for_unknown_input() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config(history=100)) as sim:
            await sim.step("SOL_USDC", 300)
            newest = sim.book("SOL_USDC").last_update_id
            assert sim.book_at("SOL_USDC", newest - 100) == sim.book_at("SOL_USDC", newest - 100)
            with pytest.raises(LookupError):
                sim.book_at("SOL_USDC", newest - 101)
            with pytest.raises(KeyError):
                sim.book("TON_USDC_PERP")  # closed: listed, not simulated
            with pytest.raises(KeyError):
                await sim.step("NOPE")


async def test_subscriptions_per_connection_are_bounded() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config(max_subscriptions=3)) as sim, open_raw_ws(sim.ws_url) as ws:
            await ws.subscribe(*(f"trade.X{i}_USDC" for i in range(5)))
            await ws.subscribe("depth.SOL_USDC")
            await sim.wait_subscribed("trade.X0_USDC")
            await ws.send_frame(OP_PING, b"")
            await ws.receive()  # the pong: both requests were handled
            assert sim.connection(1).subscriptions == {"trade.X0_USDC", "trade.X1_USDC", "trade.X2_USDC"}


# -- lifecycle -------------------------------------------------------------------------------------


async def test_serve_simulator_reports_urls_and_stops_when_cancelled() -> None:
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            sim = await tg.start(serve_simulator, config())
            assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", sim.ws_url)
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sim.rest_url)
            async with httpx.AsyncClient(base_url=sim.rest_url) as client:
                assert (await client.get("/api/v1/ping")).text == "pong"
            async with open_raw_ws(sim.ws_url) as ws:
                await ws.send_frame(OP_PING, b"x")
                assert (await ws.receive()).opcode == OP_PONG
            tg.cancel_scope.cancel()
        with pytest.raises(OSError):
            async with open_raw_ws(sim.ws_url):
                pass


async def test_body_exception_propagates_unchanged() -> None:
    with anyio.fail_after(GUARD), pytest.raises(ZeroDivisionError):
        async with open_simulator(config()):
            raise ZeroDivisionError


async def test_connection_limit_and_records() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config(max_connections=1)) as sim:
            async with open_raw_ws(sim.ws_url + "/stream") as ws:
                with pytest.raises(HandshakeRejected) as info:
                    async with open_raw_ws(sim.ws_url):
                        pass
                assert info.value.status_code == 503
                await subscribe(sim, ws, "trade.SOL_USDC")
                await ws.close(1000)
                await ws.wait_closed()
                assert ws.close_code == 1000
            info_1 = await sim.wait_closed(1)
            assert (info_1.path, info_1.open, info_1.close_code_received) == ("/stream", False, 1000)
            assert info_1.close_reason == "client closed"
            assert info_1.subscriptions == {"trade.SOL_USDC"}
            async with open_raw_ws(sim.ws_url) as ws:  # the slot is free again
                await ws.send_frame(OP_PING, b"")
                assert (await ws.receive()).opcode == OP_PONG
            assert [c.id for c in sim.connections] == [1, 2]


async def test_non_websocket_requests_get_400() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim:
            port = int(sim.ws_url.rsplit(":", 1)[1])
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await stream.receive()).startswith(b"HTTP/1.1 400 ")


async def test_protocol_violation_gets_a_close_frame() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await ws.send_raw(b"\x81\x05hello")  # an unmasked client frame: RFC 6455 says 1002
            await ws.wait_closed()
            assert ws.close_code == 1002
            assert (await sim.wait_closed(1)).close_code_sent == 1002


async def test_text_messages_are_answered_in_order() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            for _ in range(3):
                await ws.send_text(b"x")
            frames = [await ws.receive() for _ in range(3)]
            assert [(f.opcode, f.payload) for f in frames] == [(OP_TEXT, PARSE_ERROR)] * 3
            assert sim.subscriptions() == ()


async def test_oversize_client_message_gets_1009() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config(max_message_size=100)) as sim, open_raw_ws(sim.ws_url) as ws:
            await ws.send_text(b"x" * 101)
            await ws.wait_closed()
            assert ws.close_code == 1009
            info = await sim.wait_closed(1)
            assert (info.close_code_sent, info.close_reason) == (1009, "message too big")
