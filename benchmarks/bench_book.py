"""
Order-book cost (issue 6, item 4): µs per applied one-level delta at 1k and 10k levels per side,
snapshot load time and memory per book, for our book, a plain dict + sort baseline and
cryptofeed's ``order_book`` C extension; and the item 7 goal "applying a delta costs less than
decoding it".

    python benchmarks/bench_book.py            # full: 9 repeats, about 1-2 min
    python benchmarks/bench_book.py --quick    # 5 repeats, fewer books: about 20-30 s
    python benchmarks/bench_book.py --quick --out benchmarks/results/book.md \\
        --json-out benchmarks/results/book.json --plot-out benchmarks/results/book.png

Like for like: every implementation applies the same seeded stream of one-level deltas near the
touch (70 % size changes, 15 % deletes, 15 % inserts between two levels) to a book loaded from the
same snapshot, with the same ``Decimal`` objects as keys (cryptofeed keys ``order_book`` by
``Decimal`` too). The rows:

* ``decode_frame``: decoding that delta's wire frame (the reference of the item 7 goal);
* ``OrderBook.apply``: our bare book;
* ``BookSync.on_delta (live)``: our full live path (sequence check, apply, crossed-book check);
* ``order_book set/del``: cryptofeed's update code (``book[side][price] = size``, or ``del`` when
  the size is zero and the level exists). ``order_book`` sorts its keys lazily, on the next read,
  so this row never pays for keeping the book ordered: it is a lower bound;
* ``order_book set/del + best bid/ask``: the same plus reading the best level of both sides
  after every delta, which forces that sort; like for like with our live path, which reads both
  best levels to check for a crossed book;
* ``dict + sort``: what naive code does (two dicts, ``sorted()`` of the touched side per delta).

Every case of a repeat runs in the same process, interleaved in a shuffled order (this machine is
shared and noisy), and is timed in CPU time of the process (``time.process_time``), so that time
given to other processes does not count. A case times a prefix of the stream (or several passes
over it, each on a freshly loaded book, loaded outside the clock) sized by a calibration pass to a
fixed time. The tables show the median and the min over repeats; the goal's ratio is the median
over repeats of (live path ÷ decode in the same repeat).

Snapshot load: building a queryable book from the decoded levels (``order_book`` is asked for its
best levels after the load, so that its lazy sort is included). Memory: ``tracemalloc`` over
several books, each built from freshly parsed ``Decimal`` levels (so a book's own ``Decimal``
objects count, e.g. the negated ask keys of ours), cross-checked by the RSS growth of a child
process that builds many books (which also sees memory a C extension takes from ``malloc``).

``order_book`` is optional: where it is not installed (e.g. no wheel for that Python) its rows
read "n/a (not installed)".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

import native_anyio
from native_anyio import BookSync, OrderBook
from native_anyio.backpack import decode_frame

try:
    import order_book
except ImportError:  # no wheel for this Python: its rows read "n/a (not installed)"
    order_book = None

NA = "n/a (not installed)"
# CPU time of this process: time the scheduler gives to other processes (this machine is shared)
# does not count. Every timed region is milliseconds long, far above its resolution.
clock = time.process_time
LEVELS = (1_000, 10_000)
MID = Decimal(1000)
TICK = Decimal("0.01")
GOAL = "book delta apply < decode cost of that delta"

# name -> (label, needs order_book)
IMPLS: dict[str, tuple[str, bool]] = {
    "apply": ("ours: OrderBook.apply", False),
    "live": ("ours: BookSync.on_delta (live)", False),
    "ob_set": ("order_book set/del (cryptofeed's C ext.)", True),
    "ob_best": ("order_book set/del + best bid/ask", True),
    "dict_sort": ("dict + sort baseline", False),
}
LOADERS: dict[str, tuple[str, bool]] = {
    "ours": ("ours: OrderBook.load", False),
    "order_book": ("order_book (dict assignment + first read)", True),
    "dict": ("plain dicts", False),
}
MEMORY: dict[str, tuple[str, bool]] = {
    "ours": ("ours: OrderBook", False),
    "order_book": ("order_book.OrderBook", True),
    "dict": ("plain dicts", False),
    "floor": ("floor: the level Decimals alone, in one list", False),
}

MODES = {
    # repeats, seconds per timed case, deltas generated, books for tracemalloc, books for the RSS check
    "quick": {"repeats": 5, "case_seconds": 0.2, "deltas": 10_000, "books": {1_000: 8, 10_000: 2},
              "rss_books": {1_000: 40, 10_000: 4}, "load_repeats": 5},
    "full": {"repeats": 9, "case_seconds": 0.4, "deltas": 20_000, "books": {1_000: 30, 10_000: 6},
             "rss_books": {1_000: 200, 10_000: 20}, "load_repeats": 9},
}  # fmt: skip


def log(message: str) -> None:
    print(f"[bench_book] {message}", file=sys.stderr, flush=True)


# -- inputs -------------------------------------------------------------------------------------


def snapshot_strings(levels: int, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Both sides as wire strings, best first: the levels a REST snapshot carries."""
    rng = random.Random(seed)
    bids = [(str(MID - TICK * (i + 1)), str(Decimal(rng.randint(1, 500)) / 10)) for i in range(levels)]
    asks = [(str(MID + TICK * (i + 1)), str(Decimal(rng.randint(1, 500)) / 10)) for i in range(levels)]
    return bids, asks


