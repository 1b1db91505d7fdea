"""
RestClient against the real HTTP test server on 127.0.0.1: retries, Retry-After gates, rate limits,
error translation, timeouts and cancellation, on asyncio and trio (timing on virtual clocks).
"""

from __future__ import annotations

import bisect
import email.utils
import math
import random
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING

import anyio
import httpx
import msgspec
import pytest
from anyio.abc import SocketAttribute

from native_anyio._backoff import Backoff
from native_anyio._errors import (
    ApiError,
    AuthError,
    ConnectError,
    DecodeError,
    LocalProtocolError,
    RateLimited,
    RemoteProtocolError,
    RequestTimeout,
)
from native_anyio._ratelimit import RateLimiter
from native_anyio._rest import RestClient
from native_anyio._rest_support import RequestInfo, RestResponse, parse_retry_after
from native_anyio.testing._http import HttpRequest, HttpResponse, open_http_server

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from native_anyio._health import InstrumentationEvent

GUARD = 10  # real seconds for real-time I/O tests
VGUARD = 1000  # virtual seconds for virtual-time tests
EXACT = 1e-6  # virtual timestamps are exact up to float rounding
#: Deterministic schedule: 0.5, 1, 2, ... seconds, three attempts in all.
FIXED = Backoff(initial=0.5, multiplier=2.0, max_delay=10.0, jitter=0.0, max_attempts=3)


