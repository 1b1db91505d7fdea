"""Backpack wire structs -> normalized events: golden frames, units, JSON lines, properties."""

from __future__ import annotations

import json
import sys
import time
import typing
from datetime import datetime, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_backpack_wire import (
    BALANCE_BBGO,
    BOOK_TICKER_BBGO,
    DEPTH_BBGO,
    DEPTH_NEMA_200MS,
    DEPTH_NEMA_DELETE,
    DEPTH_REST,
    DOCS,
    DOCS_BROKEN,
    KLINE_CCXT,
    MARK_PRICE_BBGO,
    MARK_PRICE_RUST,
    ORDER_ACCEPTED_BBGO,
    ORDER_FILL_CCXT,
    POSITION_CCXT,
    RFQ_DOCS,
    SNAPSHOT_ENTRY,
    TICKER_BBGO,
    TRADE_CCXT,
    TRADE_TSCAP,
    WIRE_FRAMES,
    envelope,
    plausible_frames,
    repair,
    strip_comments,
)

from native_anyio import DecodeError
from native_anyio.backpack import _events as events
from native_anyio.backpack._events import (
    BalanceUpdate,
    BookDelta,
    BookStatus,
    Candle,
    Event,
    Liquidation,
    MarkPrice,
    OpenInterest,
    OrderUpdate,
    PositionSnapshot,
    PositionUpdate,
    Ticker,
    TopOfBook,
    Trade,
)
from native_anyio.backpack._normalize import epoch_seconds, normalize, snapshot_from_rest
from native_anyio.backpack._streams import InvalidStreamName, parse_stream
from native_anyio.backpack._wire import decode_frame
from native_anyio.backpack._wire_rest import decode_depth

D = Decimal
RECEIPT = 1790000000.25


def event_of(raw: bytes, receipt: float = RECEIPT) -> Event | None:
    frame = decode_frame(raw)
    assert frame.data is not None
    assert frame.stream is not None
    return normalize(frame.data, parse_stream(frame.stream), receipt)


def test_trade_taker_side_and_microseconds():
    assert event_of(TRADE_TSCAP) == Trade(
        symbol="SOL-USDC",
        timestamp=1736186248.744398,
        receipt_timestamp=RECEIPT,
        price=D("218.50"),
        amount=D("0.07"),
        side="sell",  # m=true: the buyer was the maker, so the taker sold
        id=341399899,
    )
    ccxt = event_of(TRADE_CCXT)
    assert isinstance(ccxt, Trade)
    assert (ccxt.side, ccxt.symbol, ccxt.timestamp) == ("buy", "ETH-USDC-PERP", 1754601477.744)


def test_depth_becomes_a_delta_in_wire_order():
    assert event_of(DEPTH_BBGO[0]) == BookDelta(
        symbol="SOL-USDC",
        timestamp=1788367430.246081,
        receipt_timestamp=RECEIPT,
        bids=(),
        asks=((D("98.97"), D("22.39")),),
        first_sequence=4330360995,
        sequence=4330360995,
    )
    aggregated = event_of(DEPTH_NEMA_200MS)
    assert isinstance(aggregated, BookDelta)
    assert (aggregated.first_sequence, aggregated.sequence) == (7501116422, 7501116464)
    assert [p for p, _ in aggregated.bids] == [D("2754.43"), D("2755.33"), D("2763.10")]
    deletion = event_of(DEPTH_NEMA_DELETE)
    assert isinstance(deletion, BookDelta)
    assert deletion.symbol == "AAPL.US-USDC-PERP"
    assert deletion.bids == ((D("340.32"), D("0")),)


def test_consecutive_realtime_deltas_chain():
    first, second = (event_of(raw) for raw in DEPTH_BBGO[:2])
    assert isinstance(first, BookDelta)
    assert isinstance(second, BookDelta)
    assert second.first_sequence == first.sequence + 1


def test_book_ticker_wire_and_docs():
    assert event_of(BOOK_TICKER_BBGO) == TopOfBook(
        symbol="SOL-USDC",
        timestamp=1788367430.246081,
        receipt_timestamp=RECEIPT,
        bid_price=D("98.96"),
        bid_size=D("288.77"),
        ask_price=D("98.97"),
        ask_size=D("22.39"),
        sequence=4330360995,
    )
    docs = event_of(envelope(strip_comments(DOCS["bookTicker.SOL_USDC"]), "bookTicker.SOL_USDC"))
    assert isinstance(docs, TopOfBook)
    assert (docs.sequence, docs.timestamp) == (111063070525358080, 1694687965.940999)
    empty = event_of(
        envelope(
            '{"A":null,"B":null,"E":1,"T":2,"a":null,"b":null,"e":"bookTicker","s":"X_Y","u":"5"}',
            "bookTicker.X_Y",
        )
    )
    assert isinstance(empty, TopOfBook)
    assert (empty.bid_price, empty.ask_size, empty.sequence) == (None, None, 5)


