"""
A small, real HTTP/1.1 server on anyio TCP, for tests and the embedded exchange simulator.

Rules (RFC 9112, the subset a REST client needs):

* requests are read from a buffered stream; the head (request line + headers) is bounded by
  ``max_head`` bytes (431, or 414 when the request line alone is too long) and the body by
  ``max_body`` bytes (413). Bodies come with ``Content-Length`` or ``Transfer-Encoding: chunked``;
  anything else malformed is answered 400 (505 for an unknown HTTP version);
* connections are kept alive (HTTP/1.1 default, HTTP/1.0 with ``Connection: keep-alive``) until
  the client closes or sends ``Connection: close``; every response carries ``Content-Length``;
* after an error answer the server half-closes and drains what the client still sends, for a
  bounded time, so the client reads the answer instead of a connection reset;
* each connection is a task in the task group owned by :func:`open_http_server`; leaving the
  ``async with`` cancels them and closes every socket;
* a handler that raises gets its client a 500 (a response that cannot be encoded: a closed
  connection); the exception is kept in ``server.errors`` and raised (grouped) when the
  ``async with`` exits without an error of its own.

Faults are options of :class:`HttpResponse`: ``delay`` (``anyio.sleep``, so virtual clocks apply),
``drop`` (close the connection without answering) and ``trickle`` (a body sent byte by byte).
"""

from __future__ import annotations

import http
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final
from urllib.parse import parse_qsl, unquote

import anyio
import msgspec
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

if sys.version_info < (3, 11):  # pragma: no cover - exercised by the 3.10 CI session
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from anyio.abc import SocketStream

__all__ = ["HttpRequest", "HttpResponse", "HttpServerStatistics", "HttpTestServer", "open_http_server"]

#: How long the server keeps draining a rejected request before closing, seconds.
DRAIN_TIMEOUT = 2.0
_DRAIN_LIMIT = 16 * 1024 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_QUIET = (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError)


@final
@dataclass(frozen=True, slots=True)
class HttpRequest:
    """
    One request as the server received it.

    Attributes:
        method: e.g. ``"GET"``.
        path: the URL-decoded path, without the query.
        query: the URL-decoded query as ``(key, value)`` pairs, in order.
        headers: header values by lower-cased name (repeated headers joined with ``", "``).
        body: the request body (chunked bodies already de-chunked).
        arrived_at: ``anyio.current_time()`` when the request head was complete.
        target: the raw request target, as sent.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    arrived_at: float
    target: str

    @property
    def params(self) -> dict[str, str]:
        """The query as a dict (the last value wins for repeated keys)."""
        return dict(self.query)

    def json(self) -> Any:
        """The body decoded as JSON (raises ``msgspec.DecodeError`` when it is not JSON)."""
        return msgspec.json.decode(self.body)


@final
@dataclass(frozen=True, slots=True)
class HttpResponse:
    """
    What a handler answers, including faults to inject.

    Args:
        status: HTTP status code.
        body: bytes, or text (sent as UTF-8 with ``text/plain`` unless a content type is given).
        headers: extra headers; ``Content-Length`` is added unless given (a wrong one is a fault).
        delay: seconds to wait (``anyio.sleep``) before answering; ``math.inf`` never answers.
        drop: close the connection without answering.
        trickle: send the body one byte at a time, this many seconds apart (a slow venue).
    """

    status: int = 200
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    trickle: float = 0.0

    @classmethod
    def json(cls, obj: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> HttpResponse:
        """A response whose body is ``obj`` encoded as JSON."""
        merged = {"content-type": "application/json", **(headers or {})}
        return cls(status=status, body=msgspec.json.encode(obj), headers=merged)


@final
@dataclass(frozen=True, slots=True)
class HttpServerStatistics:
    """Counters of an :class:`HttpTestServer`."""

    connections_accepted: int
    connections_open: int
    requests: int


class _Reject(Exception):
    """Answer ``status`` and close the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@final
