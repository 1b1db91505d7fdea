"""
Session liveness against the real test server over loopback, in virtual time (properties A1-A5,
D3, E3 of ``reliability-properties.md``).

Every time asserted is exact: the clocks are virtual (asyncio-autojump, trio-autojump) and the
loopback round trip takes no virtual time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from _session_support import (
    Recorder,
    Timeline,
    at,
    config,
    consume,
    count,
    open_fds,
    settle,
)

from native_anyio import CloseReason, Connected, ConnectionLost, Disconnected, LivenessConfig, open_session
from native_anyio._frames import OP_PONG, encode_frame
from native_anyio.testing import ServerConnection, open_ws_server

if TYPE_CHECKING:
    from collections.abc import Sequence

pytestmark = pytest.mark.virtual_time


# ----------------------------------------------------------------------------------------- A1


@pytest.mark.parametrize("fault", ["no_pong", "blackhole"])
async def test_half_open_connection_is_declared_dead_at_ping_interval_plus_ping_timeout(fault: str) -> None:
    """
    A1: the server never answers pings (``no_pong``: it still reads; ``blackhole``: it neither
    reads nor writes). The connection is declared dead at exactly ping_interval + ping_timeout,
    closed at once (a close frame with 1011 is sent, but nobody waits for an unresponsive peer to
    answer it), and the reconnect starts on the backoff schedule.
    """

    async def handler(conn: ServerConnection) -> None:
        if fault == "no_pong":
            conn.answer_pings = False
        else:
            conn.blackhole()
        await anyio.sleep(100)

    rec = Recorder()
    cfg = config(liveness=LivenessConfig(ping_interval=5.0, ping_timeout=3.0), close_timeout=2.0)
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=cfg, hooks=[rec]):
                await server.wait_connections(2)

    first = server.connections[0]
    [failed_at] = rec.times("liveness_failed")
    assert failed_at - t0 == at(8.0)
    assert rec.fields("liveness_failed")[0]["kind"] == "ping_timeout"
    closed_at = 8.0  # no close_timeout wait for a peer that stopped answering
    assert rec.times("disconnected")[0] - t0 == at(closed_at)
    assert rec.fields("reconnect_scheduled")[0]["delay"] == 1.0
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(closed_at + 1.0)]
    if fault == "no_pong":
        assert [t - t0 for t, _ in first.pings] == [at(5.0)]
        assert first.client_close_code == 1011
        assert first.client_close_at is not None
        assert first.client_close_at - t0 == at(8.0)
        assert first.close_frames == 1
        assert first.frames_after_close == []


async def test_half_open_is_detected_even_while_a_send_is_blocked() -> None:
    """
    A1 under backpressure: the peer is blackholed and the application keeps sending until TCP
    backpressure blocks it. The blocked send must not stall the liveness check: the connection
    is still declared dead at ping_interval + ping_timeout, and the blocked send is released with
    ConnectionLost when the socket is closed.
    """

    async def handler(conn: ServerConnection) -> None:
        conn.blackhole()
        await anyio.sleep(1000)

    rec = Recorder()
    send_errors: list[BaseException] = []
    sent = 0
    cfg = config(liveness=LivenessConfig(ping_interval=5.0, ping_timeout=3.0), close_timeout=2.0)
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=cfg, hooks=[rec]) as session:
                await session.wait_connected()

                async def flood() -> None:
                    nonlocal sent
                    try:
                        for _ in range(100):  # 100 MB: far more than the socket buffers hold
                            await session.send("x" * 1_000_000)
                            sent += 1
                    except ConnectionLost as exc:
                        send_errors.append(exc)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood)
                    await server.wait_connections(2)

    assert rec.fields("liveness_failed")[0]["kind"] == "ping_timeout"
    assert rec.times("liveness_failed")[0] - t0 == at(8.0)
    # The close cannot be sent past the blocked send: it gives up after close_timeout.
    # No wait for the dead peer's answer; the best-effort close frame may itself be stuck behind
    # the blocked send (then close_timeout bounds it: 8 + 2), depending on the socket buffers.
    closed_after = rec.times("disconnected")[0] - t0
    assert 8.0 - 1e-6 <= closed_after <= 10.0 + 1e-6
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(closed_after + 1.0)]
    # The blocked send is released with ConnectionLost. (anyio 4.11 on asyncio does not apply
    # backpressure to sends at all: the transport buffers everything, nothing blocks or fails.)
    assert len(send_errors) == (0 if sent == 100 else 1)


async def test_half_open_is_detected_while_the_subscription_replay_is_blocked() -> None:
    """
    A1 during the replay: the peer goes silent right after the handshake and the replay (64
    frames of 1 MB, far more than any socket buffer holds) blocks. Liveness already runs: the
    connection is declared dead on schedule instead of hanging in the replay. No Connected event
    was announced for it, so none of Disconnected is either (the pairs stay balanced).
    """

    async def handler(conn: ServerConnection) -> None:
        conn.blackhole()
        await anyio.sleep(1000)

    class HugeSubscriptions:
        def subscribe_messages(self, streams: Sequence[str]) -> list[str]:
            return ["x" * 1_000_000] * 64

        def unsubscribe_messages(self, streams: Sequence[str]) -> list[str]:
            return []

    rec = Recorder()
    cfg = config(liveness=LivenessConfig(ping_interval=5.0, ping_timeout=3.0), close_timeout=2.0)
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(
                server.url, subscriptions=["a"], config=cfg, hooks=[rec], protocol=HugeSubscriptions()
            ) as session:
                await server.wait_connections(2)
        leftovers = [item async for item in session]

    assert rec.fields("liveness_failed")[0]["kind"] == "ping_timeout"
    assert rec.times("liveness_failed")[0] - t0 == at(8.0)
    # No wait for the peer's answer; but when the replay filled the socket buffer even the
    # best-effort close frame cannot go out, which close_timeout bounds (8 + 2).
    closed_after = rec.times("disconnected")[0] - t0
    assert 8.0 - 1e-6 <= closed_after <= 10.0 + 1e-6
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(closed_after + 1.0)]
    # Whether a send "blocks" depends on the transport's buffering (anyio 4.11 on asyncio queues
    # the whole replay in user space, later versions wait for the socket): either way the
    # connection is declared dead on schedule, and Connected/Disconnected stay in pairs.
    connected = [i for i in leftovers if isinstance(i, Connected)]
    disconnected = [i for i in leftovers if isinstance(i, Disconnected)]
    assert len(connected) == len(disconnected) == rec.names().count("connected")


# ----------------------------------------------------------------------------------------- A2


async def test_server_ping_loss_reconnects_at_one_and_a_half_times_the_cadence() -> None:
    """A2: the server pings every 1 s, three times, then stops but keeps the socket open."""

    async def handler(conn: ServerConnection) -> None:
        if conn.id == 1:
            for _ in range(3):
                await anyio.sleep(1.0)
                await conn.send_ping(b"srv")
        await anyio.sleep(100)

    rec = Recorder()
    cfg = config(liveness=LivenessConfig(ping_interval=None, server_ping_interval=1.0))
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=cfg, hooks=[rec]) as session:
                await server.wait_connections(2)
                stats = session.statistics()

    first = server.connections[0]
    # Every server ping was answered at once (the reader answers, not the consumer).
    assert [(t - t0, p) for t, p in first.pongs] == [(at(1.0), b"srv"), (at(2.0), b"srv"), (at(3.0), b"srv")]
    [failed_at] = rec.times("liveness_failed")
    assert rec.fields("liveness_failed")[0]["kind"] == "server_ping_lost"
    assert failed_at - t0 == at(3.0 + 1.5)
    assert rec.times("disconnected")[0] - t0 == at(4.5)
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(5.5)]
    assert stats.server_pings == 3
    assert stats.last_close_reason is not None
    assert stats.last_close_reason.kind == "server_ping_lost"


async def test_server_pings_are_answered_while_the_consumer_stalls() -> None:
    """
    D3 / A2: the server pings every 1 s with a 2 s pong deadline and streams data; the consumer
    does not read for 10 s. Every ping is answered at once; the server never times out.
    """
    sent: list[str] = []

    async def handler(conn: ServerConnection) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.ping_forever, 1.0, 2.0)
            for i in range(400):
                text = f"{i:05d}" + "x" * 200
                await conn.send_text(text)
                sent.append(text)
                await anyio.sleep(0.025)
            await anyio.sleep(100)

    rec = Recorder()
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=config(), hooks=[rec]) as session:
                await session.wait_connected()
                await anyio.sleep(10.5)  # the stalled consumer
                stalled = session.statistics()
                timeline = Timeline()
                await consume(session, timeline, count(bytes, 400))
                await anyio.sleep_until(t0 + 12.5)

    assert server.ping_timeouts == []
    [conn] = server.connections
    # Pings at 1, 2, ..., 12, each answered in the same instant (virtual time: zero RTT).
    assert [t - t0 for t, _ in conn.pongs] == [at(float(n)) for n in range(1, 13)]
    assert stalled.server_pings >= 10
    assert stalled.queue_depth == 400  # everything read while stalled, nothing lost
    assert timeline.messages == [s.encode() for s in sent]
    assert timeline.disconnected() == []
    assert len(server.attempt_times) == 1


# ----------------------------------------------------------------------------------------- A3


async def test_stale_stream_is_detected_at_exactly_idle_timeout() -> None:
    """
    A3: the server answers every ping but sends one message at t=0 and then no data. The
    connection is closed as ``idle`` at exactly t=idle_timeout; the pongs did not reset the timer.
    """

    async def handler(conn: ServerConnection) -> None:
        await conn.send_text("hello")
        await anyio.sleep(100)

    rec = Recorder()
    cfg = config(liveness=LivenessConfig(ping_interval=1.0, ping_timeout=1.0, idle_timeout=5.0))
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=cfg, hooks=[rec]) as session:
                timeline = Timeline()
                await consume(session, timeline, count(Connected, 2))

    first = server.connections[0]
    assert [t - t0 for t, _ in first.pings] == [at(1.0), at(2.0), at(3.0), at(4.0)]
    assert len(first.pongs) == 0  # the client sent no pongs: the server never pinged
    [kind] = [f["kind"] for f in rec.fields("liveness_failed")]
    assert kind == "idle"
    assert rec.times("liveness_failed")[0] - t0 == at(5.0)
    assert timeline.plain()[:3] == [Connected(1, server.url), b"hello", timeline.disconnected()[0]]
    assert timeline.disconnected()[0].reason.kind == "idle"
    # Data arrived on that connection, so the backoff was reset: the next attempt is 1 s later.
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(6.0)]


async def test_quiet_but_alive_stream_never_false_fires() -> None:
    """A3: a message every 4.5 s for ten minutes with idle_timeout=5 s: one connection, no alarm."""
    n = 133  # 133 * 4.5 s = 598.5 s

    async def handler(conn: ServerConnection) -> None:
        for i in range(n):
            await anyio.sleep(4.5)
            await conn.send_text(str(i))
        await anyio.sleep(100)

    rec = Recorder()
    cfg = config(liveness=LivenessConfig(ping_interval=10.0, ping_timeout=5.0, idle_timeout=5.0))
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(700):
            async with open_session(server.url, config=cfg, hooks=[rec]) as session:
                timeline = Timeline()
                await consume(session, timeline, count(bytes, n))
                stats = session.statistics()

    assert timeline.messages == [str(i).encode() for i in range(n)]
    assert timeline.time_of(b"132") - t0 == at(598.5)
    assert timeline.disconnected() == []
    assert "liveness_failed" not in rec.names()
    assert len(server.attempt_times) == 1
    assert stats.pings_sent == stats.pongs_matched == 59


# ----------------------------------------------------------------------------------------- A4


async def test_planned_close_1001_reconnects_without_escalating_and_resubscribes_once() -> None:
    """
    A4: the server closes with 1001 five times (after data each time), then stays up. The close
    handshake completes at once, every reconnect waits the *initial* delay (data reset the
    backoff), each connection gets the subscription set exactly once, and nothing is alarming.
    """

    async def handler(conn: ServerConnection) -> None:
        await conn.wait_message(1)
        await conn.send_text(f"data {conn.id}")
        if conn.id <= 5:
            await conn.close(1001, "server restart")
        else:
            await anyio.sleep(100)

    rec = Recorder()
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(
                server.url, subscriptions=["depth.A", "trade.B"], config=config(), hooks=[rec]
            ) as s:
                timeline = Timeline()
                await consume(s, timeline, count(bytes, 6))

    subscribe = '{"method":"SUBSCRIBE","params":["depth.A","trade.B"]}'
    for conn in server.connections:
        assert conn.received == [subscribe]
    for conn in server.connections[:5]:
        assert conn.client_close_code == 1001  # the client echoed the close: handshake completed
        assert conn.close_frames == 1
    assert [t - t0 for t in server.attempt_times] == [at(float(k)) for k in range(6)]
    assert [f["delay"] for f in rec.fields("reconnect_scheduled")] == [1.0] * 5
    reasons = [d.reason for d in timeline.disconnected()]
    assert reasons == [CloseReason("going_away", 1001, "server restart")] * 5
    # Each Disconnected came at the instant of the close: nothing waited for a timeout.
    assert [timeline.time_of(d) - t0 for d in timeline.disconnected()] == [at(float(k)) for k in range(5)]
    assert timeline.messages == [f"data {k}".encode() for k in range(1, 7)]
    assert not [name for name in rec.names() if "error" in name or "failed" in name]


# ----------------------------------------------------------------------------------------- A5


async def test_handshake_timeout_aborts_the_attempt_and_backs_off_without_leaking() -> None:
    """
    A5: the server accepts TCP but never answers the upgrade. Each attempt is aborted at exactly
    handshake_timeout and followed by the backoff delay; once the server answers, the session
    connects. No file descriptor is left behind.
    """

    async def handler(conn: ServerConnection) -> None:
        await conn.send_text("hi")
        await anyio.sleep(100)

    rec = Recorder()
    fds_before = open_fds()
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        server.handshake = "stall"
        with anyio.fail_after(120):
            async with open_session(server.url, config=config(handshake_timeout=3.0), hooks=[rec]) as session:
                await anyio.sleep_until(t0 + 20.0)  # four stalled attempts: 0, 4, 9, 16
                server.handshake = "accept"
                timeline = Timeline()
                await consume(session, timeline, count(bytes, 1))
        await settle()
    await settle()

    # attempt k+1 = attempt k + handshake_timeout + backoff(k); backoff 1, 2, 4, 8
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(4.0), at(9.0), at(16.0), at(27.0)]
    assert [f["reason"] for f in rec.fields("reconnect_scheduled")] == [
        "handshake: handshake timed out after 3 s"
    ] * 4
    assert timeline.time_of(timeline.connected()[0]) - t0 == at(27.0)
    assert open_fds() == fds_before


# ----------------------------------------------------------------------------------------- E3


async def test_unsolicited_and_duplicate_pongs_are_harmless() -> None:
    """
    E3: 1,000 unsolicited pongs, then every client ping answered twice, and a server ping with a
    125-byte payload. Nothing breaks, the counters say what happened, and when the server stops
    answering, the ping timeout still fires on schedule.
    """
    answered = 5

    async def handler(conn: ServerConnection) -> None:
        if conn.id > 1:
            await anyio.sleep(100)
            return
        conn.answer_pings = False
        await conn.send_raw(b"".join(_pong(f"unsolicited {i}".encode()) for i in range(1000)))
        await conn.send_ping(b"p" * 125)
        await conn.send_text("ok")
        for n in range(1, answered + 1):
            payload = await conn.wait_ping(n)
            await conn.send_pong(payload)
            await conn.send_pong(payload)
        # The 6th ping gets only a stale answer (the 5th ping's payload) and junk: not a pong.
        await conn.wait_ping(answered + 1)
        await conn.send_pong(payload)
        await conn.send_pong(b"junk")
        await anyio.sleep(100)

    rec = Recorder()
    cfg = config(liveness=LivenessConfig(ping_interval=1.0, ping_timeout=0.5))
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=cfg, hooks=[rec]) as session:
                timeline = Timeline()
                await consume(session, timeline, count(bytes, 1))
                await anyio.sleep_until(t0 + 6.25)  # the 6th ping (t=6) is outstanding
                stats = session.statistics()
                await server.wait_connections(2)

    first = server.connections[0]
    assert timeline.messages == [b"ok"]
    assert first.pongs == [(at(t0), b"p" * 125)]
    assert (stats.pings_sent, stats.pongs_matched, stats.pongs_unmatched) == (6, 5, 1000 + answered + 2)
    assert stats.last_rtt == 0.0
    assert stats.state == "connected"
    assert rec.fields("liveness_failed") == [{"kind": "ping_timeout", "detail": "no pong within 0.5 s"}]
    assert rec.times("liveness_failed")[0] - t0 == at(6.5)


def _pong(payload: bytes) -> bytes:
    return encode_frame(OP_PONG, payload, mask=False)