def parse(side: list[tuple[str, str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(s)) for p, s in side]


def delta_stream(levels: int, n: int, seed: int) -> list[tuple[str, tuple[Decimal, Decimal]]]:
    """One-level deltas near the touch: 70 % size changes, 15 % deletes, 15 % inserts."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        side = rng.choice(("b", "a"))
        depth = min(int(rng.expovariate(0.2)), levels - 1)
        roll = rng.random()
        price = MID + (TICK * (depth + 1) if side == "a" else -TICK * (depth + 1))
        if roll < 0.15:
            price += TICK / 2 if side == "a" else -TICK / 2  # a new level between two existing ones
            size = Decimal(rng.randint(1, 500)) / 10
        elif roll < 0.30:
            size = Decimal(0)
        else:
            size = Decimal(rng.randint(1, 500)) / 10
        out.append((side, (price, size)))
    return out


def frames(stream: list[tuple[str, tuple[Decimal, Decimal]]]) -> list[bytes]:
    """The wire frames of ``stream``, shaped like the recorded realtime depth frames."""
    out = []
    for i, (side, (price, size)) in enumerate(stream):
        level = f'[["{price}","{size}"]]'
        a, b = (level, "[]") if side == "a" else ("[]", level)
        out.append(
            f'{{"data":{{"E":1788367430247494,"T":1788367430246081,"U":{4330360995 + i},"a":{a},"b":{b},'
            f'"e":"depth","s":"SOL_USDC","u":{4330360995 + i}}},"stream":"depth.SOL_USDC"}}'.encode()
        )
    return out


# -- timed cases: each builds its book outside the clock and returns seconds for the stream -------


def run_apply(bids: list, asks: list, stream: list) -> float:
    book = OrderBook()
    book.load(bids, asks, 1)
    apply = book.apply
    start = clock()
    for side, level in stream:
        if side == "b":
            apply((level,), ())
        else:
            apply((), (level,))
    return clock() - start


def run_live(bids: list, asks: list, stream: list) -> float:
    sync = BookSync()
    sync.on_snapshot(1, bids, asks, 0.0)
    sync.on_delta(2, 2, (), (), 0.0)
    on_delta = sync.on_delta
    start = clock()
    for i, (side, level) in enumerate(stream, start=3):
        if side == "b":
            on_delta(i, i, (level,), (), 0.0)
        else:
            on_delta(i, i, (), (level,), 0.0)
    elapsed = clock() - start
    assert sync.is_live, sync
    return elapsed


def _order_book(bids: list, asks: list) -> Any:
    assert order_book is not None
    book = order_book.OrderBook()
    book.bids = dict(bids)
    book.asks = dict(asks)
    book.bids.index(0)  # settle the snapshot's lazy sort outside the clock
    book.asks.index(0)
    return book


def run_ob_set(bids: list, asks: list, stream: list) -> float:
    book = _order_book(bids, asks)
    sides = {"b": book.bids, "a": book.asks}
    start = clock()
    for side, (price, size) in stream:
        d = sides[side]
        if size:
            d[price] = size
        elif price in d:  # cryptofeed's pattern: delete only a level that exists
            del d[price]
    return clock() - start


def run_ob_best(bids: list, asks: list, stream: list) -> float:
    book = _order_book(bids, asks)
    sides = {"b": book.bids, "a": book.asks}
    best_bid = book.bids.index
    best_ask = book.asks.index
    start = clock()
    for side, (price, size) in stream:
        d = sides[side]
        if size:
            d[price] = size
        elif price in d:
            del d[price]
        best_bid(0)
        best_ask(0)
    return clock() - start


def run_dict_sort(bids: list, asks: list, stream: list) -> float:
    sides = {"b": dict(bids), "a": dict(asks)}
    start = clock()
    for side, (price, size) in stream:
        d = sides[side]
        if size:
            d[price] = size
        else:
            d.pop(price, None)
        sorted(d, reverse=side == "b")[:1]
    return clock() - start


RUNNERS = {
    "apply": run_apply,
    "live": run_live,
    "ob_set": run_ob_set,
    "ob_best": run_ob_best,
    "dict_sort": run_dict_sort,
}


def run_decode(payloads: list[bytes]) -> float:
    decode = decode_frame
    start = clock()
    for payload in payloads:
        decode(payload)
    return clock() - start


# -- snapshot load ----------------------------------------------------------------------------------


def load_ours(bids: list, asks: list) -> object:
    book = OrderBook()
    book.load(bids, asks, 1)
    return book


def load_dict(bids: list, asks: list) -> object:
    return dict(bids), dict(asks)


LOAD_FUNCS = {"ours": load_ours, "order_book": _order_book, "dict": load_dict}


def time_load(fn: Any, bids: list, asks: list, repeats: int, seconds: float) -> list[float]:
    """Milliseconds per load, one value per repeat (each repeat loops ``number`` loads)."""
    number = 1
    while True:
        start = clock()
        for _ in range(number):
            fn(bids, asks)
        elapsed = clock() - start
        if elapsed >= seconds / 4 or number >= 10_000:
            break
        number *= 2
    out = []
    for _ in range(repeats):
        start = clock()
        for _ in range(number):
            fn(bids, asks)
        out.append((clock() - start) / number * 1e3)
    return out


# -- memory -----------------------------------------------------------------------------------------


def build_for_memory(kind: str, bid_strs: list, ask_strs: list) -> object:
    """One book built from freshly parsed levels, so that its own Decimal objects are counted."""
    bids, asks = parse(bid_strs), parse(ask_strs)
    if kind == "floor":  # what any book must hold: two Decimals per level
        return [x for side in (bids, asks) for level in side for x in level]
    return LOAD_FUNCS[kind](bids, asks)


def memory_tracemalloc(kind: str, levels: int, books: int) -> float:
    """Bytes per book (tracemalloc: every allocation through Python's allocators)."""
    bid_strs, ask_strs = snapshot_strings(levels, 7)
    kept: list[object] = [None] * books
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(books):
            kept[i] = build_for_memory(kind, bid_strs, ask_strs)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / books


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(kind: str, levels: int, books: int) -> None:
    """Child process: print the RSS growth per book while building ``books`` books."""
    bid_strs, ask_strs = snapshot_strings(levels, 7)
    build_for_memory(kind, bid_strs[:10], ask_strs[:10])  # warm up lazy imports and caches
    gc.collect()
    before = _rss_bytes()
    kept = [build_for_memory(kind, bid_strs, ask_strs) for _ in range(books)]
    gc.collect()
    after = _rss_bytes()
    print(json.dumps({"bytes_per_book": (after - before) / len(kept)}))


def memory_rss(kind: str, levels: int, books: int) -> float | None:
    if not Path("/proc/self/statm").exists():
        return None
    cmd = [sys.executable, __file__, "--rss-child", kind, str(levels), str(books)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"RSS child for {kind} at {levels} levels failed: {exc}")
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["bytes_per_book"])


# -- reporting --------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(mode: str) -> dict[str, Any]:
    commit = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "mode": mode,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "packages": {
            "native-anyio": native_anyio.__version__ + (f" (git {commit})" if commit else ""),
            "msgspec": msgspec.__version__,
            "order-book": _version("order-book") if order_book is not None else NA,
        },
    }


