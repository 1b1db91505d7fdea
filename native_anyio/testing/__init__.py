"""
Test helpers for code built on native_anyio: fakes and local servers, never mocks.

Not imported by ``native_anyio`` itself (like ``trio.testing``).
"""

from __future__ import annotations

from ._clock import VirtualClockEventLoop as VirtualClockEventLoop
from ._wsserver import ServerConnection as ServerConnection
from ._wsserver import WsTestServer as WsTestServer
from ._wsserver import open_ws_server as open_ws_server

__all__ = ["ServerConnection", "VirtualClockEventLoop", "WsTestServer", "open_ws_server"]
