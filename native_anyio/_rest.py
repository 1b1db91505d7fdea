"""
An async REST client over ``httpx.AsyncClient`` that runs on asyncio and trio.

Rules:

* only idempotent requests are retried (``GET``/``HEAD``/``OPTIONS`` by default, ``idempotent=``
  overrides), with the capped, jittered :class:`Backoff`: on transport errors (connect errors,
  timeouts, protocol errors), on 500/502/503/504 and on 429/418. Anything else is sent at most
  once, because a resent order may fill twice;
* a 429/418 ``Retry-After`` (delta-seconds, or an HTTP-date converted with the injected wall
  ``clock``) sets a client-wide *gate*: no request of this client is sent before it passes
  (anyio time). Without ``Retry-After`` a scheduled retry gates the client for its backoff delay.
  A gate longer than ``max_retry_after`` is not waited out: the request raises
  :class:`RateLimited` at once, and so does every request until the gate passes (a 418 ban can
  last days);
* every attempt waits for the gate, then for the ``rate_limiter`` (and re-checks the gate), calls
  the signer afresh (so timestamps refresh on retry) and is bounded by ``timeout``: httpx's
  per-phase timeouts plus an overall deadline per attempt. Cancellation closes the connection
  in use (httpcore shields that close), so nothing leaks;
* ``trust_env=False`` by default: proxy and TLS environment variables (``HTTP(S)_PROXY``,
  ``ALL_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``, ``.netrc``) are ignored and only ``proxy=``
  decides the route, so a proxy set for the desktop cannot hijack loopback or venue traffic;
* errors are translated at this boundary (table in ``_rest_support``) with the original chained;
  every error carries ``exchange`` and ``request`` (``"GET /path"``, never the query or headers).
"""

from __future__ import annotations

import collections
import math
import os
import random
import time
from typing import TYPE_CHECKING, Any, TypeVar, final, overload

import anyio
import httpx
import msgspec

from ._backoff import Backoff, BackoffRun
from ._errors import DecodeError, LocalProtocolError, NativeError, RateLimited, RequestTimeout
from ._health import Health, HealthStatus, Instrumentation, emit
from ._rest_support import (
    ParamValue,
    RequestInfo,
    RestResponse,
    RestStatistics,
    Signer,
    encode_params,
    error_fields,
    error_from_response,
    map_httpx_errors,
    parse_retry_after,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType

    from ._ratelimit import RateLimiter

__all__ = ["DEFAULT_BACKOFF", "IDEMPOTENT_METHODS", "RestClient"]

# httpx builds a verifying SSL context per client, loading certifi's bundle (~150 certificates, about
# 20 ms of CPU) each time, even for a plain http:// base URL. One per process and trust setting is
# enough: an SSLContext may be shared by any number of connections.
_SSL_CONTEXTS: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}


def _ssl_context(trust_env: bool) -> ssl.SSLContext:
    """The verifying context httpx would build (``SSL_CERT_FILE``/``SSL_CERT_DIR`` with ``trust_env``)."""
    env = os.environ
    key = (
        trust_env,
        env.get("SSL_CERT_FILE") if trust_env else None,
        env.get("SSL_CERT_DIR") if trust_env else None,
    )
    context = _SSL_CONTEXTS.get(key)
    if context is None:
        context = _SSL_CONTEXTS[key] = httpx.create_ssl_context(trust_env=trust_env)
    return context


T = TypeVar("T")

#: Methods retried unless ``idempotent=`` says otherwise.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Statuses retried (idempotent requests only) with the backoff delay.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
#: Statuses meaning "slow down"; their ``Retry-After`` gates the whole client.
RATE_LIMIT_STATUSES = frozenset({418, 429})
#: Four attempts at most, 0.25-0.5 s then doubling, capped at 10 s and 30 s in all.
DEFAULT_BACKOFF = Backoff(
    initial=0.5, multiplier=2.0, max_delay=10.0, jitter=0.5, max_attempts=4, max_elapsed=30.0
)
#: Bound on closing the connection pool, seconds.
CLOSE_TIMEOUT = 5.0
#: Failed attempts in a row after which :meth:`RestClient.health` reports degraded.
FAILURE_THRESHOLD = 3