def _fmt_us(values: list[float] | None) -> str:
    if not values:
        return NA
    return f"{statistics.median(values):.3f} ({min(values):.3f})"


def _fmt_ratio(values: list[float] | None, decode: float) -> str:
    return f"{statistics.median(values) / decode:.2f}" if values else "-"


def _fmt_kib(value: float | None, levels: int) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:,.0f} KiB ({value / (2 * levels):.0f} B/level)"


def markdown(env: dict[str, Any], res: dict[str, Any]) -> str:
    pk = env["packages"]
    load = env["load_average"]
    lines = [
        f"## Order-book cost ({env['date']}, {env['mode']} mode)",
        "",
        f"{env['python']} on {env['platform']}, {env['cpus']} CPUs; native-anyio {pk['native-anyio']}, "
        f"msgspec {pk['msgspec']}, order-book {pk['order-book']}. Load average at start: "
        f"{', '.join(map(str, load)) if load else 'n/a'} (a shared machine: figures are noisy; the min "
        "column is the least disturbed repeat).",
        "",
        f"### CPU µs per applied one-level delta ({res['repeats']} interleaved repeats: median (min))",
        "",
        "| implementation | 1,000 levels/side | ÷ decode | 10,000 levels/side | ÷ decode | deltas timed per repeat |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    decode = res["decode_us"]
    dec_median = statistics.median(decode)
    lines.append(
        f"| decode the delta's wire frame (`decode_frame`, reference) | {_fmt_us(decode)} | 1.00 "
        f"| {_fmt_us(decode)} | 1.00 | {res['decode_n']:,} |"
    )
    for key, (label, _) in IMPLS.items():
        cells = []
        counts = []
        for levels in LEVELS:
            values = res["delta_us"][key].get(str(levels))
            cells += [_fmt_us(values), _fmt_ratio(values, dec_median)]
            counts.append(f"{res['delta_n'][key][str(levels)]:,}" if values else "-")
        bold = "**" if key == "live" else ""
        lines.append(f"| {bold}{label}{bold} | {' | '.join(cells)} | {' / '.join(counts)} |")
    lines += [
        "",
        f"### Snapshot load (CPU ms per book, both sides; {res['load_repeats']} repeats: median (min))",
        "",
        "| implementation | 1,000 levels/side | 10,000 levels/side |",
        "|---|---:|---:|",
    ]
    for key, (label, _) in LOADERS.items():
        cells = [_fmt_us(res["load_ms"][key].get(str(levels))) for levels in LEVELS]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += [
        "",
        "### Memory per book (both sides, including the book's own `Decimal` objects)",
        "",
        "| implementation | 1,000 levels/side: tracemalloc | RSS growth | 10,000 levels/side: tracemalloc | RSS growth |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, (label, needs_ob) in MEMORY.items():
        if needs_ob and order_book is None:
            lines.append(f"| {label} | {NA} | {NA} | {NA} | {NA} |")
            continue
        cells = []
        for levels in LEVELS:
            mem = res["memory"][key][str(levels)]
            cells += [_fmt_kib(mem["tracemalloc"], levels), _fmt_kib(mem["rss"], levels)]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += [
        "",
        "Books per measurement (1,000 / 10,000 levels/side): tracemalloc "
        f"{' / '.join(str(res['books'][str(n)]) for n in LEVELS)}, RSS growth of a child process "
        f"{' / '.join(str(res['rss_books'][str(n)]) for n in LEVELS)}.",
        "",
        "### Goal (issue item 7): " + GOAL,
        "",
        "| levels/side | live path µs (median) | bare apply µs | decode µs | live ÷ decode (median of per-repeat "
        "ratios, min-max) | verdict |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for goal in res["goals"]:
        low, high = goal["ratio_range"]
        lines.append(
            f"| {goal['levels']:,} | {goal['live_us']:.3f} | {goal['apply_us']:.3f} | {goal['decode_us']:.3f} "
            f"| {goal['ratio']:.2f} ({low:.2f}-{high:.2f}) | **{goal['verdict']}** |"
        )
    return "\n".join(lines) + "\n"


def _grouped_bars(ax: Any, series: list[tuple[str, list[float | None], list[str] | None]]) -> None:
    """One group of bars per book size, one bar per series; a missing value is marked "n/a"."""
    width = 0.8 / len(series)
    for i, (label, values, notes) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(LEVELS))]
        missing = all(v is None for v in values)
        bars = ax.bar(xs, [v or 0.0 for v in values], width, label=label + (f" ({NA})" if missing else ""),
                      color="0.6" if label.startswith("floor") else None)  # fmt: skip
        for x, bar, value, note in zip(xs, bars, values, notes or [None] * len(values), strict=True):
            if value is None:
                ax.annotate("n/a", (x, 0.01), xycoords=("data", "axes fraction"), ha="center", fontsize=7)
            elif note:
                ax.annotate(note, (x, bar.get_height()), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(LEVELS)), [f"{n:,} levels/side" for n in LEVELS])


