"""
A deliberately raw websocket client for tests of the simulator (and of fault handling): it shows
every frame as the server sent it, answers pings only when told to, and never hides a fault.

Built on the sans-IO :mod:`native_anyio._frames` / :mod:`native_anyio._handshake` over
``anyio.connect_tcp``; not a production client.
"""

from __future__ import annotations

from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final
from urllib.parse import urlsplit

import anyio
import msgspec

from ..._frames import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
)
from ..._handshake import build_client_request, check_server_response, new_client_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import SocketStream

__all__ = ["RawFrame", "RawWsClient", "open_raw_ws"]

_QUIET = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@final
@dataclass(frozen=True, slots=True)
class RawFrame:
    """One received message or control frame, stamped with ``anyio.current_time()``."""

    opcode: int
    payload: bytes
    at: float

    def json(self) -> Any:
        """The payload decoded as JSON (raises ``msgspec.DecodeError`` when it is not)."""
        return msgspec.json.decode(self.payload)


@final
class RawWsClient:
    """
    A connected raw client; created by :func:`open_raw_ws`.

    Attributes:
        answer_pings: answer server pings with a pong (default True).
        answer_close: echo the server's close frame (default True).
        close_code: the code of the server's close frame, once received (1005: none given).
        eof: whether the server closed the TCP connection.
    """

    def __init__(self, stream: SocketStream, initial: bytes, max_message_size: int) -> None:
        self._stream = stream
        self._parser = FrameParser(max_message_size=max_message_size, expect_masked=False)
        self._queue: deque[RawFrame] = deque()
        self._initial = initial
        self.answer_pings = True
        self.answer_close = True
        self.close_code: int | None = None
        self.eof = False

    @property
    def buffered(self) -> int:
        """Bytes received that do not (yet) form a complete frame (a cut frame leaves some)."""
        return self._parser.buffered

    async def send_raw(self, data: bytes) -> None:
        """Send raw bytes (a malformed or unmasked frame, to test the server)."""
        await self._stream.send(data)

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        """Send one masked frame."""
        await self._stream.send(encode_frame(opcode, payload, mask=True))

    async def send_text(self, text: str | bytes) -> None:
        """Send one text message."""
        await self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    async def send_json(self, obj: Any) -> None:
        """Send ``obj`` as one JSON text message."""
        await self.send_frame(OP_TEXT, msgspec.json.encode(obj))

    async def subscribe(self, *streams: str, signature: list[str] | None = None) -> None:
        """Send ``{"method":"SUBSCRIBE","params":[...]}`` (with ``signature`` when given)."""
        request: dict[str, Any] = {"method": "SUBSCRIBE", "params": list(streams)}
        if signature is not None:
            request["signature"] = signature
        await self.send_json(request)

    async def unsubscribe(self, *streams: str) -> None:
        """Send ``{"method":"UNSUBSCRIBE","params":[...]}``."""
        await self.send_json({"method": "UNSUBSCRIBE", "params": list(streams)})

    async def close(self, code: int = 1000) -> None:
        """Send a close frame (the server echoes it, then closes the socket)."""
        await self.send_frame(OP_CLOSE, encode_close_payload(code))

    async def receive(self) -> RawFrame:
        """
        The next text message or control frame (text messages before control frames of one read).

        Raises:
            anyio.EndOfStream: the server closed the connection and nothing is left.
            MessageTooBig, FrameProtocolError: the server sent such a frame.
        """
        while not self._queue:
            if self.eof:
                raise anyio.EndOfStream
            try:
                data = self._initial or await self._stream.receive(65536)
            except _QUIET:
                self.eof = True
                continue
            self._initial = b""
            await self._feed(data)
        return self._queue.popleft()

    async def _feed(self, data: bytes) -> None:
        now = anyio.current_time()
        self._queue.extend(RawFrame(OP_TEXT, m, now) for m in self._parser.feed(data))
        control = self._parser.control[:]
        self._parser.control.clear()
        for opcode, payload in control:
            self._queue.append(RawFrame(opcode, payload, now))
            if opcode == OP_PING and self.answer_pings:
                await self.send_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code, _ = parse_close_payload(payload)
                self.close_code = 1005 if code is None else code
                if self.answer_close:
                    try:
                        await self.send_frame(OP_CLOSE, payload[:2])
                    except _QUIET:
                        pass

    async def receive_text(self) -> bytes:
        """The next text message, skipping control frames."""
        while True:
            frame = await self.receive()
            if frame.opcode == OP_TEXT:
                return frame.payload

    async def receive_json(self) -> Any:
        """The next text message, decoded."""
        return msgspec.json.decode(await self.receive_text())

    async def receive_stream(self, stream: str) -> dict[str, Any]:
        """The ``data`` of the next envelope of ``stream`` (other messages are skipped)."""
        while True:
            message = await self.receive_json()
            if isinstance(message, dict) and message.get("stream") == stream:
                data: dict[str, Any] = message["data"]
                return data

    async def wait_closed(self) -> None:
        """Read (and discard) until the server closes the connection."""
        while True:
            try:
                await self.receive()
            except anyio.EndOfStream:
                return


@asynccontextmanager
async def open_raw_ws(
    url: str, *, max_message_size: int = 1 << 20, headers: dict[str, str] | None = None
) -> AsyncIterator[RawWsClient]:
    """
    Connect to ``ws://host:port[/path]`` and complete the opening handshake.

    The socket is closed (without a close handshake) when the ``async with`` exits.

    Raises:
        HandshakeRejected: the server answered with a status other than 101.
        OSError: the connection failed.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    key = new_client_key()
    async with await anyio.connect_tcp(host, port) as stream:
        await stream.send(build_client_request(f"{host}:{port}", parts.path or "/", key, headers))
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive(65536)
        head, _, rest = buffer.partition(b"\r\n\r\n")
        check_server_response(head, key)
        yield RawWsClient(stream, rest, max_message_size)
