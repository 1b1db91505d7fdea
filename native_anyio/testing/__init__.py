"""
Test helpers for code built on native_anyio: fakes and local servers, never mocks.

Not imported by ``native_anyio`` itself (like ``trio.testing``).
"""

from __future__ import annotations

from ._clock import VirtualClockEventLoop as VirtualClockEventLoop
from ._faultproxy import Blackhole as Blackhole
from ._faultproxy import CorruptByte as CorruptByte
from ._faultproxy import CutMidFrame as CutMidFrame
from ._faultproxy import Delay as Delay
from ._faultproxy import FaultProxy as FaultProxy
from ._faultproxy import Fin as Fin
from ._faultproxy import Mode as Mode
from ._faultproxy import Pass as Pass
from ._faultproxy import ProxyConnection as ProxyConnection
from ._faultproxy import Reset as Reset
from ._faultproxy import Throttle as Throttle
from ._faultproxy import open_fault_proxy as open_fault_proxy
from ._http import HttpRequest as HttpRequest
from ._http import HttpResponse as HttpResponse
from ._http import HttpServerStatistics as HttpServerStatistics
from ._http import HttpTestServer as HttpTestServer
from ._http import open_http_server as open_http_server
from ._wsserver import ServerConnection as ServerConnection
from ._wsserver import WsTestServer as WsTestServer
from ._wsserver import open_ws_server as open_ws_server

__all__ = [
    "Blackhole",
    "CorruptByte",
    "CutMidFrame",
    "Delay",
    "FaultProxy",
    "Fin",
    "HttpRequest",
    "HttpResponse",
    "HttpServerStatistics",
    "HttpTestServer",
    "Mode",
    "Pass",
    "ProxyConnection",
    "Reset",
    "ServerConnection",
    "Throttle",
    "VirtualClockEventLoop",
    "WsTestServer",
    "open_fault_proxy",
    "open_http_server",
    "open_ws_server",
]
