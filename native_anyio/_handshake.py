"""
The websocket opening handshake (RFC 6455 section 4), sans-IO, for both sides.

The client builds an HTTP/1.1 ``GET`` with a fresh ``Sec-WebSocket-Key`` and checks the answer:
status 101, ``Upgrade: websocket``, ``Connection: upgrade`` and the matching
``Sec-WebSocket-Accept``. No extension is offered, so an answer that selects one is refused. Any
other status becomes :class:`HandshakeRejected`, which says whether retrying can help.
"""

from __future__ import annotations

import base64
import hashlib
import os
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


def new_client_key() -> str:
    """A fresh random ``Sec-WebSocket-Key``."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(client_key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for ``client_key``."""
    digest = hashlib.sha1(client_key.encode("ascii") + _GUID).digest()  # noqa: S324 - mandated by RFC 6455
    return base64.b64encode(digest).decode("ascii")


def build_client_request(host: str, path: str, key: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The opening handshake request bytes. ``host`` includes the port when it is not the default."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if headers:
        for name, value in headers.items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError("header names and values must not contain line breaks")
            lines.append(f"{name}: {value}")
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
        if not sep or not name or name != name.strip():
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
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise RemoteProtocolError(f"malformed HTTP status line {start[:80]!r}")
    status = int(parts[1])
    if status != 101:
        reason = parts[2] if len(parts) > 2 else ""
        raise HandshakeRejected(f"websocket handshake rejected with HTTP {status} {reason}".rstrip(), status_code=status)
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
        if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/1.1"):
            raise RemoteProtocolError(f"not a websocket upgrade request: {start[:80]!r}")
        if headers.get("upgrade", "").lower() != "websocket" or "sec-websocket-key" not in headers:
            raise RemoteProtocolError("request lacks the websocket upgrade headers")
        return cls(parts[1], headers)


def build_server_response(request: HandshakeRequest, headers: Mapping[str, str] | None = None) -> bytes:
    """The 101 answer to ``request``."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(request.key)}",
    ]
    if headers:
        lines.extend(f"{k}: {v}" for k, v in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