def test_ticker_uses_event_time():
    assert event_of(TICKER_BBGO) == Ticker(
        symbol="SOL-USDC",
        timestamp=1788367430.549233,
        receipt_timestamp=RECEIPT,
        open=D("100.87"),
        high=D("101.19"),
        low=D("97.38"),
        last=D("98.98"),
        volume=D("15089.56"),
        quote_volume=D("1498114.9234"),
        trades=6796,
    )
    external = event_of(
        TICKER_BBGO.replace(b'"e":"ticker"', b'"e":"externalTicker"').replace(
            b'"ticker.', b'"externalTicker.'
        )
    )
    assert isinstance(external, Ticker)
    assert external.external is True


def test_candle_from_iso_strings_and_interval_from_stream():
    assert event_of(KLINE_CCXT) == Candle(
        symbol="ETH-USDC",
        timestamp=1754519557.526056,
        receipt_timestamp=RECEIPT,
        interval="2h",
        start=datetime(2025, 8, 6, 22, tzinfo=timezone.utc).timestamp(),
        end=datetime(2025, 8, 7, tzinfo=timezone.utc).timestamp(),
        open=D("3670.150000000"),
        high=D("3681.370000000"),
        low=D("3667.650000000"),
        close=D("3680.520000000"),
        volume=D("62.2621000"),
        trades=255,
        closed=False,
    )
    candle = event_of(KLINE_CCXT)
    assert isinstance(candle, Candle)
    assert (candle.start, candle.end) == (1754517600.0, 1754524800.0)


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="needs time.tzset (Unix)")
def test_naive_kline_times_are_utc_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        candle = event_of(KLINE_CCXT)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert isinstance(candle, Candle)
    assert candle.start == 1754517600.0  # 2025-08-06T22:00:00Z


def test_candle_from_integer_seconds_and_an_aware_datetime():
    payload = '{"e":"kline","E":1,"s":"SOL_USD","t":123400000,"T":"2024-09-11T12:01:00+00:00","n":0,"X":true}'
    candle = event_of(envelope(payload, "kline.1m.SOL_USD"))
    assert isinstance(candle, Candle)
    assert (candle.start, candle.end, candle.open, candle.closed) == (123400000.0, 1726056060.0, None, True)


def test_kline_payload_on_another_stream_is_a_decode_error():
    frame = decode_frame(KLINE_CCXT)
    assert frame.data is not None
    with pytest.raises(DecodeError, match=r"kline payload on stream trade\.ETH_USDC"):
        normalize(frame.data, parse_stream("trade.ETH_USDC"), RECEIPT)


def test_mark_price_funding_units():
    assert event_of(MARK_PRICE_BBGO) == MarkPrice(
        symbol="SOL-USDC-PERP",
        timestamp=1788367430.421396,
        receipt_timestamp=RECEIPT,
        mark_price=D("98.94"),
        index_price=D("98.94998504"),
        funding_rate=D("0.0000125"),
        next_funding_time=1788368400.0,  # n is milliseconds on the wire
    )
    rust = event_of(envelope(MARK_PRICE_RUST, "markPrice.SOL_USDC_PERP"))
    assert isinstance(rust, MarkPrice)
    assert rust.funding_rate == D("-0.0000039641039274236048482914")
    assert rust.funding_rate.as_tuple() == D("-0.0000039641039274236048482914").as_tuple()
    old = '{"e":"markPrice","E":1694687965941000,"s":"SOL_USDC","p":"18.70","n":1694687965941000}'
    old_event = event_of(envelope(old, "markPrice.SOL_USDC"))  # older docs: n in µs, no T
    assert isinstance(old_event, MarkPrice)
    assert (old_event.next_funding_time, old_event.timestamp, old_event.funding_rate) == (
        1694687965.941,
        1694687965.941,
        None,
    )


