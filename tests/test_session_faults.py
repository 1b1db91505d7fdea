"""
Faults on an established connection against the real test server over loopback, in virtual time:
zombies (B6), slow consumers (D1-D3), oversize messages (D4) and broken frames (E1, E2).
"""

from __future__ import annotations

import anyio
import pytest
from _session_support import Recorder, Timeline, at, config, consume, count

from native_anyio import (
    AnyioTransport,
    CloseReason,
    Connected,
    Disconnected,
    LivenessConfig,
    open_session,
)
from native_anyio._frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    encode_frame,
)
from native_anyio.testing import ServerConnection, open_ws_server

pytestmark = pytest.mark.virtual_time


def _frame(opcode: int, payload: bytes, **kwargs: bool | int) -> bytes:
    return encode_frame(opcode, payload, mask=bool(kwargs.pop("mask", False)), **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- B6


async def test_no_zombie_connections_after_reconnect() -> None:
    """
    B6: every server connection streams frames tagged with its id and never answers pings, so
    each dies of a ping timeout. No message of connection k is delivered after it ended, each
    connection gets exactly one close frame, and no ping follows it.
    """

    async def handler(conn: ServerConnection) -> None:
        conn.answer_pings = False
        for i in range(2000):
            if conn.closed.is_set():
                return
            await conn.send_text(f"{conn.id}:{i}")
            await anyio.sleep(0.125)

    cfg = config(liveness=LivenessConfig(ping_interval=1.0, ping_timeout=1.0))
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(120):
            async with open_session(server.url, config=cfg) as session:
                timeline = Timeline()
                await consume(session, timeline, count(Connected, 5))
                await anyio.sleep(0.5)
                timeline.add(await session.receive_batch())
        await anyio.sleep(1.0)

    current: int | None = None
    for _, item in timeline.items:
        if isinstance(item, Connected):
            assert current is None
            current = item.connection_id
        elif isinstance(item, Disconnected):
            assert item.connection_id == current
            assert item.reason.kind == "ping_timeout"
            current = None
        else:
            assert current is not None, f"{item!r} delivered between connections"
            assert int(item.split(b":")[0]) == current, f"{item!r} delivered on connection {current}"
    # Each connection: 2 s alive (ping at 1, timeout at 2), then 1 s backoff (data reset it).
    assert [t - t0 for t in server.attempt_times] == [at(3.0 * k) for k in range(5)]
    for conn in server.connections:
        assert conn.close_frames == 1, conn
        assert conn.frames_after_close == [], conn
        assert conn.client_close_at is not None
        assert all(t <= conn.client_close_at for t, _ in conn.pings)
        assert conn.closed.is_set()


# ------------------------------------------------------------------------------------- D1 - D3

PAYLOAD = 40  # bytes; a 42-byte frame
READ_SIZE = 512
MAX_BATCH = -(-(READ_SIZE + PAYLOAD + 1) // (PAYLOAD + 2))  # messages one socket read can complete


def _tagged(conn_id: int, i: int) -> str:
    return f"{conn_id}:{i}:".ljust(PAYLOAD, "x")


async def test_slow_consumer_disconnect_policy_bounds_the_queue_and_loses_nothing_silently() -> None:
    """
    D1/D2: the server floods 300 messages per connection while the consumer sleeps 5 s. The
    session closes the connection as ``slow_consumer`` once more than ``max_queue`` messages
    wait, keeps what it read, and does not open another connection the consumer cannot absorb:
    the depth never exceeds max_queue + one batch, however long the stall.
    """
    max_queue = 50

    async def handler(conn: ServerConnection) -> None:
        for i in range(300):
            if conn.closed.is_set():
                return
            await conn.send_text(_tagged(conn.id, i))
        await anyio.sleep(1000)

    rec = Recorder()
    cfg = config(max_queue=max_queue, slow_consumer="disconnect")
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(120):
            transport = AnyioTransport(read_size=READ_SIZE)
            async with open_session(server.url, config=cfg, transport=transport, hooks=[rec]) as session:
                await session.wait_connected()
                await anyio.sleep(5.0)
                stalled = session.statistics()
                timeline = Timeline()
                last = _tagged(2, 299).encode()
                await consume(session, timeline, lambda tl: last in tl.messages[-MAX_BATCH - max_queue :])

    depths = [sum(isinstance(item, bytes) for item in batch) for batch in timeline.batches]
    assert max(depths) <= max_queue + MAX_BATCH
    assert stalled.queue_depth <= max_queue + MAX_BATCH
    assert stalled.slow_consumer_disconnects == 1
    first = server.connections[0]
    assert first.client_close_code == 1000
    [d1, *_] = timeline.disconnected()
    assert d1.reason.kind == "slow_consumer"
    # Nothing lost silently: connection 1's messages are an unbroken prefix, then Disconnected.
    items = timeline.plain()
    end = items.index(d1)
    assert items[1:end] == [_tagged(1, i).encode() for i in range(end - 1)]
    assert end - 1 > max_queue
    # The next connection waited for the consumer (t=5), not just for the 1 s backoff; the
    # consumer keeps up from then on, so it is the last one.
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(5.0)]
    assert items[end + 1 :] == [Connected(2, server.url)] + [_tagged(2, i).encode() for i in range(300)]


async def test_slow_consumer_block_policy_applies_backpressure() -> None:
    """
    D3 (block): the server tries to send 20 MB while the consumer sleeps 10 s. The reader stops
    reading, TCP backpressure stalls the server's sends, the queue stays bounded, nothing is
    dropped or reconnected, and everything arrives once the consumer reads.
    """
    n = 2000
    size = 10_000
    max_queue = 100
    progress = {"sent": 0}

    async def handler(conn: ServerConnection) -> None:
        for i in range(n):
            await conn.send_text(f"{i:06d}".ljust(size, "."))
            progress["sent"] += 1
        await anyio.sleep(1000)

    cfg = config(max_queue=max_queue, slow_consumer="block")
    async with open_ws_server(handler) as server:
        with anyio.fail_after(300):
            async with open_session(server.url, config=cfg) as session:
                await session.wait_connected()
                await anyio.sleep(10.0)
                stalled, sent_while_stalled = session.statistics(), progress["sent"]
                timeline = Timeline()
                await consume(session, timeline, count(bytes, n))

    assert sent_while_stalled < n // 2  # the server was blocked by TCP backpressure
    assert stalled.queue_depth <= max_queue + 7  # one 64 KiB read completes at most 7 such frames
    assert stalled.slow_consumer_disconnects == 0
    assert [int(m[:6]) for m in timeline.messages] == list(range(n))
    assert timeline.disconnected() == []
    assert len(server.attempt_times) == 1


# ----------------------------------------------------------------------------------------- D4


@pytest.mark.parametrize("shape", ["single", "fragments", "binary"])
async def test_oversize_message_closes_with_1009_and_reconnects(shape: str) -> None:
    """D4: a message of twice the limit (whole, or as 20 fragments) is refused with 1009."""
    limit = 1000

    async def handler(conn: ServerConnection) -> None:
        await conn.send_text(f"ok {conn.id}")
        if conn.id == 1:
            await anyio.sleep(0.5)  # a separate socket read (see the coalesced test below)
            if shape == "single":
                await conn.send_text("y" * (2 * limit))
            elif shape == "binary":
                await conn.send_binary(b"\0" * (2 * limit))
            else:
                frames = [_frame(OP_TEXT, b"z" * 100, fin=False)]
                frames += [_frame(OP_CONT, b"z" * 100, fin=False) for _ in range(18)]
                frames.append(_frame(OP_CONT, b"z" * 100))
                await conn.send_raw(b"".join(frames))
        await anyio.sleep(1000)

    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=config(max_message_size=limit)) as session:
                timeline = Timeline()
                await consume(session, timeline, count(bytes, 2))

    first = server.connections[0]
    assert first.client_close_code == 1009
    assert first.close_frames == 1
    [disconnected] = timeline.disconnected()
    assert disconnected.reason.kind == "too_big"
    assert disconnected.reason.code == 1009
    assert timeline.messages == [b"ok 1", b"ok 2"]
    assert timeline.time_of(disconnected) - t0 == at(0.5)
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(1.5)]


