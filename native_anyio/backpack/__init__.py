"""
Backpack Exchange on the native_anyio toolkit: every public stream, signed private streams,
REST, and order books kept in sync.

Ten lines::

    import anyio
    from native_anyio.backpack import open_backpack

    async def main() -> None:
        async with open_backpack(symbols=["SOL-USDC", "BTC-USDC-PERP"], channels=["trades", "book"]) as backpack:
            async for event in backpack:
                print(event.to_json().decode())

    anyio.run(main)  # or anyio.run(main, backend="trio")

The embedded simulator (``native_anyio.backpack.simulator``) speaks the same protocol on
127.0.0.1; point ``BackpackConfig(rest_url=..., ws_url=...)`` at it.
"""

from __future__ import annotations

from ._client import DEFAULT_CHANNELS as DEFAULT_CHANNELS
from ._client import PRIVATE_CHANNELS as PRIVATE_CHANNELS
from ._client import PUBLIC_CHANNELS as PUBLIC_CHANNELS
from ._client import BackpackClient as BackpackClient
from ._client import BackpackStatistics as BackpackStatistics
from ._client import SubscriptionError as SubscriptionError
from ._client import open_backpack as open_backpack
from ._config import DEFAULT_REST_URL as DEFAULT_REST_URL
from ._config import DEFAULT_WS_URL as DEFAULT_WS_URL
from ._config import BackpackConfig as BackpackConfig
from ._events import EXCHANGE as EXCHANGE
from ._events import BalanceUpdate as BalanceUpdate
from ._events import BookDelta as BookDelta
from ._events import BookSnapshot as BookSnapshot
from ._events import BookStatus as BookStatus
from ._events import Candle as Candle
from ._events import Event as Event
from ._events import Liquidation as Liquidation
from ._events import MarkPrice as MarkPrice
from ._events import OpenInterest as OpenInterest
from ._events import OrderUpdate as OrderUpdate
from ._events import PositionSnapshot as PositionSnapshot
from ._events import PositionUpdate as PositionUpdate
from ._events import Ticker as Ticker
from ._events import TopOfBook as TopOfBook
from ._events import Trade as Trade
from ._normalize import normalize as normalize
from ._normalize import snapshot_from_rest as snapshot_from_rest
from ._rest import BackpackRest as BackpackRest
from ._streams import InvalidStreamName as InvalidStreamName
from ._streams import StreamName as StreamName
from ._streams import exchange_symbol as exchange_symbol
from ._streams import normalize_symbol as normalize_symbol
from ._streams import parse_stream as parse_stream
from ._subscriptions import BackpackSubscriptions as BackpackSubscriptions
from ._symbols import BackpackSymbols as BackpackSymbols
from ._wire import Frame as Frame
from ._wire import decode_frame as decode_frame
from ._wire_rest import Market as Market
from ._wire_rest import RestDepth as RestDepth

__all__ = [
    "BackpackClient",
    "BackpackConfig",
    "BackpackRest",
    "BackpackStatistics",
    "BackpackSubscriptions",
    "BackpackSymbols",
    "BalanceUpdate",
    "BookDelta",
    "BookSnapshot",
    "BookStatus",
    "Candle",
    "DEFAULT_CHANNELS",
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "EXCHANGE",
    "Event",
    "Frame",
    "InvalidStreamName",
    "Liquidation",
    "MarkPrice",
    "Market",
    "OpenInterest",
    "OrderUpdate",
    "PRIVATE_CHANNELS",
    "PUBLIC_CHANNELS",
    "PositionSnapshot",
    "PositionUpdate",
    "RestDepth",
    "StreamName",
    "SubscriptionError",
    "Ticker",
    "TopOfBook",
    "Trade",
    "decode_frame",
    "exchange_symbol",
    "normalize",
    "normalize_symbol",
    "open_backpack",
    "parse_stream",
    "snapshot_from_rest",
]
