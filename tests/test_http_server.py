"""The HTTP/1.1 test server: real sockets on 127.0.0.1, raw bytes and httpx as clients."""

from __future__ import annotations

import sys

import anyio
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from native_anyio.testing._http import HttpRequest, HttpResponse, open_http_server

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

GUARD = 10  # seconds: every I/O test runs under anyio.fail_after(GUARD)


async def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse.json(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body": request.body.decode(),
        }
    )


async def read_response(reader: BufferedByteReceiveStream) -> tuple[int, dict[str, str], bytes]:
    head = await reader.receive_until(b"\r\n\r\n", 65536)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    body = await reader.receive_exactly(int(headers.get("content-length", "0")))
    return int(status_line.split(" ")[1]), headers, body


async def exchange_until_eof(port: int, data: bytes) -> bytes:
    """Send ``data``, then read until the server closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        chunks = []
        for _ in range(10_000):
            try:
                chunks.append(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


async def test_request_fields_and_url() -> None:
    with anyio.fail_after(GUARD):
        async with open_http_server(echo) as server, httpx.AsyncClient(base_url=server.url) as client:
            assert server.url == f"http://127.0.0.1:{server.port}"
            response = await client.post(
                "/api/v1/a%20b",
                params=[("x", "1 2"), ("x", "3"), ("e", "")],
                content=b"hi",
                headers={"X-K": "v"},
            )
            assert response.status_code == 200
            assert response.json() == {
                "method": "POST",
                "path": "/api/v1/a b",
                "query": [["x", "1 2"], ["x", "3"], ["e", ""]],
                "body": "hi",
            }
            (request,) = server.requests
            assert request.params == {"x": "3", "e": ""}
            assert request.headers["x-k"] == "v"
            assert request.headers["content-length"] == "2"
            assert request.target.startswith("/api/v1/a%20b?")
            assert request.arrived_at <= anyio.current_time()


@pytest.mark.virtual_time
async def test_keep_alive_reuses_one_connection() -> None:
    with anyio.fail_after(GUARD):
        async with open_http_server(echo) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                for i in range(5):
                    assert (await client.get(f"/{i}")).json()["path"] == f"/{i}"
                stats = server.statistics()
                assert (stats.connections_accepted, stats.connections_open, stats.requests) == (1, 1, 5)
            for _ in range(100):  # the server notices the client's close at its next read
                if server.statistics().connections_open == 0:
                    break
                await anyio.sleep(0.01)
            assert server.statistics().connections_open == 0


async def test_pipelined_requests_on_one_raw_connection() -> None:
    with anyio.fail_after(GUARD):
        async with open_http_server(echo) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                reader = BufferedByteReceiveStream(stream)
                await stream.send(
                    b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                first = await read_response(reader)
                second = await read_response(reader)
                assert first[0] == second[0] == 200
                assert b'"/one"' in first[2]
                assert b'"/two"' in second[2]
                assert "connection" not in second[1]
            assert [r.path for r in server.requests] == ["/one", "/two"]


@pytest.mark.parametrize(
    ("request_bytes", "expect_close"),
    [
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
    ],
)
async def test_connection_close_rules(request_bytes: bytes, expect_close: bool) -> None:
    with anyio.fail_after(GUARD):
        async with (
            open_http_server(echo) as server,
            await anyio.connect_tcp("127.0.0.1", server.port) as stream,
        ):
            reader = BufferedByteReceiveStream(stream)
            await stream.send(request_bytes)
            status, headers, _ = await read_response(reader)
            assert status == 200
            assert (headers.get("connection") == "close") is expect_close
            if expect_close:
                with pytest.raises(anyio.EndOfStream):
                    await stream.receive()


async def test_chunked_request_body_is_dechunked() -> None:
    with anyio.fail_after(GUARD):
        async with open_http_server(echo) as server:
            raw = await exchange_until_eof(
                server.port,
                b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
            )
            assert status_of(raw) == 200
            assert server.requests[0].body == b"hello world"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", 413),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n" + b"x" * 1025 + b"\r\n0\r\n\r\n",
            413,
        ),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"h" * 3000 + b"\r\n\r\n", 431),
        (b"GET /" + b"p" * 3000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"h" * 2030 + b"\r\n\r\n", 431),  # delimiter just past the limit
        (b"BROKEN\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nno-colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad : x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxyz", 400),
    ],
)
async def test_bounds_and_malformed_requests(request_bytes: bytes, status: int) -> None:
    with anyio.fail_after(GUARD):
        async with open_http_server(echo, max_head=2048, max_body=1024) as server:
            raw = await exchange_until_eof(server.port, request_bytes)
            assert status_of(raw) == status
            assert b"connection: close" in raw
            assert server.requests == []


async def test_oversized_body_actually_sent_still_gets_413() -> None:
    # The server answers, half-closes and drains, so the client reads the 413, not a reset.
    with anyio.fail_after(GUARD):
        async with open_http_server(echo, max_body=1024) as server:
            body = b"b" * 4 * 1024 * 1024
            raw = await exchange_until_eof(
                server.port, b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            )
            assert status_of(raw) == 413


async def test_drop_closes_without_answer_and_server_keeps_serving() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(drop=True) if request.path == "/drop" else HttpResponse(body="ok")

    with anyio.fail_after(GUARD):
        async with open_http_server(handler) as server:
            assert await exchange_until_eof(server.port, b"GET /drop HTTP/1.1\r\n\r\n") == b""
            async with httpx.AsyncClient(base_url=server.url) as client:
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get("/drop")
                response = await client.get("/fine")
                assert (response.status_code, response.text) == (200, "ok")
                assert response.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.virtual_time
async def test_delay_is_exact_in_virtual_time() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(body=b"late", delay=2.5)

    with anyio.fail_after(60):
        async with open_http_server(handler) as server, httpx.AsyncClient(base_url=server.url) as client:
            start = anyio.current_time()
            response = await client.get("/")
            assert response.content == b"late"
            assert anyio.current_time() - start == pytest.approx(2.5, abs=1e-6)
            assert server.requests[0].arrived_at == pytest.approx(start, abs=1e-6)


@pytest.mark.virtual_time
async def test_concurrent_clients_are_served_concurrently() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(body=request.path, delay=1.0)

    results: dict[int, tuple[bytes, float]] = {}
    peak = 0

    async def one_client(port: int, i: int) -> None:
        nonlocal peak
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            reader = BufferedByteReceiveStream(stream)
            await stream.send(b"GET /%d HTTP/1.1\r\n\r\n" % i)
            status, _, body = await read_response(reader)
            assert status == 200
            results[i] = (body, anyio.current_time())

    with anyio.fail_after(60):
        async with open_http_server(handler) as server:
            start = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one_client, server.port, i)
                await anyio.sleep(0.5)
                peak = server.statistics().connections_open
            assert peak == 20
            assert server.statistics().connections_accepted == 20
            assert {i: body for i, (body, _) in results.items()} == {i: b"/%d" % i for i in range(20)}
            # All answered after one delay, not twenty: the connections ran concurrently.
            assert all(t == pytest.approx(start + 1.0, abs=1e-6) for _, t in results.values())


async def test_head_and_no_body_statuses() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(status=204 if request.path == "/empty" else 200, body=b"12345")

    with anyio.fail_after(GUARD):
        async with open_http_server(handler) as server:
            raw = await exchange_until_eof(server.port, b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert raw.endswith(b"content-length: 5\r\nconnection: close\r\n\r\n")
            raw = await exchange_until_eof(server.port, b"GET /empty HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert raw.startswith(b"HTTP/1.1 204 No Content\r\n")
            assert raw.endswith(b"\r\n\r\n")
            assert b"content-length" not in raw


async def test_handler_error_answers_500_and_is_raised_at_exit() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        raise KeyError("boom")

    with anyio.fail_after(GUARD), pytest.RaisesGroup(KeyError):
        async with open_http_server(handler) as server:
            raw = await exchange_until_eof(server.port, b"GET / HTTP/1.1\r\n\r\n")
            assert status_of(raw) == 500
            assert len(server.errors) == 1


async def fail_inside_server() -> None:
    async with open_http_server(echo):
        try:
            raise ValueError("cause")
        except ValueError as exc:
            raise ZeroDivisionError from exc


async def test_body_exception_propagates_ungrouped() -> None:
    with anyio.fail_after(GUARD), pytest.raises(ZeroDivisionError) as info:
        await fail_inside_server()
    assert isinstance(info.value.__cause__, ValueError)
    assert not isinstance(info.value, ExceptionGroup)


async def test_shutdown_closes_open_connections_and_releases_the_port() -> None:
    streams = []
    try:
        with anyio.fail_after(GUARD):
            async with open_http_server(echo) as server:
                streams.append(stream := await anyio.connect_tcp("127.0.0.1", server.port))
                await stream.send(b"GET / HTTP/1.1\r\n\r\n")
                assert (await read_response(BufferedByteReceiveStream(stream)))[0] == 200
                assert server.statistics().connections_open == 1
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await stream.receive()
            with pytest.raises(OSError):
                await anyio.connect_tcp("127.0.0.1", server.port)
    finally:
        for stream in streams:
            await stream.aclose()


async def test_unencodable_response_is_reported_and_recording_can_be_off() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(headers={"x-bad": "\u20ac"}) if request.path == "/bad" else HttpResponse()

    with anyio.fail_after(GUARD), pytest.RaisesGroup(UnicodeEncodeError):
        async with open_http_server(handler, record=False) as server:
            assert await exchange_until_eof(server.port, b"GET /bad HTTP/1.1\r\n\r\n") == b""
            raw = await exchange_until_eof(server.port, b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert status_of(raw) == 200
            assert (server.requests, server.statistics().requests) == ([], 2)
