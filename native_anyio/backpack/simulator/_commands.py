"""
The client-to-server websocket protocol: SUBSCRIBE / UNSUBSCRIBE, and its error frames.

Rules (protocol doc §2.2, §9.1-3; where Backpack is silent, our choice is marked):

* a text message must be a JSON object with ``method`` ``SUBSCRIBE`` or ``UNSUBSCRIBE`` and
  ``params`` an array of strings; anything else (non-JSON, unknown method, an object ``params``)
  gets ``{"id":null,"error":{"code":4002,"message":"Parse error"}}`` and the socket stays open;
* ``id`` is ignored (never echoed) and a valid request gets no acknowledgement;
* each invalid stream name gets its own error frame (4006 or 4008) and the valid names of the
  same request are still (un)subscribed (our choice);
* a SUBSCRIBE naming any ``account.*`` stream needs a valid ``signature``; a missing, bad or
  expired one gets a single 4003 and nothing of that request is subscribed (our choice);
  UNSUBSCRIBE is never checked (BBGO: "Unsubscribing is never signed");
* subscribing twice to a stream is silent and does not duplicate delivery; unsubscribing from a
  stream that was not subscribed is silent; streams beyond ``max_subscriptions`` per connection
  are ignored (Backpack documents no limit; 98 streams on one socket were observed to work);
* subscribing to ``account.positionUpdate[.<symbol>]`` sends the open positions at once, without
  ``e`` (protocol doc §4.3).

Error frames keep the captured byte order ``{"id":null,"error":{...}}`` (not sorted).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import anyio
import msgspec

from ._streams import StreamError, StreamRef, parse_stream

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._conn import Connection
    from ._hub import Hub

__all__ = ["CommandHandler", "SubscriptionRecord", "error_frame"]

_DECODER = msgspec.json.Decoder()


def error_frame(code: int, message: str) -> bytes:
    """A websocket error frame body, byte for byte as captured."""
    return b'{"id":null,"error":{"code":%d,"message":"%s"}}' % (code, message.encode())


@final
@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """
    One SUBSCRIBE or UNSUBSCRIBE request as the server handled it.

    Attributes:
        conn_id: the connection it came on.
        at: ``anyio.current_time()`` when it was handled.
        method: ``"SUBSCRIBE"`` or ``"UNSUBSCRIBE"``.
        params: the stream names, as sent.
        signed: whether it carried a ``signature`` field.
        errors: the error codes sent back (empty: accepted).
    """

    conn_id: int
    at: float
    method: str
    params: tuple[str, ...]
    signed: bool
    errors: tuple[int, ...]


class CommandHandler:
    """Handles the text messages of every connection."""

    def __init__(
        self,
        hub: Hub,
        verify: Callable[[object], bool],
        on_subscribed: Callable[[Connection, StreamRef], None],
        on_change: Callable[[], None],
        max_subscriptions: int,
    ) -> None:
        self._hub = hub
        self._max = max_subscriptions
        self._verify = verify
        self._on_subscribed = on_subscribed
        self._on_change = on_change
        self.log: deque[SubscriptionRecord] = deque(maxlen=100_000)

    def __call__(self, conn: Connection, message: bytes) -> None:
        """Handle one complete text message from ``conn``."""
        request = self._parse(message)
        if request is None:
            conn.send_text(error_frame(4002, "Parse error"))
            return
        method, params, obj = request
        signed = "signature" in obj
        refs: list[StreamRef] = []
        errors: list[int] = []
        for name in params:
            try:
                refs.append(parse_stream(name))
            except StreamError as exc:
                errors.append(exc.code)
                conn.send_text(error_frame(exc.code, exc.message))
        if (
            method == "SUBSCRIBE"
            and any(ref.private for ref in refs)
            and not self._verify(obj.get("signature"))
        ):
            errors.append(4003)
            conn.send_text(error_frame(4003, "Invalid signature"))
            refs = []
        for ref in refs:
            if method == "UNSUBSCRIBE":
                self._hub.unsubscribe(conn, ref.name)
            elif len(conn.subscriptions) < self._max and self._hub.subscribe(conn, ref):
                self._on_subscribed(conn, ref)
        record = SubscriptionRecord(
            conn.id, anyio.current_time(), method, tuple(params), signed, tuple(errors)
        )
        self.log.append(record)
        self._on_change()

    @staticmethod
    def _parse(message: bytes) -> tuple[str, list[str], dict[str, Any]] | None:
        try:
            obj = _DECODER.decode(message)
        except msgspec.DecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        method, params = obj.get("method"), obj.get("params")
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            return None
        if not all(isinstance(p, str) for p in params):
            return None
        return method, params, obj
