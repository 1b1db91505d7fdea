"""
Adapters that run native_anyio sessions inside other frameworks.

* :mod:`bridges.cryptofeed`: ``BackpackFeed``, a ``cryptofeed.feed.Feed`` that runs our Backpack
  client (asyncio backend) under cryptofeed's ``FeedHandler`` (cryptofeed 2.4.1 or 3.0.x; install
  the ``cryptofeed`` extra).

Nothing is imported here, so ``import bridges`` never needs the optional dependencies.
"""

from __future__ import annotations
