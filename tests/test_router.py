"""The decode-once router: dispatch, counters, bad input, batch path."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native_anyio import CloseReason, Connected, DecodeError, Disconnected, InstrumentationEvent, Router


class Trade(msgspec.Struct, frozen=True, tag_field="e", tag="trade"):
    s: str
    p: str
    t: int


class Ticker(msgspec.Struct, frozen=True, tag_field="e", tag="ticker"):
    s: str
    c: str


class Envelope(msgspec.Struct, frozen=True):
    data: Trade | Ticker
    stream: str


def frame(data: dict[str, object], stream: str) -> bytes:
    return msgspec.json.encode({"data": data, "stream": stream})


TRADE = frame({"e": "trade", "s": "SOL_USDC", "p": "98.97", "t": 7}, "trade.SOL_USDC")
TICKER = frame({"e": "ticker", "s": "SOL_USDC", "c": "99.00"}, "ticker.SOL_USDC")


def by_stream(message: Envelope) -> str:
    return message.stream


def test_dispatches_by_channel_and_decodes_once_into_the_tagged_type():
    router: Router[Envelope] = Router(Envelope, channel_of=by_stream)
    trades: list[Envelope] = []
    tickers: list[Envelope] = []
    router.add_handler("trade.SOL_USDC", trades.append)
    router.add_handler("ticker.SOL_USDC", tickers.append)
    assert router.dispatch_batch([TRADE, TICKER, TRADE]) == 3
    assert [type(m.data) for m in trades] == [Trade, Trade]
    assert trades[0].data == Trade(s="SOL_USDC", p="98.97", t=7)
    assert tickers[0].data == Ticker(s="SOL_USDC", c="99.00")
    stats = router.statistics()
    assert (stats.messages, stats.decoded, stats.parse_errors, stats.unrouted) == (3, 3, 0, 0)
    assert dict(stats.per_channel) == {"trade.SOL_USDC": 2, "ticker.SOL_USDC": 1}


def test_default_channel_is_the_decoded_type():
    router: Router[Trade | Ticker] = Router(Trade | Ticker)
    seen: list[object] = []
    router.add_handler(Ticker, seen.append)
    assert router.dispatch(b'{"e":"ticker","s":"X","c":"1"}') is True
    assert router.dispatch(b'{"e":"trade","s":"X","p":"1","t":1}') is False  # nobody handles trades
    assert seen == [Ticker(s="X", c="1")]
    assert router.statistics().unrouted == 1
    assert dict(router.statistics().per_channel) == {"Ticker": 1, "Trade": 1}


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b'{"data": {"e": "trade", "s": "SOL_USDC", "p": 1, "t": 7}, "stream": "x"}',  # price must be a string
        b'{"data": {"e": "nope"}, "stream": "x"}',  # unknown tag
        b'{"data": {"e": "trade", "s": "SOL_USDC", "p": "1"}, "stream": "x"}',  # missing field
        b"\xff\xfe",
        b"",
    ],
)
def test_malformed_messages_are_counted_and_skipped_without_losing_the_rest(bad: bytes):
    events: list[InstrumentationEvent] = []
    router: Router[Envelope] = Router(Envelope, channel_of=by_stream, hooks=[events.append])
    got: list[Envelope] = []
    router.add_handler("trade.SOL_USDC", got.append)
    assert router.dispatch_batch([TRADE, bad, TRADE]) == 2
    assert len(got) == 2
    stats = router.statistics()
    assert stats.parse_errors == 1
    assert stats.decoded == 2
    assert stats.last_parse_error
    assert [e.name for e in events] == ["parse_error"]


def test_decode_raises_the_toolkit_error_only():
    router: Router[Envelope] = Router(Envelope)
    with pytest.raises(DecodeError) as info:
        router.decode(b"{broken")
    assert isinstance(info.value.__cause__, msgspec.DecodeError)
    assert router.statistics().parse_errors == 1


def test_decode_batch_passes_session_events_in_order_and_skips_bad_payloads():
    router: Router[Envelope] = Router(Envelope)
    order: list[object] = []
    router.add_event_handler(order.append)
    connected = Connected(1, "ws://x")
    gone = Disconnected(1, CloseReason("going_away", 1001))
    decoded = router.decode_batch([connected, TRADE, b"junk", TICKER, gone])
    assert [type(m.data) for m in decoded] == [Trade, Ticker]
    assert order == [connected, gone]
    assert router.statistics().events == 2
    assert router.statistics().parse_errors == 1


def test_dispatch_batch_delivers_events_between_messages_in_order():
    router: Router[Envelope] = Router(Envelope, channel_of=by_stream)
    order: list[object] = []
    router.add_handler("trade.SOL_USDC", lambda m: order.append(m.data.t))
    router.add_event_handler(lambda e: order.append(type(e).__name__))
    router.dispatch_batch([TRADE, Disconnected(1, CloseReason("transport")), Connected(2, "ws://x"), TRADE])
    assert order == [7, "Disconnected", "Connected", 7]


def test_handler_errors_raise_by_default():
    router: Router[Envelope] = Router(Envelope, channel_of=by_stream)

    def boom(_: Envelope) -> None:
        raise RuntimeError("handler bug")

    router.add_handler("trade.SOL_USDC", boom)
    with pytest.raises(RuntimeError, match="handler bug"):
        router.dispatch(TRADE)


def test_handler_errors_counted_in_count_mode_and_the_batch_continues():
    events: list[InstrumentationEvent] = []
    router: Router[Envelope] = Router(
        Envelope, channel_of=by_stream, handler_errors="count", hooks=[events.append]
    )
    good: list[Envelope] = []
    calls = 0

    def flaky(m: Envelope) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first one fails")
        good.append(m)

    router.add_handler("trade.SOL_USDC", flaky)
    router.dispatch_batch([TRADE, TRADE, TRADE])
    assert len(good) == 2
    assert router.statistics().handler_errors == 1
    assert events[0].name == "handler_error"
    assert events[0].get("channel") == "trade.SOL_USDC"


def test_remove_handler():
    router: Router[Envelope] = Router(Envelope, channel_of=by_stream)
    got: list[Envelope] = []
    router.add_handler("trade.SOL_USDC", got.append)
    router.remove_handler("trade.SOL_USDC", got.append)
    router.dispatch(TRADE)
    assert got == []
    assert router.statistics().unrouted == 1
    with pytest.raises(ValueError):
        router.remove_handler("trade.SOL_USDC", got.append)


def test_health_degrades_on_errors_and_recovers_when_they_stop():
    router: Router[Envelope] = Router(Envelope)
    router.decode_batch([TRADE] * 10 + [b"bad"] * 5)
    health = router.health()
    assert health.status == "degraded"
    assert "5 of the last 15" in health.reasons[0]
    router.decode_batch([TRADE] * 100)
    assert router.health().ok


def test_invalid_handler_errors_mode():
    with pytest.raises(ValueError):
        Router(Envelope, handler_errors="ignore")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64), st.sampled_from([TRADE, TICKER])), max_size=30))
def test_arbitrary_bytes_never_raise_and_every_message_is_accounted_for(items: list[bytes]):
    router: Router[Envelope] = Router(Envelope, channel_of=by_stream)
    got: list[Envelope] = []
    router.add_handler("trade.SOL_USDC", got.append)
    router.add_handler("ticker.SOL_USDC", got.append)
    routed = router.dispatch_batch(items)
    stats = router.statistics()
    assert stats.messages == len(items)
    assert stats.decoded + stats.parse_errors == len(items)
    assert routed + stats.unrouted == stats.decoded
    assert len(got) == routed
