"""
The server side of one simulated websocket connection: reader, writer and pinger tasks.

Rules:

* one writer task owns the socket's send side; everything (data, pongs, pings, close frames,
  raw fault bytes) goes through one bounded outbox, so frames are never interleaved and a
  "flush, then drop" is ordered after what was queued before it;
* a client that does not read makes the outbox grow; at ``max_outbox`` frames the connection
  is dropped at once (``close_reason == "slow consumer"``);
* server pings go out every ``ping_interval`` from the connection's open time; when the oldest
  unanswered ping is ``pong_timeout`` old the server sends close 1011 ``"pong timeout"`` and
  drops the socket when the client's close arrives or ``close_grace`` later (any pong answers
  every outstanding ping);
* a client ping is answered with a pong carrying its payload; a client close is echoed, then
  the socket is closed;
* RFC 6455 violations get close 1002/1007, an oversize message 1009, then a drop;
* after a close frame was sent no data frame follows it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import anyio

from ..._errors import MessageTooBig
from ..._frames import (
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
from ._faults import ConnFaults

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import SocketStream, TaskGroup

    from ._config import SimulatorConfig
    from ._streams import StreamRef

__all__ = ["Connection", "ConnectionInfo"]

_DROP = object()  # outbox item: flush what precedes, then close the socket
_QUIET = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@final
@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """
    A snapshot of one websocket connection.

    Attributes:
        id: connection id (1, 2, ... in accept order).
        path: the request path of the handshake.
        open: whether the socket is still open.
        opened_at: ``anyio.current_time()`` when the handshake completed.
        closed_at: when the connection ended, if it did.
        close_code_sent: the code of the server's close frame, if one was sent.
        close_code_received: the code of the client's close frame (1005: none in it).
        close_reason: why the connection ended (``"client closed"``, ``"pong timeout"``...).
        subscriptions: the streams subscribed at the time of the snapshot.
        pings_sent: server pings sent.
        pongs_received: pongs received from the client.
    """

    id: int
    path: str
    open: bool
    opened_at: float
    closed_at: float | None
    close_code_sent: int | None
    close_code_received: int | None
    close_reason: str | None
    subscriptions: frozenset[str]
    pings_sent: int
    pongs_received: int


class Connection:
    """One accepted websocket connection (see the module rules)."""

    def __init__(
        self,
        conn_id: int,
        path: str,
        stream: SocketStream,
        config: SimulatorConfig,
        on_text: Callable[[Connection, bytes], None],
        record: Callable[..., None],
    ) -> None:
        self.id = conn_id
        self.path = path
        self.faults = ConnFaults()
        self.subscriptions: dict[str, StreamRef] = {}
        self.opened_at = anyio.current_time()
        self.closed_at: float | None = None
        self.close_code_sent: int | None = None
        self.close_code_received: int | None = None
        self.close_reason: str | None = None
        self.pings_sent = 0
        self.pongs_received = 0
        self.last_pong_at: float | None = None
        self._stream = stream
        self._config = config
        self._on_text = on_text
        self._record = record
        self._outbox: deque[object] = deque()
        self._wake = anyio.Event()
        self._done = anyio.Event()
        self._close_ack = anyio.Event()
        self._dropping = False
        self._tg: TaskGroup | None = None

    def info(self) -> ConnectionInfo:
        """A frozen snapshot of this connection."""
        return ConnectionInfo(
            self.id,
            self.path,
            self.closed_at is None,
            self.opened_at,
            self.closed_at,
            self.close_code_sent,
            self.close_code_received,
            self.close_reason,
            frozenset(self.subscriptions),
            self.pings_sent,
            self.pongs_received,
        )

    # -- output (synchronous: publishers call these) -------------------------------------------

    def deliver(self, body: bytes, frame: bytes | None = None, stream: str | None = None) -> None:
        """Queue one data frame (``frame`` is ``body`` already framed, when the caller has it)."""
        faults = self.faults
        if faults.active:
            if faults.stop_data or faults.blackhole or (stream is not None and stream in faults.muted):
                return
            if faults.tag:
                body = b'{"conn":%d,' % self.id + body[1:]
                frame = None
            if faults.cut_at is not None:
                self._cut(encode_frame(OP_TEXT, body, mask=False), faults.cut_at)
                return
        if self.close_code_sent is None:
            self._enqueue(frame or encode_frame(OP_TEXT, body, mask=False))

    def send_text(self, body: bytes) -> None:
        """Queue one text frame that is not stream data (errors, fault payloads)."""
        if not self.faults.blackhole and self.close_code_sent is None:
            self._enqueue(encode_frame(OP_TEXT, body, mask=False))

    def _cut(self, frame: bytes, at: int) -> None:
        cut = min(at or len(frame) // 2, len(frame) - 1)
        self.faults.cut_at = None
        self._record("cut_frame", self.id, None, sent=cut, size=len(frame))
        self._enqueue(frame[:cut])
        self.drop("cut frame")

    def _enqueue(self, item: bytes) -> None:
        if self._dropping:
            return
        if len(self._outbox) >= self._config.max_outbox:
            self.hard_drop("slow consumer")
            return
        self._outbox.append(item)
        self._wake.set()

    def request_close(self, code: int, reason: str) -> None:
        """Send a close frame; drop when the client answers or after ``close_grace``."""
        if self.close_code_sent is not None or self._dropping:
            return
        self.close_code_sent = code
        self.close_reason = self.close_reason or reason
        if self.faults.blackhole:
            self.hard_drop(reason)
            return
        self._enqueue(encode_frame(OP_CLOSE, encode_close_payload(code, reason), mask=False))
        if self._tg is not None:
            self._tg.start_soon(self._await_close_ack)

    async def _await_close_ack(self) -> None:
        """Drop the connection ``close_grace`` after our close frame unless the client answered."""
        with anyio.move_on_after(self._config.close_grace):
            await self._close_ack.wait()
        if not self._close_ack.is_set():  # the writer may be stuck on a peer that does not read
            self.hard_drop("close grace expired")

    def drop(self, reason: str) -> None:
        """Close the socket once what is queued has been written (no close frame)."""
        if not self._dropping:
            self.close_reason = self.close_reason or reason
            self._outbox.append(_DROP)
            self._dropping = True
            self._wake.set()

    def hard_drop(self, reason: str) -> None:
        """Close the socket now, discarding what is queued."""
        self.close_reason = self.close_reason or reason
        self._dropping = True
        self._outbox.clear()
        self._done.set()

    # -- tasks ---------------------------------------------------------------------------------

    async def run(self, initial: bytes) -> None:
        """Serve the connection until it ends (the caller closes the socket afterwards)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._reader, initial)
                tg.start_soon(self._writer)
                if self._config.ping_interval is not None:
                    tg.start_soon(self._pinger, self._config.ping_interval)
                if self.close_code_sent is not None:  # a close requested before the tasks started
                    tg.start_soon(self._await_close_ack)
                await self._done.wait()
                tg.cancel_scope.cancel()
        finally:
            self._tg = None
            self._dropping = True
            self.closed_at = anyio.current_time()

    async def _writer(self) -> None:
        outbox, send = self._outbox, self._stream.send
        try:
            while True:
                if not outbox:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                batch: list[bytes] = []
                item: object = None
                while outbox:
                    item = outbox.popleft()
                    if not isinstance(item, bytes):
                        break
                    batch.append(item)
                if batch:
                    await send(b"".join(batch))
                if item is _DROP:
                    break
        except _QUIET:
            self.close_reason = self.close_reason or "send failed"
        self._done.set()

    async def _reader(self, initial: bytes) -> None:
        parser = FrameParser(max_message_size=self._config.max_message_size, expect_masked=True)
        data = initial
        try:
            while True:
                chunk = data or await self._stream.receive(65536)
                data = b""
                if self.faults.blackhole:
                    continue
                try:
                    messages = parser.feed(chunk)
                except FrameProtocolError as exc:
                    self._protocol_error(exc.close_code, "protocol error")
                    return
                except MessageTooBig:
                    self._protocol_error(1009, "message too big")
                    return
                for message in messages:
                    self._on_text(self, message)
                if parser.control:
                    self._handle_control(parser.control)
                    parser.control.clear()
        except _QUIET:
            self.close_reason = self.close_reason or "client went away"
            self._done.set()

    def _protocol_error(self, code: int, reason: str) -> None:
        self.request_close(code, reason)
        self.drop(reason)

    def _handle_control(self, control: list[tuple[int, bytes]]) -> None:
        for opcode, payload in control:
            if opcode == OP_PING:
                self._enqueue(encode_frame(OP_PONG, payload, mask=False))
            elif opcode == OP_PONG:
                self.pongs_received += 1
                self.last_pong_at = anyio.current_time()
            elif opcode == OP_CLOSE:
                code, _ = parse_close_payload(payload)
                self.close_code_received = 1005 if code is None else code
                if self.close_code_sent is None:  # the client started the close: echo it
                    self.close_code_sent = self.close_code_received if code is not None else None
                    self.close_reason = self.close_reason or "client closed"
                    self._enqueue(encode_frame(OP_CLOSE, payload[:2], mask=False))
                    self.drop("client closed")
                else:  # the answer to our close: the handshake is complete
                    self._close_ack.set()
                    self.drop("close handshake done")

    async def _pinger(self, interval: float) -> None:
        timeout = self._config.pong_timeout
        count = 0
        oldest: float | None = None  # send time of the oldest unanswered ping
        while True:
            next_ping = self.opened_at + (count + 1) * interval
            wake = next_ping if oldest is None or timeout is None else min(next_ping, oldest + timeout)
            await anyio.sleep_until(wake)
            if oldest is not None and self.last_pong_at is not None and self.last_pong_at >= oldest:
                oldest = None
            if self.faults.blackhole:
                oldest = None
            elif oldest is not None and timeout is not None and wake >= oldest + timeout:
                self.request_close(1011, "pong timeout")
                return
            if wake >= next_ping:
                count += 1
                if not self.faults.stop_pings and not self.faults.blackhole and self.close_code_sent is None:
                    self._enqueue(encode_frame(OP_PING, b"", mask=False))
                    self.pings_sent += 1
                    if oldest is None:
                        oldest = next_ping