def test_open_interest_and_liquidation_from_the_docs():
    oi = event_of(envelope(repair(DOCS_BROKEN["openInterest.SOL_USDC_PERP"]), "openInterest.SOL_USDC_PERP"))
    assert oi == OpenInterest(
        symbol="SOL-USDC-PERP", timestamp=1694687965.941, receipt_timestamp=RECEIPT, open_interest=D("100")
    )
    liquidation = event_of(envelope(repair(DOCS_BROKEN["liquidation"]), "liquidation"))
    assert liquidation == Liquidation(
        symbol="SOL-USDC",
        timestamp=0.000567,
        receipt_timestamp=RECEIPT,
        price=D("18.70"),
        amount=D("10"),
        side="buy",
    )


def test_order_updates():
    accepted = event_of(ORDER_ACCEPTED_BBGO)
    assert isinstance(accepted, OrderUpdate)
    assert (accepted.event, accepted.status, accepted.side, accepted.order_type) == (
        "orderAccepted",
        "New",
        "sell",
        "limit",
    )
    assert (accepted.order_id, accepted.trade_id, accepted.post_only, accepted.reduce_only) == (
        "59887375336",
        None,
        True,
        False,
    )
    assert (accepted.price, accepted.quantity, accepted.quote_quantity) == (
        D("1.0076"),
        D("20"),
        D("20.1520"),
    )
    assert accepted.timestamp == 1788368290.062979
    fill = event_of(ORDER_FILL_CCXT)
    assert isinstance(fill, OrderUpdate)
    assert (fill.event, fill.side, fill.order_type, fill.symbol) == ("orderFill", "buy", "market", "ETH-USDC")
    assert (fill.trade_id, fill.fill_price, fill.fill_quantity, fill.maker) == (
        2888471,
        D("4299.16"),
        D("0.0010"),
        False,
    )
    assert (fill.fee, fill.fee_asset, fill.executed_quote_quantity) == (D("0.000001"), "ETH", D("4.299160"))
    docs = event_of(envelope(repair(DOCS_BROKEN["account.orderUpdate"]), "account.orderUpdate"))
    assert isinstance(docs, OrderUpdate)
    assert (docs.client_order_id, docs.expiry_reason, docs.trigger_price) == (123, "PRICE_BAND", D("21"))
    assert (docs.take_profit_trigger_price, docs.stop_loss_trigger_price) == (D("30"), D("10"))


def test_position_updates():
    position = event_of(POSITION_CCXT)
    assert position == PositionUpdate(
        symbol="ETH-USDC-PERP",
        timestamp=1754943862.040487,
        receipt_timestamp=RECEIPT,
        event="positionOpened",
        position_id="5411399049",
        net_quantity=D("0.0010"),
        net_exposure_quantity=D("0.0010"),
        net_exposure_notional=D("4.23588650933"),
        entry_price=D("4236.36"),
        break_even_price=D("4238.479"),
        mark_price=D("4235.88650933"),
        liquidation_price=D("0"),
        initial_margin_fraction=D("0.02"),
        maintenance_margin_fraction=D("0.0125"),
        realized_pnl=D("0"),
        unrealized_pnl=D("-0.000473"),
    )
    docs = event_of(envelope(repair(DOCS_BROKEN["account.positionUpdate"]), "account.positionUpdate"))
    assert isinstance(docs, PositionUpdate)
    assert (docs.position_id, docs.net_quantity, docs.initial_margin_fraction) == (
        "1111343026172067",
        D("5"),
        D("0.5"),
    )


def test_position_snapshot():
    snapshot = event_of(envelope(f"[{SNAPSHOT_ENTRY}]", "account.positionUpdate.ETH_USDC_PERP"))
    assert isinstance(snapshot, PositionSnapshot)
    assert (snapshot.symbol, snapshot.timestamp, len(snapshot.positions)) == (
        "ETH-USDC-PERP",
        1754943862.040487,
        1,
    )
    assert (snapshot.positions[0].event, snapshot.positions[0].position_id) == ("snapshot", "5411399049")
    bare = event_of(
        envelope('{"i":"7","q":"-1.5","s":"SOL_USDC_PERP"}', "account.positionUpdate"), receipt=5.0
    )
    assert isinstance(bare, PositionSnapshot)
    assert (bare.symbol, bare.timestamp, bare.positions[0].timestamp) == (None, 5.0, 5.0)  # no E/T: receipt
    empty = event_of(envelope("[]", "account.positionUpdate"), receipt=6.0)
    assert empty == PositionSnapshot(symbol=None, timestamp=6.0, receipt_timestamp=6.0, positions=())


