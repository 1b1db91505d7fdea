"""Backpack stream names and symbol spellings (backpack-protocol.md §2.6, §7)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native_anyio import LocalProtocolError
from native_anyio.backpack._streams import (
    DEPTH_WINDOWS,
    INVALID_DEPTH_WINDOW,
    INVALID_STREAM,
    KLINE_INTERVALS,
    InvalidStreamName,
    StreamName,
    exchange_symbol,
    normalize_symbol,
    parse_stream,
)

# Every stream form listed in §2.6, plus the dotted-symbol names captured by NEMA-WS.
VALID = [
    ("bookTicker.SOL_USDC", "bookTicker", "SOL_USDC", None),
    ("depth.SOL_USDC", "depth", "SOL_USDC", None),
    ("depth.AAPL.US_USDC_PERP", "depth", "AAPL.US_USDC_PERP", None),
    ("depth.200ms.SOL_USDC", "depth", "SOL_USDC", "200ms"),
    ("depth.600ms.BTC_USDC_PERP", "depth", "BTC_USDC_PERP", "600ms"),
    ("depth.1000ms.AAPL.US_USDC_PERP", "depth", "AAPL.US_USDC_PERP", "1000ms"),
    ("kline.1h.AAPL.US_USDC_PERP", "kline", "AAPL.US_USDC_PERP", "1h"),
    ("kline.1month.SOL_USDC", "kline", "SOL_USDC", "1month"),
    ("kline.2h.ETH_USDC", "kline", "ETH_USDC", "2h"),
    ("markPrice.AAPL.US_USDC_PERP", "markPrice", "AAPL.US_USDC_PERP", None),
    ("ticker.SOL_USDC", "ticker", "SOL_USDC", None),
    ("externalTicker.SOL_USDC", "externalTicker", "SOL_USDC", None),
    ("stockPrice.AAPL", "stockPrice", "AAPL", None),
    ("openInterest.SOL_USDC_PERP", "openInterest", "SOL_USDC_PERP", None),
    ("trade.kPEPE_USDC_PERP", "trade", "kPEPE_USDC_PERP", None),
    ("trade.0G_USDC", "trade", "0G_USDC", None),
    ("liquidation", "liquidation", None, None),
    ("liquidation.SOL_USDC_PERP", "liquidation", "SOL_USDC_PERP", None),
    ("account.orderUpdate", "account.orderUpdate", None, None),
    ("account.orderUpdate.ETH_USDC", "account.orderUpdate", "ETH_USDC", None),
    ("account.positionUpdate", "account.positionUpdate", None, None),
    ("account.positionUpdate.AAPL.US_USDC_PERP", "account.positionUpdate", "AAPL.US_USDC_PERP", None),
    ("account.rfqUpdate", "account.rfqUpdate", None, None),
    ("account.rfqUpdate.SOL_USDC_RFQ", "account.rfqUpdate", "SOL_USDC_RFQ", None),
    ("account.balanceUpdate", "account.balanceUpdate", None, None),
    # NEMA-WS: the server takes "5.BTC_USDC_PERP" as an (unknown) symbol, not as a window.
    ("depth.5.BTC_USDC_PERP", "depth", "5.BTC_USDC_PERP", None),
]

INVALID = [
    ("nope.BTC_USDC_PERP", INVALID_STREAM),  # NEMA-WS: 4006 Invalid stream
    ("depth.100ms.BTC_USDC_PERP", INVALID_DEPTH_WINDOW),  # NEMA-WS: 4008 Invalid depth window
    ("depth.100ms", INVALID_DEPTH_WINDOW),
    ("BookTicker.SOL_USDC", INVALID_STREAM),  # types are case-sensitive
    ("kline.2m.SOL_USDC", INVALID_STREAM),
    ("kline.1M.SOL_USDC", INVALID_STREAM),  # ccxt's 1M is 1month on the wire
    ("kline.1h", INVALID_STREAM),
    ("trade", INVALID_STREAM),
    ("trade.", INVALID_STREAM),
    ("trade.SOL_USDC.", INVALID_STREAM),
    ("trade..SOL_USDC", INVALID_STREAM),
    ("trade.SOL USDC", INVALID_STREAM),
    ("trade.SOL-USDC", INVALID_STREAM),  # the normalized spelling is not a stream symbol
    ("depth.200ms", INVALID_STREAM),
    ("liquidation.", INVALID_STREAM),
    ("account", INVALID_STREAM),
    ("account.", INVALID_STREAM),
    ("account.fooUpdate", INVALID_STREAM),
    ("account.balanceUpdate.USDT", INVALID_STREAM),
    ("", INVALID_STREAM),
]


@pytest.mark.parametrize(("name", "kind", "symbol", "interval"), VALID)
def test_parses_every_documented_stream_and_builds_the_name_back(name, kind, symbol, interval):
    stream = parse_stream(name)
    assert (stream.kind, stream.symbol, stream.interval) == (kind, symbol, interval)
    assert str(stream) == name
    assert StreamName(kind, symbol, interval) == stream
    assert stream.is_private is name.startswith("account.")


@pytest.mark.parametrize(("name", "code"), INVALID)
def test_refuses_what_the_server_refuses_with_its_error_code(name, code):
    with pytest.raises(InvalidStreamName) as caught:
        parse_stream(name)
    assert caught.value.code == code
    assert caught.value.name == name
    assert repr(name) in str(caught.value)


def test_invalid_stream_name_is_a_value_error_and_a_local_protocol_error():
    with pytest.raises(ValueError, match="unknown stream type 'nope'"):
        parse_stream("nope.X")
    assert issubclass(InvalidStreamName, LocalProtocolError)


@pytest.mark.parametrize("interval", KLINE_INTERVALS)
def test_every_kline_interval(interval):
    assert parse_stream(f"kline.{interval}.SOL_USDC").interval == interval


@pytest.mark.parametrize("window", DEPTH_WINDOWS)
def test_every_depth_window(window):
    assert parse_stream(f"depth.{window}.SOL_USDC") == StreamName("depth", "SOL_USDC", window)


def test_kline_interval_list_matches_the_rest_enum():
    expected = (
        "1s",
        "1m",
        "3m",
        "5m",
        "15m",
        "30m",
        "1h",
        "2h",
        "4h",
        "6h",
        "8h",
        "12h",
        "1d",
        "3d",
        "1w",
        "1month",
    )
    assert expected == KLINE_INTERVALS
    assert DEPTH_WINDOWS == ("200ms", "600ms", "1000ms")


@pytest.mark.parametrize(
    ("kind", "symbol", "interval"),
    [
        ("trade", None, None),
        ("trade", "SOL_USDC", "1h"),
        ("kline", "SOL_USDC", None),
        ("depth", "SOL_USDC", "100ms"),
        ("account.balanceUpdate", "USDT", None),
        ("ticker", "SOL-USDC", None),
        ("ticker", "", None),
        ("unknown", "SOL_USDC", None),
    ],
)
def test_constructor_validates(kind, symbol, interval):
    with pytest.raises(InvalidStreamName):
        StreamName(kind, symbol, interval)


def test_stream_names_are_frozen_hashable_values():
    stream = parse_stream("trade.SOL_USDC")
    with pytest.raises(dataclasses.FrozenInstanceError):
        stream.symbol = "BTC_USDC"  # type: ignore[misc]
    assert {stream: 1}[StreamName("trade", "SOL_USDC")] == 1
    assert parse_stream("trade.SOL_USDC") is stream  # cached


SYMBOLS = st.from_regex(
    re.compile(r"[A-Za-z0-9]{1,6}(\.[A-Z]{1,3})?(_[A-Za-z0-9]{1,6}){1,2}"), fullmatch=True
)
KINDS = st.sampled_from(
    ["bookTicker", "depth", "trade", "ticker", "markPrice", "openInterest", "liquidation"]
)


@given(KINDS, SYMBOLS, st.sampled_from([None, *DEPTH_WINDOWS]))
def test_round_trips_generated_names(kind, symbol, window):
    stream = StreamName(kind, symbol, window if kind == "depth" else None)
    assert parse_stream(str(stream)) == stream


@given(st.sampled_from(KLINE_INTERVALS), SYMBOLS)
def test_round_trips_generated_kline_names(interval, symbol):
    assert parse_stream(f"kline.{interval}.{symbol}") == StreamName("kline", symbol, interval)


@given(st.text(max_size=40))
def test_arbitrary_text_parses_to_the_same_name_or_raises_invalid_stream_name(name):
    try:
        stream = parse_stream(name)
    except InvalidStreamName:
        return
    assert str(stream) == name


@pytest.mark.parametrize(
    ("exchange", "normalized"),
    [
        ("SOL_USDC", "SOL-USDC"),
        ("SOL_USDC_PERP", "SOL-USDC-PERP"),
        ("AAPL.US_USDC_PERP", "AAPL.US-USDC-PERP"),
        ("kPEPE_USDC_PERP", "kPEPE-USDC-PERP"),
        ("FDVEXTD1B_USDC_PREDICTION", "FDVEXTD1B-USDC-PREDICTION"),
        ("0G_USDC", "0G-USDC"),
    ],
)
def test_symbol_spellings(exchange, normalized):
    assert normalize_symbol(exchange) == normalized
    assert normalize_symbol(normalized) == normalized
    assert exchange_symbol(normalized) == exchange
    assert exchange_symbol(exchange) == exchange


@pytest.mark.parametrize("bad", ["", "SOL USDC", "SOL--USDC", "-SOL", "SOL/USDC"])
def test_exchange_symbol_rejects_malformed_symbols(bad):
    with pytest.raises(ValueError, match="malformed symbol"):
        exchange_symbol(bad)


@given(SYMBOLS)
def test_symbol_spellings_are_inverse(symbol):
    assert exchange_symbol(normalize_symbol(symbol)) == symbol
    assert "_" not in normalize_symbol(symbol)