def plot(res: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def med(values: list[float] | None) -> float | None:
        return statistics.median(values) if values else None

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.5))
    _grouped_bars(ax1, [
        (label, [med(res["delta_us"][key].get(str(n))) for n in LEVELS], None) for key, (label, _) in IMPLS.items()
    ])  # fmt: skip
    ax1.axhline(
        statistics.median(res["decode_us"]), color="black", linestyle="--", label="decode_frame (goal line)"
    )
    ax1.set_yscale("log")
    ax1.set_ylabel("CPU µs per applied delta (median, log scale)")
    ax1.set_title("Delta apply cost")
    ax1.legend(fontsize=7)

    _grouped_bars(ax2, [
        (label, [med(res["load_ms"][key].get(str(n))) for n in LEVELS], None) for key, (label, _) in LOADERS.items()
    ])  # fmt: skip
    ax2.set_yscale("log")
    ax2.set_ylabel("CPU ms per snapshot load (median, log scale)")
    ax2.set_title("Snapshot load")
    ax2.legend(fontsize=7, loc="upper left")

    series: list[tuple[str, list[float | None], list[str] | None]] = []
    for key, (label, _) in MEMORY.items():
        mems = [res["memory"][key][str(n)]["tracemalloc"] for n in LEVELS]
        per_level = [None if m is None else m / (2 * n) for m, n in zip(mems, LEVELS, strict=True)]
        series.append((label, per_level, [f"{m / 2**20:.2f} MiB" if m else "" for m in mems]))
    _grouped_bars(ax3, series)
    top = max(v for _, values, _ in series for v in values if v is not None)
    ax3.set_ylim(0, top * 1.5)  # room for the legend above the bars
    ax3.set_ylabel("bytes per level (tracemalloc; label: MiB per book)")
    ax3.set_title("Memory per book")
    ax3.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main -------------------------------------------------------------------------------------------


