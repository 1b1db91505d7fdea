"""
Tests for the sans-IO websocket opening handshake in ``native_anyio._handshake``.

Pure logic, so every test is synchronous. The accept-key golden value is the RFC 6455 section
1.3 example.
"""

from __future__ import annotations

import base64

import pytest

from native_anyio._errors import HandshakeRejected, RemoteProtocolError
from native_anyio._handshake import (
    HandshakeRequest,
    accept_key,
    build_client_request,
    build_server_response,
    check_server_response,
    new_client_key,
    parse_head,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def response(*lines: str, status: str = "HTTP/1.1 101 Switching Protocols") -> bytes:
    """A response head (without the final blank line), as ``_read_head`` hands it over."""
    return "\r\n".join([status, *lines]).encode("latin-1")


GOOD_LINES = ("Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {RFC_ACCEPT}")


def request(*lines: str, start: str = "GET /chat HTTP/1.1") -> bytes:
    return "\r\n".join([start, *lines]).encode("latin-1")


GOOD_REQUEST_LINES = (
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {RFC_KEY}",
    "Sec-WebSocket-Version: 13",
)


def without(lines: tuple[str, ...], prefix: str) -> tuple[str, ...]:
    return tuple(line for line in lines if not line.lower().startswith(prefix.lower()))


# -- keys ----------------------------------------------------------------------------------------


def test_accept_key_rfc_golden() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_new_client_key_is_16_random_bytes() -> None:
    keys = {new_client_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


# -- client request ------------------------------------------------------------------------------


class TestClientRequest:
    def test_golden(self) -> None:
        assert build_client_request("server.example.com", "/chat", RFC_KEY) == (
            b"GET /chat HTTP/1.1\r\n"
            b"Host: server.example.com\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"\r\n"
        )

    def test_extra_headers_in_order(self) -> None:
        data = build_client_request(
            "h:8443", "/ws?x=1&y=2", RFC_KEY, {"Origin": "https://example.com", "X-Api-Key": "abc"}
        )
        assert data.startswith(b"GET /ws?x=1&y=2 HTTP/1.1\r\nHost: h:8443\r\n")
        assert data.endswith(
            b"Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\nX-Api-Key: abc\r\n\r\n"
        )
        assert data.count(b"\r\n\r\n") == 1

    def test_empty_headers_mapping(self) -> None:
        assert build_client_request("h", "/", RFC_KEY, {}) == build_client_request("h", "/", RFC_KEY)

    @pytest.mark.parametrize(
        "headers",
        [
            {"X-Evil": "a\r\nInjected: 1"},
            {"X-Evil": "a\nInjected: 1"},
            {"X-Evil": "a\rb"},
            {"X-Evil": "a\x00b"},
            {"X-Evil\r\nInjected": "1"},
            {"X-Evil\n": "1"},
            {"X Evil": "1"},
            {"X-Evil:": "1"},
            {"": "1"},
        ],
    )
    def test_header_injection_refused(self, headers: dict[str, str]) -> None:
        with pytest.raises(ValueError):
            build_client_request("h", "/", RFC_KEY, headers)

    @pytest.mark.parametrize(
        ("host", "path"),
        [
            ("h", "/a\r\nInjected: 1"),
            ("h", "/a HTTP/1.1\r\nX: y"),
            ("h", "/a b"),
            ("h\r\nInjected: 1", "/"),
            ("h", ""),
            ("", "/"),
        ],
    )
    def test_request_line_and_host_injection_refused(self, host: str, path: str) -> None:
        with pytest.raises(ValueError):
            build_client_request(host, path, RFC_KEY)

    def test_key_injection_refused(self) -> None:
        with pytest.raises(ValueError):
            build_client_request("h", "/", "abc\r\nInjected: 1")

    def test_request_round_trips_through_server_parse(self) -> None:
        key = new_client_key()
        data = build_client_request("example.com:9000", "/stream?a=b", key, {"Origin": "o"})
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert (sep, rest) == (b"\r\n\r\n", b"")
        parsed = HandshakeRequest.parse(head)
        assert parsed.path == "/stream?a=b"
        assert parsed.key == key
        assert parsed.headers["host"] == "example.com:9000"
        assert parsed.headers["origin"] == "o"


# -- server response check -----------------------------------------------------------------------


class TestCheckServerResponse:
    def test_good_101(self) -> None:
        headers = check_server_response(response(*GOOD_LINES, "Server: test"), RFC_KEY)
        assert headers["sec-websocket-accept"] == RFC_ACCEPT
        assert headers["server"] == "test"

    def test_header_names_and_values_case_insensitive(self) -> None:
        head = response(
            "UPGRADE: WebSocket", "connection: keep-alive, UPGRADE", f"sec-websocket-ACCEPT:   {RFC_ACCEPT}  "
        )
        headers = check_server_response(head, RFC_KEY)
        assert headers["upgrade"] == "WebSocket"

    def test_repeated_connection_headers_are_joined(self) -> None:
        head = response(
            "Upgrade: websocket",
            "Connection: keep-alive",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {RFC_ACCEPT}",
        )
        assert check_server_response(head, RFC_KEY)["connection"] == "keep-alive, Upgrade"

    def test_response_built_by_the_server_side(self) -> None:
        key = new_client_key()
        parsed = HandshakeRequest.parse(build_client_request("h", "/", key).partition(b"\r\n\r\n")[0])
        head = build_server_response(parsed).partition(b"\r\n\r\n")[0]
        assert check_server_response(head, key)["sec-websocket-accept"] == accept_key(key)

    @pytest.mark.parametrize(
        "accept",
        [
            "",
            RFC_ACCEPT.lower(),  # base64 is case sensitive
            accept_key("AQIDBAUGBwgJCgsMDQ4PEA=="),  # the answer to another key
            RFC_KEY,  # the key echoed back
            f"{RFC_ACCEPT}, {RFC_ACCEPT}",  # sent twice
        ],
    )
    def test_wrong_accept(self, accept: str) -> None:
        head = response("Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}")
        with pytest.raises(RemoteProtocolError, match="Accept"):
            check_server_response(head, RFC_KEY)

    def test_missing_accept(self) -> None:
        with pytest.raises(RemoteProtocolError, match="Accept"):
            check_server_response(response(*without(GOOD_LINES, "sec-websocket-accept")), RFC_KEY)

    @pytest.mark.parametrize("upgrade", [None, "h2c", "websocket2", ""])
    def test_missing_or_wrong_upgrade(self, upgrade: str | None) -> None:
        lines = without(GOOD_LINES, "upgrade")
        if upgrade is not None:
            lines = (f"Upgrade: {upgrade}", *lines)
        with pytest.raises(RemoteProtocolError, match="Upgrade: websocket"):
            check_server_response(response(*lines), RFC_KEY)

    @pytest.mark.parametrize("connection", [None, "keep-alive", "upgraded", "close"])
    def test_missing_or_wrong_connection(self, connection: str | None) -> None:
        lines = without(GOOD_LINES, "connection")
        if connection is not None:
            lines = (f"Connection: {connection}", *lines)
        with pytest.raises(RemoteProtocolError, match="Connection: upgrade"):
            check_server_response(response(*lines), RFC_KEY)

    @pytest.mark.parametrize(
        "extension", ["permessage-deflate", "permessage-deflate; client_max_window_bits"]
    )
    def test_selected_extension_refused(self, extension: str) -> None:
        head = response(*GOOD_LINES, f"Sec-WebSocket-Extensions: {extension}")
        with pytest.raises(RemoteProtocolError, match="extension"):
            check_server_response(head, RFC_KEY)

    def test_empty_extensions_header_is_fine(self) -> None:
        check_server_response(response(*GOOD_LINES, "Sec-WebSocket-Extensions:"), RFC_KEY)

    @pytest.mark.parametrize(
        "status",
        [
            "",
            "HTTP/1.1",
            "HTTP/1.1 abc Switching",
            "HTTP/1.1  101 Switching Protocols",
            "HTTP/1.1 1O1 Switching Protocols",
            "HTTP/1.1 1\xb21 Switching Protocols",  # "²" is a digit to str.isdigit but not to int()
            "HTTP/1.1 \xb9\xb2\xb3",
            "HTTP/1.1 0101 Switching Protocols",
            "HTTP/1.1 10 Switching Protocols",
            "HTTP/1.1 -101 Switching Protocols",
            "HTTP/1.garbage 101 Switching Protocols",
            "HTTP/2 101 Switching Protocols",
            "ICY 101 OK",
            "101 Switching Protocols",
            "<html>",
        ],
    )
    def test_malformed_status_line(self, status: str) -> None:
        with pytest.raises(RemoteProtocolError, match="malformed HTTP status line") as info:
            check_server_response(response(*GOOD_LINES, status=status), RFC_KEY)
        assert not isinstance(info.value, HandshakeRejected)

    @pytest.mark.parametrize(
        ("line", "fatal"),
        [
            ("HTTP/1.1 400 Bad Request", True),
            ("HTTP/1.1 401 Unauthorized", True),
            ("HTTP/1.1 403 Forbidden", True),
            ("HTTP/1.1 404 Not Found", True),
            ("HTTP/1.1 426 Upgrade Required", True),
            ("HTTP/1.1 408 Request Timeout", False),
            ("HTTP/1.1 429 Too Many Requests", False),
            ("HTTP/1.1 500 Internal Server Error", False),
            ("HTTP/1.1 503 Service Unavailable", False),
            ("HTTP/1.1 200 OK", False),
            ("HTTP/1.1 302 Found", False),
            ("HTTP/1.0 403 Forbidden", True),
            ("HTTP/1.1 503", False),
        ],
    )
    def test_rejected_status(self, line: str, fatal: bool) -> None:
        with pytest.raises(HandshakeRejected) as info:
            check_server_response(response("Content-Length: 0", status=line), RFC_KEY)
        status = int(line.split(" ")[1])
        assert info.value.status_code == status
        assert info.value.fatal is fatal
        assert isinstance(info.value, RemoteProtocolError)
        assert str(status) in str(info.value)

    def test_rejection_reason_in_message(self) -> None:
        with pytest.raises(HandshakeRejected, match="429 Too Many Requests"):
            check_server_response(response(status="HTTP/1.1 429 Too Many Requests"), RFC_KEY)

    def test_status_checked_before_headers(self) -> None:
        # A rejection without any upgrade header is a rejection, not a malformed upgrade.
        with pytest.raises(HandshakeRejected):
            check_server_response(response(status="HTTP/1.1 401 Unauthorized"), RFC_KEY)

    @pytest.mark.parametrize(
        "line",
        [
            "no colon here",
            ": empty name",
            "Upgrade : websocket",  # whitespace before the colon (RFC 9112 5.1)
            " Upgrade: websocket",
            "\tobs-fold continuation",  # obsolete line folding
            "Bad Name: x",
            "Bad\x00Name: x",
        ],
    )
    def test_malformed_header_line(self, line: str) -> None:
        with pytest.raises(RemoteProtocolError, match="malformed HTTP header line"):
            check_server_response(response(*GOOD_LINES, line), RFC_KEY)


# -- head parsing ---------------------------------------------------------------------------------


class TestParseHead:
    def test_lower_cases_names_and_strips_values(self) -> None:
        start, headers = parse_head(b"HTTP/1.1 101 X\r\nX-Thing:  value  \r\nCONTENT-type:a/b")
        assert start == "HTTP/1.1 101 X"
        assert headers == {"x-thing": "value", "content-type": "a/b"}

    def test_repeated_headers_joined_in_order(self) -> None:
        _, headers = parse_head(b"S\r\nVia: a\r\nvia: b\r\nVIA: c")
        assert headers == {"via": "a, b, c"}

    def test_value_may_contain_colons(self) -> None:
        _, headers = parse_head(b"S\r\nLocation: https://h:1/p")
        assert headers == {"location": "https://h:1/p"}

    def test_trailing_blank_lines_ignored(self) -> None:
        assert parse_head(b"S\r\nA: 1\r\n\r\n") == ("S", {"a": "1"})

    def test_latin1_values_kept(self) -> None:
        assert parse_head(b"S\r\nX: caf\xe9") == ("S", {"x": "café"})


# -- server side ----------------------------------------------------------------------------------


class TestServerSide:
    def test_parse_valid_request(self) -> None:
        parsed = HandshakeRequest.parse(request(*GOOD_REQUEST_LINES, "Origin: http://example.com"))
        assert parsed.path == "/chat"
        assert parsed.key == RFC_KEY
        assert parsed.headers["origin"] == "http://example.com"

    def test_parse_is_case_insensitive(self) -> None:
        parsed = HandshakeRequest.parse(
            request(
                "HOST: h",
                "upgrade: WebSocket",
                "connection: keep-alive, upgrade",
                f"sec-websocket-key: {RFC_KEY}",
                "SEC-WEBSOCKET-VERSION: 13",
            )
        )
        assert parsed.key == RFC_KEY

    def test_repeated_connection_headers(self) -> None:
        lines = (*without(GOOD_REQUEST_LINES, "connection"), "Connection: keep-alive", "Connection: Upgrade")
        assert HandshakeRequest.parse(request(*lines)).headers["connection"] == "keep-alive, Upgrade"

    @pytest.mark.parametrize(
        "start",
        [
            "POST /chat HTTP/1.1",
            "get /chat HTTP/1.1",
            "GET /chat HTTP/1.0",
            "GET /chat HTTP/1.1x",
            "GET /chat",
            "GET  /chat HTTP/1.1",
            "GET /a b HTTP/1.1",
            "",
        ],
    )
    def test_bad_request_line(self, start: str) -> None:
        with pytest.raises(RemoteProtocolError, match="not a websocket upgrade request"):
            HandshakeRequest.parse(request(*GOOD_REQUEST_LINES, start=start))

    @pytest.mark.parametrize(
        "missing", ["sec-websocket-key", "upgrade", "connection", "host", "sec-websocket-version"]
    )
    def test_missing_header(self, missing: str) -> None:
        with pytest.raises(RemoteProtocolError):
            HandshakeRequest.parse(request(*without(GOOD_REQUEST_LINES, missing)))

    @pytest.mark.parametrize(
        "line",
        [
            "Upgrade: h2c",
            "Connection: keep-alive",
            "Sec-WebSocket-Version: 8",
            "Sec-WebSocket-Version: 13, 8",
        ],
    )
    def test_wrong_header_value(self, line: str) -> None:
        name = line.partition(":")[0]
        with pytest.raises(RemoteProtocolError):
            HandshakeRequest.parse(request(*without(GOOD_REQUEST_LINES, name), line))

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "not base64!",
            base64.b64encode(b"x" * 15).decode(),
            base64.b64encode(b"x" * 17).decode(),
            "dGhlIHNhbXBsZSBub25jZQ",  # missing padding
            "d\xe9hlIHNhbXBsZSBub25jZQ==",  # not ASCII
        ],
    )
    def test_invalid_key(self, key: str) -> None:
        lines = (*without(GOOD_REQUEST_LINES, "sec-websocket-key"), f"Sec-WebSocket-Key: {key}")
        with pytest.raises(RemoteProtocolError, match="Sec-WebSocket-Key"):
            HandshakeRequest.parse(request(*lines))

    def test_build_server_response_golden(self) -> None:
        parsed = HandshakeRequest.parse(request(*GOOD_REQUEST_LINES))
        assert build_server_response(parsed) == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"\r\n"
        )

    def test_build_server_response_extra_headers(self) -> None:
        parsed = HandshakeRequest.parse(request(*GOOD_REQUEST_LINES))
        data = build_server_response(parsed, {"Server": "native-anyio-test"})
        assert data.endswith(b"\r\nServer: native-anyio-test\r\n\r\n")
        headers = check_server_response(data.partition(b"\r\n\r\n")[0], RFC_KEY)
        assert headers["server"] == "native-anyio-test"

    @pytest.mark.parametrize("headers", [{"X": "a\r\nSet-Cookie: 1"}, {"X\r\n": "a"}, {"X Y": "a"}])
    def test_build_server_response_refuses_injection(self, headers: dict[str, str]) -> None:
        parsed = HandshakeRequest.parse(request(*GOOD_REQUEST_LINES))
        with pytest.raises(ValueError):
            build_server_response(parsed, headers)
