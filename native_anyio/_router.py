"""
The message router: decode each message once, route it by channel, count what goes wrong.

A venue describes its wire messages as msgspec structs, ideally a tagged union on the event type
(decoded in one pass by a ``msgspec.json.Decoder`` built at construction; about 1.4x cheaper than
a ``Raw`` envelope plus a second decode). ``channel_of`` maps a decoded message to its routing
key (default: its type). Handlers are plain sync callables: the router never awaits, so a whole
batch from one socket read is decoded and dispatched without a checkpoint per message.

Bad input never raises: a payload that fails to decode is counted (``parse_errors``) and
skipped, a message nobody handles is counted (``unrouted``). A handler that raises either
propagates (``handler_errors="raise"``, the default: a bug should be loud) or is counted and
reported to the hooks while the rest of the batch continues (``"count"``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, final

import msgspec

from ._errors import DecodeError
from ._health import Health, HealthStatus, Instrumentation, emit

__all__ = ["Router", "RouterStatistics"]

T = TypeVar("T")

Handler = Callable[[T], object]

# What a msgspec decoder raises on bad input: DecodeError (and its ValidationError), but also
# RecursionError for absurdly deep nesting and UnicodeDecodeError for invalid UTF-8 in a string.
_DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


@final
@dataclass(frozen=True, slots=True)
class RouterStatistics:
    """A snapshot of a router's counters."""

    messages: int
    decoded: int
    parse_errors: int
    unrouted: int
    handler_errors: int
    events: int
    last_parse_error: str | None
    per_channel: tuple[tuple[str, int], ...]