def test_balance_update():
    assert event_of(BALANCE_BBGO[0]) == BalanceUpdate(
        timestamp=1788368290.062981,
        receipt_timestamp=RECEIPT,
        asset="USDT",
        available=D("10"),
        locked=D("20"),
        staked=D("0"),
    )


@pytest.mark.parametrize("payload", RFQ_DOCS)
def test_rfq_updates_have_no_normalized_event(payload):
    assert event_of(envelope(payload, "account.rfqUpdate")) is None


def test_every_wire_frame_normalizes():
    kinds = {type(event_of(raw)) for raw in WIRE_FRAMES}
    assert kinds == {
        TopOfBook,
        BookDelta,
        Trade,
        Ticker,
        MarkPrice,
        OrderUpdate,
        BalanceUpdate,
        Candle,
        PositionUpdate,
    }


def test_snapshot_from_rest_sorts_best_first():
    snapshot = snapshot_from_rest("SOL_USDC", decode_depth(DEPTH_REST), RECEIPT)
    assert (snapshot.symbol, snapshot.sequence, snapshot.timestamp) == (
        "SOL-USDC",
        4324522523,
        1788285151.254895,
    )
    assert snapshot.bids[0] == (D("100.64"), D("67.95"))  # REST sends the best bid last
    assert snapshot.bids[-1] == (D("100.19"), D("5.52"))
    assert snapshot.asks[0] == (D("100.65"), D("65.5"))
    assert [p for p, _ in snapshot.bids] == sorted((p for p, _ in snapshot.bids), reverse=True)
    assert [p for p, _ in snapshot.asks] == sorted(p for p, _ in snapshot.asks)
    assert snapshot.bids[0][0] < snapshot.asks[0][0]  # not crossed
    assert snapshot_from_rest("SOL-USDC", decode_depth(DEPTH_REST), RECEIPT) == snapshot


def test_snapshot_from_rest_sorts_unsorted_levels_and_reads_a_millisecond_timestamp():
    body = b'{"asks":[["3","1"],["2","1"]],"bids":[["1","1"],["1.5","2"]],'
    body += b'"lastUpdateId":9,"timestamp":1684026955123}'
    snapshot = snapshot_from_rest("X_Y", decode_depth(body), 0.0)
    assert snapshot.bids == ((D("1.5"), D("2")), (D("1"), D("1")))
    assert snapshot.asks == ((D("2"), D("1")), (D("3"), D("1")))
    assert snapshot.timestamp == 1684026955.123  # the docs' example value is ms-sized (§8 row 4)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (123400000, 123400000.0),  # seconds (kline integers, Rust client)
        (1788368400000, 1788368400.0),  # ms (markPrice n)
        (1788285151254895, 1788285151.254895),  # µs (REST depth timestamp)
        (1788285151254895123, 1788285151.254895),  # ns
        (0, 0.0),
    ],
)
def test_epoch_seconds_infers_the_unit(value, seconds):
    assert epoch_seconds(value) == pytest.approx(seconds, abs=1e-6)


# -- JSON lines for the CLI -----------------------------------------------------------------------


def test_trade_json_line():
    trade = event_of(TRADE_TSCAP, receipt=1.5)
    assert trade is not None
    assert json.loads(trade.to_json()) == {
        "type": "trade",
        "exchange": "BACKPACK",
        "symbol": "SOL-USDC",
        "timestamp": 1736186248.744398,
        "receipt_timestamp": 1.5,
        "price": "218.50",
        "amount": "0.07",
        "side": "sell",
        "id": 341399899,
    }
    assert list(trade.to_dict())[:5] == ["type", "exchange", "symbol", "timestamp", "receipt_timestamp"]


def test_book_json_line_levels_are_string_pairs():
    snapshot = snapshot_from_rest("SOL_USDC", decode_depth(DEPTH_REST), 2.0)
    line = json.loads(snapshot.to_json())
    assert line["type"] == "book_snapshot"
    assert line["bids"][:2] == [["100.64", "67.95"], ["100.63", "149.64"]]
    assert line["asks"][0] == ["100.65", "65.5"]
    assert line["sequence"] == 4324522523
    delta = event_of(DEPTH_BBGO[2])
    assert delta is not None
    assert delta.to_dict()["asks"] == [["99.14", "0.00"]]


