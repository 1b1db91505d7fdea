"""
A loopback TCP fault proxy for tests: real sockets on 127.0.0.1, network faults on command.

``open_fault_proxy(host, port)`` listens on ``127.0.0.1:<any port>``; every client connection it
accepts gets one upstream TCP connection to ``host:port`` and is forwarded both ways. Faults are
*modes* (frozen dataclasses), applied to one connection (``conn.apply``), to every live one
(``proxy.apply_all``), or scripted per future connection (``proxy.script``, ``proxy.set_default``):

* ``Pass()``: forward both ways;
* ``Delay(seconds)``: deliver each chunk ``seconds`` after it was read, in order;
* ``Throttle(bytes_per_second)``: pace forwarding (bursts of at most 1/10 s worth of bytes);
* ``Blackhole()``: forward nothing and discard what is read, keep both sockets open (half-open);
* ``Reset()``: abort both sockets with a TCP RST, now;
* ``Fin()``: close both sockets in order (EOF after what was already forwarded);
* ``CutMidFrame(after_bytes)``: forward that many more downstream bytes, then RST both sockets;
* ``CorruptByte(offset, xor)``: XOR the downstream byte at ``offset`` (counted from when the mode
  was applied), then pass.

Modes act on the downstream direction (server to client) unless they have a ``direction``
(``"down"``, ``"up"`` or ``"both"``). Each direction is a reader task and a writer task joined by a
bounded buffer of read chunks stamped with their read time (what ``Delay`` needs); the writer looks
at the current mode for every chunk, and wakes up when the mode changes. An EOF is forwarded as an
EOF (half-close); a broken socket on either side resets the other one.

Time is ``anyio.current_time``/``anyio.sleep``, so virtual clocks apply. Resources are bounded: at
most ``max_connections`` live connections (further accepts are closed at once and counted in
``proxy.refused``), reads of ``READ_SIZE`` bytes, ``BUFFER_CHUNKS`` chunks buffered per direction.
The proxy's task group owns every connection; an error on one connection ends that connection
only; leaving the ``async with`` closes everything (shielded, bounded by ``CLOSE_TIMEOUT``).
"""

from __future__ import annotations

import math
import socket
import struct
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias, final
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.lowlevel
from anyio.abc import SocketAttribute

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from anyio.abc import SocketStream
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "Blackhole",
    "CorruptByte",
    "CutMidFrame",
    "Delay",
    "FaultProxy",
    "Fin",
    "Mode",
    "Pass",
    "ProxyConnection",
    "Reset",
    "Throttle",
    "open_fault_proxy",
]

#: Bytes asked for per socket read.
READ_SIZE = 65536
#: Read chunks buffered per direction between its reader and its writer.
BUFFER_CHUNKS = 64
#: Bound on closing the sockets of one connection (shielded).
CLOSE_TIMEOUT = 1.0

Direction: TypeAlias = Literal["down", "up", "both"]
_QUIET = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@final
@dataclass(frozen=True, slots=True)
class Pass:
    """Forward both ways."""


@final
@dataclass(frozen=True, slots=True)
class Delay:
    """Deliver each chunk ``seconds`` after it was read (order kept)."""

    seconds: float
    direction: Direction = "down"


@final
@dataclass(frozen=True, slots=True)
class Throttle:
    """Forward at most ``bytes_per_second`` (plus one burst of a tenth of a second)."""

    bytes_per_second: int
    direction: Direction = "down"


@final
@dataclass(frozen=True, slots=True)
class Blackhole:
    """Forward nothing, discard what is read, keep both sockets open: a half-open path."""

    direction: Direction = "both"


@final
@dataclass(frozen=True, slots=True)
class Reset:
    """Abort both sockets with a TCP RST (SO_LINGER 0, then close), immediately."""


@final
@dataclass(frozen=True, slots=True)
class Fin:
    """Close both sockets in order: EOF after what was already forwarded."""


