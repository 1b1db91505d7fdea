"""
The websocket opening handshake (RFC 6455 section 4), sans-IO, for both sides.

The client builds an HTTP/1.1 ``GET`` with a fresh ``Sec-WebSocket-Key`` and checks the answer:
status 101, ``Upgrade: websocket``, ``Connection: upgrade`` and the matching
``Sec-WebSocket-Accept``. No extension is offered, so an answer that selects one is refused. Any
other status becomes :class:`HandshakeRejected`, which says whether retrying can help.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import HandshakeRejected, RemoteProtocolError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "MAX_HEAD_SIZE",
    "HandshakeRequest",
    "accept_key",
    "build_client_request",
    "build_server_response",
    "check_server_response",
    "new_client_key",
    "parse_head",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Largest response (or request) head we accept.
MAX_HEAD_SIZE = 16 * 1024

# RFC 9110 5.6.2 token: what a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Characters that would end the request line or a header line early (request smuggling).
_BREAKS = re.compile(r"[\r\n\x00]")


def _header_lines(headers: Mapping[str, str] | None) -> list[str]:
    lines = []
    for name, value in (headers or {}).items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if _BREAKS.search(value):
            raise ValueError("header values must not contain line breaks or NUL")
        lines.append(f"{name}: {value}")
    return lines


def new_client_key() -> str:
    """A fresh random ``Sec-WebSocket-Key``."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(client_key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for ``client_key``."""
    # SHA-1 is mandated by RFC 6455 4.2.2; it is not used for security here.
    digest = hashlib.sha1(client_key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def build_client_request(host: str, path: str, key: str, headers: Mapping[str, str] | None = None) -> bytes:
    """
    The opening handshake request bytes. ``host`` includes the port when it is not the default.

    Raises:
        ValueError: a line break, NUL or space in ``host``, ``path`` or ``key``, or an invalid
            extra header (which could otherwise inject headers into the request).
    """
    for part in (host, path, key):
        if not part or _BREAKS.search(part) or " " in part or "\t" in part:
            raise ValueError(f"invalid host, path or key {part!r}")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *_header_lines(headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(data: bytes) -> tuple[str, dict[str, str]]:
    """
    Split an HTTP head (without the final blank line) into its start line and headers.

    Header names are lower-cased; repeated headers are joined with ``", "``.

    Raises:
        RemoteProtocolError: the head is not valid HTTP/1.1.
    """
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise RemoteProtocolError("undecodable HTTP head") from None
    start, *rest = text.split("\r\n")
    headers: dict[str, str] = {}
    for line in rest:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise RemoteProtocolError(f"malformed HTTP header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return start, headers


def check_server_response(head: bytes, key: str) -> dict[str, str]:
    """
    Validate the server's handshake answer; returns its headers.

    Raises:
        HandshakeRejected: the status is not 101.
        RemoteProtocolError: a 101 that is not a valid websocket upgrade.
    """
    start, headers = parse_head(head)
    parts = start.split(" ", 2)
    # Three ASCII digits: str.isdigit() alone also accepts digits like "²" that int() refuses.
    if (
        len(parts) < 2
        or parts[0] not in ("HTTP/1.1", "HTTP/1.0")
        or len(parts[1]) != 3
        or not (parts[1].isascii() and parts[1].isdigit())
    ):
        raise RemoteProtocolError(f"malformed HTTP status line {start[:80]!r}")
    status = int(parts[1])
    if status != 101:
        reason = parts[2] if len(parts) > 2 else ""
        raise HandshakeRejected(
            f"websocket handshake rejected with HTTP {status} {reason}".rstrip(), status_code=status
        )
    if headers.get("upgrade", "").lower() != "websocket":
        raise RemoteProtocolError("handshake answer lacks 'Upgrade: websocket'")
    if "upgrade" not in {token.strip().lower() for token in headers.get("connection", "").split(",")}:
        raise RemoteProtocolError("handshake answer lacks 'Connection: upgrade'")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise RemoteProtocolError("handshake answer has a wrong Sec-WebSocket-Accept")
    if headers.get("sec-websocket-extensions"):
        raise RemoteProtocolError("server selected an extension that was not offered")
    return headers


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """A parsed client handshake (server side)."""

    path: str
    headers: dict[str, str]

    @property
    def key(self) -> str:
        """The client's ``Sec-WebSocket-Key``."""
        return self.headers.get("sec-websocket-key", "")

    @classmethod
    def parse(cls, head: bytes) -> HandshakeRequest:
        """
        Parse and validate a client handshake head.

        Raises:
            RemoteProtocolError: not a websocket upgrade request.
        """
        start, headers = parse_head(head)
        parts = start.split(" ")
        if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1" or not parts[1]:
            raise RemoteProtocolError(f"not a websocket upgrade request: {start[:80]!r}")
        # RFC 6455 4.2.1: Host, Upgrade, Connection, a 16-byte base64 key and version 13.
        if (
            "host" not in headers
            or headers.get("upgrade", "").lower() != "websocket"
            or "upgrade" not in {token.strip().lower() for token in headers.get("connection", "").split(",")}
        ):
            raise RemoteProtocolError("request lacks the websocket upgrade headers")
        if headers.get("sec-websocket-version") != "13":
            raise RemoteProtocolError("unsupported Sec-WebSocket-Version (13 is required)")
        if not _is_valid_client_key(headers.get("sec-websocket-key", "")):
            raise RemoteProtocolError("missing or invalid Sec-WebSocket-Key")
        return cls(parts[1], headers)


def _is_valid_client_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (UnicodeEncodeError, binascii.Error):
        return False


def build_server_response(request: HandshakeRequest, headers: Mapping[str, str] | None = None) -> bytes:
    """
    The 101 answer to ``request``.

    Raises:
        ValueError: an invalid extra header name, or a line break or NUL in a value.
    """
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(request.key)}",
        *_header_lines(headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
