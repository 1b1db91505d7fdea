"""
A scriptable websocket server on 127.0.0.1 for tests: real sockets, real RFC 6455 frames, and
misbehaviour on command.

``open_ws_server(handler)`` accepts connections and runs ``await handler(conn)`` for each one,
where ``conn`` is a :class:`ServerConnection`. A reader task per connection parses the client's
frames (masked, as RFC 6455 requires), answers pings unless ``conn.answer_pings`` is false,
records pongs, text messages and the close handshake. When the handler returns, the connection is
closed with 1000 (unless the handler closed or dropped it already).

Faults available to a handler: never answer pings, never answer the client's close frame, stop
sending data, go silent in both directions while keeping the socket open (``blackhole()``), close
with any code, drop the TCP connection without a close frame, send raw bytes (malformed frames, a
frame cut mid-way, unsolicited pongs), oversize messages, server pings with an enforced pong
deadline. Handshake-level faults are set on the server:
``server.handshake = "accept" | "stall" | "drop" | <int HTTP status>`` ("stall" reads the request
and never answers, until the client gives up), or a function of the attempt number that returns
one of those, to script a sequence.

Every frame the client sends is logged by opcode (``conn.frame_log``), including frames sent after
its close frame, so tests can check "exactly one close frame" and "nothing after close".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.abc
from anyio.streams.tls import TLSListener

from .._errors import MessageTooBig
from .._frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    FrameProtocolError,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
)
from .._handshake import MAX_HEAD_SIZE, HandshakeRequest, build_server_response

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator

__all__ = ["ServerConnection", "WsTestServer", "open_ws_server"]

Handler = Callable[["ServerConnection"], Awaitable[None]]


@final
class ServerConnection:
    """The server side of one accepted websocket connection."""

    def __init__(
        self, server: WsTestServer, stream: anyio.abc.ByteStream, request: HandshakeRequest, id: int
    ) -> None:
        self.server = server
        self.id = id
        self.request = request
        self.stream = stream
        #: Answer client pings (set False to simulate a half-open peer).
        self.answer_pings = True
        #: Text messages received, in order.
        self.received: list[str] = []
        #: (time, payload) of each client ping / pong received.
        self.pings: list[tuple[float, bytes]] = []
        self.pongs: list[tuple[float, bytes]] = []
        #: Echo the client's close frame (set False for a peer that never completes the close).
        self.answer_close = True
        #: The close code the client sent, once it did, and when it arrived.
        self.client_close_code: int | None = None
        self.client_close_at: float | None = None
        #: The opcode of every frame the client sent, in order (even after its close frame).
        self.frame_log: list[int] = []
        self.close_sent = False
        #: Set when the client's side of the socket ended (EOF or error) or the server dropped it.
        self.closed = anyio.Event()
        self.opened_at = anyio.current_time()
        self.blackholed = False
        self._message_event = anyio.Event()
        self._ping_event = anyio.Event()
        self._pong_event = anyio.Event()
        self._send_lock = anyio.Lock()
        self._reader_scope = anyio.CancelScope()
        self._dropped = False

    def __repr__(self) -> str:
        return f"<ServerConnection #{self.id} {self.request.path}>"

    @property
    def close_frames(self) -> int:
        """How many close frames the client sent."""
        return self.frame_log.count(OP_CLOSE)

    @property
    def frames_after_close(self) -> list[int]:
        """Opcodes of the frames the client sent after its first close frame."""
        if OP_CLOSE not in self.frame_log:
            return []
        return self.frame_log[self.frame_log.index(OP_CLOSE) + 1 :]

    async def send_raw(self, data: bytes) -> None:
        """Write raw bytes to the socket (for malformed or partial frames)."""
        if self._dropped or self.blackholed:
            return
        async with self._send_lock:
            try:
                await self.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._dropped = True

    async def send_text(self, text: str | bytes) -> None:
        """Send one text message (``bytes`` are sent as-is, assumed UTF-8)."""
        payload = text.encode() if isinstance(text, str) else text
        await self.send_raw(encode_frame(OP_TEXT, payload, mask=False))

    async def send_binary(self, data: bytes) -> None:
        """Send one binary message."""
        await self.send_raw(encode_frame(OP_BINARY, data, mask=False))

    async def send_ping(self, payload: bytes = b"") -> None:
        """Send a ping."""
        await self.send_raw(encode_frame(OP_PING, payload, mask=False))

    async def send_pong(self, payload: bytes = b"") -> None:
        """Send a pong (unsolicited, or a duplicate answer)."""
        await self.send_raw(encode_frame(OP_PONG, payload, mask=False))

    def blackhole(self) -> None:
        """Stop reading and writing but keep the socket open: a half-open peer."""
        self.blackholed = True
        self._reader_scope.cancel()

    async def close(self, code: int = 1000, reason: str = "", *, wait: float = 1.0) -> None:
        """Send a close frame and wait (at most ``wait`` seconds) for the client's answer, then drop."""
        if not self.close_sent:
            self.close_sent = True
            await self.send_raw(encode_frame(OP_CLOSE, encode_close_payload(code, reason), mask=False))
        with anyio.move_on_after(wait):
            await self.closed.wait()
        await self.drop()

    async def drop(self) -> None:
        """Close the TCP connection without a close frame."""
        self._dropped = True
        with anyio.move_on_after(1.0, shield=True):
            await anyio.aclose_forcefully(self.stream)

    async def wait_message(self, count: int = 1) -> str:
        """Wait until at least ``count`` text messages were received; return the last of them."""
        while len(self.received) < count:
            if self.closed.is_set():
                raise anyio.EndOfStream
            self._message_event = event = anyio.Event()
            await event.wait()
        return self.received[count - 1]

    async def wait_ping(self, count: int = 1) -> bytes:
        """Wait until at least ``count`` client pings were received; return the last payload."""
        while len(self.pings) < count:
            if self.closed.is_set():
                raise anyio.EndOfStream
            self._ping_event = event = anyio.Event()
            await event.wait()
        return self.pings[count - 1][1]

    async def ping_forever(self, interval: float, deadline: float | None = None) -> None:
        """
        Ping every ``interval`` seconds; when ``deadline`` is set, drop the connection if a
        ping is not answered by a pong within it (Backpack: 60 s / 120 s).
        """
        while not self.closed.is_set():
            await anyio.sleep(interval)
            sent_at = anyio.current_time()
            pongs_before = len(self.pongs)
            await self.send_ping(b"srv")
            if deadline is None:
                continue
            with anyio.move_on_after(deadline):
                while len(self.pongs) == pongs_before and not self.closed.is_set():
                    self._pong_event = event = anyio.Event()
                    await event.wait()
                continue
            self.server.ping_timeouts.append((self.id, sent_at))
            await self.close(1011, "pong timeout", wait=0.1)
            return

    async def _read(self, max_message_size: int, initial: bytes) -> None:
        parser = FrameParser(max_message_size=max_message_size, expect_masked=True)
        unlogged = b""
        try:
            with self._reader_scope:
                while True:
                    try:
                        data = initial or await self.stream.receive(65536)
                        initial = b""
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        return
                    opcodes, unlogged = _split_frames(unlogged + data)
                    self.frame_log.extend(opcodes)
                    if parser.closed:
                        continue  # after the close frame: only log what else the client sends
                    try:
                        messages = parser.feed(data)
                    except (FrameProtocolError, MessageTooBig):
                        self.server.protocol_errors += 1
                        return
                    for message in messages:
                        self.received.append(message.decode("utf-8", "replace"))
                    self._message_event.set()
                    await self._handle_control(parser.control)
        finally:
            if not self.blackholed:
                self.closed.set()
            self._message_event.set()
            self._ping_event.set()
            self._pong_event.set()

    async def _handle_control(self, control: list[tuple[int, bytes]]) -> None:
        frames = control[:]
        control.clear()
        for opcode, payload in frames:
            now = anyio.current_time()
            if opcode == OP_PING:
                self.pings.append((now, payload))
                self._ping_event.set()
                if self.answer_pings:
                    await self.send_raw(encode_frame(OP_PONG, payload, mask=False))
            elif opcode == OP_PONG:
                self.pongs.append((now, payload))
                self._pong_event.set()
            elif opcode == OP_CLOSE:
                code, _ = parse_close_payload(payload)
                self.client_close_code = code if code is not None else 1005
                self.client_close_at = now
                if self.answer_close and not self.close_sent:
                    self.close_sent = True
                    await self.send_raw(encode_frame(OP_CLOSE, payload[:2], mask=False))


