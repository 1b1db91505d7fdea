"""
An embedded Backpack Exchange simulator for tests and benchmarks.

A real websocket server and a real HTTP/1.1 server on 127.0.0.1 that speak Backpack's protocol
byte for byte (as recorded on the wire), keep a seeded ground-truth book per symbol, and inject
faults on demand::

    async with open_simulator(SimulatorConfig(symbols=("SOL_USDC",), seed=1)) as sim:
        ...  # connect a client to sim.ws_url / sim.rest_url
        assert client_book == sim.book_at("SOL_USDC", update_id)

Everything runs on anyio (asyncio or trio) and is timed with ``anyio.current_time()``, so it works
under virtual clocks. Not imported by ``native_anyio`` itself.
"""

from __future__ import annotations

from ._book import TruthBook as TruthBook
from ._commands import SubscriptionRecord as SubscriptionRecord
from ._config import MarketSpec as MarketSpec
from ._config import SimulatorConfig as SimulatorConfig
from ._config import virtual_wall_clock as virtual_wall_clock
from ._conn import ConnectionInfo as ConnectionInfo
from ._faults import FaultController as FaultController
from ._faults import FaultRecord as FaultRecord
from ._rawclient import RawFrame as RawFrame
from ._rawclient import RawWsClient as RawWsClient
from ._rawclient import open_raw_ws as open_raw_ws
from ._simulator import Simulator as Simulator
from ._simulator import TradeInfo as TradeInfo
from ._simulator import open_simulator as open_simulator
from ._simulator import serve_simulator as serve_simulator

__all__ = [
    "ConnectionInfo",
    "FaultController",
    "FaultRecord",
    "MarketSpec",
    "RawFrame",
    "RawWsClient",
    "Simulator",
    "SimulatorConfig",
    "SubscriptionRecord",
    "TradeInfo",
    "TruthBook",
    "open_raw_ws",
    "open_simulator",
    "serve_simulator",
    "virtual_wall_clock",
]

# Tracebacks and reprs name the public module, not the private one a name is defined in.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(f"{__name__}._"):
        _obj.__module__ = __name__
del _name, _obj
