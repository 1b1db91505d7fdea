"""The simulator's sans-IO parts: engine invariants, history, numbers, stream names, klines."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from native_anyio.backpack.simulator import MarketSpec, SimulatorConfig
from native_anyio.backpack.simulator._book import History, Side
from native_anyio.backpack.simulator._commands import error_frame
from native_anyio.backpack.simulator._config import spec_for
from native_anyio.backpack.simulator._engine import MAX_LEVELS, MIN_LEVELS, MarketEngine
from native_anyio.backpack.simulator._klines import KlineBook, candle_bounds
from native_anyio.backpack.simulator._numbers import decimals_of, padded, stripped, to_units
from native_anyio.backpack.simulator._streams import StreamError, parse_stream


def replay(engine: MarketEngine, events: int) -> tuple[dict[int, int], dict[int, int]]:
    bids, asks = dict(engine.bids.sizes), dict(engine.asks.sizes)
    for _ in range(events):
        event = engine.next_event()
        for side, changes in ((bids, event.bids), (asks, event.asks)):
            for price, size in changes:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
    return bids, asks


@pytest.mark.parametrize(
    "symbol", ["SOL_USDC", "BTC_USDC_PERP", "AAPL.US_USDC_PERP", "kPEPE_USDC_PERP", "X_Y"]
)
def test_engine_keeps_book_invariants(symbol: str) -> None:
    engine = MarketEngine(spec_for(symbol), 3, 10_000)
    previous = engine.last_id
    for _ in range(3000):
        event = engine.next_event()
        assert event.update_id == previous + 1
        previous = event.update_id
        assert 1 <= len(event.bids) + len(event.asks) <= 6
        bid, ask = engine.bids.best(), engine.asks.best()
        assert bid is not None
        assert ask is not None
        assert bid < ask
        assert MIN_LEVELS - 1 <= len(engine.bids) <= MAX_LEVELS
        assert MIN_LEVELS - 1 <= len(engine.asks) <= MAX_LEVELS
        assert all(size > 0 and size % engine.step == 0 for size in engine.bids.sizes.values())
        assert all(price % engine.tick == 0 for price in engine.asks.sizes)
        for fill in event.fills:
            assert fill.qty > 0
            assert fill.buyer_is_maker == (event.taker_side == "Ask")
    # The price stays near where it started (mean reversion).
    assert abs(engine.mid - engine.initial_mid) < engine.initial_mid * 0.2


def test_engine_trade_ids_are_sequential() -> None:
    engine = MarketEngine(spec_for("SOL_USDC"), 1, 1000)
    ids = [fill.trade_id for _ in range(2000) for fill in engine.next_event().fills]
    assert len(ids) > 100
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_engine_is_deterministic_per_seed() -> None:
    def run(seed: int) -> list[tuple[int, list[tuple[int, int]], list[tuple[int, int]]]]:
        engine = MarketEngine(spec_for("SOL_USDC"), seed, 1000)
        return [(e.update_id, e.bids, e.asks) for e in (engine.next_event() for _ in range(300))]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_history_rebuilds_every_retained_update() -> None:
    engine = MarketEngine(spec_for("SOL_USDC"), 2, 100_000)
    start = engine.last_id
    snapshots = {start: (dict(engine.bids.sizes), dict(engine.asks.sizes))}
    for _ in range(1500):
        event = engine.next_event()
        snapshots[event.update_id] = (dict(engine.bids.sizes), dict(engine.asks.sizes))
    rng = random.Random(0)
    for update_id in [start, start + 1, engine.last_id, *rng.sample(sorted(snapshots), 50)]:
        bids, asks = engine.history.book_at(update_id)
        assert (bids.sizes, asks.sizes) == snapshots[update_id]


def test_history_is_bounded_and_rolls_its_checkpoint() -> None:
    engine = MarketEngine(spec_for("SOL_USDC"), 4, 700)
    snapshots = {}
    for _ in range(2000):
        event = engine.next_event()
        snapshots[event.update_id] = (dict(engine.bids.sizes), dict(engine.asks.sizes))
    history = engine.history
    assert history.newest == engine.last_id
    assert history.oldest == engine.last_id - 700
    for update_id in (history.oldest, history.oldest + 1, history.newest - 3, history.newest):
        bids, asks = history.book_at(update_id)
        assert (bids.sizes, asks.sizes) == snapshots[update_id]
    with pytest.raises(LookupError):
        history.book_at(history.oldest - 1)
    with pytest.raises(LookupError):
        history.book_at(history.newest + 1)


def test_history_refuses_out_of_order_updates() -> None:
    history = History(10, Side(True), Side(False), 5)
    with pytest.raises(ValueError):
        history.append(12, b"", Side(True), Side(False))


def test_side_orders_and_deletes() -> None:
    bids = Side(descending=True)
    for price, size in ((100, 1), (102, 2), (101, 3)):
        bids.set(price, size)
    assert bids.levels() == [(102, 2), (101, 3), (100, 1)]
    bids.set(101, 0)
    bids.set(555, 0)  # deleting an absent level is a no-op
    assert bids.levels(1) == [(102, 2)]
    assert (bids.best(), bids.worst(), len(bids)) == (102, 100, 2)


@pytest.mark.parametrize(
    ("units", "decimals", "pad", "strip"),
    [
        (9890, 2, "98.90", "98.9"),
        (0, 2, "0.00", "0"),
        (867000, 1, "86700.0", "86700"),
        (5, 0, "5", "5"),
        (12, 6, "0.000012", "0.000012"),
        (-301, 2, "-3.01", "-3.01"),
        (-300, 2, "-3.00", "-3"),
    ],
)
def test_number_spellings(units: int, decimals: int, pad: str, strip: str) -> None:
    assert padded(units, decimals) == pad
    assert stripped(units, decimals) == strip


def test_decimals_and_units() -> None:
    assert [decimals_of(Decimal(s)) for s in ("0.01", "1", "0.00001", "1E+1", "0.050")] == [2, 0, 5, 0, 2]
    assert to_units(Decimal("98.9"), 2) == 9890
    with pytest.raises(ValueError):
        to_units(Decimal("98.901"), 2)


@pytest.mark.parametrize(
    ("name", "kind", "symbol", "arg"),
    [
        ("depth.SOL_USDC", "depth", "SOL_USDC", None),
        ("depth.200ms.SOL_USDC", "depth", "SOL_USDC", "200ms"),
        ("depth.AAPL.US_USDC_PERP", "depth", "AAPL.US_USDC_PERP", None),
        ("depth.1000ms.AAPL.US_USDC_PERP", "depth", "AAPL.US_USDC_PERP", "1000ms"),
        ("depth.5.BTC_USDC_PERP", "depth", "5.BTC_USDC_PERP", None),  # an unknown symbol: silent
        ("kline.1month.kPEPE_USDC_PERP", "kline", "kPEPE_USDC_PERP", "1month"),
        ("bookTicker.NOPE", "bookTicker", "NOPE", None),
        ("liquidation", "liquidation", None, None),
        ("liquidation.BTC_USDC_PERP", "liquidation", "BTC_USDC_PERP", None),
        ("account.orderUpdate", "account.orderUpdate", None, None),
        ("account.positionUpdate.SOL_USDC_PERP", "account.positionUpdate", "SOL_USDC_PERP", None),
        ("account.balanceUpdate", "account.balanceUpdate", None, None),
    ],
)
def test_valid_stream_names(name: str, kind: str, symbol: str | None, arg: str | None) -> None:
    ref = parse_stream(name)
    assert (ref.name, ref.kind, ref.symbol, ref.arg) == (name, kind, symbol, arg)
    assert ref.private == name.startswith("account.")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("nope.SOL_USDC", 4006),
        ("depth", 4006),
        ("trade.", 4006),
        ("", 4006),
        ("kline.7m.SOL_USDC", 4006),
        ("kline.1m", 4006),
        ("account.nope", 4006),
        ("account.balanceUpdate.SOL_USDC", 4006),
        ("account.orderUpdate.", 4006),
        ("depth.100ms.BTC_USDC_PERP", 4008),
        ("depth.250ms.SOL_USDC", 4008),
        ("depth.200ms.", 4006),
    ],
)
def test_invalid_stream_names(name: str, code: int) -> None:
    with pytest.raises(StreamError) as info:
        parse_stream(name)
    assert info.value.code == code


def test_error_frame_bytes_match_the_capture() -> None:
    assert (
        error_frame(4006, "Invalid stream") == b'{"id":null,"error":{"code":4006,"message":"Invalid stream"}}'
    )


def test_candle_bounds() -> None:
    assert candle_bounds("1m", 125) == (120, 180)
    assert candle_bounds("1w", 4 * 86400 + 10) == (4 * 86400, 11 * 86400)  # weeks start on Monday
    assert candle_bounds("1month", 1_788_285_151) == (1_788_220_800, 1_790_812_800)  # 2026-09


def test_kline_book_finals_once_and_at_most_one_update_per_take() -> None:
    klines = KlineBook()
    klines.on_trade(100, 10, 1, 10)
    klines.on_trade(100, 12, 2, 24)
    first = {
        name: (c.open, c.high, c.close, c.trades) for name, c, final in klines.take_updates() if not final
    }
    assert first["1s"] == (10, 12, 12, 2)
    assert klines.take_updates() == []  # unchanged: nothing to send
    klines.roll(101)
    finals = [(name, final) for name, _, final in klines.take_updates()]
    assert finals == [("1s", True)]
    assert [c.start for c in klines.candles("1s", 0, 200)] == [100]


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(symbols=())
    with pytest.raises(ValueError):
        SimulatorConfig(symbols=("A_B", "A_B"))
    with pytest.raises(ValueError):
        SimulatorConfig(tick_interval=0)
    with pytest.raises(ValueError):
        SimulatorConfig(ping_interval=-1)
    config = SimulatorConfig(update_rates={"SOL_USDC": 7.0}, clock=lambda: 10.0, clock_offset=2.5)
    assert (config.rate_of("SOL_USDC"), config.rate_of("X"), config.now()) == (7.0, 100.0, 12.5)


def test_spec_for_derives_unknown_symbols() -> None:
    assert spec_for("FOO_BAR_PERP").market_type == "PERP"
    assert spec_for("FOO_BAR").quote == "BAR"
    override = MarketSpec("SOL_USDC", "SOL", price=Decimal(5))
    assert spec_for("SOL_USDC", (override,)).price == 5