class HttpTestServer:
    """A running server; created by :func:`open_http_server`."""

    def __init__(
        self,
        handler: Callable[[HttpRequest], Awaitable[HttpResponse]],
        port: int,
        *,
        max_head: int,
        max_body: int,
        record: bool,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        #: Every well-formed request received, in arrival order (unless recording is off).
        self.requests: list[HttpRequest] = []
        #: Exceptions raised by the handler (each answered with a 500).
        self.errors: list[Exception] = []
        self._handler = handler
        self._max_head = max_head
        self._max_body = max_body
        self._record = record
        self._accepted = 0
        self._open = 0
        self._served = 0

    def statistics(self) -> HttpServerStatistics:
        """A frozen snapshot of the connection and request counters."""
        return HttpServerStatistics(self._accepted, self._open, self._served)

    async def _serve_connection(self, stream: SocketStream) -> None:
        self._accepted += 1
        self._open += 1
        reader = BufferedByteReceiveStream(stream)
        try:
            async with stream:
                await self._serve_requests(stream, reader)
        except _QUIET:
            pass  # the client went away: nothing to answer
        except Exception as exc:  # e.g. a header that is not latin-1: connection tasks never raise
            self.errors.append(exc)
        finally:
            self._open -= 1

    async def _serve_requests(self, stream: SocketStream, reader: BufferedByteReceiveStream) -> None:
        while True:
            try:
                parsed = await self._read_request(reader)
            except _Reject as reject:
                await _send_response(stream, HttpResponse(reject.status), keep_alive=False, head_only=False)
                await _drain(stream)
                return
            if parsed is None:
                return
            request, keep_alive = parsed
            self._served += 1
            if self._record:
                self.requests.append(request)
            try:
                response = await self._handler(request)
            except Exception as exc:  # a handler bug: answer 500, report it at exit
                self.errors.append(exc)
                response, keep_alive = HttpResponse(500, "handler error"), False
            if response.delay > 0:
                await anyio.sleep(response.delay)
            if response.drop:
                return
            keep_alive = keep_alive and "close" not in _tokens(response.headers.get("connection"))
            await _send_response(stream, response, keep_alive=keep_alive, head_only=request.method == "HEAD")
            if not keep_alive:
                return

    async def _read_request(self, reader: BufferedByteReceiveStream) -> tuple[HttpRequest, bool] | None:
        try:
            head = await reader.receive_until(b"\r\n\r\n", self._max_head)
        except anyio.DelimiterNotFound:
            raise _Reject(self._too_big(reader.buffer)) from None
        except anyio.IncompleteRead:
            return None  # EOF between requests (or inside a head: nothing to answer)
        if len(head) > self._max_head:  # found, but past the limit (it arrived in one read)
            raise _Reject(self._too_big(head))
        arrived_at = anyio.current_time()
        line, _, header_block = head.partition(b"\r\n")
        method, target, version = _parse_request_line(line)
        headers = _parse_headers(header_block)
        body = await self._read_body(reader, headers)
        connection = _tokens(headers.get("connection"))
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        raw_path, _, raw_query = target.partition("?")
        query = tuple(parse_qsl(raw_query, keep_blank_values=True))
        request = HttpRequest(method, unquote(raw_path), query, headers, body, arrived_at, target)
        return request, keep_alive

    def _too_big(self, head: bytes) -> int:
        """414 when the request line alone exceeds the limit, else 431."""
        return 414 if b"\r\n" not in head[: self._max_head] else 431

    async def _read_body(self, reader: BufferedByteReceiveStream, headers: dict[str, str]) -> bytes:
        encoding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if encoding is not None:
            if length is not None:
                raise _Reject(400)  # request smuggling shape (RFC 9112 section 6.3)
            if encoding.strip().lower() != "chunked":
                raise _Reject(501)
            try:
                return await self._read_chunked(reader)
            except anyio.DelimiterNotFound:
                raise _Reject(400) from None
        if length is None:
            return b""
        if not (length.isascii() and length.isdigit()):
            raise _Reject(400)
        size = int(length)
        if size > self._max_body:
            raise _Reject(413)
        return await reader.receive_exactly(size) if size else b""

    async def _read_chunked(self, reader: BufferedByteReceiveStream) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.receive_until(b"\r\n", 1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Reject(400) from None
            if size == 0:
                break
            total += size
            if total > self._max_body:
                raise _Reject(413)
            parts.append(await reader.receive_exactly(size))
            if await reader.receive_exactly(2) != b"\r\n":
                raise _Reject(400)
        while await reader.receive_until(b"\r\n", self._max_head):
            pass  # trailer fields are ignored
        return b"".join(parts)


def _parse_request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise _Reject(400)
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _Reject(505 if version.startswith("HTTP/") else 400)
    return method, target, version


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    if not block:
        return headers
    for raw in block.decode("latin-1").split("\r\n"):
        name, sep, value = raw.partition(":")
        if not sep or not name or name != name.strip():
            raise _Reject(400)
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in value.split(",")} if value else set()


async def _send_response(
    stream: SocketStream, response: HttpResponse, *, keep_alive: bool, head_only: bool
) -> None:
    head, body = _encode(response, keep_alive=keep_alive, head_only=head_only)
    if response.trickle <= 0 or not body:
        await stream.send(head + body)
        return
    await stream.send(head)
    for i in range(len(body)):
        await anyio.sleep(response.trickle)
        await stream.send(body[i : i + 1])


def _encode(response: HttpResponse, *, keep_alive: bool, head_only: bool) -> tuple[bytes, bytes]:
    status = response.status
    body = response.body.encode() if isinstance(response.body, str) else response.body
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {status} {phrase}"]
    names = set()
    for name, value in response.headers.items():
        lines.append(f"{name}: {value}")
        names.add(name.lower())
    no_body = status < 200 or status in _NO_BODY_STATUSES
    if isinstance(response.body, str) and "content-type" not in names:
        lines.append("content-type: text/plain; charset=utf-8")
    if "content-length" not in names and not no_body:
        lines.append(f"content-length: {len(body)}")
    if not keep_alive and "connection" not in names:
        lines.append("connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head, b"" if head_only or no_body else body


async def _drain(stream: SocketStream) -> None:
    """Half-close, then read and discard (bounded) so the client sees the answer, not a reset."""
    await stream.send_eof()
    drained = 0
    with anyio.move_on_after(DRAIN_TIMEOUT):
        while drained < _DRAIN_LIMIT:
            drained += len(await stream.receive())


@asynccontextmanager
async def open_http_server(
    handler: Callable[[HttpRequest], Awaitable[HttpResponse]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_head: int = 16 * 1024,
    max_body: int = 1024 * 1024,
    record: bool = True,
) -> AsyncIterator[HttpTestServer]:
    """
    Serve ``handler`` over HTTP/1.1 on ``host:port`` (port 0: an ephemeral port).

    ``max_head`` and ``max_body`` bound a request's head and body (bytes). ``record=False`` keeps
    ``server.requests`` empty, for long simulator runs (``statistics()`` still counts).

    Each connection is served by a task of a task group owned by this context manager; leaving
    it cancels them and closes every socket. An exception raised by the body propagates
    unchanged (connection tasks never raise, so it is the only possible error).

    Raises:
        OSError: the address could not be bound.
        ExceptionGroup: on exit, the handler raised (each failure was answered with a 500).
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound_port = listener.extra(SocketAttribute.local_port)
        server = HttpTestServer(handler, bound_port, max_head=max_head, max_body=max_body, record=record)
        if host not in ("127.0.0.1", "0.0.0.0", "::", ""):  # the wildcards are reachable on loopback
            server.url = f"http://[{host}]:{bound_port}" if ":" in host else f"http://{host}:{bound_port}"
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, server._serve_connection, tg)
                try:
                    yield server
                finally:
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Connection tasks catch everything but cancellation, so a single exception is the
            # body's own: re-raise it unchanged, with its chaining intact. Several can only be
            # cancellations, which the enclosing cancel scopes take apart themselves.
            if len(group.exceptions) != 1:
                raise
            exc = group.exceptions[0]
            cause, context, suppress = exc.__cause__, exc.__context__, exc.__suppress_context__
            try:
                raise exc
            finally:
                exc.__cause__, exc.__context__, exc.__suppress_context__ = cause, context, suppress
                del exc
    if server.errors:
        raise ExceptionGroup("the HTTP test handler raised", server.errors)