def test_to_dict_writes_decimals_in_fixed_point():
    trade = Trade(
        symbol="K",
        timestamp=0.0,
        receipt_timestamp=0.0,
        price=D("0.00000001"),
        amount=D("1E+3"),
        side="buy",
        id=1,
    )
    assert (trade.to_dict()["price"], trade.to_dict()["amount"]) == ("0.00000001", "1000")
    huge = Trade(
        symbol="K",
        timestamp=0.0,
        receipt_timestamp=0.0,
        price=D("1E+999999"),
        amount=D("1"),
        side="buy",
        id=1,
    )
    assert huge.to_dict()["price"] == "1E+999999"  # not a million digits


def test_balance_json_line_has_a_null_symbol():
    balance = event_of(BALANCE_BBGO[1])
    assert balance is not None
    assert balance.to_dict()["symbol"] is None


def test_events_round_trip_through_their_json_lines():
    decoder = msgspec.json.Decoder(Event)
    produced = [event_of(raw) for raw in WIRE_FRAMES]
    produced.append(snapshot_from_rest("SOL_USDC", decode_depth(DEPTH_REST), 1.0))
    produced.append(event_of(envelope(SNAPSHOT_ENTRY, "account.positionUpdate")))
    produced.append(
        BookStatus(symbol="SOL-USDC", timestamp=1.0, receipt_timestamp=1.0, state="resyncing", reason="gap")
    )
    for event in produced:
        assert event is not None
        assert decoder.decode(event.to_json()) == event


def test_every_event_class_is_final_frozen_and_in_the_union():
    classes = typing.get_args(Event)
    assert {cls.__name__ for cls in classes} == {
        name for name in events.__all__ if name[0].isupper() and isinstance(getattr(events, name), type)
    } - {"BookSide", "PriceLevel"}
    for cls in classes:
        if sys.version_info >= (3, 11):  # typing.final sets __final__ from 3.11 on
            assert getattr(cls, "__final__", False), cls
        assert cls.__struct_config__.frozen, cls


def test_book_status_states():
    status = BookStatus(symbol="SOL-USDC", timestamp=1.0, receipt_timestamp=2.0, state="syncing")
    assert status.to_dict() == {
        "type": "book_status",
        "exchange": "BACKPACK",
        "symbol": "SOL-USDC",
        "timestamp": 1.0,
        "receipt_timestamp": 2.0,
        "state": "syncing",
        "reason": "",
    }
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"type":"book_status","symbol":"X","timestamp":1,"receipt_timestamp":1,"state":"odd"}',
            type=Event,
        )


# -- properties ------------------------------------------------------------------------------------

PLAIN_DECIMALS = st.from_regex(r"\A-?(0|[1-9][0-9]{0,19})(\.[0-9]{1,30})?\Z") | st.sampled_from(
    ["0.00000001", "123456789012345678", "-0.0000039641039274236048482914", "98.90", "0.000", "86700.0"]
)


@given(PLAIN_DECIMALS, PLAIN_DECIMALS.filter(lambda s: not s.startswith("-")))
def test_prices_keep_every_digit(price, size):
    raw = envelope(
        f'{{"E":1,"T":2,"a":"1","b":"2","e":"trade","m":false,"p":"{price}","q":"{size}","s":"SOL_USDC","t":3}}',
        "trade.SOL_USDC",
    )
    trade = event_of(raw)
    assert isinstance(trade, Trade)
    assert trade.price.as_tuple() == Decimal(price).as_tuple()  # digits and exponent, not just value
    assert (trade.to_dict()["price"], trade.to_dict()["amount"]) == (price, size)
    delta = event_of(depth_frame([[size, size]]))
    assert isinstance(delta, BookDelta)
    assert delta.to_dict()["bids"] == [[size, size]]


def depth_frame(bids: list[list[str]]) -> bytes:
    data = {"E": 1, "T": 2, "U": 3, "u": 3, "a": [], "b": bids, "e": "depth", "s": "SOL_USDC"}
    return msgspec.json.encode({"data": data, "stream": "depth.SOL_USDC"})


@given(plausible_frames())
def test_the_decode_normalize_pipeline_never_raises_anything_else(raw):
    try:
        frame = decode_frame(raw)
    except DecodeError:
        return
    if frame.data is None or frame.stream is None:
        return
    try:
        stream = parse_stream(frame.stream)
    except InvalidStreamName:
        return
    try:
        event = normalize(frame.data, stream, RECEIPT)
    except DecodeError:  # a kline payload on a stream that is not a kline stream
        assert type(frame.data).__name__ == "WsKline"
        return
    if event is not None:
        assert msgspec.json.decode(event.to_json(), type=Event) == event
