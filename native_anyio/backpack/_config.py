"""
Backpack client configuration.

Credentials are optional (public data needs none). They may come from the arguments or from the
environment (``BACKPACK_API_KEY`` / ``BACKPACK_API_SECRET``); the secret is validated and wrapped
at construction (``Ed25519Signer``), so a wrong key fails here with a message that never contains
it. Signed traffic is refused over plain ``ws://``/``http://`` unless the host is loopback (the
embedded simulator).
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final
from urllib.parse import urlsplit

from .._auth import MAX_WINDOW_MS, Ed25519Signer
from .._errors import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["DEFAULT_REST_URL", "DEFAULT_WS_URL", "BackpackConfig"]

DEFAULT_REST_URL = "https://api.backpack.exchange"
DEFAULT_WS_URL = "wss://ws.backpack.exchange"

ENV_API_KEY = "BACKPACK_API_KEY"
ENV_API_SECRET = "BACKPACK_API_SECRET"


def is_loopback(url: str) -> bool:
    """True when ``url`` points at localhost or a loopback address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@final
@dataclass(frozen=True, slots=True, repr=False)
class BackpackConfig:
    """
    Settings of a Backpack client.

    Args:
        rest_url: REST base URL (``https://api.backpack.exchange``).
        ws_url: websocket URL (``wss://ws.backpack.exchange``).
        api_key: base64 Ed25519 public key (optional; env ``BACKPACK_API_KEY``).
        api_secret: base64 32-byte Ed25519 seed (optional; env ``BACKPACK_API_SECRET``).
        window_ms: signing window, default 5000, at most 60000.
        request_timeout: REST timeout per attempt, seconds.
        handshake_timeout: websocket handshake bound, seconds.
        proxy: an explicit ``http://host:port`` proxy for REST and, through ``CONNECT``, for the
            websocket (environment proxies are ignored).
        unknown_symbol_timeout: how long a subscription may stay silent before the symbol is
            checked against the market list and reported unknown, seconds.
        clock: wall clock for signature timestamps (seconds).
    """

    rest_url: str = DEFAULT_REST_URL
    ws_url: str = DEFAULT_WS_URL
    api_key: str | None = None
    api_secret: str | None = None
    window_ms: int = 5000
    request_timeout: float = 10.0
    handshake_timeout: float = 10.0
    proxy: str | None = None
    unknown_symbol_timeout: float = 10.0
    clock: Callable[[], float] | None = None
    signer: Ed25519Signer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not 0 < self.window_ms <= MAX_WINDOW_MS:
            raise ValueError(f"window_ms must be within 1..{MAX_WINDOW_MS}, got {self.window_ms}")
        for name, url, schemes in (
            ("rest_url", self.rest_url, ("http", "https")),
            ("ws_url", self.ws_url, ("ws", "wss")),
        ):
            scheme = urlsplit(url).scheme
            if scheme not in schemes:
                raise ValueError(f"{name} must use {' or '.join(schemes)}, got {url!r}")
        if (self.api_key is None) != (self.api_secret is None):
            raise ValueError("api_key and api_secret must be given together")
        if self.api_secret is not None:
            signer = Ed25519Signer(
                self.api_secret,
                public_key=self.api_key,
                clock=self.clock or time.time,
                window_ms=self.window_ms,
            )
            object.__setattr__(self, "signer", signer)
            object.__setattr__(self, "api_secret", None)  # only the redacting wrapper keeps it
            for name, url in (("rest_url", self.rest_url), ("ws_url", self.ws_url)):
                if urlsplit(url).scheme in ("http", "ws") and not is_loopback(url):
                    raise LocalProtocolError(
                        f"refusing to send signed traffic over plain {name} {url!r}; use https/wss"
                    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> BackpackConfig:
        """Build a config taking credentials from ``BACKPACK_API_KEY`` / ``BACKPACK_API_SECRET``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get(ENV_API_KEY) or env.get(ENV_API_SECRET):
            values["api_key"] = env.get(ENV_API_KEY)
            values["api_secret"] = env.get(ENV_API_SECRET)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def authenticated(self) -> bool:
        """True when credentials were given."""
        return self.signer is not None

    def __repr__(self) -> str:
        key = f", api_key={self.api_key!r}" if self.api_key else ""
        return f"BackpackConfig(rest_url={self.rest_url!r}, ws_url={self.ws_url!r}{key}, window_ms={self.window_ms})"