class Ticker(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    last_price: Decimal = msgspec.field(name="lastPrice")
    volume: Decimal


def scripted(*responses: HttpResponse) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """Answer with ``responses`` in order, then repeat the last one."""
    queue = list(responses)

    async def handler(request: HttpRequest) -> HttpResponse:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler


OK = HttpResponse.json({"ok": True})


def client_for(url: str, **kwargs: object) -> RestClient:
    kwargs.setdefault("backoff", FIXED)
    kwargs.setdefault("exchange", "testex")
    kwargs.setdefault("rng", random.Random(0))
    return RestClient(url, **kwargs)  # type: ignore[arg-type]


def offsets(server_requests: list[HttpRequest], start: float) -> list[float]:
    return [r.arrived_at - start for r in server_requests]


# ---------------------------------------------------------------- decoding and requests


async def test_typed_decode_and_query() -> None:
    body = {"symbol": "SOL_USDC", "lastPrice": "142.37", "volume": "1200.5", "extra": 1}
    with anyio.fail_after(GUARD):
        async with (
            open_http_server(scripted(HttpResponse.json(body))) as server,
            client_for(server.url) as client,
        ):
            ticker = await client.get("/api/v1/ticker", params={"symbol": "SOL_USDC", "a": 1}, type=Ticker)
            again = await client.get("/api/v1/ticker", params={"symbol": "SOL_USDC"}, type=Ticker)
    assert (
        ticker == again == Ticker(symbol="SOL_USDC", last_price=Decimal("142.37"), volume=Decimal("1200.5"))
    )
    first = server.requests[0]
    assert (first.method, first.path, first.query) == (
        "GET",
        "/api/v1/ticker",
        (("a", "1"), ("symbol", "SOL_USDC")),
    )


async def test_untyped_returns_a_response_record_and_params_are_normalised() -> None:
    answer = HttpResponse(body=b"\x00raw", headers={"X-Thing": "1"})
    with anyio.fail_after(GUARD):
        async with open_http_server(scripted(answer)) as server, client_for(server.url) as client:
            response = await client.request(
                "get",
                "/raw",
                params={"z": True, "b": False, "skip": None, "f": 1e-7, "d": Decimal("1E+2")},
            )
    assert isinstance(response, RestResponse)
    assert (response.status_code, response.content, response.headers["x-thing"]) == (200, b"\x00raw", "1")
    assert "x-thing" not in repr(response)
    assert server.requests[0].query == (("b", "false"), ("d", "100"), ("f", "0.0000001"), ("z", "true"))


async def test_json_body_is_msgspec_encoded() -> None:
    with anyio.fail_after(GUARD):
        async with open_http_server(scripted(OK)) as server, client_for(server.url) as client:
            response = await client.request(
                "POST", "/api/v1/order", json={"price": Decimal("1.10"), "qty": 2}
            )
    assert response.json() == {"ok": True}
    request = server.requests[0]
    assert request.json() == {"price": "1.10", "qty": 2}
    assert request.headers["content-type"] == "application/json"


# ---------------------------------------------------------------- retries


@pytest.mark.virtual_time
async def test_get_503_503_200_succeeds_on_attempt_3() -> None:
    events: list[InstrumentationEvent] = []
    script = scripted(
        HttpResponse(503),
        HttpResponse(503),
        HttpResponse.json({"symbol": "X", "lastPrice": "1", "volume": "2"}),
    )
    with anyio.fail_after(VGUARD):
        async with (
            open_http_server(script) as server,
            client_for(server.url, hooks=[events.append]) as client,
        ):
            start = anyio.current_time()
            ticker = await client.get("/t", type=Ticker)
            stats = client.statistics()
    assert ticker.symbol == "X"
    assert offsets(server.requests, start) == pytest.approx([0.0, 0.5, 1.5], abs=EXACT)
    assert (stats.requests, stats.retries, stats.errors, stats.last_status) == (3, 2, {}, 200)
    retries = [e for e in events if e.name == "retry"]
    assert [(e.get("attempt"), e.get("delay"), e.get("reason")) for e in retries] == [
        (2, 0.5, "HTTP 503"),
        (3, 1.0, "HTTP 503"),
    ]


@pytest.mark.virtual_time
async def test_get_5xx_exhaustion_raises_api_error() -> None:
    with anyio.fail_after(VGUARD):
        async with (
            open_http_server(scripted(HttpResponse(502, "bad"))) as server,
            client_for(server.url) as client,
        ):
            with pytest.raises(ApiError) as info:
                await client.get("/t")
            stats = client.statistics()
    assert (info.value.status_code, info.value.retryable, len(server.requests)) == (502, True, 3)
    assert stats.errors == {"ApiError": 1}


@pytest.mark.virtual_time
@pytest.mark.parametrize(
    ("method", "idempotent", "expected_sends"),
    [("POST", None, 1), ("DELETE", None, 1), ("GET", False, 1), ("POST", True, 3)],
)
async def test_only_idempotent_requests_are_resent(
    method: str, idempotent: bool | None, expected_sends: int
) -> None:
    with anyio.fail_after(VGUARD):
        async with open_http_server(scripted(HttpResponse(503))) as server, client_for(server.url) as client:
            with pytest.raises(ApiError) as info:
                await client.request(method, "/api/v1/order", json={"clientId": 7}, idempotent=idempotent)
    assert info.value.status_code == 503
    assert len(server.requests) == expected_sends


@pytest.mark.virtual_time
async def test_dropped_post_is_not_resent_but_get_is() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(drop=True) if len(server.requests) == 1 else OK

    with anyio.fail_after(VGUARD):
        async with open_http_server(handler) as server, client_for(server.url) as client:
            with pytest.raises(RemoteProtocolError) as info:
                await client.request("POST", "/api/v1/order", json={"clientId": 1})
            assert len(server.requests) == 1
            assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
            assert (info.value.exchange, info.value.request) == ("testex", "POST /api/v1/order")
            # The next request (on a fresh connection) goes through.
            assert (await client.get("/after")).status_code == 200

        server_requests: list[HttpRequest] = []

        async def drop_first(request: HttpRequest) -> HttpResponse:
            server_requests.append(request)
            return HttpResponse(drop=True) if len(server_requests) == 1 else OK

        async with open_http_server(drop_first) as server, client_for(server.url) as client:
            assert (await client.get("/x")).json() == {"ok": True}
            assert len(server.requests) == 2


@pytest.mark.virtual_time
async def test_connect_errors_are_translated_and_retried_for_get() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(SocketAttribute.local_port)
    start = anyio.current_time()
    with anyio.fail_after(VGUARD):
        async with client_for(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(ConnectError) as info:
                await client.get("/nothing-listens")
            stats = client.statistics()
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.request == "GET /nothing-listens"
    assert anyio.current_time() - start == pytest.approx(1.5, abs=EXACT)  # 0.5 + 1.0 of backoff
    assert (stats.requests, stats.retries, stats.consecutive_failures) == (3, 2, 3)


# ---------------------------------------------------------------- 429 / 418 and Retry-After


@pytest.mark.virtual_time
@pytest.mark.parametrize("form", ["delta", "http-date"])
async def test_429_retry_after_gates_the_next_request(form: str) -> None:
    wall = 1_700_000_000.0
    value = "2" if form == "delta" else email.utils.formatdate(wall + 2, usegmt=True)
    script = scripted(HttpResponse(429, headers={"Retry-After": value}), OK)
    events: list[InstrumentationEvent] = []
    with anyio.fail_after(VGUARD):
        async with (
            open_http_server(script) as server,
            client_for(server.url, clock=lambda: wall, hooks=[events.append]) as client,
        ):
            start = anyio.current_time()
            assert (await client.get("/t")).status_code == 200
            stats = client.statistics()
    first, second = offsets(server.requests, start)
    assert first == pytest.approx(0.0, abs=EXACT)
    assert second >= 2.0 - EXACT
    assert second == pytest.approx(2.0, abs=EXACT)
    assert (stats.rate_limited, stats.retries, stats.gate_status) == (1, 1, 429)
    (limited,) = [e for e in events if e.name == "rate_limited"]
    assert (limited.get("status"), limited.get("retry_after")) == (429, 2.0)


@pytest.mark.virtual_time
async def test_gate_holds_every_request_of_the_client() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        if request.path == "/limited" and len(server.requests) == 1:
            return HttpResponse(429, headers={"Retry-After": "3"})
        return OK

    with anyio.fail_after(VGUARD):
        async with open_http_server(handler) as server, client_for(server.url) as client:
            start = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.get, "/limited")
                await anyio.sleep(1)
                assert client.health().status == "degraded"
                assert client.statistics().gate_remaining == pytest.approx(2.0, abs=EXACT)
                tg.start_soon(client.get, "/other")  # during the gate: must wait for it
            assert client.health().ok
    arrivals = {(r.path, round(r.arrived_at - start, 6)) for r in server.requests}
    assert arrivals == {("/limited", 0.0), ("/limited", 3.0), ("/other", 3.0)}


@pytest.mark.virtual_time
async def test_429_exhaustion_raises_rate_limited_with_retry_after() -> None:
    with anyio.fail_after(VGUARD):
        async with (
            open_http_server(
                scripted(
                    HttpResponse(429, '{"code":"TOO_MANY","message":"slow"}', headers={"Retry-After": "1"})
                )
            ) as server,
            client_for(server.url) as client,
        ):
            start = anyio.current_time()
            with pytest.raises(RateLimited) as info:
                await client.get("/t")
            stats = client.statistics()
    assert (info.value.retry_after, info.value.status_code) == (1.0, 429)
    assert "slow" in str(info.value)
    assert offsets(server.requests, start) == pytest.approx([0.0, 1.0, 2.0], abs=EXACT)
    assert (stats.errors, stats.rate_limited) == ({"RateLimited": 1}, 3)


@pytest.mark.virtual_time
async def test_post_429_is_not_resent_but_gates_the_client() -> None:
    script = scripted(HttpResponse(429, headers={"Retry-After": "5"}), OK)
    with anyio.fail_after(VGUARD):
        async with open_http_server(script) as server, client_for(server.url) as client:
            start = anyio.current_time()
            with pytest.raises(RateLimited) as info:
                await client.request("POST", "/api/v1/order", json={})
            assert (info.value.retry_after, len(server.requests)) == (5.0, 1)
            await client.get("/next")
    assert offsets(server.requests, start) == pytest.approx([0.0, 5.0], abs=EXACT)


@pytest.mark.virtual_time
async def test_429_without_retry_after_waits_the_backoff_delay() -> None:
    with anyio.fail_after(VGUARD):
        async with (
            open_http_server(scripted(HttpResponse(429), OK)) as server,
            client_for(server.url) as client,
        ):
            start = anyio.current_time()
            await client.get("/t")
    assert offsets(server.requests, start) == pytest.approx([0.0, 0.5], abs=EXACT)


@pytest.mark.virtual_time
async def test_short_418_is_waited_out() -> None:
    script = scripted(HttpResponse(418, headers={"Retry-After": "7"}), OK)
    with anyio.fail_after(VGUARD):
        async with open_http_server(script) as server, client_for(server.url) as client:
            start = anyio.current_time()
            await client.get("/t")
    assert offsets(server.requests, start) == pytest.approx([0.0, 7.0], abs=EXACT)


@pytest.mark.virtual_time
async def test_418_ban_gates_the_client_for_its_duration() -> None:
    script = scripted(HttpResponse(418, headers={"Retry-After": "120"}), OK)
    with anyio.fail_after(VGUARD):
        async with open_http_server(script) as server, client_for(server.url, max_retry_after=60) as client:
            start = anyio.current_time()
            with pytest.raises(RateLimited) as info:  # too long to wait out inside a request
                await client.get("/t")
            assert (info.value.retry_after, info.value.status_code) == (120.0, 418)
            await anyio.sleep(30)
            health = client.health()
            assert health.status == "unhealthy"
            assert "418" in health.reasons[0]
            with pytest.raises(RateLimited) as info:  # still banned for 90 s: not even sent
                await client.get("/t")
            assert info.value.retry_after == pytest.approx(90.0, abs=EXACT)
            assert info.value.status_code == 418
            assert len(server.requests) == 1
            await anyio.sleep(70)
            assert (await client.get("/t")).status_code == 200  # waits out the last 20 s
            assert client.health().ok
    assert offsets(server.requests, start) == pytest.approx([0.0, 120.0], abs=EXACT)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Tue, 14 Nov 2023 22:13:22 GMT", 2.0),
        ("Tue, 14 Nov 2023 22:13:00 GMT", 0.0),  # in the past
        ("Tue, 14 Nov 2023 22:13:22 -0000", None),  # no usable zone
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, 1_700_000_000.0) == expected


