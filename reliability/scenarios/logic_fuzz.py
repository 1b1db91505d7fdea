"""
Fuzzing the frame parser and the decoders (property E1, E2): at least 1M executions, 0 crashes,
0 hangs.

A seed corpus is recorded from the simulator over loopback first (about 2 s): every public
stream of a spot and a perp market, the private order, position and balance streams (after a
signed subscription and a few orders), error frames, and the REST bodies of every endpoint the
client decodes. Then, with ``random.Random`` seeded (Hypothesis is too slow for a million runs),
each execution takes one input through one target:

* ``frames``: 1-6 websocket frames (corpus text, binary, pings, pongs, closes with valid and
  invalid codes, fragmented messages with control frames in between, oversize headers, wrongly
  masked frames), half the time byte-mutated, split at random boundaries and fed to a fresh
  :class:`~native_anyio._frames.FrameParser` (client or server side, sometimes a tiny size
  limit); allowed errors: ``FrameProtocolError``, ``MessageTooBig``;
* ``ws``: a corpus frame mutated structurally (a field deleted, retyped, set to a huge, negative,
  non-finite or empty value, ``U``/``u`` swapped, deep nesting) or byte by byte, through
  ``decode_frame`` and, when it decodes, an order book and ``normalize`` (as the client does);
  allowed errors: ``DecodeError`` from the decoder, and ``DecodeError`` or ``ValueError`` (an
  invalid stream name) from ``normalize``, exactly what the client catches;
* ``rest``: a corpus REST body mutated the same ways through its decoder; allowed: ``DecodeError``;
* ``handshake``: a server handshake answer mutated byte by byte through
  ``check_server_response``; allowed: ``HandshakeRejected``, ``RemoteProtocolError``.

Any other exception is a crash (the first few are kept as hex samples). Every execution is timed;
one above 0.5 s counts as a hang.
"""

from __future__ import annotations

import copy
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec

from native_anyio import DecodeError, HandshakeRejected, MessageTooBig, OrderBook, RemoteProtocolError
from native_anyio._auth import Ed25519Signer
from native_anyio._frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    FrameProtocolError,
    encode_close_payload,
    encode_frame,
)
from native_anyio._handshake import (
    HandshakeRequest,
    build_client_request,
    build_server_response,
    check_server_response,
    new_client_key,
)
from native_anyio.backpack import BackpackConfig, BackpackRest
from native_anyio.backpack._normalize import normalize
from native_anyio.backpack._streams import parse_stream
from native_anyio.backpack._wire import WsDepth, decode_frame
from native_anyio.backpack._wire_rest import (
    decode_api_error,
    decode_depth,
    decode_klines,
    decode_mark_prices,
    decode_market,
    decode_markets,
    decode_open_interest,
    decode_status,
    decode_ticker,
    decode_tickers,
    decode_trades,
)
from native_anyio.backpack.simulator import SimulatorConfig, open_raw_ws, open_simulator
from reliability._figures import Context, Result, Scenario

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SCENARIOS"]

HANG = 0.5  # seconds: one execution slower than this is a hang
SHORT = {"frames": 10_000, "ws": 7_000, "rest": 2_000, "handshake": 1_000}
FULL = {"frames": 500_000, "ws": 350_000, "rest": 100_000, "handshake": 50_000}
SYMBOLS = ("SOL_USDC", "SOL_USDC_PERP")
STREAM_KINDS = ("depth", "depth.200ms", "trade", "bookTicker", "ticker", "kline.1m", "markPrice", "openInterest",
                "liquidation")  # fmt: skip
INTERESTING_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**30, 1e308, -1e308, 0.5,
    "", "0", "-0", "-1", "0.00", "1e999", "-1e999", "1E+400", "NaN", "nan", "Infinity", "-inf", "1e-999",
    "99999999999999999999999999999.99999999", "0x10", " 1", "1,5", "\u0661", "\x00", "é" * 3, "x" * 5000,
    [], {}, [[]], [["1", "2", "3"]], [["1"]], [[1, 2]], [["-1", "1"]], {"a": 1},
)  # fmt: skip
INTERESTING_TEXT = (
    b"0", b"-1", b"1e999", b"NaN", b"null", b"true", b"[]", b"{}", b'""', b"99999999999999999999999",
    b"-0.0", b"1E+400", b"\x00", b"\xff", b"\xc3", b"\\u0000", b"\\ud800", b'"', b"\\",
)  # fmt: skip
REST_DECODERS: dict[str, Callable[[bytes], object]] = {
    "markets": decode_markets,
    "market": decode_market,
    "depth": decode_depth,
    "ticker": decode_ticker,
    "tickers": decode_tickers,
    "trades": decode_trades,
    "klines": decode_klines,
    "markPrices": decode_mark_prices,
    "openInterest": decode_open_interest,
    "status": decode_status,
    "error": decode_api_error,
}


