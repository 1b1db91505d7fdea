"""
A scriptable websocket server on 127.0.0.1 for tests: real sockets, real RFC 6455 frames, and
misbehaviour on command.

``open_ws_server(handler)`` accepts connections and runs ``await handler(conn)`` for each one,
where ``conn`` is a :class:`ServerConnection`. A reader task per connection parses the client's
frames (masked, as RFC 6455 requires), answers pings unless ``conn.answer_pings`` is false,
records pongs, text messages and the close handshake. When the handler returns, the connection is
closed with 1000 (unless the handler closed or dropped it already).

Faults available to a handler: never answer pings, stop sending data, close with any code, drop
the TCP connection without a close frame, send raw bytes (malformed frames, a frame cut
mid-way), oversize messages, server pings with an enforced pong deadline. Handshake-level faults
are set on the server: ``server.handshake = "accept" | "stall" | "drop" | <int HTTP status>``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc

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
    from collections.abc import AsyncIterator

__all__ = ["ServerConnection", "WsTestServer", "open_ws_server"]

Handler = Callable[["ServerConnection"], Awaitable[None]]


class ServerConnection:
    """The server side of one accepted websocket connection."""

    def __init__(self, server: WsTestServer, stream: anyio.abc.SocketStream, request: HandshakeRequest, id: int) -> None:
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
        #: The close code the client sent, once it did.
        self.client_close_code: int | None = None
        self.close_sent = False
        self.closed = anyio.Event()
        self.opened_at = anyio.current_time()
        self._message_event = anyio.Event()
        self._pong_event = anyio.Event()
        self._send_lock = anyio.Lock()
        self._dropped = False

    def __repr__(self) -> str:
        return f"<ServerConnection #{self.id} {self.request.path}>"

    async def send_raw(self, data: bytes) -> None:
        """Write raw bytes to the socket (for malformed or partial frames)."""
        if self._dropped:
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
        try:
            while True:
                try:
                    data = initial or await self.stream.receive(65536)
                    initial = b""
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    return
                try:
                    messages = parser.feed(data)
                except (FrameProtocolError, MessageTooBig):
                    self.server.protocol_errors += 1
                    return
                for message in messages:
                    self.received.append(message.decode("utf-8", "replace"))
                self._message_event.set()
                for opcode, payload in parser.control:
                    now = anyio.current_time()
                    if opcode == OP_PING:
                        self.pings.append((now, payload))
                        if self.answer_pings:
                            await self.send_raw(encode_frame(OP_PONG, payload, mask=False))
                    elif opcode == OP_PONG:
                        self.pongs.append((now, payload))
                        self._pong_event.set()
                    elif opcode == OP_CLOSE:
                        code, _ = parse_close_payload(payload)
                        self.client_close_code = code if code is not None else 1005
                        if not self.close_sent:
                            self.close_sent = True
                            await self.send_raw(encode_frame(OP_CLOSE, payload[:2], mask=False))
                        return
                parser.control.clear()
        finally:
            self.closed.set()
            self._message_event.set()
            self._pong_event.set()


class WsTestServer:
    """A running test server (see :func:`open_ws_server`)."""

    def __init__(self, handler: Handler, max_message_size: int) -> None:
        self.handler = handler
        self.max_message_size = max_message_size
        #: How to answer the next handshakes: "accept", "stall", "drop" or an HTTP status code.
        self.handshake: str | int = "accept"
        #: Extra headers sent with a rejected handshake (e.g. Retry-After).
        self.reject_headers: dict[str, str] = {}
        self.connections: list[ServerConnection] = []
        #: Arrival time of every TCP connection (including rejected handshakes).
        self.attempt_times: list[float] = []
        self.ping_timeouts: list[tuple[int, float]] = []
        self.protocol_errors = 0
        self.port = 0
        self.host = "127.0.0.1"
        self._new_connection = anyio.Event()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/``."""
        return f"ws://{self.host}:{self.port}/"

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

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        self.attempt_times.append(anyio.current_time())
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
            mode = self.handshake
            if mode == "stall":
                await anyio.sleep(math.inf)
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


@asynccontextmanager
async def open_ws_server(
    handler: Handler, *, host: str = "127.0.0.1", port: int = 0, max_message_size: int = 1 << 20
) -> AsyncIterator[WsTestServer]:
    """
    Run a :class:`WsTestServer` on ``host:port`` (port 0: any free port) for the ``async with``.

    Handler exceptions propagate (they are test bugs).
    """
    server = WsTestServer(handler, max_message_size)
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    server.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server.host = host
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server._serve)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
