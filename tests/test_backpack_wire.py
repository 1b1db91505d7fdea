"""
Backpack wire structs: golden frames from backpack-protocol.md, docs examples, and properties.

Every wire frame quoted in the protocol notes is copied verbatim below. Frames that the notes only
quote as ccxt's printed JS literals (``E: '1754519557526056'``) are transcribed to JSON with
numeric ``E``/``T``, as every raw capture has them (§8 row 12).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from native_anyio import DecodeError
from native_anyio.backpack import _wire_rest as rest
from native_anyio.backpack._wire import (
    Frame,
    WsBookTicker,
    WsDepth,
    WsErrorBody,
    WsKline,
    WsMarkPrice,
    WsMessage,
    WsTicker,
    WsTrade,
    decode_frame,
)
from native_anyio.backpack._wire_private import (
    WsBalanceUpdate,
    WsOrderAccepted,
    WsOrderCancelled,
    WsOrderFill,
    WsPosition,
    WsPositionOpened,
    WsPositionSnapshot,
    WsRfqUpdate,
)

D = Decimal

# -- wire captures, verbatim (§3, §4) -----------------------------------------------------------

BOOK_TICKER_BBGO = b'{"data":{"A":"22.39","B":"288.77","E":1788367430247487,"T":1788367430246081,"a":"98.97","b":"98.96","e":"bookTicker","s":"SOL_USDC","u":4330360995},"stream":"bookTicker.SOL_USDC"}'
BOOK_TICKER_NEMA = b'{"data":{"A":"2.01178","B":"1.94230","E":1790134357267285,"T":1790134357267074,"a":"86656.0","b":"86655.9","e":"bookTicker","s":"BTC_USDC_PERP","u":6730019258},"stream":"bookTicker.BTC_USDC_PERP"}'
DEPTH_BBGO = [
    b'{"data":{"E":1788367430247494,"T":1788367430246081,"U":4330360995,"a":[["98.97","22.39"]],"b":[],"e":"depth","s":"SOL_USDC","u":4330360995},"stream":"depth.SOL_USDC"}',
    b'{"data":{"E":1788367430265241,"T":1788367430264934,"U":4330360996,"a":[["99.00","225.81"]],"b":[],"e":"depth","s":"SOL_USDC","u":4330360996},"stream":"depth.SOL_USDC"}',
    b'{"data":{"E":1788367431034999,"T":1788367431034824,"U":4330361031,"a":[["99.14","0.00"]],"b":[],"e":"depth","s":"SOL_USDC","u":4330361031},"stream":"depth.SOL_USDC"}',
]
DEPTH_NEMA_DELETE = b'{"data":{"E":1790134370874574,"T":1790134370874401,"U":6789929,"a":[],"b":[["340.32","0.00"]],"e":"depth","s":"AAPL.US_USDC_PERP","u":6789929},"stream":"depth.AAPL.US_USDC_PERP"}'
DEPTH_NEMA_200MS = b'{"data":{"E":1790134357903774,"T":1790134357900446,"U":7501116422,"a":[["2766.95","6.9498"],["2766.98","22.8939"],["2766.99","0.2710"]],"b":[["2754.43","45.0537"],["2755.33","0.0000"],["2763.10","0.1579"]],"e":"depth","s":"ETH_USDC_PERP","u":7501116464},"stream":"depth.200ms.ETH_USDC_PERP"}'
DEPTH_TSCAP_200MS = b'{"data":{"E":1736172778162587,"T":1736172778151673,"U":1802083134,"a":[["219.00","2.98"]],"b":[["218.12","0.02"],["218.60","22.35"],["218.61","13.88"]],"e":"depth","s":"SOL_USDC","u":1802083137},"stream":"depth.200ms.SOL_USDC"}'
TRADE_TSCAP = b'{"data":{"E":1736186248745457,"T":1736186248744398,"a":"113782701997686784","b":"113782700596854784","e":"trade","m":true,"p":"218.50","q":"0.07","s":"SOL_USDC","t":341399899},"stream":"trade.SOL_USDC"}'
TICKER_BBGO = b'{"data":{"E":1788367430549233,"V":"1498114.9234","c":"98.98","e":"ticker","h":"101.19","l":"97.38","n":6796,"o":"100.87","s":"SOL_USDC","v":"15089.56"},"stream":"ticker.SOL_USDC"}'
MARK_PRICE_BBGO = b'{"data":{"E":1788367430422109,"T":1788367430421396,"e":"markPrice","f":"0.0000125","i":"98.94998504","n":1788368400000,"p":"98.94","s":"SOL_USDC_PERP"},"stream":"markPrice.SOL_USDC_PERP"}'
# RUST types/src/markets.rs test: the payload alone, wrapped in the envelope here.
MARK_PRICE_RUST = b'{"E":1747291031914525,"T":1747291031910025,"e":"markPrice","f":"-0.0000039641039274236048482914","i":"173.44031179","n":1747296000000,"p":"173.35998175","s":"SOL_USDC_PERP"}'
ORDER_ACCEPTED_BBGO = b'{"data":{"E":1788368290063153,"O":"USER","Q":"20.1520","S":"Ask","T":1788368290062979,"V":"RejectTaker","X":"New","Z":"0","e":"orderAccepted","f":"GTC","i":"59887375336","o":"LIMIT","p":"1.0076","q":"20","r":false,"s":"USDT_USDC","t":null,"y":true,"z":"0"},"stream":"account.orderUpdate"}'
ORDER_CANCELLED_BBGO = b'{"data":{"E":1788368293114025,"O":"USER","Q":"20.1520","S":"Ask","T":1788368293113270,"V":"RejectTaker","X":"Cancelled","Z":"0","e":"orderCancelled","f":"GTC","i":"59887375336","o":"LIMIT","p":"1.0076","q":"20","r":false,"s":"USDT_USDC","t":null,"y":true,"z":"0"},"stream":"account.orderUpdate"}'
BALANCE_BBGO = [
    b'{"data":{"A":"10","E":1788368290063168,"L":"20","S":"0","T":1788368290062981,"a":"USDT","e":"balanceUpdate"},"stream":"account.balanceUpdate"}',
    b'{"data":{"A":"30","E":1788368293114040,"L":"0","S":"0","T":1788368293113274,"a":"USDT","e":"balanceUpdate"},"stream":"account.balanceUpdate"}',
]
ERROR_FRAMES = {
    4002: b'{"id":null,"error":{"code":4002,"message":"Parse error"}}',
    4003: b'{"id":null,"error":{"code":4003,"message":"Invalid signature"}}',
    4006: b'{"id":null,"error":{"code":4006,"message":"Invalid stream"}}',
    4008: b'{"id":null,"error":{"code":4008,"message":"Invalid depth window"}}',
}
# ccxt comments (JS literals), transcribed: kline (handle_ohlcv), trade, order fill, position.
KLINE_CCXT = b'{"data":{"E":1754519557526056,"T":"2025-08-07T00:00:00","X":false,"c":"3680.520000000","e":"kline","h":"3681.370000000","l":"3667.650000000","n":255,"o":"3670.150000000","s":"ETH_USDC","t":"2025-08-06T22:00:00","v":"62.2621000"},"stream":"kline.2h.ETH_USDC"}'
TRADE_CCXT = b'{"data":{"E":1754601477746429,"T":1754601477744000,"a":"5121860761","b":"5121861755","e":"trade","m":false,"p":"3870.25","q":"0.0008","s":"ETH_USDC_PERP","t":10782547},"stream":"trade.ETH_USDC_PERP"}'
ORDER_FILL_CCXT = b'{"data":{"E":1754939110175879,"L":"4299.16","N":"ETH","O":"USER","Q":"4.30","S":"Bid","T":1754939110174705,"V":"RejectTaker","X":"Filled","Z":"4.299160","e":"orderFill","f":"GTC","i":"5406825793","l":"0.0010","m":false,"n":"0.000001","o":"MARKET","q":"0.0010","r":false,"s":"ETH_USDC","t":2888471,"z":"0.0010"},"stream":"account.orderUpdate.ETH_USDC"}'
POSITION_CCXT = b'{"data":{"B":"4236.36","E":1754943862040486,"M":"4235.88650933","P":"-0.000473","Q":"0.0010","T":1754943862040487,"b":"4238.479","e":"positionOpened","f":"0.02","i":5411399049,"l":"0","m":"0.0125","n":"4.23588650933","p":"0","q":"0.0010","s":"ETH_USDC_PERP"},"stream":"account.positionUpdate"}'

WIRE_FRAMES = [
    BOOK_TICKER_BBGO, BOOK_TICKER_NEMA, *DEPTH_BBGO, DEPTH_NEMA_DELETE, DEPTH_NEMA_200MS, DEPTH_TSCAP_200MS,
    TRADE_TSCAP, TICKER_BBGO, MARK_PRICE_BBGO, ORDER_ACCEPTED_BBGO, ORDER_CANCELLED_BBGO, *BALANCE_BBGO,
    KLINE_CCXT, TRADE_CCXT, ORDER_FILL_CCXT, POSITION_CCXT,
]  # fmt: skip


def envelope(data: bytes | str, stream: str) -> bytes:
    text = data.decode() if isinstance(data, bytes) else data
    return f'{{"data":{text},"stream":"{stream}"}}'.encode()


def test_book_ticker_wire():
    frame = decode_frame(BOOK_TICKER_BBGO)
    assert frame == Frame(
        stream="bookTicker.SOL_USDC",
        data=WsBookTicker(
            event_time=1788367430247487,
            engine_time=1788367430246081,
            symbol="SOL_USDC",
            update_id=4330360995,
            ask_price=D("98.97"),
            ask_quantity=D("22.39"),
            bid_price=D("98.96"),
            bid_quantity=D("288.77"),
        ),
    )
    nema = decode_frame(BOOK_TICKER_NEMA).data
    assert isinstance(nema, WsBookTicker)
    assert str(nema.ask_price) == "86656.0"  # padding kept
    assert str(nema.bid_quantity) == "1.94230"
    assert nema.update_id == 6730019258


def test_depth_wire_realtime_frames():
    frames = [decode_frame(raw) for raw in DEPTH_BBGO]
    assert frames[0] == Frame(
        stream="depth.SOL_USDC",
        data=WsDepth(
            event_time=1788367430247494,
            engine_time=1788367430246081,
            symbol="SOL_USDC",
            first_update_id=4330360995,
            last_update_id=4330360995,
            asks=((D("98.97"), D("22.39")),),
            bids=(),
        ),
    )
    third = frames[2].data
    assert isinstance(third, WsDepth)
    assert third.asks == ((D("99.14"), D("0")),)
    assert str(third.asks[0][1]) == "0.00"
    deletion = decode_frame(DEPTH_NEMA_DELETE)
    assert deletion.stream == "depth.AAPL.US_USDC_PERP"
    assert isinstance(deletion.data, WsDepth)
    assert deletion.data.symbol == "AAPL.US_USDC_PERP"
    assert deletion.data.bids == ((D("340.32"), D("0.00")),)


def test_depth_wire_aggregated_frames():
    nema = decode_frame(DEPTH_NEMA_200MS).data
    assert isinstance(nema, WsDepth)
    assert (nema.first_update_id, nema.last_update_id) == (7501116422, 7501116464)
    assert [str(p) for p, _ in nema.bids] == ["2754.43", "2755.33", "2763.10"]  # ascending, as sent
    assert [str(s) for _, s in nema.asks] == ["6.9498", "22.8939", "0.2710"]
    tscap = decode_frame(DEPTH_TSCAP_200MS).data
    assert isinstance(tscap, WsDepth)
    assert (tscap.first_update_id, tscap.last_update_id, tscap.engine_time) == (
        1802083134,
        1802083137,
        1736172778151673,
    )
    assert tscap.bids[-1] == (D("218.61"), D("13.88"))


def test_trade_wire():
    assert decode_frame(TRADE_TSCAP).data == WsTrade(
        event_time=1736186248745457,
        engine_time=1736186248744398,
        symbol="SOL_USDC",
        price=D("218.50"),
        quantity=D("0.07"),
        trade_id=341399899,
        buyer_is_maker=True,
        buyer_order_id="113782700596854784",
        seller_order_id="113782701997686784",
    )
    ccxt = decode_frame(TRADE_CCXT).data
    assert isinstance(ccxt, WsTrade)
    assert (ccxt.buyer_is_maker, ccxt.trade_id, ccxt.quantity) == (False, 10782547, D("0.0008"))


def test_ticker_and_mark_price_wire():
    assert decode_frame(TICKER_BBGO).data == WsTicker(
        event_time=1788367430549233,
        symbol="SOL_USDC",
        open=D("100.87"),
        close=D("98.98"),
        high=D("101.19"),
        low=D("97.38"),
        volume=D("15089.56"),
        quote_volume=D("1498114.9234"),
        trades=6796,
    )
    assert decode_frame(MARK_PRICE_BBGO).data == WsMarkPrice(
        event_time=1788367430422109,
        engine_time=1788367430421396,
        symbol="SOL_USDC_PERP",
        mark_price=D("98.94"),
        funding_rate=D("0.0000125"),
        index_price=D("98.94998504"),
        next_funding_time=1788368400000,
    )
    rust = decode_frame(envelope(MARK_PRICE_RUST, "markPrice.SOL_USDC_PERP")).data
    assert isinstance(rust, WsMarkPrice)
    assert str(rust.funding_rate) == "-0.0000039641039274236048482914"  # 29 significant digits kept


def test_kline_wire_iso_strings():
    kline = decode_frame(KLINE_CCXT).data
    assert kline == WsKline(
        event_time=1754519557526056,
        symbol="ETH_USDC",
        start=datetime(2025, 8, 6, 22, 0),
        end=datetime(2025, 8, 7, 0, 0),
        open=D("3670.150000000"),
        high=D("3681.370000000"),
        low=D("3667.650000000"),
        close=D("3680.520000000"),
        volume=D("62.2621000"),
        trades=255,
        closed=False,
    )
    assert str(kline.close) == "3680.520000000"


def test_order_updates_wire():
    accepted = decode_frame(ORDER_ACCEPTED_BBGO).data
    assert isinstance(accepted, WsOrderAccepted)
    assert accepted == WsOrderAccepted(
        event_time=1788368290063153,
        engine_time=1788368290062979,
        symbol="USDT_USDC",
        order_id="59887375336",
        side="Ask",
        order_type="LIMIT",
        status="New",
        time_in_force="GTC",
        quantity=D("20"),
        quote_quantity=D("20.1520"),
        price=D("1.0076"),
        executed_quantity=D("0"),
        executed_quote_quantity=D("0"),
        self_trade_prevention="RejectTaker",
        origin="USER",
        post_only=True,
        reduce_only=False,
        trade_id=None,  # "t": null on the wire (§8 row 10)
    )
    cancelled = decode_frame(ORDER_CANCELLED_BBGO).data
    assert isinstance(cancelled, WsOrderCancelled)
    assert (cancelled.status, cancelled.engine_time) == ("Cancelled", 1788368293113270)
    fill = decode_frame(ORDER_FILL_CCXT)
    assert fill.stream == "account.orderUpdate.ETH_USDC"
    assert isinstance(fill.data, WsOrderFill)
    assert (fill.data.trade_id, fill.data.fill_price, fill.data.fill_quantity) == (
        2888471,
        D("4299.16"),
        D("0.0010"),
    )
    assert (fill.data.fee, fill.data.fee_symbol, fill.data.is_maker) == (D("0.000001"), "ETH", False)


def test_position_update_wire_strings_and_numeric_id():
    position = decode_frame(POSITION_CCXT).data
    assert position == WsPositionOpened(
        event_time=1754943862040486,
        engine_time=1754943862040487,
        symbol="ETH_USDC_PERP",
        position_id="5411399049",  # a JSON number on the wire, always a str once decoded
        net_quantity=D("0.0010"),
        net_exposure_quantity=D("0.0010"),
        net_exposure_notional=D("4.23588650933"),
        entry_price=D("4236.36"),
        break_even_price=D("4238.479"),
        mark_price=D("4235.88650933"),
        estimated_liquidation_price=D("0"),
        initial_margin_fraction=D("0.02"),
        maintenance_margin_fraction=D("0.0125"),
        pnl_realized=D("0"),
        pnl_unrealized=D("-0.000473"),
    )


def test_balance_update_wire():
    first, second = (decode_frame(raw).data for raw in BALANCE_BBGO)
    assert first == WsBalanceUpdate(
        event_time=1788368290063168,
        engine_time=1788368290062981,
        asset="USDT",
        available=D("10"),
        locked=D("20"),
        staked=D("0"),
    )
    assert isinstance(second, WsBalanceUpdate)
    assert (second.available, second.locked) == (D("30"), D("0"))


@pytest.mark.parametrize(("code", "raw"), ERROR_FRAMES.items())
def test_error_frames_share_the_decoder(code, raw):
    frame = decode_frame(raw)
    assert frame.error == WsErrorBody(code=code, message=json.loads(raw)["error"]["message"])
    assert (frame.data, frame.stream, frame.id) == (None, None, None)


def test_every_wire_frame_decodes_and_round_trips():
    for raw in WIRE_FRAMES:
        frame = decode_frame(raw)
        assert frame.stream == json.loads(raw)["stream"]
        assert decode_frame(msgspec.json.encode(frame)) == frame


# -- docs examples (DOCS, JSON with comments: stripped, and repaired where invalid) ----------------

DOCS = {
    "bookTicker.SOL_USDC": """{
  "e": "bookTicker",          // Event type
  "E": 1694687965941000,      // Event time in microseconds
  "s": "SOL_USDC",            // Symbol
  "a": "18.70",               // Inside ask price
  "A": "1.000",               // Inside ask quantity
  "b": "18.67",               // Inside bid price
  "B": "2.000",               // Inside bid quantity
  "u": "111063070525358080",  // Update ID of event
  "T": 1694687965940999       // Engine timestamp in microseconds
}""",
    "depth.SOL_USDC": """{
  "e": "depth",           // Event type
  "E": 1694687965941000,  // Event time in microseconds
  "s": "SOL_USDC",        // Symbol
  "a": [                  // Asks
    [
      "18.70",
      "0.000"
    ]
  ],
  "b": [                  // Bids
    [
      "18.67",
      "0.832"
    ],
    [
      "18.68",
      "0.000"
    ]
  ],
  "U": 94978271,          // First update ID in event
  "u": 94978271,          // Last update ID in event
  "T": 1694687965940999   // Engine timestamp in microseconds
}""",
    "kline.1m.SOL_USD": """{
  "e": "kline",                   // Event type
  "E": 1694687692980000,          // Event time in microseconds
  "s": "SOL_USD",                 // Symbol
  "t": "2024-09-11T12:00:00",     // K-Line start time (ISO 8601 format)
  "T": "2024-09-11T12:01:00",     // K-Line close time (ISO 8601 format)
  "o": "18.75",                   // Open price
  "c": "19.25",                   // Close price
  "h": "19.80",                   // High price
  "l": "18.50",                   // Low price
  "v": "32123",                   // Base asset volume
  "n": 93828,                     // Number of trades
  "X": false                      // Is this k-line closed?
}""",
    "trade.SOL_USDC": """{
  "e": "trade",                   // Event type
  "E": 1694688638091000,          // Event time in microseconds
  "s": "SOL_USDC",                // Symbol
  "p": "18.68",                   // Price
  "q": "0.122",                   // Quantity
  "b": "111063114377265150",      // Buyer order ID
  "a": "111063114585735170",      // Seller order ID
  "t": 12345,                     // Trade ID
  "T": 1694688638089000,          // Engine timestamp in microseconds
  "m": true                       // Is the buyer the maker?
}""",
    "ticker.SOL_USD": """{
  "e": "ticker",          // Event type
  "E": 1694687692980000,  // Event time in microseconds
  "s": "SOL_USD",         // Symbol
  "o": "18.75",           // First price
  "c": "19.24",           // Last price
  "h": "19.80",           // High price
  "l": "18.50",           // Low price
  "v": "32123",           // Base asset volume
  "V": "928190",          // Quote asset volume
  "n": 93828              // Number of trades
}""",
    "markPrice.SOL_USDC": """{
  "e": "markPrice",           // Event type
  "E": 1694687965941000,      // Event time in microseconds
  "s": "SOL_USDC",            // Symbol
  "p": "18.70",               // Mark price
  "f": "1.70",                // Estimated funding rate. Not included for prediction markets
  "i": "19.70",               // Index price. Not included for prediction markets
  "n": 1694687965941,         // Next funding timestamp in milliseconds. Not included for prediction markets
  "T": 1694687965940999       // Engine timestamp in microseconds
}""",
    "account.rfqUpdate": """{
  "e": "rfqActive",              // Event type
  "E": 1730225420369829,         // Event time in microseconds
  "R": 113392053149171712,       // RFQ ID
  "s": "SOL_USDC_RFQ",           // Symbol
  "q": "10",                     // Quantity (optional) (if quantity in base asset)
  "w": 1730225480368,            // Submission time in milliseconds
  "W": 1730225540368,            // Expiry time in milliseconds
  "X": "New",                    // RFQ status
  "T": 1730225420368765          // Engine timestamp in microseconds
}""",
}

# Not valid JSON even without comments: trailing commas (openInterest, liquidation) and missing
# commas (order and position updates). Repaired by ``repair`` below.
DOCS_BROKEN = {
    "openInterest.SOL_USDC_PERP": """{
  "e": "openInterest",          // Event type
  "E": 1694687965941000,        // Event time in microseconds
  "s": "SOL_USDC_PERP",         // Symbol
  "o": "100",                   // Open interest in contracts
}""",
    "liquidation": """{
  "e": "liquidation",         // Event type
  "E": 1694688638091000,      // Event time in microseconds
  "q": "10",                  // Quantity
  "p": "18.70",               // Price
  "S": "Bid",                 // Side
  "s": "SOL_USDC",            // Symbol
  "T": 567,                   // Engine timestamp in microseconds
}""",
    "account.orderUpdate": """{
  "e": "orderAccepted",   // Event type
  "E": 1694687692980000,  // Event time in microseconds
  "s": "SOL_USD",         // Symbol
  "c": 123,               // Client order ID
  "S": "Bid",             // Side
  "o": "LIMIT",           // Order type
  "f": "GTC",             // Time in force
  "q": "32123",           // Quantity
  "Q": "32123",           // Quantity in quote
  "p": "20",              // Price
  "P": "21",              // Trigger price
  "B": "LastPrice",       // Trigger by
  "a": "30",              // Take profit trigger price
  "b": "10",              // Stop loss trigger price
  "j": "30",              // Take profit limit price
  "k": "10",              // Stop loss limit price
  "d": "MarkPrice",       // Take profit trigger by
  "g": "IndexPrice",      // Stop loss trigger by
  "Y": "10",              // Trigger quantity
  "X": "New",             // Order state
  "R": "PRICE_BAND",      // Order expiry reason
  "i": "1111343026172067" // Order ID
  "t": 567,               // Trade ID
  "l": "1.23",            // Fill quantity
  "z": "321",             // Executed quantity
  "Z": "123",             // Executed quantity in quote
  "L": "20",              // Fill price
  "m": true,              // Whether the order was maker
  "n": "23",              // Fee
  "N": "USD",             // Fee symbol
  "V": "RejectTaker",     // Self trade prevention
  "T": 1694687692989999,  // Engine timestamp in microseconds
  "O": "USER"             // Origin of the update
  "I": "1111343026156135" // Related order ID
  "H": 6023471188         // Strategy ID
  "y": true               // Post only
}""",
    "account.positionUpdate": """{
  "e": "positionOpened",  // Event type
  "E": 1694687692980000,  // Event time in microseconds
  "s": "SOL_USDC_PERP",    // Symbol
  "b": 123,               // Break event price
  "B": 122,               // Entry price
  "f": 0.5,               // Initial margin fraction
  "M": 122,               // Mark price
  "m": 0.01,              // Maintenance margin fraction
  "q": 5,                 // Net quantity
  "Q": 6,                 // Net exposure quantity
  "n": 732 ,              // Net exposure notional
  "i": "1111343026172067" // Position ID
  "p": "-1",              // PnL realized
  "P": "0",               // PnL unrealized
  "T": 1694687692989999   // Engine timestamp in microseconds
}""",
}


def strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def repair(text: str) -> str:
    text = strip_comments(text)
    text = re.sub(r'([0-9"el])[ \t]*\n(\s*")', r"\1,\n\2", text)  # missing comma before next key
    return re.sub(r",(\s*})", r"\1", text)  # trailing comma


@pytest.mark.parametrize("stream", DOCS)
def test_docs_examples_decode(stream):
    frame = decode_frame(envelope(strip_comments(DOCS[stream]), stream))
    assert frame.stream == stream
    assert frame.data is not None
    assert type(frame.data).__struct_config__.tag == json.loads(strip_comments(DOCS[stream]))["e"]


@pytest.mark.parametrize("stream", DOCS_BROKEN)
def test_broken_docs_examples_decode_once_repaired(stream):
    with pytest.raises(json.JSONDecodeError):
        json.loads(strip_comments(DOCS_BROKEN[stream]))
    frame = decode_frame(envelope(repair(DOCS_BROKEN[stream]), stream))
    assert type(frame.data).__struct_config__.tag == json.loads(repair(DOCS_BROKEN[stream]))["e"]


def test_docs_book_ticker_update_id_string_becomes_int():
    data = decode_frame(envelope(strip_comments(DOCS["bookTicker.SOL_USDC"]), "bookTicker.SOL_USDC")).data
    assert isinstance(data, WsBookTicker)
    assert data.update_id == 111063070525358080
    assert type(data.update_id) is int


def test_docs_position_update_numbers_are_exact_decimals():
    raw = envelope(repair(DOCS_BROKEN["account.positionUpdate"]), "account.positionUpdate")
    data = decode_frame(raw).data
    assert isinstance(data, WsPositionOpened)
    assert (data.break_even_price, data.initial_margin_fraction, data.maintenance_margin_fraction) == (
        D("123"),
        D("0.5"),
        D("0.01"),
    )
    assert str(data.maintenance_margin_fraction) == "0.01"  # from the JSON number text, not a float
    assert (data.position_id, data.pnl_realized) == ("1111343026172067", D("-1"))


def test_docs_order_update_all_fields():
    data = decode_frame(envelope(repair(DOCS_BROKEN["account.orderUpdate"]), "account.orderUpdate")).data
    assert isinstance(data, WsOrderAccepted)
    assert (data.client_order_id, data.strategy_id, data.related_order_id) == (
        123,
        6023471188,
        "1111343026156135",
    )
    assert (data.trigger_by, data.take_profit_trigger_by, data.stop_loss_trigger_by) == (
        "LastPrice",
        "MarkPrice",
        "IndexPrice",
    )
    assert (data.take_profit_limit_price, data.stop_loss_limit_price, data.trigger_quantity) == (
        D("30"),
        D("10"),
        D("10"),
    )
    assert (data.expiry_reason, data.trade_id, data.is_maker) == ("PRICE_BAND", 567, True)


RFQ_DOCS = [  # other DOCS RFQ examples (Streams tag), comments stripped
    '{"e":"quoteAccepted","E":1730225434631394,"R":113392053149171712,"u":113392054083780608,"C":"123",'
    '"s":"SOL_USDC_RFQ","X":"New","T":1730225434629778}',
    '{"e":"rfqCandidate","E":1730225490648996,"R":113392053149171712,"u":113392054083780608,"C":"123",'
    '"s":"SOL_USDC_RFQ","S":"Bid","q":"10","Q":"150","p":"15.50","X":"New","T":1730225490647080}',
    '{"e":"rfqFilled","E":1730225497648996,"R":113392053149171712,"u":113392054083780608,"C":"123",'
    '"s":"SOL_USDC_RFQ","p":"15.00","X":"Filled","T":1730225497647080}',
]


@pytest.mark.parametrize("payload", RFQ_DOCS)
def test_rfq_examples_keep_ids_beyond_2_53(payload):
    data = decode_frame(envelope(payload, "account.rfqUpdate")).data
    assert isinstance(data, WsRfqUpdate)
    assert (data.rfq_id, data.quote_id, data.client_id) == (113392053149171712, 113392054083780608, "123")


# -- docs versus wire: both forms decode (§8) ------------------------------------------------------


def test_kline_integer_seconds_as_the_rust_client_models_them():
    payload = '{"e":"kline","E":1694687692980000,"s":"SOL_USD","t":123400000,"T":123460000,"o":"18.75",'
    payload += '"c":"19.25","h":"19.80","l":"18.50","v":"32123","n":93828,"X":false}'
    data = decode_frame(envelope(payload, "kline.1m.SOL_USD")).data
    assert isinstance(data, WsKline)
    assert (data.start, data.end) == (123400000, 123460000)


def test_kline_without_trades_has_null_prices():
    payload = '{"e":"kline","E":1,"s":"SOL_USDC","t":"2026-09-02T16:43:00","T":"2026-09-02T16:44:00",'
    payload += '"o":null,"c":null,"h":null,"l":null,"v":"0","n":0,"X":true}'
    data = decode_frame(envelope(payload, "kline.1m.SOL_USDC")).data
    assert isinstance(data, WsKline)
    assert (data.open, data.close, data.volume, data.closed) == (None, None, D("0"), True)


@pytest.mark.parametrize(
    "update_id", ['" 5"', '"1_0"', '"+5"', '"-5"', '"\\u0663"', '""', '"9223372036854775808"', "-5"]
)
def test_book_ticker_update_id_must_be_plain_digits(update_id):
    payload = (
        f'{{"E":1,"T":1,"a":"1","A":"1","b":"1","B":"1","e":"bookTicker","s":"SOL_USDC","u":{update_id}}}'
    )
    with pytest.raises(DecodeError):
        decode_frame(envelope(payload, "bookTicker.SOL_USDC"))


def test_book_ticker_with_an_empty_side():
    payload = '{"A":null,"B":"1.5","E":1,"T":1,"a":null,"b":"98.96","e":"bookTicker","s":"SOL_USDC","u":7}'
    data = decode_frame(envelope(payload, "bookTicker.SOL_USDC")).data
    assert isinstance(data, WsBookTicker)
    assert (data.ask_price, data.ask_quantity, data.bid_price) == (None, None, D("98.96"))


def test_mark_price_of_a_prediction_market_and_old_docs_microseconds():
    data = decode_frame(
        envelope('{"E":1,"T":2,"e":"markPrice","p":"0.42","s":"X_USDC_PREDICTION"}', "markPrice.X")
    )
    assert data.data == WsMarkPrice(
        event_time=1, engine_time=2, symbol="X_USDC_PREDICTION", mark_price=D("0.42")
    )
    old = '{"e":"markPrice","E":1694687965941000,"s":"SOL_USDC","p":"18.70","f":"1.70","i":"19.70",'
    old += '"n":1694687965941000}'
    data = decode_frame(envelope(old, "markPrice.SOL_USDC")).data
    assert isinstance(data, WsMarkPrice)
    assert (data.engine_time, data.next_funding_time) == (None, 1694687965941000)


# -- position snapshot: untagged, decoded on the fallback path ------------------------------------

SNAPSHOT_ENTRY = '{"B":"4236.36","E":1754943862040486,"M":"4235.88","P":"-0.000473","Q":"0.0010","T":1754943862040487,"b":"4238.479","f":"0.02","i":5411399049,"l":"0","m":"0.0125","n":"4.23","p":"0","q":"0.0010","s":"ETH_USDC_PERP"}'


@pytest.mark.parametrize("stream", ["account.positionUpdate", "account.positionUpdate.ETH_USDC_PERP"])
@pytest.mark.parametrize("shape", ["object", "array"])
def test_position_snapshot_without_e(stream, shape):
    data = SNAPSHOT_ENTRY if shape == "object" else f"[{SNAPSHOT_ENTRY},{SNAPSHOT_ENTRY}]"
    frame = decode_frame(envelope(data, stream))
    assert frame.stream == stream
    assert isinstance(frame.data, WsPositionSnapshot)
    assert len(frame.data.positions) == (1 if shape == "object" else 2)
    position = frame.data.positions[0]
    assert isinstance(position, WsPosition)
    assert (position.position_id, position.net_quantity, position.event_time) == (
        "5411399049",
        D("0.0010"),
        1754943862040486,
    )
    assert decode_frame(msgspec.json.encode(frame)) == frame  # the synthetic tag round-trips


def test_empty_position_snapshot():
    frame = decode_frame(envelope("[]", "account.positionUpdate"))
    assert frame.data == WsPositionSnapshot(positions=())


@pytest.mark.parametrize(
    "raw",
    [
        envelope(SNAPSHOT_ENTRY, "account.orderUpdate"),  # untagged, but not a position stream
        envelope(SNAPSHOT_ENTRY.replace('"B"', '"e":"positionLiquidated","B"'), "account.positionUpdate"),
        envelope(SNAPSHOT_ENTRY.replace('"q":"0.0010"', '"q":"NaN"'), "account.positionUpdate"),
        envelope(SNAPSHOT_ENTRY.replace('"s":"ETH_USDC_PERP"', '"s":5'), "account.positionUpdate"),
        envelope('"text"', "account.positionUpdate"),
    ],
)
def test_position_fallback_rejects_what_is_not_a_snapshot(raw):
    with pytest.raises(DecodeError) as caught:
        decode_frame(raw)
    assert isinstance(caught.value.__cause__, msgspec.DecodeError)


# -- hardening: only DecodeError, with the msgspec error chained ----------------------------------


def depth_with(**changes: object) -> bytes:
    data = json.loads(DEPTH_TSCAP_200MS)["data"] | changes
    return msgspec.json.encode({"data": data, "stream": "depth.200ms.SOL_USDC"})


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[" * 100_000,
        b"{}",
        b'{"id":1,"result":null}',
        b'{"stream":"trade.SOL_USDC"}',
        b'{"data":{"e":"trade"}}',
        depth_with(U=10, u=9),  # u < U
        depth_with(U="1802083134"),  # U must be a number
        depth_with(U=2**63),  # out of int64
        depth_with(E=-1),
        depth_with(E=1.5),
        depth_with(E="1736172778162587"),  # quoted E appears only in ccxt's printouts (§8 row 12)
        depth_with(a=[["NaN", "1"]]),
        depth_with(a=[["1", "Infinity"]]),
        depth_with(b=[["sNaN", "1"]]),
        depth_with(b=[["1", "-2"]]),  # negative size
        depth_with(b=[["1"]]),
        depth_with(b=[["1", "2", "3"]]),
        depth_with(e="nope"),
        msgspec.json.encode({"data": {"e": "ticker"}, "stream": "ticker.X"}),
        msgspec.json.encode({"error": {"code": "4006", "message": "x"}}),
    ],
)
def test_bad_frames_raise_decode_error(raw):
    with pytest.raises(DecodeError):
        decode_frame(raw)


def test_json_number_prices_are_read_exactly_from_their_text():
    data = decode_frame(depth_with(b=[[0.1, 2.50]], a=[[1e-8, 12345678901234567890]])).data
    assert isinstance(data, WsDepth)
    assert data.bids == ((D("0.1"), D("2.5")),)
    assert data.asks == ((D("1E-8"), D("12345678901234567890")),)


@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(raw):
    try:
        frame = decode_frame(raw)
    except DecodeError as exc:
        cause = exc.__cause__
    else:
        assert frame.error is not None or (frame.data is not None and frame.stream is not None)
        return
    assert cause is None or isinstance(cause, msgspec.DecodeError)


JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "sNaN", "1e999999", "", "x", "-1", "1_0", " 1", "0x1"])
    | st.text(max_size=8)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=6,
)
GOLDEN_DATA = [json.loads(raw) for raw in WIRE_FRAMES]
STREAMS = st.sampled_from(
    ["trade.SOL_USDC", "nope.X", "depth.100ms.X", "", "account.positionUpdate"]
) | st.text(max_size=12)


@st.composite
def plausible_frames(draw: st.DrawFn) -> bytes:
    frame = draw(st.sampled_from(GOLDEN_DATA))
    data = dict(frame["data"])
    for key in draw(st.lists(st.sampled_from(sorted(data)), max_size=3)):
        if draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(JSON_VALUE)
    if draw(st.booleans()) and "U" in data:
        data["U"], data["u"] = data.get("u"), data["U"]
    stream = draw(STREAMS) if draw(st.booleans()) else frame["stream"]
    outer = {"data": data, "stream": stream}
    if draw(st.booleans()):
        outer[draw(st.sampled_from(["id", "error", "data", "stream"]))] = draw(JSON_VALUE)
    return json.dumps(outer).encode()


@settings(max_examples=500)
@given(plausible_frames())
def test_fuzz_structurally_plausible_frames(raw):
    try:
        decode_frame(raw)
    except DecodeError as exc:
        cause = exc.__cause__
    else:
        return
    assert cause is None or isinstance(cause, msgspec.DecodeError)


# -- round trips of every struct, generated from its msgspec type info ----------------------------

FINITE = st.decimals(allow_nan=False, allow_infinity=False)
POSITIVE = st.decimals(min_value=Decimal("1e-12"), allow_nan=False, allow_infinity=False)


def strategy(info: mi.Type) -> st.SearchStrategy[object]:
    if isinstance(info, mi.IntType):
        return st.integers(
            min_value=info.ge if info.ge is not None else -(2**63), max_value=info.le or 2**63 - 1
        )
    if isinstance(info, mi.DecimalType):
        return FINITE
    if isinstance(info, mi.StrType):
        return st.text(max_size=12)
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.DateTimeType):
        return st.datetimes()
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.AnyType):
        return st.none() | st.integers() | st.text(max_size=5)
    if isinstance(info, mi.UnionType):
        kinds = [type(t) for t in info.types]
        if mi.IntType in kinds and mi.StrType in kinds:  # ids sent as numbers or digit strings
            return st.one_of(
                *(strategy(t) for t in info.types if not isinstance(t, mi.StrType))
            ) | st.integers(0, 2**63 - 1).map(str)
        return st.one_of(*(strategy(t) for t in info.types))
    if isinstance(info, mi.TupleType):  # a [price, size] level: non-negative
        return st.tuples(*(FINITE.map(abs) for _ in info.item_types))
    if isinstance(info, mi.VarTupleType):
        return st.lists(strategy(info.item_type), max_size=3).map(tuple)
    if isinstance(info, mi.StructType):
        return structs(info)
    raise AssertionError(f"no strategy for {info}")  # pragma: no cover


@st.composite
def _build(draw: st.DrawFn, info: mi.StructType) -> object:
    kwargs = {
        field.name: draw(POSITIVE if field.name in ("tick_size", "step_size") else strategy(field.type))
        for field in info.fields
    }
    try:
        return info.cls(**kwargs)
    except ValueError:  # a __post_init__ invariant (u < U, ...)
        reject()


def structs(info: mi.StructType) -> st.SearchStrategy[object]:
    return _build(info)


WS_TYPES = [t.cls for t in mi.type_info(WsMessage).types]  # type: ignore[attr-defined]
REST_TYPES = [
    rest.Market, rest.RestDepth, rest.RestTicker, rest.RestTrade, rest.RestKline, rest.MarkPriceEntry,
    rest.OpenInterestEntry, rest.Status, rest.ApiErrorBody,
]  # fmt: skip


def test_the_union_covers_every_event_name():
    tags = {cls.__struct_config__.tag for cls in WS_TYPES}
    assert tags == {
        "bookTicker", "depth", "kline", "trade", "ticker", "externalTicker", "markPrice", "openInterest",
        "liquidation", "orderAccepted", "orderCancelled", "orderExpired", "orderFill", "orderModified",
        "triggerPlaced", "triggerFailed", "positionAdjusted", "positionOpened", "positionClosed",
        "positionUpdated", "positionSnapshot", "rfqActive", "rfqAccepted", "rfqRefreshed", "rfqCancelled",
        "rfqCandidate", "rfqFilled", "quoteAccepted", "quoteCancelled", "balanceUpdate",
    }  # fmt: skip


@pytest.mark.parametrize("cls", WS_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_every_ws_struct_round_trips_through_decode_frame(cls, data):
    message = data.draw(structs(mi.type_info(cls)))
    frame = Frame(data=message, stream="any.stream")
    encoded = msgspec.json.encode(frame)
    decoded = decode_frame(encoded)
    assert decoded == frame
    assert msgspec.json.encode(decoded) == encoded  # every digit and exponent kept


@pytest.mark.parametrize("cls", REST_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_every_rest_struct_round_trips(cls, data):
    body = data.draw(structs(mi.type_info(cls)))
    encoded = msgspec.json.encode(body)
    assert msgspec.json.decode(encoded, type=cls) == body
    assert msgspec.json.encode(msgspec.json.decode(encoded, type=cls)) == encoded


# -- REST bodies, verbatim (§5.1, §6) --------------------------------------------------------------

DEPTH_REST = b'{"asks":[["100.65","65.5"],["100.66","240.6"],["100.67","30.64"],["100.68","149.03"],["100.69","109.73"],["100.7","13.24"],["100.71","110.78"],["100.72","51.64"],["100.73","47.2"],["100.74","1.7"],["100.77","2.4"],["100.78","95.6"],["100.86","2.14"],["100.89","0.22"],["100.9","169.4"],["100.95","2.86"],["101.15","1.81"],["101.16","347.64"],["101.17","0.19"],["101.26","10"]],"bids":[["100.19","5.52"],["100.2","4.37"],["100.29","1.03"],["100.32","2.34"],["100.4","169.65"],["100.41","2.31"],["100.45","3.96"],["100.49","0.19"],["100.5","0.04"],["100.52","100.62"],["100.53","1.81"],["100.55","1.39"],["100.57","136.01"],["100.58","102.87"],["100.59","90.95"],["100.6","102.26"],["100.61","11.89"],["100.62","168.89"],["100.63","149.64"],["100.64","67.95"]],"lastUpdateId":"4324522523","timestamp":1788285151254895}'
MARKET_SPOT = b'{"baseSymbol":"SOL","createdAt":"2025-01-21T06:34:54.691858","filters":{"price":{"borrowEntryFeeMaxMultiplier":"1.01","borrowEntryFeeMinMultiplier":"0.99","discoveryBoundBand":null,"maxImpactMultiplier":"1.01","maxMultiplier":"2","maxPrice":null,"maxPriceUpdateMultiplier":"1.0025","meanMarkPriceBand":{"maxMultiplier":"1.03","minMultiplier":"0.97"},"meanPremiumBand":null,"minImpactMultiplier":"0.99","minMultiplier":"0.25","minPrice":"0.01","minPriceUpdateMultiplier":"0.9975","tickSize":"0.01"},"quantity":{"maxQuantity":null,"minQuantity":"0.01","stepSize":"0.01"}},"fundingInterval":null,"fundingRateLowerBound":null,"fundingRateUpperBound":null,"imfFunction":null,"marketType":"SPOT","mmfFunction":null,"openInterestLimit":"0","orderBookState":"Open","positionLimitWeight":null,"quoteSymbol":"USDC","rwaMarketType":null,"symbol":"SOL_USDC","visible":true}'
MARKET_PERP = b'{"baseSymbol":"WIF","createdAt":"2025-02-04T02:00:18.814963","filters":{"price":{"borrowEntryFeeMaxMultiplier":null,"borrowEntryFeeMinMultiplier":null,"discoveryBoundBand":null,"maxImpactMultiplier":"1.05","maxMultiplier":"2","maxPrice":"1000","maxPriceUpdateMultiplier":"1.005","meanMarkPriceBand":{"maxMultiplier":"1.15","minMultiplier":"0.87"},"meanPremiumBand":{"tolerancePct":"0.05"},"minImpactMultiplier":"0.96","minMultiplier":"0.25","minPrice":"0.0001","minPriceUpdateMultiplier":"0.995","tickSize":"0.00001"},"quantity":{"maxQuantity":null,"minQuantity":"0.1","stepSize":"0.1"}},"fundingInterval":3600000,"fundingRateLowerBound":"-150","fundingRateUpperBound":"150","imfFunction":{"base":"0.1","factor":"0.00020936","type":"sqrt"},"marketType":"PERP","mmfFunction":{"base":"0.05","factor":"0.00012561","type":"sqrt"},"openInterestLimit":"20000000","orderBookState":"Open","positionLimitWeight":"4","quoteSymbol":"USDC","rwaMarketType":null,"symbol":"WIF_USDC_PERP","visible":true}'
TICKER_REST = b'{"firstPrice":"103.68","high":"104.96","lastPrice":"100.67","low":"100.57","priceChange":"-3.01","priceChangePercent":"-0.029032","quoteVolume":"1163648.1557","symbol":"SOL_USDC","trades":"3872","volume":"11355.78"}'
TRADES_REST = b'[{"id":381731418,"isBuyerMaker":false,"price":"100.67","quantity":"0.22","quoteQuantity":"22.1474","timestamp":1788285123140},{"id":381731417,"isBuyerMaker":true,"price":"100.67","quantity":"2.05","quoteQuantity":"206.3735","timestamp":1788285119299},{"id":381731416,"isBuyerMaker":true,"price":"100.67","quantity":"8.16","quoteQuantity":"821.4672","timestamp":1788285119299}]'
KLINES_REST = b'[{"close":"101.02","end":"2026-09-01 16:53:00","high":"101.05","low":"101.02","open":"101.05","quoteVolume":"44.4554","start":"2026-09-01 16:52:00","trades":"3","volume":"0.44"},{"close":"101.06","end":"2026-09-01 16:54:00","high":"101.06","low":"101.06","open":"101.06","quoteVolume":"44.4664","start":"2026-09-01 16:53:00","trades":"2","volume":"0.44"}]'
MARK_PRICES_REST = b'[{"fundingRate":"0.0000125","indexPrice":"100.64352578","markPrice":"100.61","nextFundingTimestamp":1788285600000,"symbol":"SOL_USDC_PERP"}]'
OPEN_INTEREST_REST = b'[{"openInterest":"206529.68","symbol":"SOL_USDC_PERP","timestamp":1788285149338}]'


def test_rest_depth():
    depth = rest.decode_depth(DEPTH_REST)
    assert (depth.last_update_id, depth.timestamp) == (4324522523, 1788285151254895)
    assert type(depth.last_update_id) is int
    assert depth.bids[0] == (D("100.19"), D("5.52"))  # ascending: the best bid is last
    assert depth.bids[-1] == (D("100.64"), D("67.95"))
    assert (len(depth.bids), len(depth.asks)) == (20, 20)
    assert str(depth.asks[5][0]) == "100.7"  # REST strips trailing zeros
    as_int = rest.decode_depth(DEPTH_REST.replace(b'"4324522523"', b"4324522523"))
    assert as_int == depth


def test_rest_markets():
    spot, perp = rest.decode_markets(b"[" + MARKET_SPOT + b"," + MARKET_PERP + b"]")
    assert (spot.symbol, spot.market_type, spot.order_book_state) == ("SOL_USDC", "SPOT", "Open")
    assert (spot.filters.price.tick_size, spot.filters.price.min_price) == (D("0.01"), D("0.01"))
    assert (spot.filters.quantity.step_size, spot.filters.quantity.min_quantity) == (D("0.01"), D("0.01"))
    assert spot.filters.price.mean_mark_price_band == rest.PriceBand(
        max_multiplier=D("1.03"), min_multiplier=D("0.97")
    )
    assert (spot.funding_interval, spot.imf_function, spot.rwa_market_type) == (None, None, None)
    assert str(perp.filters.price.tick_size) == "0.00001"
    assert perp.filters.price.mean_premium_band == rest.PremiumBand(tolerance_pct=D("0.05"))
    assert perp.imf_function == rest.MarginFunction(type="sqrt", base=D("0.1"), factor=D("0.00020936"))
    assert (perp.funding_interval, perp.funding_rate_lower_bound) == (3600000, D("-150"))
    assert rest.decode_market(MARKET_PERP) == perp
    assert (
        rest.decode_market(MARKET_SPOT.replace(b'"visible":true', b'"visible":true,"newField":[1]')) == spot
    )


def test_rest_market_rejects_a_zero_tick():
    with pytest.raises(DecodeError, match="tickSize must be positive"):
        rest.decode_market(MARKET_SPOT.replace(b'"tickSize":"0.01"', b'"tickSize":"0"'))


def test_rest_ticker_trades_klines():
    ticker = rest.decode_ticker(TICKER_REST)
    assert (ticker.trades, ticker.price_change_percent, ticker.quote_volume) == (
        3872,
        D("-0.029032"),
        D("1163648.1557"),
    )
    assert rest.decode_tickers(b"[" + TICKER_REST + b"]") == [ticker]
    trades = rest.decode_trades(TRADES_REST)
    assert [t.id for t in trades] == [381731418, 381731417, 381731416]
    assert (trades[0].is_buyer_maker, trades[0].timestamp, trades[0].quote_quantity) == (
        False,
        1788285123140,
        D("22.1474"),
    )
    first, _ = rest.decode_klines(KLINES_REST)
    assert first == rest.RestKline(
        start=datetime(2026, 9, 1, 16, 52),
        end=datetime(2026, 9, 1, 16, 53),
        open=D("101.05"),
        high=D("101.05"),
        low=D("101.02"),
        close=D("101.02"),
        volume=D("0.44"),
        quote_volume=D("44.4554"),
        trades=3,
    )


def test_rest_mark_prices_open_interest_status_errors():
    assert rest.decode_mark_prices(MARK_PRICES_REST) == [
        rest.MarkPriceEntry(
            symbol="SOL_USDC_PERP",
            mark_price=D("100.61"),
            index_price=D("100.64352578"),
            funding_rate=D("0.0000125"),
            next_funding_timestamp=1788285600000,
        )
    ]
    assert rest.decode_open_interest(OPEN_INTEREST_REST) == [
        rest.OpenInterestEntry(symbol="SOL_USDC_PERP", open_interest=D("206529.68"), timestamp=1788285149338)
    ]
    assert rest.decode_status(b'{"message":null,"status":"Ok"}') == rest.Status(status="Ok", message=None)
    body = rest.decode_api_error(b'{"code":"INVALID_CLIENT_REQUEST","message":"Invalid market symbol"}')
    assert body == rest.ApiErrorBody(code="INVALID_CLIENT_REQUEST", message="Invalid market symbol")
    assert (
        rest.decode_api_error(b'{"code":"RESOURCE_NOT_FOUND","message":"Not Found"}').code
        == "RESOURCE_NOT_FOUND"
    )


@pytest.mark.parametrize(
    ("decode", "raw"),
    [
        (rest.decode_api_error, b'failed to parse parameter `limit`: failed to parse "DepthLimit"'),
        (rest.decode_api_error, b"not found"),
        (rest.decode_depth, DEPTH_REST.replace(b'"4324522523"', b'"43x"')),
        (rest.decode_depth, DEPTH_REST.replace(b'"65.5"', b'"NaN"')),
        (rest.decode_ticker, TICKER_REST.replace(b'"3872"', b'"3,872"')),
        (rest.decode_klines, KLINES_REST.replace(b"2026-09-01 16:52:00", b"yesterday")),
        (rest.decode_markets, b'{"symbol":"SOL_USDC"}'),
    ],
)
def test_bad_rest_bodies_raise_decode_error(decode, raw):
    with pytest.raises(DecodeError) as caught:
        decode(raw)
    assert isinstance(caught.value.__cause__, msgspec.DecodeError)
