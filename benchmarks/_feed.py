"""
The benchmark feed: Backpack-shaped market-data frames and the msgspec structs every client decodes into.

The ``mix`` feed of ``performance-anchors.md`` section 2: about 45 % ``depth`` (0-3 levels per side, at
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
from typing import Final

import msgspec

__all__ = [
    "DECODER",
    "STRUCT_GC",
    "BookTicker",
    "Depth",
    "Envelope",
    "Ticker",
    "Trade",
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
    """``n`` text frames of the feed followed by a Close(1000): what the server sends per connection."""
    return b"".join([server_frame(0x1, p) for p in generate_payloads(n, seed=seed)]) + close_frame(1000)
