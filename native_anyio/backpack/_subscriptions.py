"""
Backpack subscribe/unsubscribe frames, signed afresh for private streams.

``{"method":"SUBSCRIBE","params":[...]}`` for public streams; private (``account.*``) streams go
in a separate frame carrying ``"signature": [key, signature, timestamp, window]`` over
``instruction=subscribe&timestamp=<ms>&window=<ms>``, built at send time so every reconnect
re-signs. Unsubscribing is never signed (as the recorded clients do).

Backpack acknowledges nothing and echoes no request id, so an error frame cannot be matched to
its request exactly: :meth:`BackpackSubscriptions.attribute_error` blames the most recent request
that could have caused it (a private one for 4003 "Invalid signature").
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, final

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._auth import Ed25519Signer

__all__ = ["BackpackSubscriptions"]

_encode = msgspec.json.encode
_BATCH = 100
_REMEMBERED = 64


@final
class BackpackSubscriptions:
    """
    The :class:`~native_anyio.SubscriptionProtocol` of Backpack.

    Args:
        signer: signs private subscriptions (``None``: public streams only).
        window_ms: the signature window.
    """

    def __init__(self, signer: Ed25519Signer | None, *, window_ms: int = 5000) -> None:
        self._signer = signer
        self._window_ms = window_ms
        self._requests: deque[tuple[bool, tuple[str, ...]]] = deque(maxlen=_REMEMBERED)

    def __repr__(self) -> str:
        return f"BackpackSubscriptions(signed={self._signer is not None})"

    def subscribe_messages(self, streams: Sequence[str]) -> list[str]:
        public = [s for s in streams if not s.startswith("account.")]
        private = [s for s in streams if s.startswith("account.")]
        frames = self._frames("SUBSCRIBE", public)
        if private:
            if self._signer is None:
                raise ValueError("private streams need a signer (api_key and api_secret)")
            for i in range(0, len(private), _BATCH):
                chunk = private[i : i + _BATCH]
                signature = self._signer.ws_signature(window_ms=self._window_ms)
                frames.append(
                    _encode({"method": "SUBSCRIBE", "params": chunk, "signature": signature}).decode()
                )
                self._requests.append((True, tuple(chunk)))
        return frames

    def unsubscribe_messages(self, streams: Sequence[str]) -> list[str]:
        return self._frames("UNSUBSCRIBE", list(streams))

    def _frames(self, method: str, streams: list[str]) -> list[str]:
        frames = []
        for i in range(0, len(streams), _BATCH):
            chunk = streams[i : i + _BATCH]
            frames.append(_encode({"method": method, "params": chunk}).decode())
            self._requests.append((False, tuple(chunk)))
        return frames

    def attribute_error(self, code: int | None = None) -> tuple[str, ...]:
        """The streams of the request most likely to have caused an error frame with ``code``."""
        for private, streams in reversed(self._requests):
            if code != 4003 or private:
                return streams
        return ()