@final
@dataclass(frozen=True, slots=True)
class CutMidFrame:
    """Forward exactly ``after_bytes`` more downstream bytes, then RST both sockets."""

    after_bytes: int


@final
@dataclass(frozen=True, slots=True)
class CorruptByte:
    """XOR the downstream byte at ``offset`` (counted from when applied) with ``xor``, then pass."""

    offset: int = 0
    xor: int = 0xFF


Mode: TypeAlias = Pass | Delay | Throttle | Blackhole | Reset | Fin | CutMidFrame | CorruptByte


def _applies(direction: Direction, pipe: str) -> bool:
    return direction in ("both", pipe)


def _set_linger_zero(stream: SocketStream) -> None:
    """Make the next close send a RST instead of a FIN."""
    raw = stream.extra(SocketAttribute.raw_socket, None)
    if raw is None:
        return
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, ValueError):  # already closed: nothing left to reset
        pass


def _abort_if_resetting(stream: SocketStream) -> None:
    """
    Abort a socket set to reset (SO_LINGER 0) without the FIN anyio's close may send first.

    On asyncio, anyio before 4.16 closes a socket stream with ``write_eof()`` (a FIN) and only
    then aborts it, so the peer saw an orderly close instead of a RST; aborting the transport
    first sends the RST alone. trio, and later anyio, close without a FIN already.
    """
    raw = stream.extra(SocketAttribute.raw_socket, None)
    if raw is None:
        return
    try:
        onoff, linger = struct.unpack("ii", raw.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
    except (OSError, ValueError, struct.error):
        return
    if onoff and linger == 0:
        abort = getattr(getattr(stream, "_transport", None), "abort", None)
        if abort is not None:
            abort()


class _Pipe:
    """One direction of a connection: a reader and a writer joined by a bounded buffer."""

    def __init__(self, conn: ProxyConnection, name: Literal["down", "up"]) -> None:
        self.conn = conn
        self.name = name
        self.written = 0
        self.mode: Mode = Pass()
        #: ``self.written`` when the mode was set (CutMidFrame and CorruptByte count from there).
        self.base = 0
        self._changed = anyio.Event()
        self._next_send = -math.inf  # Throttle pacing

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        self.base = self.written
        self._next_send = -math.inf
        self._changed.set()
        self._changed = anyio.Event()

    def blackholed(self) -> bool:
        return isinstance(self.mode, Blackhole) and _applies(self.mode.direction, self.name)

    async def run(self, src: SocketStream, dst: SocketStream) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[float, bytes]](BUFFER_CHUNKS)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, src, send)
            await self._write(dst, receive)

    async def _read(self, src: SocketStream, send: MemoryObjectSendStream[tuple[float, bytes]]) -> None:
        with send:
            while True:
                try:
                    data = await src.receive(READ_SIZE)
                except anyio.EndOfStream:
                    data = b""  # forwarded as an EOF
                except _QUIET:
                    self.conn._abort(reset=True)  # a broken side breaks the other one too
                    return
                if data and self.blackholed():
                    continue
                await send.send((anyio.current_time(), data))
                if not data:
                    return

    async def _write(
        self, dst: SocketStream, receive: MemoryObjectReceiveStream[tuple[float, bytes]]
    ) -> None:
        with receive:
            async for read_at, data in receive:
                if not data:
                    await self._forward_eof(dst)
                    return
                await self._deliver(dst, read_at, data)

    async def _forward_eof(self, dst: SocketStream) -> None:
        while self.blackholed():  # a half-open path hides the EOF too
            await self._changed.wait()
        try:
            await dst.send_eof()
        except _QUIET:
            self.conn._abort(reset=True)

    async def _deliver(self, dst: SocketStream, read_at: float, data: bytes) -> None:
        while data:
            mode = self.mode
            changed = self._changed
            if isinstance(mode, Blackhole) and _applies(mode.direction, self.name):
                return
            if isinstance(mode, Delay) and _applies(mode.direction, self.name):
                due = read_at + mode.seconds
                if anyio.current_time() < due:
                    with anyio.move_on_after(due - anyio.current_time()):
                        await changed.wait()
                    continue  # the mode may have changed meanwhile: look again
            if isinstance(mode, Throttle) and _applies(mode.direction, self.name):
                now = anyio.current_time()
                if now < self._next_send:
                    with anyio.move_on_after(self._next_send - now):
                        await changed.wait()
                    continue
                burst = max(1, mode.bytes_per_second // 10)
                piece, data = data[:burst], data[burst:]
                self._next_send = max(now, self._next_send) + len(piece) / mode.bytes_per_second
                await self._send(dst, piece)
                continue
            data = await self._send_with_faults(dst, mode, data)

    async def _send_with_faults(self, dst: SocketStream, mode: Mode, data: bytes) -> bytes:
        """Send ``data`` as Pass, CutMidFrame or CorruptByte dictate; return what is left to send."""
        if self.name == "down" and isinstance(mode, CutMidFrame):
            left = mode.after_bytes - (self.written - self.base)
            if left < len(data):
                if left > 0:
                    await self._send(dst, data[:left])
                self.conn._abort(reset=True)
                await anyio.sleep_forever()  # cancelled by the abort
        if self.name == "down" and isinstance(mode, CorruptByte):
            at = self.base + mode.offset - self.written
            if 0 <= at < len(data):
                data = data[:at] + bytes([data[at] ^ (mode.xor & 0xFF)]) + data[at + 1 :]
        await self._send(dst, data)
        return b""

    async def _send(self, dst: SocketStream, data: bytes) -> None:
        # Counted before the send: the peer may read the bytes before this task resumes, and a
        # mode applied then must count its offset from after them.
        self.written += len(data)
        try:
            await dst.send(data)
        except _QUIET:
            self.conn._abort(reset=True)
            await anyio.sleep_forever()  # cancelled by the abort


@final
class ProxyConnection:
    """One proxied connection: a client socket and its upstream socket."""

    def __init__(self, proxy: FaultProxy, id: int, client: SocketStream) -> None:
        self.proxy = proxy
        #: Accept order, from 0.
        self.id = id
        self._client = client
        self._upstream: SocketStream | None = None
        self._down = _Pipe(self, "down")
        self._up = _Pipe(self, "up")
        self._scope = anyio.CancelScope()
        self._ending: Literal["reset", "fin"] | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else type(self.mode).__name__
        return f"<ProxyConnection #{self.id} {state} down={self.bytes_down} up={self.bytes_up}>"

    @property
    def mode(self) -> Mode:
        """The mode applied last."""
        return self._down.mode

    @property
    def bytes_down(self) -> int:
        """Bytes forwarded to the client so far."""
        return self._down.written

    @property
    def bytes_up(self) -> int:
        """Bytes forwarded to the target so far."""
        return self._up.written

    @property
    def closed(self) -> bool:
        """True once both sockets were closed."""
        return self._closed

    def apply(self, mode: Mode) -> None:
        """Switch this connection to ``mode`` now (Reset and Fin end it)."""
        if isinstance(mode, Reset):
            self._abort(reset=True)
        elif isinstance(mode, Fin):
            self._abort(reset=False)
        self._down.set_mode(mode)
        self._up.set_mode(mode)

    def _abort(self, *, reset: bool) -> None:
        if self._ending is not None:
            return
        self._ending = "reset" if reset else "fin"
        if reset:
            _set_linger_zero(self._client)
            if self._upstream is not None:
                _set_linger_zero(self._upstream)
        self._scope.cancel()

    async def _run(self) -> None:
        try:
            with self._scope:
                self._upstream = upstream = await anyio.connect_tcp(
                    self.proxy.target_host, self.proxy.target_port
                )
                if self._ending == "reset":  # Reset applied while connecting
                    _set_linger_zero(upstream)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._down.run, upstream, self._client)
                    await self._up.run(self._client, upstream)
        except (OSError, anyio.BrokenResourceError):
            _set_linger_zero(self._client)  # the target refused: so does the proxy
        finally:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await self._close_sockets()

    async def _close_sockets(self) -> None:
        streams = [self._client] if self._upstream is None else [self._client, self._upstream]
        if self._ending == "fin":
            for stream in streams:
                try:
                    await stream.send_eof()
                except _QUIET:
                    pass
            # Closing a socket with unread data sends a RST (RFC 1122 4.2.2.13): read until the
            # peers close theirs, so a FIN stays a FIN. Bounded by the caller's shielded scope.
            for stream in streams:
                await _discard_until_eof(stream)
        for stream in streams:
            _abort_if_resetting(stream)
            await anyio.aclose_forcefully(stream)
        self._closed = True


