"""
The exception tree of native_anyio.

Every error the library raises derives from :class:`NativeError`. The tree is split first by
*what the caller should do* and then by *who is at fault*::

    NativeError
    ├── TransportError            retryable: reconnect / resend an idempotent request
    │   ├── ConnectError          TCP/TLS connect failed or timed out
    │   ├── ConnectionLost        an established connection ended; carries a CloseReason
    │   └── RequestTimeout        an HTTP request ran out of time
    ├── ProtocolError
    │   ├── LocalProtocolError    we (or the caller) broke the protocol: a bug or misuse
    │   └── RemoteProtocolError   the peer broke the protocol; retryable on a new connection
    │       ├── MessageTooBig     a message exceeded the configured maximum size
    │       ├── DecodeError       a payload that does not decode into the expected type
    │       └── HandshakeRejected the websocket upgrade was answered with a non-101 status
    ├── ApiError                  the venue answered with an error (HTTP status / error code)
    ├── RateLimited               the venue asked us to slow down; ``retry_after`` seconds
    ├── AuthError                 bad credentials or signature: never retried
    │   └── InvalidKeyError       a key that fails validation at construction
    └── NativeInternalError       a bug in native_anyio (unexpected multi-error, ...)

Errors carry context attributes (``exchange``, ``channel``, ``request``) in httpx style.
Exceptions from dependencies (anyio, httpx, msgspec, ssl, OSError) are translated at the
adapter boundary, with the original chained as ``__cause__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, final

__all__ = [
    "ApiError",
    "AuthError",
    "CloseReason",
    "ConnectError",
    "ConnectionLost",
    "DecodeError",
    "HandshakeRejected",
    "InvalidKeyError",
    "LocalProtocolError",
    "MessageTooBig",
    "NativeError",
    "NativeInternalError",
    "ProtocolError",
    "RateLimited",
    "RemoteProtocolError",
    "RequestTimeout",
    "TransportError",
]


class NativeError(Exception):
    """
    Root of every exception raised by native_anyio.

    Attributes:
        exchange: the venue the error relates to, when known.
        channel: the stream or channel name, when known.
        request: a short description of the request (``"GET /api/v1/depth"``), when known.
    """

    #: Whether retrying the same operation (on a new connection) may succeed.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str = "",
        *,
        exchange: str | None = None,
        channel: str | None = None,
        request: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exchange = exchange
        self.channel = channel
        self.request = request

    def __str__(self) -> str:
        context = [
            f"{name}={value}"
            for name, value in (
                ("exchange", self.exchange),
                ("channel", self.channel),
                ("request", self.request),
            )
            if value is not None
        ]
        if not context:
            return self.message
        return f"{self.message} ({', '.join(context)})"

    def __reduce__(self) -> tuple[object, ...]:  # keep context across pickling
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[NativeError], args: tuple[object, ...], state: dict[str, object]) -> NativeError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class TransportError(NativeError):
    """The network path failed; a new connection or an idempotent resend may succeed."""

    retryable = True


class ConnectError(TransportError):
    """Opening the TCP/TLS connection, or the websocket handshake, failed or timed out."""


class RequestTimeout(TransportError):
    """An HTTP request did not complete within its timeout."""


@final
@dataclass(frozen=True, slots=True)
class CloseReason:
    """
    Why a websocket connection ended.

    Attributes:
        kind: a short machine-readable tag, one of ``normal``, ``going_away``, ``ping_timeout``,
            ``server_ping_lost``, ``idle``, ``slow_consumer``, ``protocol_error``, ``too_big``,
            ``transport``, ``handshake``, ``fatal``, ``closed``.
        code: the websocket close code, if one was sent or received.
        detail: human-readable detail.
    """

    kind: str
    code: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        code = f" {self.code}" if self.code is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.kind}{code}{detail}"


class ConnectionLost(TransportError):
    """
    An established connection ended (or the session gave up reconnecting).

    Attributes:
        reason: the :class:`CloseReason` of the last connection.
        attempts: connection attempts made in the current retry run.
    """

    def __init__(
        self, message: str, *, reason: CloseReason, attempts: int = 0, **context: str | None
    ) -> None:
        super().__init__(message, **context)
        self.reason = reason
        self.attempts = attempts


class ProtocolError(NativeError):
    """Someone broke the protocol; see the two subclasses for who."""


class LocalProtocolError(ProtocolError):
    """We, or the caller, broke the protocol or misused the API. Not retryable."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. A new connection may succeed."""

    retryable = True


class MessageTooBig(RemoteProtocolError):
    """A message (all fragments together) exceeded the configured maximum size."""

    def __init__(self, message: str, *, size: int, limit: int, **context: str | None) -> None:
        super().__init__(message, **context)
        self.size = size
        self.limit = limit


class DecodeError(RemoteProtocolError):
    """A payload could not be decoded into the expected type."""


class HandshakeRejected(RemoteProtocolError):
    """
    The websocket upgrade was answered with a status other than 101.

    4xx answers (other than 408 and 429) are fatal: the same request will be rejected again.
    """

    def __init__(self, message: str, *, status_code: int, **context: str | None) -> None:
        super().__init__(message, **context)
        self.status_code = status_code

    @property
    def fatal(self) -> bool:
        """True when retrying the handshake cannot help (a 4xx other than 408/429)."""
        return 400 <= self.status_code < 500 and self.status_code not in (408, 429)


class ApiError(NativeError):
    """
    The venue answered a request with an error.

    Attributes:
        status_code: HTTP status (``None`` for websocket error frames).
        code: the venue's error code (string or int), when it sent one.
        body: the raw body text, truncated to 512 characters.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | int | None = None,
        body: str = "",
        **context: str | None,
    ) -> None:
        super().__init__(message, **context)
        self.status_code = status_code
        self.code = code
        self.body = body[:512]

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """5xx answers are retryable; everything else is not."""
        return self.status_code is not None and self.status_code >= 500


class RateLimited(NativeError):
    """
    The venue rate-limited us (HTTP 429 or 418) and retries are exhausted or not allowed.

    Attributes:
        retry_after: seconds the venue asked us to wait, or ``None`` when it did not say.
        status_code: 429 or 418.
    """

    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None, status_code: int = 429, **context: str | None
    ) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after
        self.status_code = status_code


class AuthError(NativeError):
    """Credentials or a signature were refused. Not retryable."""


class InvalidKeyError(AuthError, ValueError):
    """A key failed validation at construction. The message never contains the secret."""


class NativeInternalError(NativeError):
    """A bug in native_anyio, such as an unexpected exception group. Please report it."""
