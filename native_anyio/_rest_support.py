"""
The sans-IO half of the REST client: request/response records, ``Retry-After`` parsing, and the
translation of httpx exceptions and HTTP error answers into the native_anyio error tree.

Nothing here awaits or reads a clock: the wall clock for HTTP-dates is passed in.

Translation rules (the adapter boundary, so nothing from httpx leaks):

=================================================  ==========================================
httpx / answer                                     native_anyio
=================================================  ==========================================
``ConnectError``, ``ConnectTimeout``, ``ProxyError``  :class:`ConnectError` (nothing was sent)
other ``TimeoutException`` (read, write, pool)     :class:`RequestTimeout`
``RemoteProtocolError``, ``DecodingError``         :class:`RemoteProtocolError`
``LocalProtocolError``, ``UnsupportedProtocol``,   :class:`LocalProtocolError` (a misuse)
``InvalidURL``
any other ``HTTPError`` (read/write errors, ...)   :class:`TransportError`
HTTP 401, 403                                      :class:`AuthError`
HTTP 429, 418 (retries exhausted or not allowed)   :class:`RateLimited`
any other non-2xx                                  :class:`ApiError` (``code``/``message`` from a
                                                   JSON body, else the plain text)
=================================================  ==========================================
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias, final

import httpx
import msgspec

from ._errors import (
    ApiError,
    AuthError,
    ConnectError,
    LocalProtocolError,
    NativeError,
    RemoteProtocolError,
    RequestTimeout,
    TransportError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "ParamValue",
    "RequestInfo",
    "RestResponse",
    "RestStatistics",
    "Signer",
    "encode_params",
    "error_from_response",
    "map_httpx_errors",
    "parse_retry_after",
]

#: A query parameter value. ``None`` values are left out; booleans are sent as ``true``/``false``.
ParamValue: TypeAlias = str | int | float | bool | Decimal | None


@final
@dataclass(frozen=True, slots=True)
class RequestInfo:
    """
    What a signer sees of a request: built once per request, passed on every attempt.

    Attributes:
        method: upper-case HTTP method.
        path: the path relative to the client's base URL, without the query.
        params: the query parameters as ``(key, value)`` strings, sorted by key; sent in this order.
        json: the JSON body object as the caller gave it (``None`` when there is no body).
        body: the exact body bytes sent (the msgspec JSON encoding of ``json``).
    """

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None
    body: bytes = field(default=b"", repr=False)


#: Receives the request description, returns extra headers; called fresh for every attempt.
Signer: TypeAlias = Callable[[RequestInfo], Mapping[str, str]]


@final
@dataclass(frozen=True, slots=True)
class RestResponse:
    """
    A successful (2xx) answer, returned by requests made without ``type=``.

    Attributes:
        status_code: the HTTP status.
        headers: response headers by lower-cased name (repeated ones joined with ``", "``).
        content: the raw body.
    """

    status_code: int
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(repr=False)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """
        The body decoded as untyped JSON.

        Raises:
            msgspec.DecodeError: the body is not JSON (prefer ``type=`` on the request).
        """
        return msgspec.json.decode(self.content)


@final
@dataclass(frozen=True, slots=True)
class RestStatistics:
    """
    A snapshot of a :class:`RestClient`.

    Attributes:
        requests: HTTP requests sent (every attempt counts).
        retries: attempts scheduled after a failed one.
        errors: errors raised to callers, by exception class name.
        rate_limited: 429/418 answers received.
        last_status: the status of the last answer, ``None`` before the first one.
        in_flight: calls to ``request()`` in progress.
        gate_remaining: seconds until requests may be sent again after a ``Retry-After``.
        gate_status: the status (429 or 418) that set the gate, ``None`` when never gated.
        consecutive_failures: failed attempts (transport errors, 5xx, 429/418) since the last
            answer that was not one.
        closed: whether the client was closed.
    """

    requests: int
    retries: int
    errors: Mapping[str, int]
    rate_limited: int
    last_status: int | None
    in_flight: int
    gate_remaining: float
    gate_status: int | None
    consecutive_failures: int
    closed: bool


def encode_params(params: Mapping[str, ParamValue] | None) -> tuple[tuple[str, str], ...]:
    """
    The query as sorted ``(key, value)`` strings, in the form venues sign.

    ``None`` values are left out, booleans become ``true``/``false`` and numbers never use an
    exponent (``1e-07`` is sent as ``0.0000001``).

    Raises:
        LocalProtocolError: for a non-finite number.
    """
    if not params:
        return ()
    items = [(key, _param_text(value)) for key, value in params.items() if value is not None]
    items.sort()
    return tuple(items)


def _param_text(value: str | int | float | Decimal) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, float):
        value = Decimal(repr(value))  # repr is the shortest text that round-trips
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise LocalProtocolError(f"cannot send a non-finite number: {value}")
        return format(value, "f")
    return str(value)


def parse_retry_after(value: str | None, wall_now: float) -> float | None:
    """
    Seconds to wait per a ``Retry-After`` value: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    ``wall_now`` is the current wall-clock time (``time.time()``) for the HTTP-date form. Returns
    ``None`` for a missing or unparseable value; a date in the past gives ``0.0``.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" zone: RFC 5322 says UTC
            return None
        return max(0.0, when.timestamp() - wall_now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


@contextmanager
def map_httpx_errors(**context: str | None) -> Iterator[None]:
    """Translate httpx exceptions raised in the block (see the module table); chain the original."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError) as exc:
        raise ConnectError(f"connect failed: {_describe(exc)}", **context) from exc
    except httpx.TimeoutException as exc:
        raise RequestTimeout(f"timed out: {_describe(exc)}", **context) from exc
    except (httpx.RemoteProtocolError, httpx.DecodingError) as exc:
        raise RemoteProtocolError(f"peer broke HTTP: {_describe(exc)}", **context) from exc
    except (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise LocalProtocolError(f"bad request: {_describe(exc)}", **context) from exc
    except httpx.HTTPError as exc:
        raise TransportError(f"transport failed: {_describe(exc)}", **context) from exc


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def error_from_response(status: int, content: bytes, **context: str | None) -> NativeError:
    """The error for a non-2xx answer other than 429/418: :class:`AuthError` or :class:`ApiError`."""
    code, message = error_fields(status, content)
    if status in (401, 403):
        return AuthError(f"HTTP {status}: {message}", **context)
    text = content.decode("utf-8", "replace")
    return ApiError(f"HTTP {status}: {message}", status_code=status, code=code, body=text, **context)


def error_fields(status: int, content: bytes) -> tuple[str | int | None, str]:
    """
    ``(code, message)`` from an error body: ``{"code": ..., "message"|"msg": ...}`` JSON, or text.

    Venues differ: Backpack sends ``{"code": "INVALID_CLIENT_REQUEST", "message": ...}`` and
    answers some parameter errors with plain text; Binance uses ``{"code": -1121, "msg": ...}``.
    """
    text = content.decode("utf-8", "replace").strip()
    fallback = text[:200] or f"status {status}"
    try:
        body = msgspec.json.decode(content)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None, fallback
    if not isinstance(body, dict):
        return None, fallback
    code = body.get("code")
    if isinstance(code, bool) or not isinstance(code, (str, int)):
        code = None
    message = body.get("message", body.get("msg"))
    return code, str(message)[:200] if message not in (None, "") else fallback