@dataclass
class Corpus:
    """Recorded inputs: websocket texts by kind, REST bodies by decoder name, handshake answers."""

    ws: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    rest: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    handshakes: list[tuple[bytes, str]] = field(default_factory=list)

    def add_ws(self, payload: bytes) -> None:
        try:
            frame = msgspec.json.decode(payload)
            data = frame.get("data") or {}
            kind = data.get("e") if isinstance(data, dict) else "list"
            kind = kind or ("error" if "error" in frame else str(frame.get("stream", "?")).split(".")[0])
        except (msgspec.DecodeError, AttributeError):
            kind = "raw"
        bucket = self.ws[str(kind)]
        if len(bucket) < 12 and payload not in bucket:
            bucket.append(payload)


async def record_corpus() -> Corpus:
    """Record the seed corpus from the simulator (about 2 s)."""
    corpus = Corpus()
    config = SimulatorConfig(symbols=SYMBOLS, seed=4, update_rate=40.0, open_interest_interval=1.0)
    async with open_simulator(config) as sim:
        signer = Ed25519Signer(sim.api_secret)
        streams = [f"{kind}.{symbol}" for symbol in SYMBOLS for kind in STREAM_KINDS]
        async with open_raw_ws(sim.ws_url) as ws:
            await ws.subscribe(*streams, "liquidation")
            await ws.subscribe(
                "account.orderUpdate", "account.positionUpdate", "account.balanceUpdate",
                signature=signer.ws_signature(),
            )  # fmt: skip
            await ws.subscribe("nope.SOL_USDC", "depth.5ms.SOL_USDC")
            await ws.send_text(b"not json")
            async with anyio.create_task_group() as tg:
                tg.start_soon(_trade, sim)
                with anyio.move_on_after(2.0):
                    while True:
                        frame = await ws.receive()
                        if frame.opcode == OP_TEXT:
                            corpus.add_ws(frame.payload)
        await _record_rest(sim, corpus)
    for _ in range(4):
        key = new_client_key()
        request = build_client_request("127.0.0.1:1", "/", key).split(b"\r\n\r\n")[0]
        corpus.handshakes.append((build_server_response(HandshakeRequest.parse(request)), key))
    corpus.handshakes.append(
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", new_client_key())
    )
    return corpus


async def _trade(sim: Any) -> None:
    config = BackpackConfig(
        rest_url=sim.rest_url, ws_url=sim.ws_url, api_key=sim.api_key, api_secret=sim.api_secret
    )
    async with BackpackRest(config) as rest:
        await anyio.sleep(0.3)
        for symbol in SYMBOLS:
            book = sim.book(symbol)
            await rest.execute_order(symbol=symbol, side="Bid", orderType="Limit", quantity="0.2",
                                     price=str(book.asks[0][0]))  # fmt: skip
            resting = await rest.execute_order(symbol=symbol, side="Ask", orderType="Limit", quantity="0.1",
                                               price=str(book.asks[0][0] + Decimal(5)))  # fmt: skip
            await rest.cancel_order(symbol, order_id=resting["id"])