@final
class Router(Generic[T]):
    """
    Decode-once message router.

    Args:
        message_type: the type to decode into (a Struct, or a union of tagged Structs).
        channel_of: routing key of a decoded message (default: ``type``).
        handler_errors: ``"raise"`` or ``"count"`` (see the module docs).
        hooks: instrumentation hooks (``parse_error``, ``handler_error`` events).
        strict: msgspec strict mode (keep ``True`` unless a venue needs lax numbers).
    """

    def __init__(
        self,
        message_type: Any,
        *,
        channel_of: Callable[[T], Hashable] | None = None,
        handler_errors: Literal["raise", "count"] = "raise",
        hooks: Iterable[Instrumentation] = (),
        strict: bool = True,
    ) -> None:
        if handler_errors not in ("raise", "count"):
            raise ValueError("handler_errors must be 'raise' or 'count'")
        self._decode = msgspec.json.Decoder(message_type, strict=strict).decode
        self._channel_of: Callable[[T], Hashable] = channel_of or type
        self._handlers: dict[Hashable, list[Handler[T]]] = {}
        self._event_handlers: list[Callable[[object], object]] = []
        self._raise = handler_errors == "raise"
        self._hooks = tuple(hooks)
        self._messages = 0
        self._parse_errors = 0
        self._unrouted = 0
        self._handler_errors = 0
        self._events = 0
        self._last_parse_error: str | None = None
        self._per_channel: dict[Hashable, int] = {}
        self._health_mark = (0, 0, 0)

    def __repr__(self) -> str:
        return f"<Router channels={len(self._handlers)} messages={self._messages}>"

    def add_handler(self, channel: Hashable, handler: Handler[T]) -> None:
        """Call ``handler(message)`` for every message whose channel is ``channel``."""
        self._handlers.setdefault(channel, []).append(handler)

    def remove_handler(self, channel: Hashable, handler: Handler[T]) -> None:
        """Undo :meth:`add_handler`. Raises ``ValueError`` if it was not registered."""
        handlers = self._handlers.get(channel)
        if not handlers or handler not in handlers:
            raise ValueError(f"handler {handler!r} is not registered for {channel!r}")
        handlers.remove(handler)
        if not handlers:
            del self._handlers[channel]

    def add_event_handler(self, handler: Callable[[object], object]) -> None:
        """Call ``handler(event)`` for each non-bytes item of a batch (session events)."""
        self._event_handlers.append(handler)

    def decode(self, payload: bytes) -> T:
        """
        Decode one payload (counted like any other).

        Raises:
            DecodeError: the payload does not decode into the message type.
        """
        self._messages += 1
        try:
            return self._decode(payload)  # type: ignore[no-any-return]
        except _DECODE_ERRORS as exc:
            self._note_parse_error(exc)
            raise DecodeError(f"cannot decode message: {exc}") from exc

    def iter_decode(self, items: Iterable[bytes | object]) -> Iterator[T]:
        """
        Decode the bytes payloads of ``items`` one at a time (the fastest consumer path).

        Malformed payloads are counted and skipped; non-bytes items (session events) go to the
        event handlers, in order. Unlike :meth:`decode_batch` it never holds a batch of decoded
        messages alive at once, which keeps Python's cyclic GC from running once per batch (a
        batch of a few hundred structs crosses the GC threshold: measured +0.4-1.0 µs/msg, see
        ``benchmarks/README.md``).
        """
        decode = self._decode
        for item in items:
            if type(item) is bytes:
                self._messages += 1
                try:
                    message = decode(item)
                except _DECODE_ERRORS as exc:
                    self._note_parse_error(exc)
                    continue
                yield message
            else:
                self._on_event(item)

    def decode_batch(self, items: Iterable[bytes | object]) -> list[T]:
        """
        Decode every bytes payload of ``items`` into a list; malformed ones are counted and
        skipped, non-bytes items (session events) are passed to the event handlers. Prefer
        :meth:`iter_decode` on hot paths: a list of hundreds of live structs triggers the GC.
        """
        decode = self._decode
        out: list[T] = []
        append = out.append
        for item in items:
            if type(item) is bytes:
                self._messages += 1
                try:
                    append(decode(item))
                except _DECODE_ERRORS as exc:
                    self._note_parse_error(exc)
            else:
                self._on_event(item)
        return out

    def dispatch_batch(self, items: Iterable[bytes | object]) -> int:
        """
        Decode and dispatch every payload of ``items`` (session events go to the event
        handlers, in order). Returns how many messages reached a handler.
        """
        decode = self._decode
        channel_of = self._channel_of
        handlers = self._handlers
        per_channel = self._per_channel
        routed = 0
        for item in items:
            if type(item) is not bytes:
                self._on_event(item)
                continue
            self._messages += 1
            try:
                message = decode(item)
            except _DECODE_ERRORS as exc:
                self._note_parse_error(exc)
                continue
            channel = channel_of(message)
            per_channel[channel] = per_channel.get(channel, 0) + 1
            targets = handlers.get(channel)
            if not targets:
                self._unrouted += 1
                continue
            routed += 1
            for handler in targets:
                if self._raise:
                    handler(message)
                else:
                    try:
                        handler(message)
                    except Exception as exc:
                        self._handler_errors += 1
                        emit(self._hooks, "router", "handler_error", channel=str(channel), error=repr(exc))
        return routed

    def dispatch(self, payload: bytes) -> bool:
        """Decode and dispatch one payload; True when a handler received it."""
        return self.dispatch_batch((payload,)) == 1

    def _on_event(self, event: object) -> None:
        self._events += 1
        for handler in self._event_handlers:
            handler(event)

    def _note_parse_error(self, exc: Exception) -> None:
        self._parse_errors += 1
        self._last_parse_error = str(exc)[:200]
        emit(self._hooks, "router", "parse_error", error=self._last_parse_error)

    def statistics(self) -> RouterStatistics:
        """A frozen snapshot of the counters (sync, cheap)."""
        decoded = self._messages - self._parse_errors
        return RouterStatistics(
            messages=self._messages,
            decoded=decoded,
            parse_errors=self._parse_errors,
            unrouted=self._unrouted,
            handler_errors=self._handler_errors,
            events=self._events,
            last_parse_error=self._last_parse_error,
            per_channel=tuple(sorted((_channel_name(k), v) for k, v in self._per_channel.items())),
        )

    def health(self, *, max_error_ratio: float = 0.01) -> Health:
        """
        Degraded when, among the messages seen since the previous ``health()`` call, parse or
        handler errors exceed ``max_error_ratio``; so it recovers once errors stop.
        """
        messages, parse_errors, handler_errors = self._messages, self._parse_errors, self._handler_errors
        last_messages, last_parse, last_handler = self._health_mark
        self._health_mark = (messages, parse_errors, handler_errors)
        window = messages - last_messages
        findings: list[tuple[HealthStatus, str]] = []
        bad_parse = parse_errors - last_parse
        bad_handler = handler_errors - last_handler
        if window and bad_parse / window > max_error_ratio:
            findings.append(("degraded", f"{bad_parse} of the last {window} messages failed to decode"))
        if window and bad_handler / window > max_error_ratio:
            findings.append(("degraded", f"{bad_handler} handler errors in the last {window} messages"))
        return Health.from_findings(findings)


def _channel_name(key: Hashable) -> str:
    return key.__name__ if isinstance(key, type) else str(key)
