"""
Sans-IO microbenchmark: what the cyclic garbage collector costs when a whole batch of decoded messages is
kept alive at once (``Router.decode_batch``) instead of being dropped one by one (picows' callback).

    python benchmarks/bench_decode_gc.py [--n 200000] [--batch 300] [--repeats 7]

Every case decodes the same ``mix`` payloads, grouped in batches of ``--batch`` (about what one 64 KiB
socket read holds), in one process that has imported anyio, trio and native_anyio (the size of the heap
sets the price of a full collection). Cases run interleaved within each repeat; the ratio is the median
over repeats of (case CPU time / "decode, drop each" CPU time in the same repeat). The ``collections``
column counts collector passes per 100 k messages (gen0/gen1/gen2), via ``gc.callbacks``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import anyio  # noqa: E402, F401 - a realistic heap
import msgspec  # noqa: E402
from _feed import Envelope, generate_payloads  # noqa: E402

try:
    import trio  # noqa: F401
except ImportError:  # pragma: no cover - trio is optional
    pass

try:
    from native_anyio import Router
except ImportError:
    from native_anyio._router import Router
import native_anyio._session  # noqa: E402, F401


def _untracked_envelope() -> Any:
    """The same structs built with ``gc=False`` (a second copy of ``_feed`` imported with the switch on)."""
    saved = os.environ.get("BENCH_STRUCT_GC")
    os.environ["BENCH_STRUCT_GC"] = "0"
    try:
        spec = importlib.util.spec_from_file_location("_feed_gc_off", os.path.join(HERE, "_feed.py"))
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # msgspec resolves the string annotations through it
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del os.environ["BENCH_STRUCT_GC"]
        else:
            os.environ["BENCH_STRUCT_GC"] = saved
    assert module.STRUCT_GC is False
    return module.Envelope


def _ignore(message: object) -> None:
    pass


def _cases(batches: list[list[bytes]]) -> dict[str, Callable[[], None]]:
    decode = msgspec.json.Decoder(Envelope).decode
    router = Router(Envelope)
    dispatcher = Router(Envelope)
    dispatcher.add_handler(Envelope, _ignore)
    untracked = Router(_untracked_envelope())

    def drop_each() -> None:
        for batch in batches:
            for payload in batch:
                decode(payload)

    def decode_batch() -> None:
        for batch in batches:
            router.decode_batch(batch)

    def decode_each() -> None:
        router_decode = router.decode
        for batch in batches:
            for payload in batch:
                router_decode(payload)

    def dispatch_batch() -> None:
        for batch in batches:
            dispatcher.dispatch_batch(batch)

    def decode_batch_untracked() -> None:
        for batch in batches:
            untracked.decode_batch(batch)

    def decode_batch_gc_disabled() -> None:
        gc.disable()
        try:
            for batch in batches:
                router.decode_batch(batch)
        finally:
            gc.enable()

    return {
        "decode, drop each (what the picows row does)": drop_each,
        "Router.decode_batch": decode_batch,
        "Router.decode per payload (nothing retained)": decode_each,
        "Router.dispatch_batch (no-op handler)": dispatch_batch,
        "Router.decode_batch, structs gc=False": decode_batch_untracked,
        "Router.decode_batch, gc.disable() (floor)": decode_batch_gc_disabled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="GC cost of keeping a decoded batch alive")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    payloads = generate_payloads(args.n)
    batches = [payloads[i : i + args.batch] for i in range(0, args.n, args.batch)]
    cases = _cases(batches)
    passes = [0, 0, 0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes[info["generation"]] += 1

    gc.callbacks.append(on_gc)
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    counts: dict[str, list[int]] = {name: [0, 0, 0] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            gc.collect()
            passes[:] = [0, 0, 0]
            t0 = time.process_time()
            fn()
            cpu[name].append(time.process_time() - t0)
            counts[name] = [c + p for c, p in zip(counts[name], passes, strict=True)]
    gc.callbacks.remove(on_gc)

    base = next(iter(cases))
    print(
        f"{args.n:,} messages in batches of {args.batch}, {args.repeats} interleaved repeats, "
        f"CPython {sys.version.split()[0]}, msgspec {msgspec.__version__}"
    )
    print()
    print("| case | CPU µs/msg median (best) | ratio vs drop-each (min-max) | collections per 100 k msgs |")
    print("|---|---:|---:|---:|")
    for name in cases:
        per_msg = [1e6 * t / args.n for t in cpu[name]]
        ratios = [t / b for t, b in zip(cpu[name], cpu[base], strict=True)]
        scale = 100_000 / (args.n * args.repeats)
        gens = "/".join(f"{c * scale:.0f}" for c in counts[name])
        print(
            f"| {name} | {statistics.median(per_msg):.2f} ({min(per_msg):.2f}) "
            f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | {gens} |"
        )


if __name__ == "__main__":
    main()
