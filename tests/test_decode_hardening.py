"""
Regressions found by the reliability fuzz scenario (``reliability/scenarios/logic_fuzz.py``).

msgspec raises RecursionError for JSON nested deeper than it follows and UnicodeDecodeError for
invalid UTF-8 inside a string; both escaped the decoders, so one such frame from the server (a
binary frame is not UTF-8 checked) or one such REST body ended the whole Backpack client. And a
book keyed asks by unary minus, which rounds to the context's 28 digits.
"""

from __future__ import annotations

from typing import Any

import pytest

# Deeper than any CPython's limit: 3.10-3.12 stop near 1,000 levels, 3.13 decodes 5,000 (C stack
# based limit) but not 50,000.
DEEP = b"[" * 50_000 + b"]" * 50_000
HOSTILE = [
    pytest.param(b'{"data":' + DEEP + b',"stream":"depth.SOL_USDC"}', id="deep-nesting"),
    pytest.param(b'{"data":{"e":"tr\xb9de"},"stream":"trade.SOL_USDC"}', id="invalid-utf8"),
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_json_is_a_decode_error_for_every_decoder(payload: bytes) -> None:
    from native_anyio import DecodeError, Router
    from native_anyio.backpack._wire import decode_frame
    from native_anyio.backpack._wire_rest import decode_depth

    with pytest.raises(DecodeError):
        decode_frame(payload)
    with pytest.raises(DecodeError):
        decode_depth(payload)
    router: Router[object] = Router(Any)
    with pytest.raises(DecodeError):
        router.decode(payload)
    assert router.decode_batch([payload]) == []
    assert router.statistics().parse_errors == 2


@pytest.mark.virtual_time
async def test_a_deeply_nested_frame_does_not_kill_the_backpack_client() -> None:
    import anyio

    from native_anyio.backpack import BackpackConfig, BookStatus, open_backpack
    from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

    async with open_simulator(SimulatorConfig(symbols=("SOL_USDC",), seed=1)) as sim:
        config = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url)
        with anyio.fail_after(60):
            async with open_backpack(config, symbols=["SOL_USDC"], channels=["book"]) as client:
                while client.book("SOL_USDC") is None:
                    await client.receive_events()
                before = client.book("SOL_USDC").last_update_id  # type: ignore[union-attr]
                sim.faults.send_malformed(payload=b'{"data":' + DEEP + b',"stream":"depth.SOL_USDC"}')
                statuses: list[str] = []
                while client.statistics().decode_errors == 0:
                    statuses += [e.state for e in await client.receive_events() if isinstance(e, BookStatus)]
                for _ in range(3):  # and the client keeps going
                    statuses += [e.state for e in await client.receive_events() if isinstance(e, BookStatus)]
                book = client.book("SOL_USDC")
    assert client.statistics().decode_errors == 1
    # Not even its envelope decodes, so it names no book: the books stay live (a depth frame that
    # went missing would show as a gap on the next one).
    assert statuses == []
    assert book is not None
    assert book.last_update_id > before


def test_an_order_book_keeps_prices_longer_than_the_decimal_context_precision() -> None:
    """Unary minus rounds to 28 digits: an ask keyed by it could no longer be read or deleted."""
    from decimal import Decimal

    from native_anyio import OrderBook

    book = OrderBook()
    price = Decimal("99999999999999999999999999999.99999999")  # 37 significant digits
    bid = Decimal("99999999999999999999999999999.99999998")
    book.apply([(bid, Decimal(1))], [(price, Decimal(2))])
    assert book.asks() == [(price, Decimal(2))]
    assert book.best_ask == (price, Decimal(2))
    assert not book.is_crossed()
    book.apply([], [(price, Decimal(0))])
    assert book.asks() == []
    assert len(book) == 1
    book.load([], [(price, Decimal(3))], 1)
    assert book.asks(1) == [(price, Decimal(3))]
