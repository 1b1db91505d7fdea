"""
The websocket transport interface, and the default transport over anyio byte streams.

The session never talks to a websocket library directly: it talks to a :class:`WsTransport`
that opens :class:`WsConnection` objects. Anything that can hand over *batches* of complete
messages per wake-up can be plugged in (see ``native_anyio.transports`` for a trio-websocket one).

The default, :class:`AnyioTransport`, runs on asyncio and trio alike. It reads the socket in
64 KiB chunks and parses every complete frame of a read in one pass (``_frames``), so a receive
costs one ``await`` per socket read, not per message (the design rule of
``performance-anchors.md``). Control frames are handled inside ``receive_batch``: pings are
answered at once (before the batch is handed over), pongs and pings are reported to the
connection's listener, and a close frame is echoed and ends the connection after the messages that
preceded it have been delivered.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Protocol, final
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from ._errors import (
    CloseReason,
    ConnectError,
    ConnectionLost,
    LocalProtocolError,
    MessageTooBig,
    RemoteProtocolError,
)
from ._frames import (
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
from ._handshake import MAX_HEAD_SIZE, build_client_request, check_server_response, new_client_key

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["AnyioTransport", "ConnectionListener", "WsConnection", "WsTransport", "close_reason_for"]

_READ_SIZE = 131072
#: Bound on releasing a socket after a failed handshake (aclose_forcefully does not wait).
_ABORT_TIMEOUT = 1.0


class ConnectionListener(Protocol):
    """Receives liveness signals from a connection (sync, must not block)."""

    def on_ping(self, payload: bytes) -> None: ...

    def on_pong(self, payload: bytes) -> None: ...


class WsConnection(Protocol):
    """One open websocket connection, as the session sees it."""

    @property
    def bytes_received(self) -> int: ...

    async def receive_batch(self) -> list[bytes]:
        """
        Wait for at least one message and return every message available now.

        Raises:
            ConnectionLost: the connection ended (its ``reason`` says how).
            MessageTooBig: a message exceeded the size limit (the connection is closed with 1009).
            RemoteProtocolError: the peer broke RFC 6455 (closed with 1002/1007).
        """
        ...

    async def send_text(self, text: str) -> None: ...

    async def send_ping(self, payload: bytes) -> None: ...

    async def aclose(self, code: int = 1000, reason: str = "", *, wait_for_peer: bool = True) -> None:
        """
        Start (or finish) the close handshake and release the socket. Callers bound it.
        ``wait_for_peer=False`` sends the close frame but does not wait for the answer (the peer
        is known to be unresponsive).
        """
        ...


class WsTransport(Protocol):
    """Opens websocket connections."""

    async def connect(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        max_message_size: int,
        listener: ConnectionListener,
    ) -> WsConnection:
        """
        Open a connection and complete the opening handshake. Callers bound it with a timeout.

        Raises:
            ConnectError: TCP or TLS failed.
            HandshakeRejected: the server answered the upgrade with a non-101 status.
            RemoteProtocolError: the server's answer was not a valid upgrade.
        """
        ...


def close_reason_for(code: int | None, reason: str) -> CloseReason:
    """The :class:`CloseReason` for a close frame received from the peer."""
    if code == 1001:
        return CloseReason("going_away", code, reason)
    if code in (None, 1000):
        return CloseReason("closed", code, reason)
    return CloseReason("remote_error", code, reason)


@final
class AnyioTransport:
    """
    The default transport: RFC 6455 over anyio TCP/TLS streams, on asyncio and trio.

    Args:
        ssl_context: used for ``wss://`` URLs (default: ``ssl.create_default_context()``).
        read_size: bytes asked for per socket read.
        proxy: an ``http://host:port`` proxy to tunnel through with ``CONNECT``. Environment
            variables are never read: only this setting decides the route (property D6).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        read_size: int = _READ_SIZE,
        proxy: str | None = None,
    ) -> None:
        if proxy is not None and urlsplit(proxy).scheme != "http":
            raise LocalProtocolError(f"the websocket proxy must be an http:// (CONNECT) proxy, got {proxy!r}")
        self._ssl_context = ssl_context
        self._read_size = read_size
        self._proxy = proxy

    def __repr__(self) -> str:
        proxy = f", proxy={self._proxy!r}" if self._proxy else ""
        return f"AnyioTransport(read_size={self._read_size}{proxy})"

    async def _open_stream(self, host: str, port: int, tls: bool) -> anyio.abc.ByteStream:
        """TCP (through the HTTP CONNECT proxy, when one is set), then TLS for ``wss://``."""
        context = (self._ssl_context or ssl.create_default_context()) if tls else None
        if self._proxy is None:
            if context is not None:
                return await anyio.connect_tcp(host, port, ssl_context=context, tls_standard_compatible=False)
            return await anyio.connect_tcp(host, port)
        proxy = urlsplit(self._proxy)
        stream: anyio.abc.ByteStream = await anyio.connect_tcp(proxy.hostname or "", proxy.port or 80)
        try:
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            await stream.send(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii"))
            head, rest = await _read_head(stream)
            status = head.split(b" ", 2)[1:2]
            if status != [b"200"] or rest:
                raise ConnectError(
                    f"proxy {proxy.hostname}:{proxy.port} refused CONNECT {target}: {head[:80]!r}"
                )
            if context is not None:
                stream = await TLSStream.wrap(
                    stream, hostname=host, ssl_context=context, standard_compatible=False
                )
        except BaseException:
            with anyio.move_on_after(_ABORT_TIMEOUT, shield=True):
                await anyio.aclose_forcefully(stream)
            raise
        return stream

    async def connect(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        max_message_size: int,
        listener: ConnectionListener,
    ) -> AnyioWsConnection:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise LocalProtocolError(f"websocket URL must start with ws:// or wss://, got {parts.scheme!r}")
        tls = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if tls else 80)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        host_header = host if parts.port is None else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if parts.port is None else f"[{host}]:{port}"
        try:
            stream = await self._open_stream(host, port, tls)
        except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
            raise ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        try:
            key = new_client_key()
            await stream.send(build_client_request(host_header, path, key, headers))
            head, rest = await _read_head(stream)
            check_server_response(head, key)
        except BaseException:
            with anyio.move_on_after(_ABORT_TIMEOUT, shield=True):
                await anyio.aclose_forcefully(stream)
            raise
        parser = FrameParser(max_message_size=max_message_size, expect_masked=False)
        return AnyioWsConnection(stream, parser, listener, rest, self._read_size)


