"""
Subscriptions of every connection and the fan-out of frames to them.

A frame is encoded once per stream and the same bytes are queued on every subscriber, unless a
connection has faults armed (then :class:`~._faults.FaultController` decides what it gets).
Publishers ask :meth:`Hub.has` before building a payload, so unsubscribed streams cost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._frames import OP_TEXT, encode_frame

if TYPE_CHECKING:
    from ._conn import Connection
    from ._faults import DepthFrame, FaultController
    from ._streams import StreamRef

__all__ = ["Hub"]


class Hub:
    """The subscription index: stream name -> subscribed connections (in subscribe order)."""

    __slots__ = ("_faults", "_subs")

    def __init__(self, faults: FaultController) -> None:
        self._faults = faults
        self._subs: dict[str, dict[int, Connection]] = {}

    def has(self, stream: str) -> bool:
        """Whether any connection is subscribed to ``stream``."""
        return stream in self._subs

    def subscribe(self, conn: Connection, ref: StreamRef) -> bool:
        """Subscribe ``conn`` to ``ref``; False when it already was (no duplicate delivery)."""
        if ref.name in conn.subscriptions:
            return False
        conn.subscriptions[ref.name] = ref
        self._subs.setdefault(ref.name, {})[conn.id] = conn
        return True

    def unsubscribe(self, conn: Connection, name: str) -> None:
        """Unsubscribe ``conn`` from ``name`` (a no-op when it was not subscribed)."""
        # A stopped stream (FaultController.stop_stream) models a stuck server-side
        # subscription: unsubscribing it clears the fault, as a resubscribe would on the venue.
        conn.faults.muted.discard(name)
        if conn.subscriptions.pop(name, None) is None:
            return
        subs = self._subs.get(name)
        if subs is not None:
            subs.pop(conn.id, None)
            if not subs:
                del self._subs[name]

    def remove(self, conn: Connection) -> None:
        """Forget every subscription of a closed connection (its record keeps them)."""
        for name in conn.subscriptions:
            subs = self._subs.get(name)
            if subs is not None:
                subs.pop(conn.id, None)
                if not subs:
                    del self._subs[name]

    def publish(self, stream: str, body: bytes) -> None:
        """Queue one data frame on every subscriber of ``stream``."""
        subs = self._subs.get(stream)
        if not subs:
            return
        frame = encode_frame(OP_TEXT, body, mask=False)
        for conn in list(subs.values()):
            conn.deliver(body, frame, stream)

    def publish_depth(self, frame: DepthFrame) -> None:
        """Queue a depth frame, through each connection's armed depth faults."""
        subs = self._subs.get(frame.stream)
        if not subs:
            return
        wire: bytes | None = None
        for conn in list(subs.values()):
            if conn.faults.depth_rules:
                for body in self._faults.apply_depth(conn, frame):
                    conn.deliver(body, None, frame.stream)
                continue
            if wire is None:
                wire = encode_frame(OP_TEXT, frame.body, mask=False)
            conn.deliver(frame.body, wire, frame.stream)
