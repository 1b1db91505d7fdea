"""The trade de-duplication window (C9) keeps exactly the last ids, in constant memory."""

from __future__ import annotations

import sys

from native_anyio.backpack._client import _TRADE_WINDOW, _TradeWindow


def test_the_window_holds_exactly_the_last_ids() -> None:
    window = _TradeWindow()
    total = 3 * _TRADE_WINDOW + 123
    for trade_id in range(total):
        window.add(trade_id)
    assert window.ids == set(range(total - _TRADE_WINDOW, total))
    assert list(window.order) == list(range(total - _TRADE_WINDOW, total))


def test_the_set_stops_growing_after_the_first_window() -> None:
    # Without the periodic rebuild, dummy slots of discarded ids make the set's table grow
    # to twice its size after about two windows (an RSS step in the soak benchmark).
    window = _TradeWindow()
    sizes = []
    for trade_id in range(20 * _TRADE_WINDOW):
        window.add(trade_id)
        if trade_id % _TRADE_WINDOW == _TRADE_WINDOW - 1:
            sizes.append(sys.getsizeof(window.ids))
    assert len(set(sizes)) == 1, sizes