# ------------------------------------------------------------------------------------- E1, E2

MALFORMED = {
    "reserved_opcode": (_frame(0x3, b"x"), 1002),
    "reserved_control_opcode": (_frame(0xB, b"x"), 1002),
    "rsv_bits": (_frame(OP_TEXT, b"x", rsv=4), 1002),
    "invalid_utf8": (_frame(OP_TEXT, b"ok\xff\xfe"), 1007),
    "invalid_utf8_across_fragments": (_frame(OP_TEXT, b"a\xc3", fin=False) + _frame(OP_CONT, b"(b"), 1007),
    "masked_server_frame": (_frame(OP_TEXT, b"x", mask=True), 1002),
    "fragmented_ping": (_frame(OP_PING, b"", fin=False), 1002),
    "long_ping": (_frame(OP_PING, b"p" * 126), 1002),
    "orphan_continuation": (_frame(OP_CONT, b"x"), 1002),
    "data_inside_fragmented_message": (_frame(OP_TEXT, b"a", fin=False) + _frame(OP_BINARY, b"b"), 1002),
    "invalid_close_code": (_frame(OP_CLOSE, (999).to_bytes(2, "big")), 1002),
    "one_byte_close": (_frame(OP_CLOSE, b"\x03"), 1002),
    "close_reason_not_utf8": (_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_frame_fails_the_connection_cleanly_and_reconnects(name: str) -> None:
    """
    E2 (curated Autobahn-style subset): the client closes with 1002/1007, delivers nothing of the
    bad frame, reconnects with backoff, and no exception escapes.
    """
    raw, code = MALFORMED[name]

    async def handler(conn: ServerConnection) -> None:
        await conn.send_text(f"ok {conn.id}")
        if conn.id == 1:
            await anyio.sleep(0.5)  # a separate socket read (see the coalesced test below)
            await conn.send_raw(raw)
        await anyio.sleep(1000)

    rec = Recorder()
    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=config(), hooks=[rec]) as session:
                timeline = Timeline()
                await consume(session, timeline, count(bytes, 2))
                assert session.statistics().state == "connected"

    first = server.connections[0]
    assert first.client_close_code == code
    assert first.close_frames == 1
    [disconnected] = timeline.disconnected()
    assert disconnected.reason.kind == "protocol_error"
    assert disconnected.reason.code == code
    assert timeline.messages == [b"ok 1", b"ok 2"]
    assert timeline.time_of(disconnected) - t0 == at(0.5)  # at once: no wait for a timeout
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(1.5)]
    assert "failed" not in rec.names()


