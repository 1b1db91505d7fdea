"""
The benchmark feeds: Backpack-shaped market-data frames and the msgspec structs every client decodes into.

Two feeds. ``backpack`` (the default, :func:`backpack_feed`) is what the full Backpack pipeline needs:
recorded-shape ``trade`` and realtime ``depth`` frames of four markets, with consistent per-symbol
``U``/``u`` sequences, books that never cross, and the REST answers that go with them (the markets
list and one ``/api/v1/depth`` snapshot per symbol whose ``lastUpdateId`` straddles the first delta).

The ``mix`` feed (``--feed mix``; the default until the pipeline rows came) is that of
``performance-anchors.md`` section 2: about 45 % ``depth`` (0-3 levels per side, at
least one level in all), 30 % ``bookTicker``, 24 % ``trade`` and 1 % ``ticker``, in Backpack's wire key
order (``{"data":{...},"stream":"..."}`` with alphabetical keys inside ``data``), about 200 bytes per
message. Frames come from a seeded ``random.Random``, so every run and every client sees the same bytes.

The structs follow the anchors doc: ``Envelope.data`` is a union tagged on ``"e"``, prices and sizes stay
``str``. They are ordinary GC-tracked structs; ``BENCH_STRUCT_GC=0`` in the environment (the runner's
``--structs-gc-off``) builds them with ``gc=False`` instead, to show what the collector costs.
:data:`DECODER` is the one typed decoder every peer client uses; our own client decodes through
``Router(Envelope)``, which builds an equivalent ``msgspec.json.Decoder(Envelope)``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Final

import msgspec

__all__ = [
    "BACKPACK_SYMBOLS",
    "DECODER",
    "STRUCT_GC",
    "BookTicker",
    "Depth",
    "Envelope",
    "Ticker",
    "Trade",
    "BackpackFeed",
    "backpack_feed",
    "build_blob",
    "close_frame",
    "generate_payloads",
    "server_frame",
]


#: ``gc=`` of every struct below (see the module docs).
STRUCT_GC: Final = os.environ.get("BENCH_STRUCT_GC", "1") != "0"


class Trade(msgspec.Struct, frozen=True, kw_only=True, gc=STRUCT_GC, tag_field="e", tag="trade"):
    E: int
    T: int
    a: str
    b: str
    m: bool
    p: str
    q: str
    s: str
    t: int


class BookTicker(msgspec.Struct, frozen=True, kw_only=True, gc=STRUCT_GC, tag_field="e", tag="bookTicker"):
    A: str
    B: str
    E: int
    T: int
    a: str
    b: str
    s: str
    u: int


class Depth(msgspec.Struct, frozen=True, kw_only=True, gc=STRUCT_GC, tag_field="e", tag="depth"):
    E: int
    T: int
    U: int
    a: list[tuple[str, str]]
    b: list[tuple[str, str]]
    s: str
    u: int


class Ticker(msgspec.Struct, frozen=True, kw_only=True, gc=STRUCT_GC, tag_field="e", tag="ticker"):
    E: int
    V: str
    c: str
    h: str
    l: str  # noqa: E741 - the wire name
    n: int
    o: str
    s: str
    v: str


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=STRUCT_GC):
    data: Trade | BookTicker | Depth | Ticker
    stream: str


#: The typed decoder shared by every peer client (built once, at import).
DECODER: Final = msgspec.json.Decoder(Envelope)

# (symbol, mid price, price decimals, size decimals)
_MARKETS: Final = (
    ("BTC_USDC_PERP", 86_650.0, 1, 5),
    ("ETH_USDC_PERP", 2_760.0, 2, 4),
    ("SOL_USDC", 98.9, 2, 2),
    ("SOL_USDC_PERP", 99.1, 2, 2),
    ("AAPL.US_USDC_PERP", 340.3, 2, 2),
)


def _price(rng: random.Random, mid: float, decimals: int) -> str:
    return f"{mid * (1 + rng.uniform(-0.002, 0.002)):.{decimals}f}"


def _size(rng: random.Random, decimals: int) -> str:
    return "0" if rng.random() < 0.1 else f"{rng.uniform(0.0, 250.0):.{decimals}f}"


def _depth(rng: random.Random, market: tuple[str, float, int, int], now: int, uid: int) -> dict[str, object]:
    symbol, mid, pd, sd = market
    na, nb = rng.randint(0, 3), rng.randint(0, 3)
    if na + nb == 0:  # Backpack never sends a delta without levels
        na = 1
    asks = [[_price(rng, mid * 1.001, pd), _size(rng, sd)] for _ in range(na)]
    bids = [[_price(rng, mid * 0.999, pd), _size(rng, sd)] for _ in range(nb)]
    data = {"E": now, "T": now - 170, "U": uid, "a": asks, "b": bids, "e": "depth", "s": symbol, "u": uid}
    return {"data": data, "stream": f"depth.{symbol}"}


def _book_ticker(
    rng: random.Random, market: tuple[str, float, int, int], now: int, uid: int
) -> dict[str, object]:
    symbol, mid, pd, sd = market
    data = {
        "A": _size(rng, sd),
        "B": _size(rng, sd),
        "E": now,
        "T": now - 210,
        "a": _price(rng, mid * 1.0005, pd),
        "b": _price(rng, mid * 0.9995, pd),
        "e": "bookTicker",
        "s": symbol,
        "u": uid,
    }
    return {"data": data, "stream": f"bookTicker.{symbol}"}


def _trade(rng: random.Random, market: tuple[str, float, int, int], now: int, uid: int) -> dict[str, object]:
    symbol, mid, pd, sd = market
    data = {
        "E": now,
        "T": now - 1059,
        "a": str(rng.randrange(10**9, 10**10)),  # 10-digit order ids (format since 2025-06)
        "b": str(rng.randrange(10**9, 10**10)),
        "e": "trade",
        "m": rng.random() < 0.5,
        "p": _price(rng, mid, pd),
        "q": _size(rng, sd),
        "s": symbol,
        "t": uid // 7,
    }
    return {"data": data, "stream": f"trade.{symbol}"}


def _ticker(rng: random.Random, market: tuple[str, float, int, int], now: int, uid: int) -> dict[str, object]:
    symbol, mid, pd, _ = market
    data = {
        "E": now,
        "V": f"{rng.uniform(1e5, 1e7):.4f}",
        "c": _price(rng, mid, pd),
        "e": "ticker",
        "h": _price(rng, mid * 1.02, pd),
        "l": _price(rng, mid * 0.98, pd),
        "n": rng.randrange(1000, 100_000),
        "o": _price(rng, mid, pd),
        "s": symbol,
        "v": f"{rng.uniform(1e3, 1e5):.2f}",
    }
    return {"data": data, "stream": f"ticker.{symbol}"}


def generate_payloads(n: int, *, seed: int = 0) -> list[bytes]:
    """``n`` JSON payloads of the ``mix`` feed (deterministic for a given seed)."""
    rng = random.Random(seed)
    encode = msgspec.json.encode
    now = 1_788_367_430_247_487
    uid = 4_330_360_995
    out: list[bytes] = []
    for _ in range(n):
        now += rng.randrange(5, 400)
        uid += 1
        market = _MARKETS[rng.randrange(len(_MARKETS))]
        r = rng.random()
        if r < 0.45:
            message = _depth(rng, market, now, uid)
        elif r < 0.75:
            message = _book_ticker(rng, market, now, uid)
        elif r < 0.99:
            message = _trade(rng, market, now, uid)
        else:
            message = _ticker(rng, market, now, uid)
        out.append(encode(message))
    return out


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, unfragmented server-to-client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def close_frame(code: int = 1000) -> bytes:
    """A server Close frame with ``code`` and no reason."""
    return server_frame(0x8, code.to_bytes(2, "big"))


def build_blob(n: int, *, seed: int = 0) -> bytes:
    """``n`` text frames of the ``mix`` feed followed by a Close(1000)."""
    return b"".join([server_frame(0x1, p) for p in generate_payloads(n, seed=seed)]) + close_frame(1000)


# --------------------------------------------------------------------------- the ``backpack`` feed

#: The markets of the ``backpack`` feed: a spot market, two perps and a dotted equity perp.
BACKPACK_SYMBOLS: Final = ("SOL_USDC", "BTC_USDC_PERP", "ETH_USDC_PERP", "AAPL.US_USDC_PERP")
_DEPTH_SHARE: Final = 0.6  # the rest are trades
_BAND: Final = 60  # book levels live within this many ticks of the mid: bids below it, asks above it
_SNAPSHOT_LEVELS: Final = 40  # levels per side in the REST snapshot


@dataclass
class BackpackFeed:
    """
    One run's worth of the ``backpack`` feed.

    Attributes:
        payloads: the websocket payloads, in send order; the last one is a trade.
        snapshots: exchange symbol -> the body of ``GET /api/v1/depth?symbol=`` (the book before the
            first delta, ``lastUpdateId`` = the first delta's ``U``, so that delta straddles it).
        markets: the body of ``GET /api/v1/markets``.
        meta: what a client needs to know to stop and check its counts: ``n``, ``trades``, ``depth``,
            ``depth_by_symbol``, ``symbols``, ``streams``, ``last_trade`` (``[symbol, id]``).
    """

    payloads: list[bytes]
    snapshots: dict[str, bytes]
    markets: bytes
    meta: dict[str, Any]


class _Market:
    """The generator state of one symbol (integer units, like the simulator's engine)."""

    def __init__(self, symbol: str, rng: random.Random, index: int) -> None:
        from native_anyio.backpack.simulator._config import spec_for
        from native_anyio.backpack.simulator._numbers import decimals_of, to_units
        from native_anyio.backpack.simulator._payloads import WireFormat

        self.spec = spec_for(symbol)
        self.symbol = symbol
        self.dp, self.ds = decimals_of(self.spec.tick_size), decimals_of(self.spec.step_size)
        self.wire = WireFormat(symbol, self.dp, self.ds)
        self.mid = to_units(self.spec.price, self.dp)
        self.max_size = 250 * 10**self.ds
        self.base = 4_330_360_995 + 1_000_000_000 * index  # the snapshot is taken here
        self.last_u = self.base
        self.trade_id = 341_399_899 + 10_000_000 * index
        self.rng = rng
        self.bids = {self.mid - rng.randint(1, _BAND): self._size() for _ in range(_SNAPSHOT_LEVELS)}
        self.asks = {self.mid + rng.randint(1, _BAND): self._size() for _ in range(_SNAPSHOT_LEVELS)}

    def _size(self) -> int:
        return self.rng.randint(1, self.max_size)

    def _levels(self, count: int, sign: int) -> list[tuple[int, int]]:
        rng = self.rng
        # 15 % deletes (size 0): Backpack sends absolute sizes, zero removes the level.
        return [
            (self.mid + sign * rng.randint(1, _BAND), 0 if rng.random() < 0.15 else self._size())
            for _ in range(count)
        ]

    def depth(self, now: int) -> bytes:
        from native_anyio.backpack.simulator._payloads import envelope

        rng = self.rng
        first = self.last_u + 1
        if first == self.base + 1:
            last = first + 2  # the first delta spans the snapshot id (U <= lastUpdateId + 1 <= u)
        else:
            last = first if rng.random() < 0.9 else first + rng.randint(1, 4)  # aggregated under load
        self.last_u = last
        r = rng.random()  # mostly one level on one side, as recorded realtime frames are
        count = 1 if r < 0.7 else 2 if r < 0.9 else rng.randint(3, 4)
        n_asks = rng.randint(0, count)
        asks, bids = self._levels(n_asks, 1), self._levels(count - n_asks, -1)
        data = self.wire.depth(first, last, bids, asks, now - 170, now)
        return envelope(f"depth.{self.symbol}", data)

    def trade(self, now: int) -> bytes:
        from native_anyio.backpack.simulator._payloads import envelope

        rng = self.rng
        self.trade_id += 1
        data = {
            "E": now,
            "T": now - 1059,
            "a": str(rng.randrange(10**9, 10**10)),  # 10-digit order ids (format since 2025-06)
            "b": str(rng.randrange(10**9, 10**10)),
            "e": "trade",
            "m": rng.random() < 0.5,
            "p": self.wire.price(self.mid + rng.randint(-2, 2)),
            "q": self.wire.size(self._size()),
            "s": self.symbol,
            "t": self.trade_id,
        }
        return envelope(f"trade.{self.symbol}", data)

    def snapshot(self, now: int) -> bytes:
        from native_anyio.backpack.simulator._numbers import stripped
        from native_anyio.backpack.simulator._payloads import ENCODER

        dp, ds = self.dp, self.ds
        body = {
            "asks": [[stripped(p, dp), stripped(q, ds)] for p, q in sorted(self.asks.items())],
            "bids": [[stripped(p, dp), stripped(q, ds)] for p, q in sorted(self.bids.items())],
            "lastUpdateId": str(self.base + 1),
            "timestamp": now,
        }
        return ENCODER.encode(body)


def backpack_feed(n: int, *, seed: int = 0, symbols: tuple[str, ...] = BACKPACK_SYMBOLS) -> BackpackFeed:
    """
    ``n`` frames of the ``backpack`` feed (deterministic for a given seed), with its REST bodies.

    60 % realtime ``depth`` frames (one level on one side in most, up to four; 15 % deletes; 10 %
    span several update ids), 40 % ``trade`` frames, spread evenly over ``symbols``. Payloads are
    built by the simulator's wire formatter: sorted keys, prices and sizes padded to the market's
    tick and step, ids as JSON numbers. The last frame is a trade, so a client that has seen every
    trade has processed every frame.
    """
    from native_anyio.backpack.simulator._payloads import ENCODER
    from native_anyio.backpack.simulator._rest_public import market_entry

    rng = random.Random(seed)
    now = 1_788_367_430_247_487
    markets = [_Market(symbol, rng, i) for i, symbol in enumerate(symbols)]
    snapshots = {m.symbol: m.snapshot(now) for m in markets}
    payloads: list[bytes] = []
    trades = 0
    depth_by_symbol = dict.fromkeys(symbols, 0)
    for i in range(n):
        now += rng.randrange(5, 400)
        market = markets[rng.randrange(len(markets))]
        if i < n - 1 and rng.random() < _DEPTH_SHARE:
            payloads.append(market.depth(now))
            depth_by_symbol[market.symbol] += 1
        else:
            payloads.append(market.trade(now))
            trades += 1
            last_trade = [market.symbol, market.trade_id]
    meta = {
        "n": n,
        "trades": trades,
        "depth": n - trades,
        "depth_by_symbol": depth_by_symbol,
        "symbols": list(symbols),
        "streams": [f"{kind}.{s}" for s in symbols for kind in ("trade", "depth")],
        "last_trade": last_trade,
    }
    body = ENCODER.encode([market_entry(m.spec) for m in markets])
    return BackpackFeed(payloads, snapshots, body, meta)
