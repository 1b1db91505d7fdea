"""
What differs between cryptofeed 2.4.1 and 3.0.x, found by feature detection (neither version has
``cryptofeed.__version__``):

* 2.4.1 drives a feed through ``Feed.start(loop)`` and unpacks 4-tuples from ``connect()``
  ``(conn, subscribe, handler, authenticate)``; 3.0.x drives it through ``Feed.run(stop_event)``
  and unpacks 3-tuples ``(conn, subscribe, handler)``.
* ``AsyncConnection.__init__`` takes ``authentication`` positionally in 2.4.1 only, so
  ``subscription`` is always passed by keyword.
"""

from __future__ import annotations

from typing import Final

from cryptofeed.exchanges import EXCHANGE_MAP
from cryptofeed.feed import Feed
from cryptofeed.symbols import Symbols

__all__ = ["BACKPACK", "CRYPTOFEED_3", "merge_symbols", "register"]

#: The exchange id (``FeedHandler().add_feed('BACKPACK', ...)``, ``Trade.exchange``).
BACKPACK: Final = "BACKPACK"

#: True under cryptofeed 3.x (``Feed.run``), False under 2.4.x (``Feed.start``).
CRYPTOFEED_3: Final = hasattr(Feed, "run") and not hasattr(Feed, "start")


def register(feed_class: type[Feed]) -> None:
    """
    Make ``add_feed('BACKPACK', ...)`` build ``feed_class``; idempotent.

    ``EXCHANGE_MAP`` is the dict ``cryptofeed.feedhandler`` looks names up in. Under 3.x this also
    makes a ``backpack:`` section of the FeedHandler config legal, provided it runs before the
    FeedHandler is built (importing :mod:`bridges.cryptofeed` does it).
    """
    EXCHANGE_MAP[BACKPACK] = feed_class


def merge_symbols(mapping: dict[str, str], instrument_types: dict[str, str]) -> None:
    """
    Add ``{normalized: exchange}`` symbols to cryptofeed's process-global ``Symbols`` registry.

    cryptofeed 2.4.1 fetches the venue's symbol list with blocking HTTP inside ``Feed.__init__``
    unless the registry is populated, and 3.0.x fetches it in ``Feed._setup()``. Populating it from
    the symbols the user asked for keeps construction (and start-up) network-free; whether a symbol
    really is an open market is checked by our client when it subscribes. Merging (rather than
    replacing) keeps several BackpackFeeds with different symbols in one process working.
    """
    if Symbols.populated(BACKPACK):
        known, info = Symbols.get(BACKPACK)
        known = {**known, **mapping}
        types = {**info.get("instrument_type", {}), **instrument_types}
    else:
        known, types = dict(mapping), dict(instrument_types)
    Symbols.set(BACKPACK, known, {"instrument_type": types})
