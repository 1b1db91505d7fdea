"""
Test helpers for code built on native_anyio: fakes and local servers, never mocks.

Not imported by ``native_anyio`` itself (like ``trio.testing``).
"""

from __future__ import annotations

from ._clock import VirtualClockEventLoop as VirtualClockEventLoop
from ._http import HttpRequest as HttpRequest
from ._http import HttpResponse as HttpResponse
from ._http import HttpServerStatistics as HttpServerStatistics
from ._http import HttpTestServer as HttpTestServer
from ._http import open_http_server as open_http_server
from ._wsserver import ServerConnection as ServerConnection
from ._wsserver import WsTestServer as WsTestServer
from ._wsserver import open_ws_server as open_ws_server

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "HttpServerStatistics",
    "HttpTestServer",
    "ServerConnection",
    "VirtualClockEventLoop",
    "WsTestServer",
    "open_http_server",
    "open_ws_server",
]
