"""
Accepting websocket connections: the opening handshake and the connection registry.

Rules:

* the request head must arrive within :data:`HANDSHAKE_TIMEOUT` seconds and
  :data:`~native_anyio._handshake.MAX_HEAD_SIZE` bytes, else the socket is closed unanswered;
* a request that is not a websocket upgrade gets ``400 Bad Request``; any path is accepted;
* ``reject_handshake`` faults answer their HTTP status; beyond ``max_connections`` open
  connections the answer is ``503``;
* no extension is negotiated (permessage-deflate offers are ignored, which Backpack allows);
* ``drop_after_accept`` faults complete the 101 and close the socket at once;
* closed connections are kept (at most :data:`CLOSED_KEPT`) for :attr:`Simulator.connections`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import anyio

from ..._errors import RemoteProtocolError
from ..._handshake import MAX_HEAD_SIZE, HandshakeRequest, build_server_response
from ._conn import Connection, ConnectionInfo

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import SocketStream

    from ._config import SimulatorConfig
    from ._faults import FaultController
    from ._hub import Hub

__all__ = ["CLOSED_KEPT", "HANDSHAKE_TIMEOUT", "WsServer"]

HANDSHAKE_TIMEOUT = 10.0
CLOSED_KEPT = 1000
_QUIET = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def _status_line(status: int, reason: str) -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()


class WsServer:
    """The websocket side of the simulator."""

    def __init__(
        self,
        config: SimulatorConfig,
        faults: FaultController,
        hub: Hub,
        on_text: Callable[[Connection, bytes], None],
        on_change: Callable[[], None],
    ) -> None:
        self._config = config
        self._faults = faults
        self._hub = hub
        self._on_text = on_text
        self._on_change = on_change
        self.connections: dict[int, Connection] = {}
        self.closed: deque[ConnectionInfo] = deque(maxlen=CLOSED_KEPT)
        self.accepted = 0
        self.errors: list[Exception] = []

    async def serve(self, stream: SocketStream) -> None:
        """Serve one TCP connection (a task of the simulator's task group; never raises)."""
        try:
            async with stream:
                await self._serve(stream)
        except _QUIET:
            pass
        except Exception as exc:  # a simulator bug: reported when the simulator exits
            self.errors.append(exc)

    async def _serve(self, stream: SocketStream) -> None:
        received = await self._read_head(stream)
        if received is None:
            return
        head, rest = received
        try:
            request = HandshakeRequest.parse(head)
        except RemoteProtocolError:
            await stream.send(_status_line(400, "Bad Request"))
            return
        status = self._faults.handshake_status()
        if status is None and len(self.connections) >= self._config.max_connections:
            status = 503
        if status is not None:
            await stream.send(_status_line(status, "Rejected"))
            return
        self.accepted += 1
        conn = Connection(
            self.accepted, request.path, stream, self._config, self._on_text, self._faults.record
        )
        # Registered before the 101 goes out: once the client sees it, "all" faults include it.
        self.connections[conn.id] = conn
        try:
            keep = self._faults.on_accept(conn)
            await stream.send(build_server_response(request))
            if keep:
                self._on_change()
                await conn.run(rest)
            else:
                conn.close_reason = "drop after accept"
                conn.closed_at = anyio.current_time()
        finally:
            del self.connections[conn.id]
            self._hub.remove(conn)
            self.closed.append(conn.info())
            self._on_change()

    @staticmethod
    async def _read_head(stream: SocketStream) -> tuple[bytes, bytes] | None:
        buffer = b""
        with anyio.move_on_after(HANDSHAKE_TIMEOUT):
            while b"\r\n\r\n" not in buffer:
                buffer += await stream.receive(65536)
                if len(buffer) > MAX_HEAD_SIZE:
                    return None
            head, _, rest = buffer.partition(b"\r\n\r\n")
            return head, rest
        return None

    def infos(self) -> tuple[ConnectionInfo, ...]:
        """Every kept connection (closed ones first, by id)."""
        items = [*self.closed, *(conn.info() for conn in self.connections.values())]
        return tuple(sorted(items, key=lambda info: info.id))