@final
class RestClient:
    """
    REST client for one venue: ``async with RestClient(base_url) as client: ...``.

    Args:
        base_url: e.g. ``"https://api.backpack.exchange"``; request paths are relative to it.
        timeout: seconds per attempt (connect, each read/write, and the attempt overall);
            ``None`` disables it.
        backoff: the retry schedule of idempotent requests (``max_attempts`` counts all attempts).
        rate_limiter: awaited before every attempt; may be shared between clients.
        proxy: the proxy URL to use, or ``None`` for a direct connection.
        trust_env: let environment variables (proxies, TLS, ``.netrc``) configure httpx.
        sign: default signer: gets a :class:`RequestInfo`, returns extra headers; per attempt.
        exchange: the venue name attached to errors and events.
        hooks: instrumentation hooks receiving ``retry``, ``rate_limited`` and ``error`` events.
        headers: headers sent with every request.
        clock: wall clock (``time.time``) used to convert ``Retry-After`` HTTP-dates.
        max_retry_after: longest gate (seconds) a request waits out instead of raising.
        rng: random source for the backoff jitter (seed it in tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | None = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        rate_limiter: RateLimiter | None = None,
        proxy: str | None = None,
        trust_env: bool = False,
        sign: Signer | None = None,
        exchange: str | None = None,
        hooks: Iterable[Instrumentation] = (),
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        max_retry_after: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url
        self.exchange = exchange
        self._timeout = timeout
        self._backoff = backoff
        self._limiter = rate_limiter
        self._proxy = proxy
        self._trust_env = trust_env
        self._sign = sign
        self._hooks = tuple(hooks)
        self._headers = dict(headers or {})
        self._clock = clock
        self._max_retry_after = max_retry_after
        self._rng = rng if rng is not None else random.Random()
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
        self._gate_until = -math.inf
        self._gate_status: int | None = None
        self._requests = self._retries = self._rate_limited = self._in_flight = 0
        self._consecutive_failures = 0
        self._last_status: int | None = None
        self._errors: collections.Counter[str] = collections.Counter()

    async def __aenter__(self) -> RestClient:
        if self._client is not None or self._closed:
            raise LocalProtocolError("a RestClient can be entered only once", exchange=self.exchange)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self._timeout),
            proxy=self._proxy,
            trust_env=self._trust_env,
            verify=_ssl_context(self._trust_env),
            headers=self._headers,
            follow_redirects=False,
        )
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await client.aclose()

    # ------------------------------------------------------------------ requests

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        type: type[T],
        sign: Signer | None = None,
    ) -> T: ...

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        type: None = None,
        sign: Signer | None = None,
    ) -> RestResponse: ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        type: Any = None,
        sign: Signer | None = None,
    ) -> Any:
        """
        Send a request (retrying idempotent ones) and return the decoded 2xx answer.

        A checkpoint (network I/O). Cancelling it closes the connection in use, so the pool never
        keeps a half-read response; a request cancelled after it was written may have reached
        the venue.

        Args:
            method: HTTP method.
            path: path relative to ``base_url``, without the query.
            params: query parameters, sent sorted by key (``None`` values left out).
            json: body object, encoded with msgspec (Structs, Decimals, ... work).
            headers: extra headers for this request.
            idempotent: whether a resend is safe; defaults to the method being GET/HEAD/OPTIONS.
            type: decode the body into this type (decoder cached per type); ``None`` returns
                a :class:`RestResponse` with the raw content.
            sign: signer for this request, overriding the client's.

        Returns:
            The decoded body, or a :class:`RestResponse` when ``type`` is ``None``.

        Raises:
            ConnectError: connecting failed (after retries, for idempotent requests).
            RequestTimeout: an attempt ran out of time (after retries, likewise).
            RemoteProtocolError: the server broke HTTP (likewise).
            TransportError: another network failure (likewise).
            RateLimited: 429/418 with retries exhausted or not allowed, or a gate longer than
                ``max_retry_after``.
            AuthError: HTTP 401 or 403.
            ApiError: any other non-2xx answer (5xx after retries for idempotent requests).
            DecodeError: the body does not decode as ``type``.
            LocalProtocolError: the client is not open, or the URL is unusable.
        """
        client = self._client
        label = f"{method.upper()} {path}"
        if client is None:
            raise LocalProtocolError(
                "use the RestClient inside 'async with'", exchange=self.exchange, request=label
            )
        method = method.upper()
        body = b"" if json is None else msgspec.json.encode(json)
        info = RequestInfo(method, path, encode_params(params), json, body)
        retry = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        self._in_flight += 1
        try:
            response = await self._send(client, info, headers, sign or self._sign, retry, label)
            return response if type is None else self._decode(response.content, type, label)
        except NativeError as exc:
            self._record_error(exc, label)
            raise
        finally:
            self._in_flight -= 1

    @overload
    async def get(self, path: str, *, params: Mapping[str, ParamValue] | None = None, type: type[T]) -> T: ...

    @overload
    async def get(
        self, path: str, *, params: Mapping[str, ParamValue] | None = None, type: None = None
    ) -> RestResponse: ...

    async def get(
        self, path: str, *, params: Mapping[str, ParamValue] | None = None, type: Any = None
    ) -> Any:
        """
        ``request("GET", path, params=params, type=type)``: see :meth:`request`.

        Raises:
            NativeError: as :meth:`request`.
        """
        return await self.request("GET", path, params=params, type=type)

    async def _send(
        self,
        client: httpx.AsyncClient,
        info: RequestInfo,
        headers: Mapping[str, str] | None,
        signer: Signer | None,
        retry: bool,
        label: str,
    ) -> RestResponse:
        run = self._backoff.start(self._rng)
        while True:
            await self._wait_turn(label)
            try:
                response = await self._attempt(client, info, headers, signer, label)
            except NativeError as exc:
                if not exc.retryable:
                    raise  # a misuse (bad URL, ...): says nothing about the venue's health
                self._consecutive_failures += 1
                delay = run.next_delay(anyio.current_time()) if retry else None
                if delay is None:
                    raise
                self._note_retry(label, run, delay, type(exc).__name__)
                await anyio.sleep(delay)
                continue
            status = response.status_code
            if status in RATE_LIMIT_STATUSES:
                self._consecutive_failures += 1
                self._on_rate_limited(response, run, retry, label)  # raises, or gates and retries
                continue
            if status in RETRY_STATUSES:
                self._consecutive_failures += 1
                delay = run.next_delay(anyio.current_time()) if retry else None
                if delay is not None:
                    self._note_retry(label, run, delay, f"HTTP {status}")
                    await anyio.sleep(delay)
                    continue
            else:
                self._consecutive_failures = 0
            if 200 <= status < 300:
                return response
            raise error_from_response(status, response.content, exchange=self.exchange, request=label)

    async def _wait_turn(self, label: str) -> None:
        """Wait for the gate, then the limiter; the gate is re-checked after the limiter's wait."""
        while True:
            remaining = self._gate_until - anyio.current_time()
            if remaining > 0:
                if remaining > self._max_retry_after:
                    status = self._gate_status or 429
                    raise RateLimited(
                        f"held back after HTTP {status} for {remaining:.3f} s more",
                        retry_after=remaining,
                        status_code=status,
                        exchange=self.exchange,
                        request=label,
                    )
                await anyio.sleep(remaining)
                continue
            if self._limiter is None:
                return
            await self._limiter.acquire()
            if self._gate_until <= anyio.current_time():
                return

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        info: RequestInfo,
        headers: Mapping[str, str] | None,
        signer: Signer | None,
        label: str,
    ) -> RestResponse:
        merged = {"content-type": "application/json"} if info.body else {}
        merged.update(headers or {})
        if signer is not None:
            merged.update(signer(info))
        with map_httpx_errors(exchange=self.exchange, request=label):
            request = client.build_request(
                info.method, info.path, params=info.params or None, content=info.body or None, headers=merged
            )
        deadline = math.inf if self._timeout is None else self._timeout
        self._requests += 1
        with anyio.move_on_after(deadline):
            with map_httpx_errors(exchange=self.exchange, request=label):
                response = await client.send(request)
            self._last_status = response.status_code
            return RestResponse(response.status_code, dict(response.headers.items()), response.content)
        raise RequestTimeout(
            f"no complete answer within {self._timeout} s", exchange=self.exchange, request=label
        )

    def _on_rate_limited(self, response: RestResponse, run: BackoffRun, retry: bool, label: str) -> None:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock())
        self._rate_limited += 1
        emit(
            self._hooks,
            "rest",
            "rate_limited",
            exchange=self.exchange,
            request=label,
            status=status,
            retry_after=retry_after,
        )
        too_long = retry_after is not None and retry_after > self._max_retry_after
        delay = run.next_delay(anyio.current_time()) if retry and not too_long else None
        wait = retry_after if retry_after is not None else delay
        if wait is not None:
            self._set_gate(anyio.current_time() + wait, status)
        if delay is None:
            _, message = error_fields(status, response.content)
            raise RateLimited(
                f"HTTP {status}: {message}",
                retry_after=retry_after,
                status_code=status,
                exchange=self.exchange,
                request=label,
            )
        self._note_retry(label, run, wait or 0.0, f"HTTP {status}")

    def _set_gate(self, until: float, status: int) -> None:
        if until > self._gate_until:
            self._gate_until = until
            self._gate_status = status

    def _note_retry(self, label: str, run: BackoffRun, delay: float, reason: str) -> None:
        self._retries += 1
        emit(
            self._hooks,
            "rest",
            "retry",
            exchange=self.exchange,
            request=label,
            attempt=run.attempts + 1,
            delay=delay,
            reason=reason,
        )

    def _decode(self, content: bytes, type_: Any, label: str) -> Any:
        decoder = self._decoders.get(type_)
        if decoder is None:
            decoder = self._decoders[type_] = msgspec.json.Decoder(type_)
        try:
            return decoder.decode(content)
        # msgspec raises RecursionError for absurdly deep nesting, UnicodeDecodeError for bad UTF-8.
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
            name = getattr(type_, "__name__", repr(type_))
            raise DecodeError(
                f"answer does not decode as {name}: {exc}", exchange=self.exchange, request=label
            ) from exc

    def _record_error(self, exc: NativeError, label: str) -> None:
        kind = type(exc).__name__
        self._errors[kind] += 1
        emit(
            self._hooks,
            "rest",
            "error",
            exchange=self.exchange,
            request=label,
            kind=kind,
            status=getattr(exc, "status_code", None),
        )

    # ------------------------------------------------------------------ observability

    def statistics(self) -> RestStatistics:
        """A frozen snapshot of the counters (sync, cheap; call it inside the event loop)."""
        return RestStatistics(
            requests=self._requests,
            retries=self._retries,
            errors=dict(self._errors),
            rate_limited=self._rate_limited,
            last_status=self._last_status,
            in_flight=self._in_flight,
            gate_remaining=max(0.0, self._gate_until - anyio.current_time()),
            gate_status=self._gate_status,
            consecutive_failures=self._consecutive_failures,
            closed=self._closed,
        )

    def health(self) -> Health:
        """
        Evaluate :meth:`statistics`: unhealthy while banned (418 gate) or closed; degraded while
        gated by a 429 or after ``FAILURE_THRESHOLD`` failed attempts in a row; else ok.
        """
        stats = self.statistics()
        findings: list[tuple[HealthStatus, str]] = []
        if stats.closed:
            findings.append(("unhealthy", "client closed"))
        if stats.gate_remaining > 0:
            status: HealthStatus = "unhealthy" if stats.gate_status == 418 else "degraded"
            findings.append((status, f"HTTP {stats.gate_status}: held back {stats.gate_remaining:.1f} s"))
        if stats.consecutive_failures >= FAILURE_THRESHOLD:
            findings.append(("degraded", f"{stats.consecutive_failures} failed attempts in a row"))
        return Health.from_findings(findings)

    def __repr__(self) -> str:
        return f"RestClient({self.base_url!r}, exchange={self.exchange!r})"