# ---------------------------------------------------------------- error translation


@pytest.mark.parametrize(
    ("answer", "status", "code", "message"),
    [
        (HttpResponse(400, "Invalid symbol"), 400, None, "Invalid symbol"),
        (HttpResponse.json({"code": "INVALID_CLIENT_REQUEST", "message": "Bad qty"}, status=400), 400,
         "INVALID_CLIENT_REQUEST", "Bad qty"),
        (HttpResponse.json({"code": -1121, "msg": "Invalid symbol."}, status=400), 400, -1121,
         "Invalid symbol."),
        (HttpResponse.json(["not", "an", "object"], status=404), 404, None, '["not","an","object"]'),
        (HttpResponse(404), 404, None, "status 404"),
        (HttpResponse(501, "nope"), 501, None, "nope"),
    ],
)  # fmt: skip
async def test_error_bodies_become_api_errors(
    answer: HttpResponse, status: int, code: object, message: str
) -> None:
    with anyio.fail_after(GUARD):
        async with open_http_server(scripted(answer)) as server, client_for(server.url) as client:
            with pytest.raises(ApiError) as info:
                await client.get("/api/v1/depth", params={"symbol": "NOPE"})
    error = info.value
    assert (error.status_code, error.code) == (status, code)
    assert str(error) == f"HTTP {status}: {message} (exchange=testex, request=GET /api/v1/depth)"
    assert len(server.requests) == 1  # 4xx and 501 are not retried


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures(status: int) -> None:
    answer = HttpResponse.json({"code": "UNAUTHORIZED", "message": "bad signature"}, status=status)
    with anyio.fail_after(GUARD):
        async with open_http_server(scripted(answer)) as server, client_for(server.url) as client:
            with pytest.raises(AuthError) as info:
                await client.get("/api/v1/capital")
    assert str(info.value) == f"HTTP {status}: bad signature (exchange=testex, request=GET /api/v1/capital)"
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"symbol": "X"}', b'{"symbol": 1, "lastPrice": "1", "volume": "1"}']
)
async def test_undecodable_answers_raise_decode_error(body: bytes) -> None:
    with anyio.fail_after(GUARD):
        async with (
            open_http_server(scripted(HttpResponse(body=body))) as server,
            client_for(server.url) as client,
        ):
            with pytest.raises(DecodeError) as info:
                await client.get("/t", type=Ticker)
            assert client.statistics().errors == {"DecodeError": 1}
    assert isinstance(info.value.__cause__, msgspec.DecodeError)
    assert "Ticker" in str(info.value)
    assert len(server.requests) == 1