def measure(mode: str, repeats: int, seed: int) -> dict[str, Any]:
    cfg = MODES[mode]
    rng = random.Random(seed)
    snapshots = {}
    streams = {}
    for levels in LEVELS:
        bid_strs, ask_strs = snapshot_strings(levels, rng.randrange(2**32))
        snapshots[levels] = (parse(bid_strs), parse(ask_strs))
        streams[levels] = delta_stream(levels, cfg["deltas"], rng.randrange(2**32))
    payloads = frames(streams[LEVELS[0]])
    available = {k for k, (_, needs_ob) in IMPLS.items() if order_book is not None or not needs_ob}

    # Calibration (also the warm-up): time 500 deltas, then size each case to ``case_seconds``:
    # a prefix of the stream for the slow cases, several passes (each on a freshly loaded book,
    # outside the clock) for the fast ones.
    target = cfg["case_seconds"]
    plans: dict[tuple[str, int], tuple[int, int]] = {}  # (deltas per pass, passes)
    for key in IMPLS:
        if key not in available:
            continue
        for levels in LEVELS:
            bids, asks = snapshots[levels]
            probe = streams[levels][:500]
            per_delta = RUNNERS[key](bids, asks, probe) / len(probe)
            wanted = max(500, int(target / per_delta))
            n = min(len(streams[levels]), wanted)
            plans[key, levels] = (n, max(1, round(wanted / n)))
            log(f"calibrated {key} @ {levels:,}: {per_delta * 1e6:.2f} µs/delta -> "
                f"{n:,} deltas x {plans[key, levels][1]} passes")  # fmt: skip
    per_decode = run_decode(payloads[:2000]) / 2000
    decode_passes = max(1, round(target / per_decode / len(payloads)))

    delta_us: dict[str, dict[str, list[float]]] = {key: {} for key in IMPLS}
    decode_us: list[float] = []
    for repeat in range(repeats):
        cases: list[tuple[str, int]] = [("decode", 0), *plans]
        random.shuffle(cases)
        t0 = time.perf_counter()
        for key, levels in cases:
            if key == "decode":
                elapsed = sum(run_decode(payloads) for _ in range(decode_passes))
                decode_us.append(elapsed / (decode_passes * len(payloads)) * 1e6)
                continue
            n, passes = plans[key, levels]
            bids, asks = snapshots[levels]
            stream = streams[levels][:n]
            elapsed = sum(RUNNERS[key](bids, asks, stream) for _ in range(passes))
            delta_us[key].setdefault(str(levels), []).append(elapsed / (n * passes) * 1e6)
        log(f"delta repeat {repeat + 1}/{repeats} done in {time.perf_counter() - t0:.1f} s")

    load_ms: dict[str, dict[str, list[float]]] = {key: {} for key in LOADERS}
    for key, (_, needs_ob) in LOADERS.items():
        if needs_ob and order_book is None:
            continue
        for levels in LEVELS:
            bids, asks = snapshots[levels]
            load_ms[key][str(levels)] = time_load(LOAD_FUNCS[key], bids, asks, cfg["load_repeats"], target)
    log("snapshot loads done")

    memory: dict[str, dict[str, dict[str, float | None]]] = {key: {} for key in MEMORY}
    for key, (_, needs_ob) in MEMORY.items():
        for levels in LEVELS:
            if needs_ob and order_book is None:
                memory[key][str(levels)] = {"tracemalloc": None, "rss": None}
                continue
            traced = memory_tracemalloc(key, levels, cfg["books"][levels])
            rss = memory_rss(key, levels, cfg["rss_books"][levels])
            memory[key][str(levels)] = {"tracemalloc": traced, "rss": rss}
            log(f"memory {key} @ {levels:,}: {traced / 1024:,.0f} KiB traced, "
                f"{'n/a' if rss is None else f'{rss / 1024:,.0f} KiB'} RSS per book")  # fmt: skip

    decode_median = statistics.median(decode_us)
    goals = []
    for levels in LEVELS:
        lives = delta_us["live"][str(levels)]
        # Paired: live and decode ran in the same repeat, so a slow moment weighs on both.
        ratios = [live / dec for live, dec in zip(lives, decode_us, strict=True)]
        ratio = statistics.median(ratios)
        goals.append({
            "goal": GOAL, "levels": levels, "live_us": statistics.median(lives),
            "apply_us": statistics.median(delta_us["apply"][str(levels)]), "decode_us": decode_median,
            "ratio": ratio, "ratio_range": [min(ratios), max(ratios)],
            "verdict": "met" if ratio < 1.0 else "not met",
        })  # fmt: skip
    return {
        "repeats": repeats,
        "decode_us": decode_us,
        "decode_n": decode_passes * len(payloads),
        "delta_us": delta_us,
        "delta_n": {key: {str(lv): _timed(plans.get((key, lv))) for lv in LEVELS} for key in IMPLS},
        "load_ms": load_ms,
        "load_repeats": cfg["load_repeats"],
        "memory": memory,
        "books": {str(k): v for k, v in cfg["books"].items()},
        "rss_books": {str(k): v for k, v in cfg["rss_books"].items()},
        "goals": goals,
    }