async def _read_head(stream: anyio.abc.ByteStream) -> tuple[bytes, bytes]:
    buf = b""
    while True:
        try:
            chunk = await stream.receive(_READ_SIZE)
        except anyio.EndOfStream:
            raise ConnectError("connection closed during the websocket handshake") from None
        except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
            raise ConnectError(f"connection failed during the websocket handshake: {exc}") from exc
        buf += chunk
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return buf[:end], buf[end + 4 :]
        if len(buf) > MAX_HEAD_SIZE:
            raise RemoteProtocolError("websocket handshake answer is too large")


class AnyioWsConnection:
    """A client websocket connection over an anyio byte stream (see :class:`AnyioTransport`)."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        parser: FrameParser,
        listener: ConnectionListener,
        leftover: bytes,
        read_size: int,
    ) -> None:
        self._stream = stream
        self._parser = parser
        self._listener = listener
        self._leftover = leftover
        self._read_size = read_size
        self._send_lock = anyio.Lock()
        self._close_sent = False
        self._closed_by_peer: CloseReason | None = None
        self._socket_closed = False
        self._pending_error: MessageTooBig | FrameProtocolError | None = None
        self.bytes_received = len(leftover)

    async def receive_batch(self) -> list[bytes]:
        parser = self._parser
        receive = self._stream.receive
        read_size = self._read_size
        while True:
            if self._pending_error is not None:
                raise self._pending_error
            if self._closed_by_peer is not None:
                raise ConnectionLost("connection closed by the peer", reason=self._closed_by_peer)
            if self._leftover:
                data, self._leftover = self._leftover, b""
            else:
                try:
                    data = await receive(read_size)
                except anyio.EndOfStream:
                    raise ConnectionLost(
                        "connection closed without a close frame",
                        reason=CloseReason("transport", 1006, "EOF without a close frame"),
                    ) from None
                except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                    raise ConnectionLost(
                        "connection failed",
                        reason=CloseReason("transport", 1006, str(exc) or type(exc).__name__),
                    ) from exc
                self.bytes_received += len(data)
            try:
                messages = parser.feed(data)
            except (MessageTooBig, FrameProtocolError) as exc:
                too_big = isinstance(exc, MessageTooBig)
                code = 1009 if too_big else getattr(exc, "close_code", 1002)
                await self._send_close(code, "message too big" if too_big else "protocol error")
                completed = parser.completed_before_error
                if not completed:
                    raise
                # Valid messages that shared the read with the bad frame are delivered first.
                parser.completed_before_error = []
                self._pending_error = exc
                return completed
            if parser.control:
                await self._handle_control()
            if messages:
                return messages

    async def _handle_control(self) -> None:
        control = self._parser.control
        frames = control[:]
        control.clear()
        for opcode, payload in frames:
            if opcode == OP_PING:
                self._listener.on_ping(payload)
                if not self._close_sent:
                    await self._send(encode_frame(OP_PONG, payload, mask=True))
            elif opcode == OP_PONG:
                self._listener.on_pong(payload)
            elif opcode == OP_CLOSE:
                code, reason = parse_close_payload(payload)
                self._closed_by_peer = close_reason_for(code, reason)
                # Echo the close (RFC 6455 5.5.1); the socket is released by aclose().
                await self._send_close(code if code is not None else 1000, "")

    async def _send(self, frame: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send(frame)
            except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise ConnectionLost(
                    "connection failed while sending",
                    reason=CloseReason("transport", 1006, str(exc) or type(exc).__name__),
                ) from exc

    async def _send_close(self, code: int, reason: str) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        try:
            await self._send(encode_frame(OP_CLOSE, encode_close_payload(code, reason), mask=True))
        except ConnectionLost:
            pass

    async def send_text(self, text: str) -> None:
        """
        Send a text message.

        Raises:
            ConnectionLost: the connection is closing or broken.
        """
        if self._close_sent:
            raise ConnectionLost(
                "connection is closing", reason=CloseReason("closed", None, "close already sent")
            )
        await self._send(encode_frame(OP_TEXT, text.encode("utf-8"), mask=True))

    async def send_ping(self, payload: bytes) -> None:
        """
        Send a ping with ``payload`` (at most 125 bytes).

        Raises:
            ConnectionLost: the connection is closing or broken.
        """
        if self._close_sent:
            raise ConnectionLost(
                "connection is closing", reason=CloseReason("closed", None, "close already sent")
            )
        await self._send(encode_frame(OP_PING, payload, mask=True))

    async def aclose(self, code: int = 1000, reason: str = "", *, wait_for_peer: bool = True) -> None:
        """
        Close the connection: send a close frame (unless one was sent), wait for the peer's close
        frame or EOF, then close the socket. The caller bounds the wait (the session shields it
        with ``close_timeout``); the socket is released even when the wait is cut short.
        """
        if self._socket_closed:
            return
        try:
            await self._send_close(code, reason)
            if wait_for_peer:
                await self._drain_until_closed()
        finally:
            self._socket_closed = True
            await anyio.aclose_forcefully(self._stream)

    async def _drain_until_closed(self) -> None:
        parser = self._parser
        while self._closed_by_peer is None and not parser.closed:
            try:
                data = await self._stream.receive(self._read_size)
            except (
                anyio.EndOfStream,
                OSError,
                ssl.SSLError,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                return
            try:
                parser.feed(data)
            except (FrameProtocolError, MessageTooBig):
                return
            parser.control.clear()