async def test_misuse_is_a_local_protocol_error() -> None:
    client = client_for("http://127.0.0.1:1")
    with pytest.raises(LocalProtocolError):
        await client.get("/")
    async with client:
        with pytest.raises(LocalProtocolError):
            await client.__aenter__()
    with pytest.raises(LocalProtocolError):  # closed
        await client.get("/")
    assert client.health().status == "unhealthy"
    async with client_for("ftp://127.0.0.1:1") as other:
        with pytest.raises(LocalProtocolError):
            await other.get("/")


# ---------------------------------------------------------------- timeouts and cancellation


@pytest.mark.virtual_time
async def test_never_answering_server_times_out_at_the_configured_time() -> None:
    hang = HttpResponse(delay=math.inf)
    with anyio.fail_after(VGUARD):
        async with open_http_server(scripted(hang)) as server:
            async with client_for(server.url, timeout=5.0, backoff=Backoff(max_attempts=1)) as client:
                start = anyio.current_time()
                with pytest.raises(RequestTimeout) as info:
                    await client.get("/hang")
                assert anyio.current_time() - start == pytest.approx(5.0, abs=EXACT)
            assert info.value.request == "GET /hang"
            # With retries: 5 s, 0.5 s backoff, 5 s, 1 s backoff, 5 s.
            async with client_for(server.url, timeout=5.0) as client:
                start = anyio.current_time()
                with pytest.raises(RequestTimeout):
                    await client.get("/hang")
                assert anyio.current_time() - start == pytest.approx(16.5, abs=EXACT)
                assert client.health().status == "degraded"  # three failed attempts in a row


