"""
The loopback fault proxy (``native_anyio.testing.open_fault_proxy``): every mode's observable
effect on real sockets on 127.0.0.1, against a tiny server in this file, on asyncio (also with
uvloop) and trio; timing modes under virtual clocks with exact timestamps.
"""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import pytest

from native_anyio.testing import (
    Blackhole,
    CorruptByte,
    CutMidFrame,
    Delay,
    FaultProxy,
    Fin,
    Pass,
    Reset,
    Throttle,
    open_fault_proxy,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

#: What the server sends for every ``b"g"`` it receives (in "pattern" mode).
PATTERN = bytes(range(256)) * 40
BROKEN = (anyio.BrokenResourceError, ConnectionResetError)


class Server:
    """A tiny TCP server: echoes (``"echo"``) or answers each ``b"g"`` with PATTERN (``"pattern"``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = 0
        self.received = 0
        #: How each connection ended, from the server's side: "eof" or "error".
        self.outcomes: list[str] = []
        self._ended = anyio.Event()

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        outcome = "eof"
        try:
            async with stream:
                while True:
                    data = await stream.receive()
                    self.received += len(data)
                    if self.mode == "echo":
                        await stream.send(data)
                    else:
                        for _ in range(data.count(b"g")):
                            await stream.send(PATTERN)
        except anyio.EndOfStream:
            pass
        except (anyio.BrokenResourceError, OSError):
            outcome = "error"
        self.outcomes.append(outcome)
        self._ended.set()

    async def wait_ended(self, count: int = 1) -> None:
        while len(self.outcomes) < count:
            self._ended = anyio.Event()
            await self._ended.wait()


@asynccontextmanager
async def open_server(mode: str = "echo") -> AsyncIterator[Server]:
    server = Server(mode)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle, tg)
        yield server
        tg.cancel_scope.cancel()


@asynccontextmanager
async def open_pair(mode: str = "echo") -> AsyncIterator[tuple[Server, FaultProxy]]:
    """A server and a proxy in front of it."""
    async with open_server(mode) as server, open_fault_proxy("127.0.0.1", server.port) as proxy:
        yield server, proxy


async def connect(port: int) -> anyio.abc.SocketStream:
    return await anyio.connect_tcp("127.0.0.1", port)


async def read_exactly(stream: anyio.abc.SocketStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        buf += await stream.receive(n - len(buf))
    return bytes(buf)


async def read_to_end(stream: anyio.abc.SocketStream) -> tuple[bytes, str]:
    """Everything until the stream ends, and how it ended: "eof" or "error"."""
    buf = bytearray()
    try:
        while True:
            buf += await stream.receive()
    except anyio.EndOfStream:
        return bytes(buf), "eof"
    except BROKEN:
        return bytes(buf), "error"


@asynccontextmanager
async def raw_connect(port: int) -> AsyncIterator[socket.socket]:
    """
    A plain non-blocking socket to the proxy, for telling a RST from a FIN at the socket level.

    anyio before 4.16 reports a connection reset on asyncio as an end of stream; ``recv()`` on
    the socket itself raises ``ConnectionResetError`` on every backend and version.
    """
    sock = socket.socket()
    sock.setblocking(False)
    try:
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            await anyio.wait_writable(sock)
        yield sock
    finally:
        sock.close()


async def raw_read_to_end(sock: socket.socket) -> tuple[bytes, str]:
    """Everything until the peer ends: ``"eof"`` (FIN) or ``"error"`` (RST)."""
    buf = bytearray()
    while True:
        await anyio.wait_readable(sock)
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            continue
        except ConnectionResetError:
            return bytes(buf), "error"
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk


async def raw_echoes(sock: socket.socket, data: bytes = b"hello") -> None:
    sock.send(data)
    buf = bytearray()
    while len(buf) < len(data):
        await anyio.wait_readable(sock)
        buf += sock.recv(len(data) - len(buf))
    assert bytes(buf) == data


async def assert_echoes(stream: anyio.abc.SocketStream, data: bytes = b"hello") -> None:
    await stream.send(data)
    assert await read_exactly(stream, len(data)) == data


# ----------------------------------------------------------------------------------- modes


@pytest.mark.uvloop
async def test_pass_forwards_both_ways_and_counts_bytes():
    data = bytes(range(256)) * 800  # 200 KiB: several reads of each side
    with anyio.fail_after(10):
        async with (
            open_pair() as (server, proxy),
            await connect(proxy.port) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(client.send, data)
            assert await read_exactly(client, len(data)) == data
            [conn] = proxy.connections
            assert (conn.id, conn.closed, proxy.accepted) == (0, False, 1)
            assert conn.bytes_up == conn.bytes_down == len(data)
            assert conn.mode == Pass()
    assert server.received == len(data)


@pytest.mark.virtual_time
@pytest.mark.parametrize(("direction", "round_trip"), [("down", 2.5), ("up", 2.5), ("both", 5.0)])
async def test_delay_delivers_each_chunk_after_exactly_the_delay_in_order(direction: str, round_trip: float):
    with anyio.fail_after(60):
        async with open_server() as server, open_fault_proxy("127.0.0.1", server.port) as proxy:
            proxy.set_default(Delay(2.5, direction=direction))  # type: ignore[arg-type]
            async with await connect(proxy.port) as client:
                t0 = anyio.current_time()
                await client.send(b"a")
                await anyio.sleep(1.0)
                await client.send(b"b")
                assert await client.receive() == b"a"
                assert anyio.current_time() - t0 == pytest.approx(round_trip, abs=1e-6)
                assert await client.receive() == b"b"
                assert anyio.current_time() - t0 == pytest.approx(round_trip + 1.0, abs=1e-6)
                # Back to Pass: no delay at all.
                proxy.apply_all(Pass())
                t1 = anyio.current_time()
                await assert_echoes(client)
                assert anyio.current_time() == pytest.approx(t1, abs=1e-6)


@pytest.mark.virtual_time
async def test_throttle_bounds_the_rate():
    rate = 10_000
    total = len(PATTERN) * 10
    with anyio.fail_after(60):
        async with open_server("pattern") as server, open_fault_proxy("127.0.0.1", server.port) as proxy:
            proxy.set_default(Throttle(rate))
            async with await connect(proxy.port) as client:
                t0 = anyio.current_time()
                await client.send(b"g" * 10)
                got = 0
                while got < total:
                    got += len(await client.receive())
                    elapsed = anyio.current_time() - t0
                    # At most one burst (a tenth of a second's worth) ahead of the rate.
                    assert got <= rate * elapsed + rate // 10 + 1e-6, (got, elapsed)
                # Paced, not slower: the last piece (at most one burst) went out on schedule.
                assert (total - rate // 10) / rate - 1e-6 <= elapsed <= total / rate + 1e-6


@pytest.mark.virtual_time
async def test_blackhole_forwards_nothing_and_keeps_the_client_socket_open():
    with anyio.fail_after(60):
        async with open_pair() as (server, proxy), await connect(proxy.port) as client:
            await assert_echoes(client)
            received = server.received
            proxy.apply_all(Blackhole())
            await client.send(b"lost")
            with anyio.move_on_after(30) as scope:
                await client.receive()  # neither data nor EOF: a half-open path
            assert scope.cancelled_caught
            assert server.received == received  # "both": nothing went upstream either
            [conn] = proxy.connections
            assert not conn.closed
            proxy.apply_all(Pass())  # the sockets were kept: the path works again
            await assert_echoes(client, b"again")
    assert server.received == received + len(b"again")


@pytest.mark.virtual_time
async def test_blackhole_down_only_still_forwards_upstream():
    with anyio.fail_after(60):
        async with open_server() as server, open_fault_proxy("127.0.0.1", server.port) as proxy:
            proxy.set_default(Blackhole(direction="down"))
            async with await connect(proxy.port) as client:
                await client.send(b"up")
                with anyio.move_on_after(30) as scope:
                    await client.receive()
                assert scope.cancelled_caught
                assert server.received == 2


@pytest.mark.uvloop
async def test_reset_aborts_both_sockets_with_a_rst():
    with anyio.fail_after(10):
        async with open_pair() as (server, proxy), raw_connect(proxy.port) as client:
            await raw_echoes(client)
            [conn] = proxy.connections
            conn.apply(Reset())
            assert await raw_read_to_end(client) == (b"", "error")
            await server.wait_ended()
    assert server.outcomes == ["error"]  # the target saw a reset too, not an EOF
    assert conn.closed


@pytest.mark.uvloop
async def test_fin_closes_both_sockets_cleanly():
    with anyio.fail_after(10):
        async with open_pair() as (server, proxy), await connect(proxy.port) as client:
            await assert_echoes(client)
            proxy.apply_all(Fin())
            with pytest.raises(anyio.EndOfStream):
                await client.receive()
            await server.wait_ended()
    assert server.outcomes == ["eof"]


@pytest.mark.uvloop
async def test_cut_mid_frame_forwards_exactly_n_more_bytes_then_resets():
    with anyio.fail_after(10):
        async with open_pair("pattern") as (_server, proxy), raw_connect(proxy.port) as client:
            client.send(b"g")
            data = b""
            while len(data) < len(PATTERN):
                await anyio.wait_readable(client)
                data += client.recv(len(PATTERN) - len(data))
            assert data == PATTERN
            proxy.apply_all(CutMidFrame(1234))
            client.send(b"gg")
            data, ending = await raw_read_to_end(client)
    assert data == (PATTERN * 2)[:1234]
    assert ending == "error"


@pytest.mark.uvloop
async def test_corrupt_byte_flips_exactly_one_byte_counted_from_when_applied():
    with anyio.fail_after(10):
        async with open_pair("pattern") as (_server, proxy), await connect(proxy.port) as client:
            await client.send(b"g")
            assert await read_exactly(client, len(PATTERN)) == PATTERN
            proxy.apply_all(CorruptByte(offset=777, xor=0x5A))
            await client.send(b"gg")
            data = await read_exactly(client, 2 * len(PATTERN))
            await client.send(b"g")  # then it behaves as Pass
            assert await read_exactly(client, len(PATTERN)) == PATTERN
    expected = PATTERN * 2
    diffs = [i for i in range(len(data)) if data[i] != expected[i]]
    assert diffs == [777]
    assert data[777] == expected[777] ^ 0x5A


# -------------------------------------------------------------------------- the proxy itself


@pytest.mark.virtual_time
async def test_script_sets_the_mode_of_each_new_connection_then_the_default():
    with anyio.fail_after(60):
        async with (
            open_pair() as (_server, proxy),
            await connect(proxy.port) as before,
        ):  # accepted before script(): default
            await assert_echoes(before)
            proxy.script([Reset(), Pass(), Fin()])
            proxy.set_default(Blackhole())
            async with raw_connect(proxy.port) as first:
                assert await raw_read_to_end(first) == (b"", "error")
            async with await connect(proxy.port) as second:
                await assert_echoes(second)
                async with await connect(proxy.port) as third:
                    with pytest.raises(anyio.EndOfStream):
                        await third.receive()
                async with await connect(proxy.port) as fourth:
                    await proxy.wait_accepted(5)
                    await fourth.send(b"x")
                    with anyio.move_on_after(30) as scope:
                        await fourth.receive()
                    assert scope.cancelled_caught
                    assert [c.id for c in proxy.connections] == [0, 2, 4]
                    assert [type(c.mode) for c in proxy.connections] == [Pass, Pass, Blackhole]
    assert proxy.accepted == 5


@pytest.mark.uvloop
async def test_apply_all_applies_to_every_live_connection():
    with anyio.fail_after(10):
        async with open_server() as server, open_fault_proxy("127.0.0.1", server.port) as proxy:
            clients = [await connect(proxy.port) for _ in range(3)]
            try:
                for client in clients:
                    await assert_echoes(client)
                await proxy.wait_accepted(3)
                proxy.apply_all(Fin())
                for client in clients:
                    with pytest.raises(anyio.EndOfStream):
                        await client.receive()
            finally:
                for client in clients:
                    await client.aclose()
            while proxy.connections:
                await anyio.sleep(0.01)
    assert proxy.accepted == 3


@pytest.mark.uvloop
async def test_connections_over_the_limit_are_refused_until_one_ends():
    with anyio.fail_after(10):
        async with (
            open_server() as server,
            open_fault_proxy("127.0.0.1", server.port, max_connections=2) as proxy,
        ):
            async with await connect(proxy.port) as one:
                async with await connect(proxy.port) as two:
                    await assert_echoes(one)
                    await assert_echoes(two)
                    async with await connect(proxy.port) as three:
                        _, ending = await read_to_end(three)  # closed at once, never forwarded
                        assert ending in ("eof", "error")
                    assert (proxy.accepted, proxy.refused) == (2, 1)
                while len(proxy.connections) > 1:
                    await anyio.sleep(0.01)
                async with await connect(proxy.port) as four:
                    await assert_echoes(four)
            assert (proxy.accepted, proxy.refused) == (3, 1)


@pytest.mark.uvloop
async def test_a_failing_connection_does_not_end_the_proxy():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    with anyio.fail_after(10):
        async with open_fault_proxy("127.0.0.1", dead_port) as proxy:
            for n in (1, 2):
                async with raw_connect(proxy.port) as client:
                    _, ending = await raw_read_to_end(client)
                    assert ending == "error"  # the target refused: so does the proxy
                assert proxy.accepted == n


@pytest.mark.uvloop
async def test_leaving_the_context_closes_live_connections_promptly():
    with anyio.fail_after(10):
        async with open_server() as server, await connect(server.port) as direct:  # not proxied
            async with open_fault_proxy("127.0.0.1", server.port) as proxy:
                one = await connect(proxy.port)
                two = await connect(proxy.port)
                await assert_echoes(one)
                await proxy.wait_accepted(2)
                proxy.connections[1].apply(Blackhole())
                conns = proxy.connections
                started = anyio.current_time()
            with anyio.fail_after(2):
                for client in (one, two):
                    _, ending = await read_to_end(client)
                    assert ending in ("eof", "error")
                    await client.aclose()
            assert anyio.current_time() - started < 2
            assert all(c.closed for c in conns)
            assert proxy.connections == ()
            await assert_echoes(direct)  # only the proxy's sockets were closed


def test_rewrite_url_points_any_scheme_at_the_proxy():
    proxy = FaultProxy("127.0.0.1", 9000, 4321, 64)
    assert proxy.rewrite_url("ws://127.0.0.1:9000/stream?x=1") == "ws://127.0.0.1:4321/stream?x=1"
    assert proxy.rewrite_url("https://127.0.0.1:9000") == "https://127.0.0.1:4321"
    assert proxy.rewrite_url("wss://localhost/a") == "wss://127.0.0.1:4321/a"
