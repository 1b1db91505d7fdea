"""
Run Backpack market data from native_anyio under cryptofeed's ``FeedHandler``.

::

    from cryptofeed import FeedHandler
    from cryptofeed.defines import L2_BOOK, TRADES
    from bridges.cryptofeed import BackpackFeed

    async def trade(t, receipt_timestamp):
        print(t)

    fh = FeedHandler(config={"log": {"disabled": True}, "uvloop": False})
    fh.add_feed(BackpackFeed(symbols=["SOL-USDC"], channels=[TRADES, L2_BOOK], callbacks={TRADES: trade}))
    fh.run()

Supports cryptofeed 2.4.1 (Python 3.10-3.12, MIT-style licence) and 3.0.x (Python 3.13+,
AGPL-3.0-or-later); the ``cryptofeed`` extra picks the right one. Importing this module registers
``BACKPACK`` in cryptofeed's ``EXCHANGE_MAP``, so ``FeedHandler().add_feed("BACKPACK", ...)``
works too. Only asyncio is possible under cryptofeed; our session runs on anyio's asyncio backend
(uvloop included).
"""

from __future__ import annotations

try:
    import cryptofeed.feed  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("bridges.cryptofeed needs cryptofeed: pip install 'native-anyio[cryptofeed]'") from exc

from ._compat import BACKPACK as BACKPACK
from ._compat import CRYPTOFEED_3 as CRYPTOFEED_3
from ._compat import register
from ._connection import BackpackConnection as BackpackConnection
from ._feed import DEFAULT_MAX_BUFFER as DEFAULT_MAX_BUFFER
from ._feed import DEFAULT_MAX_QUEUE as DEFAULT_MAX_QUEUE
from ._feed import BackpackFeed as BackpackFeed
from ._feed import BridgeStatistics as BridgeStatistics

__all__ = [
    "BACKPACK",
    "CRYPTOFEED_3",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_QUEUE",
    "BackpackConnection",
    "BackpackFeed",
    "BridgeStatistics",
]

register(BackpackFeed)