@pytest.mark.virtual_time
async def test_slow_trickle_is_cut_by_the_overall_deadline() -> None:
    # Every byte comes 1 s after the previous one, well within httpx's 5 s read timeout, but the
    # attempt as a whole is bounded by the same 5 s.
    trickle = HttpResponse(body=b"0123456789", trickle=1.0)
    with anyio.fail_after(VGUARD):
        async with open_http_server(scripted(trickle)) as server:
            async with client_for(server.url, timeout=5.0, backoff=Backoff(max_attempts=1)) as client:
                start = anyio.current_time()
                with pytest.raises(RequestTimeout) as info:
                    await client.get("/slow")
                assert anyio.current_time() - start == pytest.approx(5.0, abs=EXACT)
                assert "within 5.0 s" in str(info.value)
            async with client_for(server.url, timeout=20.0) as client:
                start = anyio.current_time()
                assert (await client.get("/slow")).content == b"0123456789"
                assert anyio.current_time() - start == pytest.approx(10.0, abs=EXACT)


@pytest.mark.virtual_time
async def test_cancellation_mid_request_leaks_no_connection() -> None:
    script = scripted(HttpResponse(delay=5.0), OK)  # answered well within the 10 s timeout
    with anyio.fail_after(VGUARD):
        async with open_http_server(script) as server, client_for(server.url) as client:
            with anyio.move_on_after(1.0) as scope:
                await client.get("/slow")
            assert scope.cancelled_caught
            assert client.statistics().in_flight == 0
            await anyio.sleep(20)  # the server answers at t=5 into a closed socket, then sees EOF
            # The client closed the interrupted connection instead of pooling it.
            assert server.statistics().connections_open == 0
            assert (await client.get("/again")).json() == {"ok": True}
            stats = server.statistics()
            assert (stats.connections_accepted, stats.connections_open) == (2, 1)
            assert client.statistics().errors == {}


