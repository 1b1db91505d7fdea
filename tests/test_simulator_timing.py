"""
The simulator's clocks, in virtual time: server pings and the pong timeout, the 1 s periodic
streams, the 60 s open interest and kline closes. Every time below is exact.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from native_anyio._frames import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from native_anyio.backpack.simulator import (
    SimulatorConfig,
    open_raw_ws,
    open_simulator,
    virtual_wall_clock,
)

pytestmark = pytest.mark.virtual_time

ALIGNED = 1_788_367_380.0  # 2026-09-02T16:43:00Z, a minute boundary


def at(t: float) -> Any:
    """An exact virtual time (the tolerance only absorbs float rounding)."""
    return pytest.approx(t, abs=1e-6)


def config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {"symbols": ("SOL_USDC", "BTC_USDC_PERP"), "seed": 3, "auto": False}
    values.update(overrides)
    return SimulatorConfig(**values)


async def test_server_pings_every_60s_and_pongs_keep_the_connection() -> None:
    with anyio.fail_after(1000):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            t0 = anyio.current_time()
            frames = [await ws.receive() for _ in range(3)]
            assert [(f.opcode, f.at) for f in frames] == [(OP_PING, at(t0 + 60 * k)) for k in (1, 2, 3)]
            await ws.send_frame(OP_PING, b"client")  # the client's own ping is answered in kind
            pong = await ws.receive()
            assert (pong.opcode, pong.payload, pong.at) == (OP_PONG, b"client", at(t0 + 180))
            info = sim.connection(1)
            assert (info.open, info.pings_sent, info.pongs_received) == (True, 3, 3)


@pytest.mark.parametrize(("interval", "timeout"), [(60.0, 120.0), (1.0, 2.0)])
async def test_unanswered_pings_close_with_1011(interval: float, timeout: float) -> None:
    with anyio.fail_after(1000):
        async with open_simulator(config(ping_interval=interval, pong_timeout=timeout)) as sim:
            async with open_raw_ws(sim.ws_url) as ws:
                t0 = anyio.current_time()
                ws.answer_pings = False
                frames = [await ws.receive() for _ in range(3)]
                await ws.wait_closed()
            assert [(f.opcode, f.at) for f in frames] == [
                (OP_PING, at(t0 + interval)),
                (OP_PING, at(t0 + 2 * interval)),
                (OP_CLOSE, at(t0 + interval + timeout)),  # the oldest unanswered ping + the timeout
            ]
            assert ws.close_code == 1011
            info = await sim.wait_closed(1)
            assert (info.close_code_sent, info.close_reason, info.pongs_received) == (1011, "pong timeout", 0)
            assert info.closed_at == at(t0 + interval + timeout)


async def test_a_late_pong_answers_every_outstanding_ping() -> None:
    with anyio.fail_after(1000):
        async with (
            open_simulator(config(ping_interval=1.0, pong_timeout=2.0)) as sim,
            open_raw_ws(sim.ws_url) as ws,
        ):
            t0 = anyio.current_time()
            ws.answer_pings = False
            await ws.receive()
            await ws.receive()  # two pings unanswered (t0+1, t0+2)
            await ws.send_frame(OP_PONG, b"")  # at t0+2, before the t0+3 deadline
            frames = [await ws.receive() for _ in range(2)]
            assert [(f.opcode, f.at) for f in frames] == [(OP_PING, at(t0 + k)) for k in (3, 4)]
            assert sim.connection(1).open  # the t0+3 deadline passed: the pong answered both pings
            close = await ws.receive()
            assert (close.opcode, close.at) == (OP_CLOSE, at(t0 + 5))  # the ping of t0+3 went unanswered


async def test_periodic_streams_cadence_and_shapes() -> None:
    streams = (
        "ticker.SOL_USDC",
        "markPrice.BTC_USDC_PERP",
        "openInterest.BTC_USDC_PERP",
        "ticker.BTC_USDC_PERP",
    )
    with anyio.fail_after(1000):
        t0 = anyio.current_time()
        cfg = config(auto=True, ping_interval=None, clock=virtual_wall_clock(ALIGNED - t0))
        async with open_simulator(cfg) as sim, open_raw_ws(sim.ws_url) as ws:
            await ws.subscribe(*streams)
            seen: dict[str, list[tuple[float, dict[str, Any]]]] = {s: [] for s in streams}
            with anyio.move_on_after(61.5):
                while True:
                    frame = await ws.receive()
                    if frame.opcode == OP_TEXT:
                        message = frame.json()
                        seen[message["stream"]].append((frame.at, message["data"]))
    assert [t for t, _ in seen["ticker.SOL_USDC"]] == [at(t0 + k) for k in range(1, 62)]
    assert [t for t, _ in seen["markPrice.BTC_USDC_PERP"]] == [at(t0 + k) for k in range(1, 62)]
    assert [t for t, _ in seen["openInterest.BTC_USDC_PERP"]] == [at(t0 + 60)]
    ticker = seen["ticker.SOL_USDC"][-1][1]
    assert set(ticker) == {"E", "V", "c", "e", "h", "l", "n", "o", "s", "v"}
    assert ticker["E"] == int((ALIGNED + 61) * 1_000_000)
    assert isinstance(ticker["n"], int)
    mark = seen["markPrice.BTC_USDC_PERP"][0][1]
    assert set(mark) == {"E", "T", "e", "f", "i", "n", "p", "s"}
    assert mark["n"] == int(ALIGNED // 3600 + 1) * 3_600_000  # next funding, milliseconds
    interest = seen["openInterest.BTC_USDC_PERP"][0][1]
    assert set(interest) == {"E", "e", "o", "s"}


async def test_klines_update_at_most_once_a_second_and_close_with_a_final() -> None:
    with anyio.fail_after(1000):
        t0 = anyio.current_time()
        cfg = config(auto=True, ping_interval=None, clock=virtual_wall_clock(ALIGNED - t0))
        async with open_simulator(cfg) as sim, open_raw_ws(sim.ws_url) as ws:
            await ws.subscribe("kline.1m.SOL_USDC", "kline.1s.SOL_USDC")
            frames: list[tuple[float, str, dict[str, Any]]] = []
            with anyio.move_on_after(62.5):
                while True:
                    frame = await ws.receive()
                    message = frame.json()
                    frames.append((frame.at, message["stream"], message["data"]))
    minute = [(t, d) for t, s, d in frames if s == "kline.1m.SOL_USDC"]
    times = [t for t, d in minute if not d["X"]]
    assert len(times) == len(set(times))  # at most one open-candle update per second...
    assert all(t == at(round(t)) for t, _ in minute)  # ...and everything on the 1 s clock
    finals = [(t, d) for t, d in minute if d["X"]]
    assert len(finals) == 1
    final_at, final = finals[0]
    assert final_at == at(t0 + 60)
    assert (final["t"], final["T"]) == ("2026-09-02T16:43:00", "2026-09-02T16:44:00")
    assert set(final) == {"E", "T", "X", "c", "e", "h", "l", "n", "o", "s", "t", "v"}
    assert final["n"] == max(d["n"] for _, d in minute if d["t"] == final["t"])
    assert minute[-1][1]["t"] == "2026-09-02T16:44:00"  # the next candle is open
    seconds = [d for _, s, d in frames if s == "kline.1s.SOL_USDC" and d["X"]]
    assert len(seconds) >= 55  # nearly every second had trades, and each closed once
    assert len({d["t"] for d in seconds}) == len(seconds)


async def test_liquidations_on_both_stream_names() -> None:
    with anyio.fail_after(100):
        async with open_simulator(config(ping_interval=None)) as sim, open_raw_ws(sim.ws_url) as ws:
            await ws.subscribe("liquidation", "liquidation.BTC_USDC_PERP", "liquidation.SOL_USDC")
            await sim.wait_subscribed("liquidation.SOL_USDC")
            await sim.step("SOL_USDC", 3000)  # spot: never liquidations
            await sim.step("BTC_USDC_PERP", 3000)
            first = (await ws.receive_json())["data"]
            second = (await ws.receive_json())["data"]
    assert first == second  # the same event on "liquidation" and "liquidation.BTC_USDC_PERP"
    assert set(first) == {"E", "S", "T", "e", "p", "q", "s"}
    assert (first["e"], first["s"], first["S"] in ("Bid", "Ask")) == ("liquidation", "BTC_USDC_PERP", True)