def _timed(plan: tuple[int, int] | None) -> int:
    return 0 if plan is None else plan[0] * plan[1]


def to_json(env: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    def summary(values: list[float] | None) -> dict[str, Any] | None:
        if not values:
            return None
        return {"median": statistics.median(values), "min": min(values), "values": values}

    return {
        "benchmark": "bench_book",
        "environment": env,
        "order_book_available": order_book is not None,
        "decode_us_per_delta": summary(res["decode_us"]),
        "delta_us": [
            {"impl": key, "label": label, "levels": levels, "deltas_timed": res["delta_n"][key][str(levels)],
             "us_per_delta": summary(res["delta_us"][key].get(str(levels))),
             "status": "ok" if res["delta_us"][key].get(str(levels)) else NA}
            for key, (label, _) in IMPLS.items() for levels in LEVELS
        ],
        "snapshot_load_ms": [
            {"impl": key, "label": label, "levels": levels, "ms": summary(res["load_ms"][key].get(str(levels)))}
            for key, (label, _) in LOADERS.items() for levels in LEVELS
        ],
        "memory_bytes_per_book": [
            {"impl": key, "label": label, "levels": levels, **res["memory"][key][str(levels)]}
            for key, (label, _) in MEMORY.items() for levels in LEVELS
        ],
        "goals": res["goals"],
    }  # fmt: skip


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description="Order-book cost: delta apply, snapshot load, memory.")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and books (about 20-30 s)")
    parser.add_argument("--repeats", type=int, default=None, help="override the mode's repeat count")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="write the Markdown tables here")
    parser.add_argument("--json-out", default=None, help="write machine-readable results here")
    parser.add_argument("--plot-out", default=None, help="write a PNG plot here (needs matplotlib)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    repeats = args.repeats or MODES[mode]["repeats"]
    if order_book is None:
        log("order_book is not installed: its rows read 'n/a (not installed)'")
    env = environment(mode)
    started = time.perf_counter()
    res = measure(mode, repeats, args.seed)
    env["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = markdown(env, res)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(to_json(env, res), indent=2) + "\n")
    if args.plot_out:
        plot(res, args.plot_out)
    log(f"done in {env['wall_seconds']} s")


if __name__ == "__main__":
    main()