# ---------------------------------------------------------------- signing, secrets, proxies


@pytest.mark.virtual_time
async def test_signer_is_called_fresh_on_every_attempt() -> None:
    seen: list[RequestInfo] = []

    def sign(info: RequestInfo) -> dict[str, str]:
        seen.append(info)
        return {"X-Timestamp": str(round(anyio.current_time() * 1000))}

    with anyio.fail_after(VGUARD):
        async with (
            open_http_server(scripted(HttpResponse(503), OK)) as server,
            client_for(server.url, sign=sign) as client,
        ):
            await client.request(
                "POST", "/api/v1/order", params={"b": 2, "a": 1}, json={"q": 1}, idempotent=True
            )
            await client.get("/other", params={"x": 1})
            await client.request("GET", "/custom", sign=lambda info: {"X-Custom": info.path})
    stamps = [int(r.headers["x-timestamp"]) for r in server.requests[:3]]
    assert stamps[1] - stamps[0] == 500  # re-signed after the 0.5 s backoff
    assert (
        seen[0]
        == seen[1]
        == RequestInfo("POST", "/api/v1/order", (("a", "1"), ("b", "2")), {"q": 1}, b'{"q":1}')
    )
    assert server.requests[3].headers["x-custom"] == "/custom"
    assert "x-timestamp" not in server.requests[3].headers
    assert len(seen) == 3


@pytest.mark.virtual_time
async def test_headers_never_reach_errors_events_or_statistics() -> None:
    canary = "SECRET-CANARY-5f2a"
    events: list[InstrumentationEvent] = []
    script = scripted(HttpResponse(503), HttpResponse(429), HttpResponse(400, "rejected"))
    with anyio.fail_after(VGUARD):
        async with open_http_server(script) as server, client_for(
            server.url, headers={"X-API-Key": canary}, sign=lambda info: {"X-Signature": canary},
            hooks=[events.append], backoff=Backoff(initial=0.1, jitter=0, max_attempts=5),
        ) as client:  # fmt: skip
            with pytest.raises(ApiError) as info:
                await client.get("/private", params={"symbol": "X"})
            texts = [repr(client), repr(client.statistics()), repr(client.health()), repr(events)]
    assert server.requests[0].headers["x-api-key"] == canary  # it was sent...
    assert {e.name for e in events} == {"retry", "rate_limited", "error"}
    error: BaseException | None = info.value
    for _ in range(10):  # ... but appears nowhere else, causes included
        if error is None:
            break
        texts += [str(error), repr(error), repr(vars(error))]
        error = error.__cause__ or error.__context__
    assert not [text for text in texts if canary in text]


