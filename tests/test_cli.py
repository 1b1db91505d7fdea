"""The command line, run as a user would: a subprocess against the embedded simulator."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from decimal import Decimal

import pytest

BACKENDS = ["asyncio", "trio"] if importlib.util.find_spec("trio") else ["asyncio"]

COMMON = {"type", "exchange", "symbol", "timestamp", "receipt_timestamp"}


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "native_anyio", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module", params=BACKENDS)
def json_lines(request: pytest.FixtureRequest) -> list[dict[str, object]]:
    result = run(
        "watch", "SOL-USDC", "BTC_USDC_PERP", "--simulate", "--format", "json", "--depth", "3",
        "--channels", "trades,book,bbo,ticker,candles,funding", "--duration", "4", "--backend", request.param,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines
    return lines


def of_type(lines: list[dict[str, object]], kind: str) -> list[dict[str, object]]:
    found = [line for line in lines if line["type"] == kind]
    assert found, f"no {kind} line in {len(lines)} lines"
    return found


def test_every_json_line_has_the_common_fields(json_lines):
    for line in json_lines:
        assert set(line) >= COMMON, line
        assert line["exchange"] == "BACKPACK"
        assert line["symbol"] in {"SOL-USDC", "BTC-USDC-PERP"}
        assert isinstance(line["timestamp"], float)
        assert isinstance(line["receipt_timestamp"], float)


def test_trade_lines(json_lines):
    for line in of_type(json_lines, "trade"):
        assert line["side"] in {"buy", "sell"}
        assert Decimal(str(line["price"])) > 0
        assert Decimal(str(line["amount"])) > 0
        assert isinstance(line["id"], int)


def test_book_lines_are_best_first_and_bounded_by_depth(json_lines):
    books = of_type(json_lines, "book")
    for line in books:
        bids = [[Decimal(p), Decimal(s)] for p, s in line["bids"]]
        asks = [[Decimal(p), Decimal(s)] for p, s in line["asks"]]
        assert 0 < len(bids) <= 3
        assert 0 < len(asks) <= 3
        assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
        assert [p for p, _ in asks] == sorted(p for p, _ in asks)
        assert bids[0][0] <= asks[0][0]
        assert all(isinstance(p, str) and isinstance(s, str) for p, s in line["bids"] + line["asks"])
        assert isinstance(line["sequence"], int)
    sequences = [line["sequence"] for line in books if line["symbol"] == "SOL-USDC"]
    assert sequences == sorted(sequences)


def test_ticker_candle_funding_and_bbo_lines(json_lines):
    ticker = of_type(json_lines, "ticker")[0]
    assert {"open", "high", "low", "last", "volume", "quote_volume", "trades"} <= set(ticker)
    candle = of_type(json_lines, "candle")[0]
    assert {"interval", "start", "end", "open", "high", "low", "close", "volume", "closed"} <= set(candle)
    assert candle["interval"] == "1m"
    funding = of_type(json_lines, "mark_price")[0]
    assert funding["symbol"] == "BTC-USDC-PERP"
    assert {"mark_price", "funding_rate"} <= set(funding)
    bbo = of_type(json_lines, "top_of_book")[0]
    assert Decimal(bbo["bid_price"]) <= Decimal(bbo["ask_price"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_live_view_shows_top_of_book_and_trades(backend: str):
    result = run("watch", "SOL_USDC", "--simulate", "--count", "30", "--backend", backend)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 30
    assert any(" trade " in line and " @ " in line for line in lines)
    assert any(" book " in line and "spread" in line for line in lines)


def test_book_command_shows_levels_spread_update_id_and_state():
    result = run("book", "SOL-USDC", "--simulate", "--count", "8", "--depth", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("book_status" in line and "state=live" in line for line in lines)
    heads = [i for i, line in enumerate(lines) if " book " in line]
    assert heads
    head = lines[heads[0]]
    assert "spread" in head
    assert " seq " in head
    assert head.endswith("live")
    levels = lines[heads[0] + 1 : heads[0] + 4]  # the best three levels of each side
    assert len(levels) == 3
    bid_prices = [Decimal(line.split("|")[0].split("@")[1]) for line in levels]
    ask_prices = [Decimal(line.split("|")[1].split("x")[0]) for line in levels]
    assert bid_prices == sorted(bid_prices, reverse=True)
    assert ask_prices == sorted(ask_prices)
    assert bid_prices[0] < ask_prices[0]


def test_simulate_command_prints_its_endpoints_and_stops():
    result = run("simulate", "SOL_USDC", "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert "ws://127.0.0.1:" in result.stdout
    assert "http://127.0.0.1:" in result.stdout


def test_unknown_command_fails_with_usage():
    result = run("nope", timeout=30)
    assert result.returncode == 2
    assert "usage: native-anyio" in result.stderr


@pytest.mark.parametrize(
    ("channel", "kind", "fields"),
    [
        ("open_interest", "open_interest", {"open_interest"}),
        ("liquidations", "liquidation", {"price", "amount", "side"}),
    ],
)
def test_slow_channels_reach_the_json_output(channel: str, kind: str, fields: set[str]):
    result = run(
        "watch", "BTC_USDC_PERP", "--simulate", "--format", "json", "--channels", channel, "--count", "1",
        "--sim-open-interest-interval", "1", "--duration", "60",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = [json.loads(text) for text in result.stdout.splitlines()]
    assert line["type"] == kind
    assert line["symbol"] == "BTC-USDC-PERP"
    assert COMMON | fields <= set(line)