async def _discard_until_eof(stream: SocketStream) -> None:
    try:
        while True:
            await stream.receive(READ_SIZE)
    except _QUIET:
        return


@final
class FaultProxy:
    """A running proxy (see :func:`open_fault_proxy`)."""

    def __init__(self, target_host: str, target_port: int, port: int, max_connections: int) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.target_host = target_host
        self.target_port = target_port
        self.max_connections = max_connections
        #: Connections accepted so far (refused ones not included).
        self.accepted = 0
        #: Connections closed at once because ``max_connections`` were live.
        self.refused = 0
        self._live: dict[int, ProxyConnection] = {}
        self._script: list[Mode] = []
        self._default: Mode = Pass()
        self._accept_event = anyio.Event()

    def __repr__(self) -> str:
        return f"<FaultProxy 127.0.0.1:{self.port} -> {self.target_host}:{self.target_port}>"

    @property
    def connections(self) -> tuple[ProxyConnection, ...]:
        """The live connections, in accept order."""
        return tuple(self._live.values())

    def rewrite_url(self, url: str) -> str:
        """``url`` (``ws``/``wss``/``http``/``https``) with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        netloc = f"{self.host}:{self.port}"
        if parts.username is not None:
            netloc = f"{parts.username}@{netloc}"
        return urlunsplit(parts._replace(netloc=netloc))

    def script(self, modes: Iterable[Mode]) -> None:
        """The k-th connection accepted from now on starts in ``modes[k]``; later ones in the default."""
        self._script = list(modes)
        self._script.reverse()  # popped from the end

    def set_default(self, mode: Mode) -> None:
        """The mode of new connections when the script is used up (initially ``Pass()``)."""
        self._default = mode

    def apply_all(self, mode: Mode) -> None:
        """Apply ``mode`` now to every live connection."""
        for conn in self.connections:
            conn.apply(mode)

    async def wait_accepted(self, n: int) -> None:
        """Wait until ``n`` connections were accepted in total."""
        while self.accepted < n:
            self._accept_event = event = anyio.Event()
            await event.wait()
        await anyio.lowlevel.checkpoint()

    async def _serve(self, client: SocketStream) -> None:
        if len(self._live) >= self.max_connections:
            self.refused += 1
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await anyio.aclose_forcefully(client)
            return
        conn = ProxyConnection(self, self.accepted, client)
        self.accepted += 1
        self._live[conn.id] = conn
        self._accept_event.set()
        conn.apply(self._script.pop() if self._script else self._default)
        try:
            await conn._run()
        except Exception:  # one connection's failure never ends the proxy
            pass
        finally:
            del self._live[conn.id]


@asynccontextmanager
async def open_fault_proxy(
    target_host: str, target_port: int, *, max_connections: int = 64
) -> AsyncIterator[FaultProxy]:
    """
    Run a :class:`FaultProxy` on ``127.0.0.1`` (any free port) to ``target_host:target_port``.

    Leaving the ``async with`` closes the listener and every connection (bounded).
    """
    if max_connections < 1:
        raise ValueError("max_connections must be >= 1")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    proxy = FaultProxy(target_host, target_port, port, max_connections)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy._serve, tg)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