@pytest.mark.parametrize("bad", ["reserved_opcode", "oversize"])
async def test_messages_before_a_bad_frame_in_the_same_read_are_delivered(bad: str) -> None:
    """E1/E2: a good message and a bad frame arrive in one socket read; the good one is kept."""
    raw = _frame(0x3, b"x") if bad == "reserved_opcode" else _frame(OP_TEXT, b"y" * 2000)

    async def handler(conn: ServerConnection) -> None:
        if conn.id == 1:
            await conn.send_raw(_frame(OP_TEXT, b"ok 1") + raw)  # one write: one read
        else:
            await conn.send_text(f"ok {conn.id}")
        await anyio.sleep(1000)

    async with open_ws_server(handler) as server:
        with anyio.fail_after(10):
            async with open_session(server.url, config=config(max_message_size=1000)) as session:
                timeline = Timeline()
                await consume(session, timeline, count(Connected, 2))
                with anyio.move_on_after(1.0):
                    await consume(session, timeline, count(bytes, 2))
    assert timeline.messages == [b"ok 1", b"ok 2"]


async def test_protocol_errors_without_data_escalate_the_backoff() -> None:
    """E2 + B2: a server that only ever sends a bad frame gets the growing schedule, not a storm."""

    async def handler(conn: ServerConnection) -> None:
        if conn.id <= 4:
            await conn.send_raw(_frame(0x3, b"x"))
        await anyio.sleep(1000)

    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=config()):
                await server.wait_connections(5)
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(1.0), at(3.0), at(7.0), at(15.0)]
    assert [c.client_close_code for c in server.connections[:4]] == [1002] * 4


@pytest.mark.parametrize("cut", ["in_header", "in_payload", "between_fragments"])
async def test_frame_cut_midway_then_drop_delivers_nothing_garbage(cut: str) -> None:
    """E2: the connection dies mid-frame; the complete messages before it arrive, nothing else."""
    big = _frame(OP_TEXT, b"b" * 300)
    partial = {
        "in_header": big[:2],
        "in_payload": big[:150],
        "between_fragments": _frame(OP_TEXT, b"first half", fin=False),
    }[cut]

    async def handler(conn: ServerConnection) -> None:
        await conn.send_text(f"ok {conn.id}")
        if conn.id == 1:
            await conn.send_raw(partial)
            await conn.drop()
            return
        await anyio.sleep(1000)

    t0 = anyio.current_time()
    async with open_ws_server(handler) as server:
        with anyio.fail_after(60):
            async with open_session(server.url, config=config()) as session:
                timeline = Timeline()
                await consume(session, timeline, count(bytes, 2))

    assert timeline.messages == [b"ok 1", b"ok 2"]
    [disconnected] = timeline.disconnected()
    assert disconnected.reason == CloseReason("transport", 1006, "EOF without a close frame")
    assert [t - t0 for t in server.attempt_times] == [at(0.0), at(1.0)]
