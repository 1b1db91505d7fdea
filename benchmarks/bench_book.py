"""
Order-book cost: microseconds per applied one-level delta at 1k and 10k levels per side, against
the cost of decoding that same delta from the wire, and a plain dict + sort baseline.

    python benchmarks/bench_book.py [--repeats 7] [--out benchmarks/results/book.md]

Every case runs in the same process, interleaved within each repeat (this machine is noisy); the
table shows the median and min over repeats, and the ratio apply ÷ decode (goal: < 1).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from native_anyio import BookSync, OrderBook
from native_anyio.backpack import decode_frame

N_DELTAS = 20_000


def build(levels: int, rng: random.Random) -> tuple[OrderBook, list, list]:
    tick = Decimal("0.01")
    mid = Decimal(100)
    bids = [(mid - tick * (i + 1), Decimal(rng.randint(1, 500)) / 10) for i in range(levels)]
    asks = [(mid + tick * (i + 1), Decimal(rng.randint(1, 500)) / 10) for i in range(levels)]
    book = OrderBook()
    book.load(bids, asks, 1)
    return book, bids, asks


def deltas(levels: int, rng: random.Random) -> list[tuple[str, tuple[Decimal, Decimal]]]:
    """Realistic one-level deltas near the touch: 70 % size changes, 15 % deletes, 15 % inserts."""
    tick = Decimal("0.01")
    out = []
    for _ in range(N_DELTAS):
        side = rng.choice(("b", "a"))
        depth = min(int(rng.expovariate(0.2)), levels - 1)
        roll = rng.random()
        price = Decimal(100) + (tick * (depth + 1) if side == "a" else -tick * (depth + 1))
        if roll < 0.15:
            price += tick / 2 if side == "a" else -tick / 2  # a new level between two existing ones
            size = Decimal(rng.randint(1, 500)) / 10
        elif roll < 0.30:
            size = Decimal(0)
        else:
            size = Decimal(rng.randint(1, 500)) / 10
        out.append((side, (price, size)))
    return out


def frames(stream: list[tuple[str, tuple[Decimal, Decimal]]]) -> list[bytes]:
    out = []
    for i, (side, (price, size)) in enumerate(stream):
        level = f'[["{price}","{size}"]]'
        a, b = (level, "[]") if side == "a" else ("[]", level)
        out.append(
            f'{{"data":{{"E":1788367430247494,"T":1788367430246081,"U":{i + 2},"a":{a},"b":{b},'
            f'"e":"depth","s":"SOL_USDC","u":{i + 2}}},"stream":"depth.SOL_USDC"}}'.encode()
        )
    return out


def time_apply(levels: int, stream, rng_seed: int) -> float:
    book, _, _ = build(levels, random.Random(rng_seed))
    apply = book.apply
    start = time.perf_counter()
    for side, level in stream:
        if side == "b":
            apply((level,), ())
        else:
            apply((), (level,))
    return (time.perf_counter() - start) / len(stream) * 1e6


def time_sync(levels: int, stream, rng_seed: int) -> float:
    """The full live path: BookSync.on_delta (sequence check, apply, crossed-book check)."""
    _, bids, asks = build(levels, random.Random(rng_seed))
    sync = BookSync()
    sync.on_snapshot(1, bids, asks, 0.0)
    sync.on_delta(2, 2, (), (), 0.0)
    on_delta = sync.on_delta
    start = time.perf_counter()
    for i, (side, level) in enumerate(stream, start=3):
        if side == "b":
            on_delta(i, i, (level,), (), 0.0)
        else:
            on_delta(i, i, (), (level,), 0.0)
    assert sync.is_live
    return (time.perf_counter() - start) / len(stream) * 1e6


def time_dict_sort(levels: int, stream, rng_seed: int) -> float:
    """Baseline: dicts, and sorted() of the touched side after every delta (what naive code does)."""
    _, bids, asks = build(levels, random.Random(rng_seed))
    sides = {"b": dict(bids), "a": dict(asks)}
    start = time.perf_counter()
    for side, (price, size) in stream:
        d = sides[side]
        if size:
            d[price] = size
        else:
            d.pop(price, None)
        sorted(d, reverse=side == "b")[:1]
    return (time.perf_counter() - start) / len(stream) * 1e6


def time_decode(payloads: list[bytes]) -> float:
    start = time.perf_counter()
    for payload in payloads:
        decode_frame(payload)
    return (time.perf_counter() - start) / len(payloads) * 1e6


def time_load(levels: int) -> float:
    _, bids, asks = build(levels, random.Random(1))
    book = OrderBook()
    start = time.perf_counter()
    for _ in range(20):
        book.load(bids, asks, 1)
    return (time.perf_counter() - start) / 20 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rng = random.Random(42)
    results: dict[str, list[float]] = {}
    streams = {levels: deltas(levels, rng) for levels in (1000, 10_000)}
    payloads = frames(streams[1000])
    for _ in range(args.repeats):
        cases = [
            ("decode one-level depth frame (decode_frame)", lambda: time_decode(payloads)),
            *[
                (f"OrderBook.apply, {n:,} levels/side", lambda n=n: time_apply(n, streams[n], 1))
                for n in streams
            ],
            *[
                (f"BookSync.on_delta (live), {n:,} levels/side", lambda n=n: time_sync(n, streams[n], 1))
                for n in streams
            ],
            *[
                (f"dict + sort baseline, {n:,} levels/side", lambda n=n: time_dict_sort(n, streams[n], 1))
                for n in streams
            ],
        ]
        random.shuffle(cases)
        for name, fn in cases:
            results.setdefault(name, []).append(fn())
    decode = statistics.median(results["decode one-level depth frame (decode_frame)"])
    lines = [
        "| case | µs per delta (median) | min | ÷ decode |",
        "|---|---:|---:|---:|",
    ]
    for name, values in results.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.3f} | {min(values):.3f} | {median / decode:.2f} |")
    lines.extend(
        f"| snapshot load, {n:,} levels/side (ms) | {time_load(n):.2f} | | |" for n in (1000, 10_000)
    )
    verdict = all(
        statistics.median(results[f"BookSync.on_delta (live), {n:,} levels/side"]) < decode
        for n in (1000, 10_000)
    )
    lines.append("")
    lines.append(f"Goal 'apply < decode of the same delta': **{'met' if verdict else 'not met'}**.")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(f"## Order-book delta cost ({time.strftime('%Y-%m-%d')})\n\n{text}\n")


if __name__ == "__main__":
    main()