async def _record_rest(sim: Any, corpus: Corpus) -> None:
    now_s = int(sim.now_us() // 1_000_000)
    paths = {
        "markets": "/api/v1/markets",
        "market": "/api/v1/market?symbol=SOL_USDC_PERP",
        "depth": "/api/v1/depth?symbol=SOL_USDC",
        "ticker": "/api/v1/ticker?symbol=SOL_USDC",
        "tickers": "/api/v1/tickers",
        "trades": "/api/v1/trades?symbol=SOL_USDC&limit=20",
        "klines": f"/api/v1/klines?symbol=SOL_USDC&interval=1m&startTime={now_s - 600}",
        "markPrices": "/api/v1/markPrices",
        "openInterest": "/api/v1/openInterest",
        "status": "/api/v1/status",
        "error": "/api/v1/depth?symbol=NOPE_USDC",
    }
    async with httpx.AsyncClient(base_url=sim.rest_url, trust_env=False) as http:
        for name, path in paths.items():
            corpus.rest[name].append((await http.get(path)).content)


# ---------------------------------------------------------------------------------- mutators


def mutate_bytes(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """1-4 byte-level mutations: flips, sets, inserts, deletes, duplicates, truncation, splices."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        n = len(buf)
        if op == 0 and n:
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 2:
            at = rng.randint(0, n)
            buf[at:at] = (
                rng.choice(INTERESTING_TEXT) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 8))
            )
        elif op == 3 and n:
            at = rng.randrange(n)
            del buf[at : at + rng.randint(1, 16)]
        elif op == 4 and n:
            at = rng.randrange(n)
            buf[at:at] = buf[at : at + rng.randint(1, 32)]
        elif op == 5 and n:
            del buf[rng.randint(0, n - 1) :]
        elif op == 6 and corpus:
            other = rng.choice(corpus)
            buf = buf[: rng.randint(0, n)] + other[rng.randint(0, len(other)) :]
        elif op == 7 and n:
            at = rng.randrange(n)
            buf[at : at + rng.randint(1, 6)] = rng.choice(INTERESTING_TEXT)
    return bytes(buf)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:8]):
            out += _paths(item, (*prefix, index))
    return out


_NEST = "__nest_here__"


def mutate_json(rng: random.Random, data: bytes) -> bytes:
    """A structural mutation of a JSON document (falls back to bytes when it does not parse)."""
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return mutate_bytes(rng, data, [])
    nest: tuple[bytes, int] | None = None
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = rng.randrange(6)
        if op == 0 and isinstance(parent, dict):
            del parent[last]
        elif op == 1:  # a copy: the shared lists and dicts must not be mutated later
            parent[last] = copy.deepcopy(rng.choice(INTERESTING_VALUES))
        elif (
            op == 2
            and isinstance(parent, dict)
            and isinstance(parent.get("U"), int)
            and isinstance(parent.get("u"), int)
        ):
            parent["U"], parent["u"] = parent["u"], parent["U"] + rng.randint(0, 5)
        elif op == 3 and nest is None:  # deep nesting, spliced in after encoding
            nest = (msgspec.json.encode(parent[last]), rng.choice((2, 50, 500, 5000, 100_000)))
            parent[last] = _NEST
        elif op == 4 and isinstance(parent, dict):
            parent[rng.choice(("E", "e", "s", "U", "u", "b", "a", "stream", "data", "x"))] = parent[last]
        else:
            parent[last] = str(parent[last]) if not isinstance(parent[last], str) else parent[last] * 2
    out = msgspec.json.encode(doc)
    if nest is not None:
        value, depth = nest
        out = out.replace(b'"' + _NEST.encode() + b'"', b"[" * depth + value + b"]" * depth, 1)
    return out


# ---------------------------------------------------------------------------------- targets

_OPCODES = (OP_TEXT, OP_BINARY, OP_PING, OP_PONG, OP_CLOSE, OP_CONT, 3, 11)


def _frame_stream(rng: random.Random, texts: list[bytes], server: bool) -> bytes:
    mask = server if rng.random() < 0.95 else not server
    parts: list[bytes] = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.randrange(8)
        if kind <= 2:
            parts.append(encode_frame(OP_TEXT, rng.choice(texts), mask=mask))
        elif kind == 3:
            payload = rng.randbytes(rng.choice((0, 5, 125, 126, 200, 70_000)))
            parts.append(encode_frame(OP_BINARY, payload, mask=mask))
        elif kind == 4:
            size = rng.choice((0, 4, 125, 126))
            parts.append(encode_frame(rng.choice((OP_PING, OP_PONG)), rng.randbytes(size), mask=mask))
        elif kind == 5:
            code = rng.choice((None, 1000, 1001, 1005, 1006, 1011, 1015, 2999, 3000, 4999, 5000, 0))
            payload = encode_close_payload(code, rng.choice(("", "bye", "é" * 70))) if code else b""
            if rng.random() < 0.1:
                payload = payload[:1] + b"\xff\xfe"
            parts.append(encode_frame(OP_CLOSE, payload, mask=mask))
        elif kind == 6:  # a fragmented text message, maybe with a control frame in between
            text = rng.choice(texts)
            cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(1, 3))))
            pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
            for index, piece in enumerate(pieces):
                opcode = OP_TEXT if index == 0 else OP_CONT
                parts.append(encode_frame(opcode, piece, mask=mask, fin=index == len(pieces) - 1))
                if rng.random() < 0.2:
                    parts.append(encode_frame(OP_PING, b"x", mask=mask))
        else:  # an odd header: any opcode, RSV bits, a claimed length far beyond the data
            opcode = rng.choice(_OPCODES)
            frame = encode_frame(opcode, rng.randbytes(rng.randint(0, 10)), mask=mask,
                                 fin=rng.random() < 0.7, rsv=rng.choice((0, 0, 1, 4)))  # fmt: skip
            if rng.random() < 0.3:
                frame = (
                    frame[:1] + bytes([frame[1] | 127]) + (2**63 + rng.randrange(2**20)).to_bytes(8, "big")
                )
            parts.append(frame)
    return b"".join(parts)


def run_frames(rng: random.Random, corpus: Corpus) -> str:
    texts = [t for bucket in corpus.ws.values() for t in bucket]
    server = rng.random() < 0.5
    data = _frame_stream(rng, texts, server)
    if rng.random() < 0.5:
        data = mutate_bytes(rng, data, texts)
    parser = FrameParser(max_message_size=rng.choice((1 << 20, 1 << 20, 64, 1000)), expect_masked=server)
    pos = 0
    try:
        while pos < len(data):
            step = rng.choice((1, 2, 3, 7, 64, 1000, len(data)))
            messages = parser.feed(data[pos : pos + step])
            if not all(type(m) is bytes for m in messages):
                raise AssertionError("the parser returned a non-bytes message")
            parser.control.clear()
            pos += step
    except (FrameProtocolError, MessageTooBig):
        return "rejected"
    return "ok"


def run_ws(rng: random.Random, corpus: Corpus) -> str:
    kind = rng.choice(list(corpus.ws))
    data = rng.choice(corpus.ws[kind])
    data = mutate_json(rng, data) if rng.random() < 0.7 else mutate_bytes(rng, data, corpus.ws[kind])
    # The client's own handling: decode_frame may raise DecodeError only; then normalize and the
    # stream name may raise DecodeError or ValueError (both caught and counted by the client).
    try:
        frame = decode_frame(data)
    except DecodeError:
        return "rejected"
    if frame.data is None or frame.stream is None:
        return "ok"
    if type(frame.data) is WsDepth:
        book = OrderBook()
        book.apply(frame.data.bids, frame.data.asks)
        book.bids(5), book.asks(5), book.is_crossed()  # exercised for crashes
    try:
        normalize(frame.data, parse_stream(frame.stream), 0.0)
    except (DecodeError, ValueError):
        return "rejected"
    return "ok"


def run_rest(rng: random.Random, corpus: Corpus) -> str:
    name = rng.choice(list(corpus.rest))
    data = rng.choice(corpus.rest[name])
    data = mutate_json(rng, data) if rng.random() < 0.7 else mutate_bytes(rng, data, corpus.rest[name])
    try:
        REST_DECODERS[name](data)
    except DecodeError:
        return "rejected"
    return "ok"


def run_handshake(rng: random.Random, corpus: Corpus) -> str:
    head, key = rng.choice(corpus.handshakes)
    data = mutate_bytes(rng, head, [h for h, _ in corpus.handshakes]).split(b"\r\n\r\n")[0]
    try:
        check_server_response(data, key)
    except (HandshakeRejected, RemoteProtocolError):
        return "rejected"
    return "ok"


TARGETS: dict[str, Callable[[random.Random, Corpus], str]] = {
    "frames": run_frames,
    "ws": run_ws,
    "rest": run_rest,
    "handshake": run_handshake,
}


@dataclass
class Tally:
    executions: int = 0
    ok: int = 0
    rejected: int = 0
    crashes: int = 0
    hangs: int = 0
    max_seconds: float = 0.0
    samples: list[str] = field(default_factory=list)


async def fuzz(counts: dict[str, int], corpus: Corpus, seed: int = 1) -> dict[str, Tally]:
    """Run ``counts[target]`` executions of each target; checkpoints every 2,000."""
    tallies: dict[str, Tally] = {}
    clock = time.perf_counter
    for name, count in counts.items():
        target = TARGETS[name]
        tally = tallies[name] = Tally()
        rng = random.Random(f"{seed}:{name}")
        for index in range(count):
            started = clock()
            try:
                outcome = target(rng, corpus)
            except Exception as exc:  # the finding: anything but the documented errors
                outcome = "crash"
                if len(tally.samples) < 5:  # execution ``index`` of ``name`` with ``seed`` replays it
                    tally.samples.append(f"{name}#{index}: {type(exc).__name__}: {str(exc)[:120]}")
            elapsed = clock() - started
            tally.executions += 1
            tally.max_seconds = max(tally.max_seconds, elapsed)
            if elapsed > HANG:
                tally.hangs += 1
            if outcome == "ok":
                tally.ok += 1
            elif outcome == "rejected":
                tally.rejected += 1
            else:
                tally.crashes += 1
            if index % 2000 == 1999:
                await anyio.lowlevel.checkpoint()
    return tallies


async def run_fuzz(ctx: Context) -> Result:
    started = time.perf_counter()
    corpus = await record_corpus()
    recorded = time.perf_counter() - started
    counts = SHORT if ctx.short else FULL
    fuzz_started = time.perf_counter()
    tallies = await fuzz(counts, corpus)
    fuzz_seconds = time.perf_counter() - fuzz_started
    total = sum(t.executions for t in tallies.values())
    crashes = sum(t.crashes for t in tallies.values())
    hangs = sum(t.hangs for t in tallies.values())
    slowest = max(t.max_seconds for t in tallies.values())
    rate = total / fuzz_seconds if fuzz_seconds else 0.0
    needed = sum(counts.values())
    passed = (
        crashes == 0 and hangs == 0 and total == needed and all(t.ok and t.rejected for t in tallies.values())
    )
    split = ", ".join(f"{name} {t.executions:,} ({100 * t.rejected / max(1, t.executions):.0f}% rejected)"
                      for name, t in tallies.items())  # fmt: skip
    value = (
        f"{total:,} executions ({split}): {crashes} crashes, {hangs} hangs, slowest "
        f"{slowest * 1000:.1f} ms; {rate:,.0f} execs/s; corpus {sum(len(b) for b in corpus.ws.values())} ws frames "
        f"of {len(corpus.ws)} kinds, {sum(len(b) for b in corpus.rest.values())} REST bodies"
    )
    samples = [s for t in tallies.values() for s in t.samples]
    if samples:
        value += "; first crashes: " + " | ".join(samples[:3])
    data: dict[str, float | int | str] = {
        "executions": total,
        "crashes": crashes,
        "hangs": hangs,
        "slowest_ms": slowest * 1000,
        "execs_per_second": rate,
        "corpus_seconds": recorded,
        "ws_kinds": ",".join(sorted(corpus.ws)),
        "wall_seconds": time.perf_counter() - started,
    }
    for name, tally in tallies.items():
        data[f"{name}_executions"] = tally.executions
        data[f"{name}_rejected"] = tally.rejected
        data[f"{name}_crashes"] = tally.crashes
    if samples:
        data["crash_samples"] = " | ".join(samples)
    return Result(value, passed, data)


SCENARIOS = [
    Scenario(
        key="fuzz",
        figure="Fuzz: frame parser and decoders",
        how=(
            "1,000,000 seeded random executions: websocket byte streams (valid, malformed and mutated frames "
            "split at random boundaries) into FrameParser, mutated Backpack frames of every kind into "
            "decode_frame + normalize + book, mutated REST bodies into their decoders, mutated handshake "
            "answers; corpus recorded from the simulator"
        ),
        target=">= 1M executions; 0 crashes (only documented errors); 0 hangs (> 0.5 s)",
        run=run_fuzz,
    )
]
