"""
Every fault of ``sim.faults``, observed from the client side and checked in ``sim.fault_log``;
faults on the wire never change the ground truth.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from native_anyio import HandshakeRejected, MessageTooBig
from native_anyio._frames import OP_CLOSE, OP_PING, OP_PONG
from native_anyio.backpack.simulator import (
    RawWsClient,
    Simulator,
    SimulatorConfig,
    open_raw_ws,
    open_simulator,
)

GUARD = 20
SYMBOL, DEPTH = "SOL_USDC", "depth.SOL_USDC"


def fixed_clock() -> float:
    return 1_788_367_430.25


def config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "symbols": ("SOL_USDC", "BTC_USDC_PERP"),
        "seed": 4,
        "auto": False,
        "clock": fixed_clock,
        "ping_interval": None,
        "realtime_merge_chance": 0.0,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


async def depth_client(sim: Simulator, ws: RawWsClient, conn_id: int = 1, stream: str = DEPTH) -> None:
    await ws.subscribe(stream)
    await sim.wait_subscribed(stream, conn_id=conn_id)


async def frames_until(ws: RawWsClient, last_u: int, stream: str = DEPTH) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while not out or out[-1]["u"] < last_u:
        out.append(await ws.receive_stream(stream))
    return out


async def step_and_read(sim: Simulator, ws: RawWsClient, n: int) -> list[dict[str, Any]]:
    await sim.step(SYMBOL, n)
    return await frames_until(ws, sim.book(SYMBOL).last_update_id)


def ids(frames: list[dict[str, Any]]) -> list[int]:
    return [f["U"] for f in frames]


def records(sim: Simulator, kind: str) -> list[Any]:
    return [r for r in sim.fault_log if r.kind == kind]


# -- depth faults ----------------------------------------------------------------------------------


async def test_drop_delta_makes_a_gap_but_not_in_the_truth() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await depth_client(sim, ws)
            start = sim.book(SYMBOL).last_update_id
            sim.faults.drop_delta(SYMBOL)
            frames = await step_and_read(sim, ws, 5)
    assert ids(frames) == [start + 2, start + 3, start + 4, start + 5]
    (record,) = records(sim, "drop_delta")
    assert (record.conn_id, record.symbol, record.detail["U"]) == (1, SYMBOL, start + 1)
    assert sim.book_at(SYMBOL, start + 1) != sim.book_at(SYMBOL, start)  # applied to the truth


async def test_duplicate_reorder_and_jump() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await depth_client(sim, ws)
            s = sim.book(SYMBOL).last_update_id
            sim.faults.duplicate_delta(SYMBOL)
            duplicated = await step_and_read(sim, ws, 2)
            sim.faults.reorder_deltas(SYMBOL)
            await sim.step(SYMBOL, 4)
            reordered = await frames_until(ws, s + 6)
            sim.faults.jump_sequence(SYMBOL, 3)
            jumped = await step_and_read(sim, ws, 5)
    assert ids(duplicated) == [s + 1, s + 1, s + 2]
    assert duplicated[0] == duplicated[1]
    assert ids(reordered) == [s + 4, s + 3, s + 5, s + 6]  # the next two swapped
    assert ids(jumped) == [s + 10, s + 11]  # s+7..s+9 skipped: U jumps by 3
    assert [r.kind for r in sim.fault_log] == ["duplicate_delta", "reorder_deltas", "jump_sequence"]
    assert sim.fault_log[2].detail["k"] == 3


async def test_corrupt_level_keeps_the_ids_but_lies_about_a_size() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await depth_client(sim, ws)
            start = sim.book(SYMBOL).last_update_id
            sim.faults.corrupt_level(SYMBOL)
            frames = await step_and_read(sim, ws, 3)
    assert ids(frames) == [start + 1, start + 2, start + 3]  # U/u intact
    (record,) = records(sim, "corrupt_level")
    first = frames[0]
    level = (first["b"] or first["a"])[0]
    assert level == [record.detail["price"], record.detail["size"]]
    truth = sim.book_at(SYMBOL, start + 1)
    true_size = dict(truth.bids + truth.asks).get(Decimal(level[0]), Decimal(0))
    assert Decimal(level[1]) == true_size + 7 * Decimal("0.01")


async def test_faults_target_one_connection_all_or_the_next() -> None:
    with anyio.fail_after(GUARD):
        async with (
            open_simulator(config()) as sim,
            open_raw_ws(sim.ws_url) as one,
            open_raw_ws(sim.ws_url) as two,
        ):
            await depth_client(sim, one, 1)
            await depth_client(sim, two, 2)
            s = sim.book(SYMBOL).last_update_id
            sim.faults.drop_delta(SYMBOL, conn=1)
            sim.faults.drop_delta("BTC_USDC_PERP")  # another symbol: no effect here
            await sim.step(SYMBOL, 3)
            assert ids(await frames_until(one, s + 3)) == [s + 2, s + 3]
            assert ids(await frames_until(two, s + 3)) == [s + 1, s + 2, s + 3]
            sim.faults.duplicate_delta(SYMBOL, conn="next")
            sim.faults.drop_delta(SYMBOL)  # "all": each open connection drops its next frame
            async with open_raw_ws(sim.ws_url) as three:
                await depth_client(sim, three, 3)
                await sim.step(SYMBOL, 2)
                assert ids(await frames_until(three, s + 5)) == [s + 4, s + 4, s + 5]
            assert ids(await frames_until(one, s + 5)) == [s + 5]
            assert ids(await frames_until(two, s + 5)) == [s + 5]
    assert [(r.kind, r.conn_id) for r in sim.fault_log] == [
        ("drop_delta", 1),
        ("drop_delta", 1),
        ("drop_delta", 2),
        ("duplicate_delta", 3),
    ]
    with pytest.raises(KeyError):
        sim.faults.stop_data(conn=99)


async def test_clear_disarms_pending_faults() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await depth_client(sim, ws)
            s = sim.book(SYMBOL).last_update_id
            sim.faults.drop_delta(SYMBOL, count=2)
            sim.faults.stop_data()
            sim.faults.clear()
            assert ids(await step_and_read(sim, ws, 2)) == [s + 1, s + 2]
            assert [r.kind for r in sim.fault_log] == ["stop_data"]


# -- connection faults -----------------------------------------------------------------------------


async def test_stop_data_still_answers_pings_then_resumes() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await depth_client(sim, ws)
            s = sim.book(SYMBOL).last_update_id
            sim.faults.stop_data()
            await sim.step(SYMBOL, 3)
            await ws.send_frame(OP_PING, b"alive?")
            frame = await ws.receive()  # the pong comes first: no data was queued before it
            assert (frame.opcode, frame.payload) == (OP_PONG, b"alive?")
            sim.faults.resume_data(conn=1)
            assert ids(await step_and_read(sim, ws, 1)) == [s + 4]
    assert [r.kind for r in sim.fault_log] == ["stop_data", "resume_data"]


@pytest.mark.virtual_time
async def test_stop_pinging_and_resume() -> None:
    with anyio.fail_after(100):
        async with (
            open_simulator(config(ping_interval=1.0, pong_timeout=2.0)) as sim,
            open_raw_ws(sim.ws_url) as ws,
        ):
            t0 = anyio.current_time()
            assert (await ws.receive()).at == pytest.approx(t0 + 1)
            sim.faults.stop_pinging()
            with anyio.move_on_after(4.5):
                await ws.receive()
                pytest.fail("no ping expected")
            sim.faults.resume_pinging()  # at t0+5.5: the cadence continues at t0+6
            frame = await ws.receive()
            assert frame.opcode == OP_PING
            assert frame.at == pytest.approx(t0 + 6)
            assert sim.connection(1).open


@pytest.mark.virtual_time
async def test_blackhole_keeps_the_socket_open_and_silent() -> None:
    with anyio.fail_after(100):
        async with (
            open_simulator(config(ping_interval=1.0, pong_timeout=2.0)) as sim,
            open_raw_ws(sim.ws_url) as ws,
        ):
            await depth_client(sim, ws)
            sim.faults.blackhole(conn=1)
            await sim.step(SYMBOL, 5)
            await ws.send_frame(OP_PING, b"x")
            with anyio.move_on_after(30):
                frame = await ws.receive()
                pytest.fail(f"a blackholed server sent {frame}")
            assert not ws.eof
            info = sim.connection(1)
            assert (info.open, info.close_code_sent) == (True, None)
    assert [r.kind for r in sim.fault_log] == ["blackhole"]


async def test_close_1001_then_accept_again() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim:
            async with open_raw_ws(sim.ws_url) as ws:
                await depth_client(sim, ws)
                sim.faults.close()
                frame = await ws.receive()
                assert (frame.opcode, frame.payload[:2]) == (OP_CLOSE, (1001).to_bytes(2, "big"))
                await ws.wait_closed()
            info = await sim.wait_closed(1)
            assert (info.close_code_sent, info.close_code_received) == (1001, 1001)
            assert info.close_reason == "server shutting down"
            async with open_raw_ws(sim.ws_url) as ws:
                await depth_client(sim, ws, 2)
                await sim.step(SYMBOL)
                assert (await ws.receive_json())["stream"] == DEPTH
    assert [(r.kind, r.conn_id, r.detail["code"]) for r in sim.fault_log] == [("close", 1, 1001)]


async def test_drop_and_drop_after_accept_close_without_a_close_frame() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim:
            sim.faults.drop_after_accept(2)
            for _ in range(2):
                async with open_raw_ws(sim.ws_url) as ws:  # the handshake completes...
                    await ws.wait_closed()  # ...then EOF, with no close frame
                    assert ws.close_code is None
            async with open_raw_ws(sim.ws_url) as ws:
                await ws.send_frame(OP_PING, b"")
                assert (await ws.receive()).opcode == OP_PONG
                sim.faults.drop(conn=3)
                await ws.wait_closed()
                assert ws.close_code is None
            assert [c.close_reason for c in sim.connections] == ["drop after accept"] * 2 + [
                "dropped by fault"
            ]
    assert [r.kind for r in sim.fault_log] == ["drop_after_accept", "drop_after_accept", "drop"]


async def test_reject_handshake() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim:
            sim.faults.reject_handshake(status=429)
            with pytest.raises(HandshakeRejected) as info:
                async with open_raw_ws(sim.ws_url):
                    pass
            assert info.value.status_code == 429
            async with open_raw_ws(sim.ws_url):
                pass
    assert [(r.kind, r.detail["status"]) for r in sim.fault_log] == [("reject_handshake", 429)]


async def test_malformed_and_oversize_frames() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim:
            async with open_raw_ws(sim.ws_url, max_message_size=4 << 20) as ws:
                sim.faults.send_malformed()
                text = await ws.receive_text()
                with pytest.raises(msgspec.DecodeError):
                    msgspec.json.decode(text)
                sim.faults.send_oversize(2 << 20)
                big = await ws.receive_text()
                assert len(big) == 2 << 20
                assert msgspec.json.decode(big)["stream"] == "oversize"
            async with open_raw_ws(sim.ws_url) as ws:  # a client with the default 1 MiB limit
                sim.faults.send_oversize(2 << 20, conn=2)
                with pytest.raises(MessageTooBig):
                    await ws.receive()
    assert [(r.kind, r.detail["size"]) for r in sim.fault_log] == [
        ("send_malformed", len(text)),
        ("send_oversize", 2 << 20),
        ("send_oversize", 2 << 20),
    ]


async def test_cut_frame_mid_way_then_drop() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, open_raw_ws(sim.ws_url) as ws:
            await depth_client(sim, ws)
            sim.faults.cut_frame(conn=1, at=20)
            await sim.step(SYMBOL, 3)
            await ws.wait_closed()
            assert (ws.buffered, ws.close_code) == (20, None)
    (record,) = records(sim, "cut_frame")
    assert record.detail["sent"] == 20
    assert record.detail["size"] > 20


async def test_tag_frames_with_the_connection_id() -> None:
    with anyio.fail_after(GUARD):
        async with (
            open_simulator(config()) as sim,
            open_raw_ws(sim.ws_url) as one,
            open_raw_ws(sim.ws_url) as two,
        ):
            await depth_client(sim, one, 1)
            await depth_client(sim, two, 2)
            sim.faults.tag_frames(conn=2)
            await sim.step(SYMBOL)
            plain, tagged = await one.receive_text(), await two.receive_text()
    assert plain.startswith(b'{"data":')
    assert tagged == b'{"conn":2,' + plain[1:]  # the only difference, keys still sorted


async def test_slow_consumer_is_dropped() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config(max_outbox=50)) as sim, open_raw_ws(sim.ws_url) as ws:
            await depth_client(sim, ws)
            await sim.step(SYMBOL, 500)  # queued synchronously: the outbox overflows at once
            info = await sim.wait_closed(1)
            assert info.close_reason == "slow consumer"


# -- REST faults -----------------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_delay_rest_and_fail_rest() -> None:
    with anyio.fail_after(100):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            sim.faults.delay_rest("/api/v1/depth", 3.0, count=1)
            t0 = anyio.current_time()
            assert (await client.get("/api/v1/depth?symbol=SOL_USDC")).status_code == 200
            assert anyio.current_time() - t0 == pytest.approx(3.0, abs=1e-6)
            t1 = anyio.current_time()
            await client.get("/api/v1/depth?symbol=SOL_USDC")
            assert anyio.current_time() == pytest.approx(t1, abs=1e-6)  # consumed
            sim.faults.fail_rest("/api/v1/depth", status=503, count=2)
            sim.faults.fail_rest("/api/v1/ticker", drop=True)
            answers = [await client.get("/api/v1/depth?symbol=SOL_USDC") for _ in range(3)]
            assert [(a.status_code, a.text[:11]) for a in answers[:2]] == [(503, "service una")] * 2
            assert answers[2].status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/api/v1/ticker?symbol=SOL_USDC")
    assert [r.kind for r in sim.fault_log] == ["delay_rest", "fail_rest", "fail_rest", "fail_rest"]


async def test_snapshot_lag_and_lead() -> None:
    with anyio.fail_after(GUARD):
        async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
            await sim.step(SYMBOL, 100)
            u = sim.book(SYMBOL).last_update_id

            async def snapshot() -> tuple[int, list[tuple[Decimal, Decimal]]]:
                body = (await client.get("/api/v1/depth", params={"symbol": SYMBOL})).json()
                return int(body["lastUpdateId"]), [
                    (Decimal(p), Decimal(q)) for p, q in reversed(body["bids"])
                ]

            sim.faults.snapshot_offset(SYMBOL, 9, count=1)
            lag_id, lag_bids = await snapshot()
            assert (lag_id, lag_bids) == (u - 9, list(sim.book_at(SYMBOL, u - 9).bids))
            assert (await snapshot())[0] == u  # count=1: back to normal
            sim.faults.snapshot_offset(SYMBOL, -5)
            lead_id, lead_bids = await snapshot()
            assert lead_id == u + 5
            assert sim.book(SYMBOL).last_update_id == u
            async with open_raw_ws(sim.ws_url) as ws:
                await depth_client(sim, ws)
                await sim.step(SYMBOL, 5)  # the socket catches up with the snapshot it already served
                frames = await frames_until(ws, u + 5)
            assert ids(frames) == [u + 1, u + 2, u + 3, u + 4, u + 5]
            assert list(sim.book(SYMBOL).bids) == lead_bids
    assert [(r.kind, r.detail["lastUpdateId"], r.detail["socket"]) for r in sim.fault_log] == [
        ("snapshot_lag", u - 9, u),
        ("snapshot_lead", u + 5, u),
    ]