def _split_frames(buf: bytes) -> tuple[list[int], bytes]:
    """For the frame log only: the opcodes of the complete (masked) frames in ``buf``, and the rest."""
    opcodes: list[int] = []
    pos = 0
    end = len(buf)
    while end - pos >= 2:
        length = buf[pos + 1] & 0x7F
        head = 2
        if length == 126:
            if end - pos < 4:
                break
            length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            head = 4
        elif length == 127:
            if end - pos < 10:
                break
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            head = 10
        if buf[pos + 1] & 0x80:
            head += 4
        stop = pos + head + length
        if stop > end:
            break
        opcodes.append(buf[pos] & 0x0F)
        pos = stop
    return opcodes, buf[pos:]


@final
class WsTestServer:
    """A running test server (see :func:`open_ws_server`)."""

    def __init__(self, handler: Handler, max_message_size: int) -> None:
        self.handler = handler
        self.max_message_size = max_message_size
        #: How to answer the next handshakes: "accept", "stall", "drop" or an HTTP status code, or
        #: a function of the attempt number (1-based, counting every TCP connection) returning one.
        self.handshake: str | int | Callable[[int], str | int] = "accept"
        #: Extra headers sent with a rejected handshake (e.g. Retry-After).
        self.reject_headers: dict[str, str] = {}
        self.connections: list[ServerConnection] = []
        #: Arrival time of every TCP connection (including rejected handshakes).
        self.attempt_times: list[float] = []
        self.ping_timeouts: list[tuple[int, float]] = []
        self.protocol_errors = 0
        self.port = 0
        self.host = "127.0.0.1"
        self.scheme = "ws"
        self._new_connection = anyio.Event()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/`` (``wss://`` when serving TLS)."""
        return f"{self.scheme}://{self.host}:{self.port}/"

    @property
    def open_connections(self) -> list[ServerConnection]:
        """Connections whose socket is still open."""
        return [c for c in self.connections if not c.closed.is_set()]

    async def wait_connections(self, count: int) -> ServerConnection:
        """Wait until ``count`` connections were accepted in total; return the last one."""
        while len(self.connections) < count:
            self._new_connection = event = anyio.Event()
            await event.wait()
        return self.connections[count - 1]

    async def _serve(self, stream: anyio.abc.ByteStream) -> None:
        self.attempt_times.append(anyio.current_time())
        attempt = len(self.attempt_times)
        async with stream:
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    head += await stream.receive(65536)
                    if len(head) > MAX_HEAD_SIZE:
                        return
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            raw_head, _, rest = head.partition(b"\r\n\r\n")
            request = HandshakeRequest.parse(raw_head)
            mode = self.handshake(attempt) if callable(self.handshake) else self.handshake
            if mode == "stall":
                await _discard_until_eof(stream)
                return
            if mode == "drop":
                return
            if isinstance(mode, int):
                extra = "".join(f"{k}: {v}\r\n" for k, v in self.reject_headers.items())
                await stream.send(f"HTTP/1.1 {mode} Rejected\r\n{extra}Content-Length: 0\r\n\r\n".encode())
                return
            await stream.send(build_server_response(request))
            conn = ServerConnection(self, stream, request, len(self.connections) + 1)
            self.connections.append(conn)
            self._new_connection.set()
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn._read, self.max_message_size, rest)
                try:
                    await self.handler(conn)
                    if not conn.closed.is_set() and not conn._dropped:
                        await conn.close(1000)
                finally:
                    tg.cancel_scope.cancel()


async def _discard_until_eof(stream: anyio.abc.ByteStream) -> None:
    """Never answer: read and ignore everything until the client gives up."""
    try:
        while True:
            await stream.receive(65536)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return


@asynccontextmanager
async def open_ws_server(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_message_size: int = 1 << 20,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[WsTestServer]:
    """
    Run a :class:`WsTestServer` on ``host:port`` (port 0: any free port) for the ``async with``.

    With ``ssl_context`` (a server-side context) it serves ``wss://``. Handler exceptions
    propagate (they are test bugs).
    """
    server = WsTestServer(handler, max_message_size)
    tcp_listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    server.port = tcp_listener.extra(anyio.abc.SocketAttribute.local_port)
    server.host = host
    listener: anyio.abc.Listener[Any] = tcp_listener
    if ssl_context is not None:
        server.scheme = "wss"
        listener = TLSListener(tcp_listener, ssl_context, standard_compatible=False)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server._serve)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