async def test_proxy_environment_is_ignored_unless_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    async def proxy_handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse.json({"via": "proxy"})

    with anyio.fail_after(GUARD):
        async with open_http_server(proxy_handler) as proxy, open_http_server(scripted(OK)) as target:
            for name in ("NO_PROXY", "no_proxy"):
                monkeypatch.delenv(name, raising=False)
            for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
                monkeypatch.setenv(name, proxy.url)
            async with client_for(target.url) as client:
                assert (await client.get("/direct")).json() == {"ok": True}
            assert proxy.requests == []
            # Sanity check of the test itself: httpx does honour these variables when trusted.
            async with client_for(target.url, trust_env=True) as client:
                assert (await client.get("/env")).json() == {"via": "proxy"}
            # And an explicit proxy= is used whatever the environment says.
            async with client_for(target.url, proxy=proxy.url) as client:
                assert (await client.get("/explicit")).json() == {"via": "proxy"}
    assert [r.target for r in proxy.requests] == [f"{target.url}/env", f"{target.url}/explicit"]
    assert [r.path for r in target.requests] == ["/direct"]


# ---------------------------------------------------------------- client-side rate limit


@contextmanager
def asyncio_debug_off(backend: str) -> Iterator[None]:
    """
    Turn asyncio debug mode off for a throughput-bound test.

    Debug mode captures a stack for every callback, which makes each HTTP round trip ~4x slower
    and checks nothing the other tests don't; on trio this does nothing.
    """
    if backend != "asyncio":
        yield
        return
    import asyncio  # tests only: library code never imports asyncio

    loop = asyncio.get_running_loop()
    was = loop.get_debug()
    loop.set_debug(False)
    try:
        yield
    finally:
        loop.set_debug(was)


@pytest.mark.virtual_time
async def test_limiter_keeps_a_3000_burst_within_2000_per_minute(anyio_backend_name: str) -> None:
    limit, period = 2000, 60.0
    arrivals: list[float] = []

    async def venue(request: HttpRequest) -> HttpResponse:
        # The venue enforces the limit itself, over a true sliding window (less float rounding).
        now = request.arrived_at
        arrivals.append(now)
        recent = len(arrivals) - bisect.bisect_right(arrivals, now - period + EXACT)
        return (
            HttpResponse(429, headers={"Retry-After": "60"}) if recent > limit else HttpResponse(body=b"{}")
        )

    limiter = RateLimiter(limit, period)
    with anyio.fail_after(VGUARD), asyncio_debug_off(anyio_backend_name):
        async with open_http_server(venue) as server, client_for(server.url, rate_limiter=limiter) as client:
            start = anyio.current_time()

            async def caller() -> None:
                for _ in range(1000):
                    await client.get("/api/v1/ticker")

            async with anyio.create_task_group() as tg:
                for _ in range(3):  # three concurrent callers share the client and its limiter
                    tg.start_soon(caller)
            stats = client.statistics()
    assert (stats.requests, stats.rate_limited, stats.retries) == (3000, 0, 0)
    assert len(arrivals) == 3000
    # No window of 60 s (less float rounding) holds more than 2000 arrivals...
    assert all(arrivals[i + limit] - arrivals[i] >= period - EXACT for i in range(len(arrivals) - limit))
    # ... and the limiter wastes nothing: 2000 go at once, the rest exactly one period later.
    assert arrivals[limit - 1] - start == pytest.approx(0.0, abs=EXACT)
    assert arrivals[limit] - start == pytest.approx(60.0, abs=EXACT)
    assert arrivals[-1] - start == pytest.approx(60.0, abs=EXACT)
    assert limiter.statistics().granted == 3000


# ---------------------------------------------------------------- health


@pytest.mark.virtual_time
async def test_health_degrades_after_consecutive_failures_and_recovers() -> None:
    script = scripted(HttpResponse(500), HttpResponse(500), HttpResponse(500), OK)
    with anyio.fail_after(VGUARD):
        async with open_http_server(script) as server, client_for(server.url) as client:
            assert client.health().ok
            with pytest.raises(ApiError):
                await client.get("/t")
            health = client.health()
            assert (health.status, health.reasons) == ("degraded", ("3 failed attempts in a row",))
            await client.get("/t")
            assert client.health().ok
            assert client.statistics().consecutive_failures == 0
    assert len(server.requests) == 4
