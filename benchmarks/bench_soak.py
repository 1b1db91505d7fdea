"""
Soak: the full Backpack pipeline for minutes, with a forced reconnect every 30 s, watching memory,
file descriptors, tasks and book consistency.

    python benchmarks/bench_soak.py --minutes 10   # the full soak (>= 1 M messages, ~11 min)
    python benchmarks/bench_soak.py --quick        # 60 s, indicative only (~1.5 min)

Setup: the embedded Backpack simulator (``_paced_server.py backpack``: websocket + REST with
ground-truth books) runs in its own process pinned to CPU 1, publishing ``--update-rate`` book updates
per second on each of 5 symbols (400/s: about 2,400 frames/s with the trades), and forces a disconnect
of every connection every 30 s from 15 s on (alternately a close frame 1001 and a TCP drop). The client, a separate
process pinned to CPU 0, runs ``open_backpack(symbols=5, channels=["trades", "book"])`` and consumes
``async for event in client``.

The client samples, every second: RSS (``/proc/self/statm``), open fds (``/proc/self/fd``), tasks
(asyncio's ``all_tasks()`` or trio's task tree), frames, events, reconnects and book states; every 10 s
also the number of GC-tracked objects and the levels held in the books. Correctness checks run on every
event: each ``BookDelta`` must continue its book (``first_sequence == previous sequence + 1``, or
straddle the snapshot right after a ``BookSnapshot``); a mirror book built from the events must equal
``client.book(symbol)``'s top 10 levels every second; no book may be crossed or ``failed``; after every
forced disconnect all 5 books must be live again and trades must keep flowing. With
``--verify-interval`` (default 10 s in full runs) the client also compares each live book with a REST
snapshot of the simulator's ground truth (``open_backpack(verify_interval=...)``).

Growth: the least-squares slope of RSS after the warm-up (the first 2 minutes, or the first 20 % of a
shorter run), in MiB per 10 minutes (goal: < 1). ``--tracemalloc`` adds the top allocation growth
between the end of the warm-up and the end (it slows the client and adds its own memory, so it is off
by default). Results: ``--out`` (Markdown), ``--json-out`` (with goal verdicts), ``--plot-out`` (PNG).

Everything is on 127.0.0.1; every wait is bounded, and both child processes are killed on every exit
path.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _paced_server import SOAK_SYMBOLS  # noqa: E402

MIB = 1 << 20
GOAL_MIB_PER_10_MIN = 1.0
GOAL_MESSAGES = 1_000_000
GOAL_RATE = 1_700.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# =========================================================================== the client process


def _pin(cpu: int) -> None:
    try:
        if len(os.sched_getaffinity(0)) >= 2:
            os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    """Tasks alive in this event loop (asyncio or trio)."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        count = 0
        stack = [trio.lowlevel.current_root_task()]
        while stack:  # bounded: a finite task tree
            task = stack.pop()
            count += 1
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return count
    import asyncio

    return len(asyncio.all_tasks())


class Checks:
    """Per-event bookkeeping and consistency checks (cheap: a few dict operations per event)."""

    def __init__(self, symbols: list[str]) -> None:
        from native_anyio.backpack import BookDelta, BookSnapshot, BookStatus, Trade

        self._types = (BookDelta, Trade, BookSnapshot, BookStatus)
        self.symbols = symbols
        self.events = 0
        self.trades = 0
        self.deltas = 0
        self.snapshots = 0
        self.statuses = 0
        self.sequence_errors: list[str] = []
        self.failed: list[str] = []
        self.next_id: dict[str, int] = {}
        self.after_snapshot: set[str] = set()
        self.mirror: dict[str, tuple[dict[Any, Any], dict[Any, Any]]] = {}
        self.not_live: set[str] = set(symbols)  # books start syncing
        self.episode_start: float | None = time.monotonic()
        self.episode_reason = "initial sync"
        self.episodes: list[dict[str, Any]] = []  # one per "some book left live .. all books live"
        self.trades_in_episode = 0
        self.transitions = 0

    def on_event(self, event: Any, now: float) -> None:
        BookDelta, Trade, BookSnapshot, BookStatus = self._types
        self.events += 1
        kind = type(event)
        if kind is BookDelta:
            self._on_delta(event)
        elif kind is Trade:
            self.trades += 1
            if self.episode_start is not None:
                self.trades_in_episode += 1
        elif kind is BookSnapshot:
            self.snapshots += 1
            symbol = event.symbol
            self.next_id[symbol] = event.sequence + 1
            self.after_snapshot.add(symbol)
            self.mirror[symbol] = (dict(event.bids), dict(event.asks))
        elif kind is BookStatus:
            self._on_status(event, now)

    def _on_delta(self, event: Any) -> None:
        self.deltas += 1
        symbol = event.symbol
        expected = self.next_id.get(symbol)
        first = event.first_sequence
        if expected is None:
            self._sequence_error(f"{symbol}: delta {first}..{event.sequence} with no snapshot before it")
        elif symbol in self.after_snapshot:
            self.after_snapshot.discard(symbol)
            if not first <= expected <= event.sequence:
                self._sequence_error(
                    f"{symbol}: delta {first}..{event.sequence} after snapshot {expected - 1}"
                )
        elif first != expected:
            self._sequence_error(f"{symbol}: delta {first}..{event.sequence}, expected {expected}")
        self.next_id[symbol] = event.sequence + 1
        mirror = self.mirror.get(symbol)
        if mirror is not None:
            for side, levels in ((mirror[0], event.bids), (mirror[1], event.asks)):
                for price, size in levels:
                    if size:
                        side[price] = size
                    else:
                        side.pop(price, None)

    def _sequence_error(self, text: str) -> None:
        if len(self.sequence_errors) < 100:  # keep the first ones; the count is what matters
            self.sequence_errors.append(text)
        else:
            self.sequence_errors[-1] = f"... and more ({text})"

    def _on_status(self, event: Any, now: float) -> None:
        self.statuses += 1
        symbol = event.symbol
        if event.state == "live":
            self.not_live.discard(symbol)
            if not self.not_live and self.episode_start is not None:
                self.episodes.append(
                    {
                        "start": self.episode_start,
                        "seconds": now - self.episode_start,
                        "reason": self.episode_reason,
                        "trades_meanwhile": self.trades_in_episode,
                    }
                )
                self.episode_start = None
            return
        if event.state == "failed" and len(self.failed) < 100:
            self.failed.append(f"{symbol}: {event.reason}")
        self.next_id.pop(symbol, None)
        self.after_snapshot.discard(symbol)
        self.mirror.pop(symbol, None)
        if self.episode_start is None:
            self.episode_start, self.episode_reason, self.trades_in_episode = now, event.reason, 0
        self.not_live.add(symbol)

    def compare_books(self, client: Any, depth: int = 10) -> tuple[int, int, int]:
        """(books compared, mirror mismatches, crossed books) for the live books right now."""
        compared = mismatches = crossed = 0
        for symbol in self.symbols:
            book = client.book(symbol)
            mirror = self.mirror.get(symbol)
            if book is None or mirror is None or symbol in self.not_live:
                continue
            compared += 1
            bids, asks = book.bids(depth), book.asks(depth)
            if bids and asks and bids[0][0] >= asks[0][0]:
                crossed += 1
            mine_bids = sorted(mirror[0].items(), reverse=True)[:depth]
            mine_asks = sorted(mirror[1].items())[:depth]
            if [tuple(x) for x in bids] != mine_bids or [tuple(x) for x in asks] != mine_asks:
                mismatches += 1
        return compared, mismatches, crossed


async def _sampler(
    client: Any, checks: Checks, out: Any, t0: float, opts: dict[str, Any], acc: dict[str, Any]
) -> None:
    import anyio

    tracer = None
    if opts["tracemalloc"]:
        import tracemalloc

        tracer = tracemalloc
    for second in range(1, 1 << 30):  # bounded by the caller's deadline
        due = acc["anyio_t0"] + second
        await anyio.sleep_until(due)
        lag = anyio.current_time() - due  # how late the loop woke us: stalls or CPU starvation
        now = time.monotonic()
        stats = client.statistics()
        session = client.session.statistics()
        compared, mismatches, crossed = checks.compare_books(client)
        acc["compared"] += compared
        acc["mismatches"] += mismatches
        acc["crossed"] += crossed
        sample: dict[str, Any] = {
            "t": now - t0, "lag": lag, "rss": rss_bytes(), "fds": open_fds(), "tasks": task_count(),
            "frames": stats.frames, "events": checks.events, "trades": checks.trades,
            "reconnects": session.reconnects, "connects": session.connects, "queue": session.queue_depth,
            "live": sum(1 for _, state in stats.books if state == "live"),
            "failed": sum(1 for _, state in stats.books if state == "failed"),
        }  # fmt: skip
        if second % 10 == 0:
            sample["gc_objects"] = len(gc.get_objects())
            sample["book_levels"] = sum(
                len(b.bids()) + len(b.asks())
                for b in (client.book(s) for s in checks.symbols)
                if b is not None
            )
            if tracer is not None:
                sample["traced"] = tracer.get_traced_memory()[0]
        if tracer is not None and acc.get("trace_start") is None and now - t0 >= opts["warmup"]:
            acc["trace_start"] = tracer.take_snapshot()
        out.write(json.dumps(sample) + "\n")
        out.flush()
        if second % 10 == 0:
            log(
                f"  soak {now - t0:5.0f} s: {stats.frames:,} frames, RSS {sample['rss'] / MIB:.1f} MiB, "
                f"fds {sample['fds']}, tasks {sample['tasks']}, reconnects {session.reconnects}, "
                f"books live {sample['live']}/{len(checks.symbols)}"
            )


async def _client_main(opts: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from native_anyio.backpack import BackpackConfig, normalize_symbol, open_backpack

    t0 = time.monotonic()
    checks = Checks([normalize_symbol(s) for s in opts["symbols"]])
    acc: dict[str, Any] = {"compared": 0, "mismatches": 0, "crossed": 0, "anyio_t0": anyio.current_time()}
    config = BackpackConfig(ws_url=opts["ws_url"], rest_url=opts["rest_url"])
    verify = opts["verify_interval"] or None
    out = opts["out"]  # opened by client_main (no blocking open() inside the event loop)
    out.write(json.dumps({"t0": t0}) + "\n")
    async with open_backpack(
        config, symbols=opts["symbols"], channels=["trades", "book"], verify_interval=verify
    ) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_sampler, client, checks, out, t0, opts, acc)
            with anyio.move_on_after(opts["seconds"]):
                async for event in client:
                    checks.on_event(event, time.monotonic())
            tg.cancel_scope.cancel()
        stats = client.statistics()
        session = client.session.statistics()
    result: dict[str, Any] = {
        "frames": stats.frames, "events": checks.events, "trades": checks.trades, "deltas": checks.deltas,
        "snapshots": checks.snapshots, "statuses": checks.statuses, "decode_errors": stats.decode_errors,
        "duplicate_trades": stats.duplicate_trades, "snapshots_requested": stats.snapshots_requested,
        "snapshot_failures": stats.snapshot_failures, "verifications": stats.verifications,
        "verification_mismatches": stats.verification_mismatches, "books_at_end": list(stats.books),
        "book_resyncs": sum(b.resyncs for _, b in stats.book_statistics),
        "book_gaps": sum(b.gaps for _, b in stats.book_statistics),
        "reconnects": session.reconnects, "connects": session.connects,
        "slow_consumer_disconnects": session.slow_consumer_disconnects,
        "sequence_errors": len(checks.sequence_errors), "sequence_error_examples": checks.sequence_errors[:10],
        "failed": checks.failed, "episodes": checks.episodes,
        "open_episode": None if checks.episode_start is None else checks.episode_reason,
        "books_compared": acc["compared"], "mirror_mismatches": acc["mismatches"], "crossed": acc["crossed"],
    }  # fmt: skip
    if opts["tracemalloc"]:
        import tracemalloc

        end = tracemalloc.take_snapshot()
        start = acc.get("trace_start")
        if start is not None:
            filters = [
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen*>"),
            ]
            diffs = end.filter_traces(filters).compare_to(start.filter_traces(filters), "lineno")
            result["tracemalloc_top"] = [
                {
                    "where": str(d.traceback),
                    "size_diff": d.size_diff,
                    "count_diff": d.count_diff,
                    "size": d.size,
                }
                for d in diffs[:15]
            ]
    return result


def client_main(opts: dict[str, Any]) -> None:
    import anyio

    _pin(0)
    sys.path.insert(0, ROOT)
    if opts["tracemalloc"]:
        import tracemalloc

        tracemalloc.start(1)
    with open(opts["samples"], "w", encoding="utf-8") as out:
        result = anyio.run(_client_main, dict(opts, out=out), backend=opts["backend"])
    with open(opts["result"], "w", encoding="utf-8") as f:
        json.dump(result, f)


# =========================================================================== the runner


class Child:
    """A child process whose stdout lines are read by a thread into a queue."""

    def __init__(self, argv: list[str], *, stdin: bool) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends at EOF, when the process exits
            self.lines.put(line.rstrip("\n"))

    def readline(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()  # the server exits at stdin EOF
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def least_squares(xs: list[float], ys: list[float]) -> float:
    """Slope of the least-squares line through the points (0 with fewer than two)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def _median_quarter(samples: list[dict[str, Any]], key: str, quarter: int) -> float:
    """Median of ``key`` over one quarter (0..3) of the samples: transient peaks (a resync's REST
    connections and fetch tasks) do not count, a steady climb does."""
    n = len(samples)
    part = samples[n * quarter // 4 : n * (quarter + 1) // 4] or samples[-1:]
    return statistics.median(s[key] for s in part) if part else 0.0


def analyse(samples: list[dict[str, Any]], result: dict[str, Any], faults: list[tuple[float, str]],
            seconds: float, warmup: float, full: bool, period: float) -> dict[str, Any]:  # fmt: skip
    after = [s for s in samples if s["t"] >= warmup]
    before = [s for s in samples if s["t"] < warmup]
    slope = least_squares([s["t"] for s in after], [s["rss"] for s in after])  # bytes per second
    growth_10 = slope * 600 / MIB
    elapsed = samples[-1]["t"] if samples else 0.0
    frames = result["frames"]
    rate = frames / elapsed if elapsed else 0.0
    # Disconnects at 15, 45, 75 ... s: those more than 5 s before the end must have been resynced.
    expected_faults = max(0, int((seconds - 5 - period / 2) // period) + 1)
    disconnect_episodes = [
        e for e in result["episodes"] if "disconnect" in e["reason"] or "connected" in e["reason"]
    ]
    resync_seconds = [e["seconds"] for e in disconnect_episodes]
    settled = [f for f in faults if f[0] < elapsed - 5]  # disconnects with time to resync before the end
    # A window counts as silent only if it spans most of a second (a late sample can follow at once).
    silent = sum(
        1 for a, b in itertools.pairwise(samples) if b["events"] == a["events"] and b["t"] - a["t"] > 0.9
    )
    fds_after = [s["fds"] for s in after] or [0]
    fds_before_max = max((s["fds"] for s in before), default=0)
    tasks_after = [s["tasks"] for s in after] or [0]
    half = [s for s in samples if s["t"] >= elapsed / 2]
    lags = [s.get("lag", 0.0) for s in samples]
    summary = {
        "seconds": elapsed,
        "warmup_s": warmup,
        "frames": frames,
        "msgs_per_s": rate,
        "rss_start_mib": samples[0]["rss"] / MIB if samples else None,
        "rss_at_warmup_mib": after[0]["rss"] / MIB if after else None,
        "rss_end_mib": samples[-1]["rss"] / MIB if samples else None,
        "rss_max_mib": max(s["rss"] for s in samples) / MIB if samples else None,
        "rss_growth_mib_per_10min": growth_10,
        "rss_growth_after_warmup_mib": (after[-1]["rss"] - after[0]["rss"]) / MIB if after else None,
        "rss_growth_second_half_mib_per_10min": least_squares([s["t"] for s in half], [s["rss"] for s in half]) * 600 / MIB,
        "sampler_lag_max_s": max(lags, default=0.0),
        "sampler_lag_over_100ms": sum(1 for x in lags if x > 0.1),
        "fds_before_warmup_max": fds_before_max,
        "fds_at_warmup": fds_after[0], "fds_max_after_warmup": max(fds_after), "fds_end": fds_after[-1],
        "tasks_before_warmup_max": max((s["tasks"] for s in before), default=0),
        "tasks_at_warmup": tasks_after[0], "tasks_max_after_warmup": max(tasks_after), "tasks_end": tasks_after[-1],
        "forced_disconnects": len(faults), "expected_disconnects": expected_faults,
        "resync_episodes_after_disconnect": len(disconnect_episodes),
        "resync_seconds_max": max(resync_seconds, default=None),
        "resync_seconds_median": statistics.median(resync_seconds) if resync_seconds else None,
        "initial_sync_seconds": next((e["seconds"] for e in result["episodes"] if e["reason"] == "initial sync"), None),
        "other_episodes": [
            e for e in result["episodes"] if e not in disconnect_episodes and e["reason"] != "initial sync"
        ],
        "seconds_without_events": silent,
        "gc_objects": [(s["t"], s["gc_objects"]) for s in samples if "gc_objects" in s],
        "book_levels": [(s["t"], s["book_levels"]) for s in samples if "book_levels" in s],
    }  # fmt: skip
    all_live_end = all(state == "live" for _, state in result["books_at_end"])
    goals = [
        ("RSS growth after warm-up, MiB per 10 min", f"< {GOAL_MIB_PER_10_MIN:g}", f"{growth_10:.2f}",
         growth_10 < GOAL_MIB_PER_10_MIN),
        ("messages in the run", f">= {GOAL_MESSAGES:,}" if full else "(full run only)", f"{frames:,}",
         frames >= GOAL_MESSAGES if full else None),
        ("messages per second", f">= {GOAL_RATE:,.0f}", f"{rate:,.0f}", rate >= GOAL_RATE),
        (f"forced disconnects (every {period:g} s)", f">= {expected_faults}", str(len(faults)), len(faults) >= expected_faults),
        ("client reconnects", f">= {len(faults)} (one per forced disconnect)", str(result["reconnects"]),
         result["reconnects"] >= len(faults)),
        ("all 5 books live again after each disconnect", f">= {len(settled)} resyncs",
         f"{len(disconnect_episodes)} (max {max(resync_seconds, default=0):.2f} s)",
         len(disconnect_episodes) >= len(settled)),
        ("all books live at the end", "yes", "yes" if all_live_end else str(result["books_at_end"]), all_live_end),
        ("book `failed` state", "never", str(len(result["failed"])), not result["failed"]),
        ("delta sequence breaks seen by the consumer", "0", str(result["sequence_errors"]), result["sequence_errors"] == 0),
        ("mirror book ≠ client book (top 10, every second)", "0", f"{result['mirror_mismatches']} of {result['books_compared']}",
         result["mirror_mismatches"] == 0 and result["books_compared"] > 0),
        ("crossed books", "0", str(result["crossed"]), result["crossed"] == 0),
        ("verifications against the simulator's REST truth", "0 mismatches",
         f"{result['verification_mismatches']} of {result['verifications']}", result["verification_mismatches"] == 0),
        ("seconds without any event", "0", str(silent), silent == 0),
        ("open fds: median of the last quarter <= median of the first quarter after warm-up",
         f"<= {_median_quarter(after, 'fds', 0):g}", f"{_median_quarter(after, 'fds', 3):g}",
         _median_quarter(after, "fds", 3) <= _median_quarter(after, "fds", 0)),
        ("tasks: median of the last quarter <= median of the first quarter after warm-up",
         f"<= {_median_quarter(after, 'tasks', 0):g}", f"{_median_quarter(after, 'tasks', 3):g}",
         _median_quarter(after, "tasks", 3) <= _median_quarter(after, "tasks", 0)),
    ]  # fmt: skip
    summary["goals"] = [
        {"goal": g, "required": req, "measured": got, "met": met} for g, req, got, met in goals
    ]
    return summary


def plot(
    samples: list[dict[str, Any]], faults: list[tuple[float, str]], summary: dict[str, Any], path: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [s["t"] for s in samples]
    fig, (ax_rss, ax_fd, ax_rate) = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    ax_rss.plot(ts, [s["rss"] / MIB for s in samples], lw=1, label="RSS")
    warmup = summary["warmup_s"]
    ax_rss.axvspan(0, warmup, color="grey", alpha=0.15, label="warm-up")
    after = [s for s in samples if s["t"] >= warmup]
    if len(after) >= 2:
        slope = summary["rss_growth_mib_per_10min"] / 600  # MiB per second
        mt = sum(s["t"] for s in after) / len(after)
        mr = sum(s["rss"] for s in after) / len(after) / MIB
        xs = [after[0]["t"], after[-1]["t"]]
        ax_rss.plot(xs, [mr + slope * (x - mt) for x in xs], "k--", lw=1,
                    label=f"fit after warm-up: {summary['rss_growth_mib_per_10min']:+.2f} MiB / 10 min")  # fmt: skip
    for ax in (ax_rss, ax_fd, ax_rate):
        for i, (t, _kind) in enumerate(faults):
            ax.axvline(
                t,
                color="red",
                alpha=0.35,
                lw=0.8,
                label="forced disconnect" if i == 0 and ax is ax_rss else None,
            )
    ax_rss.set_ylabel("RSS, MiB")
    ax_rss.legend(loc="lower right", fontsize=8)
    ax_fd.plot(ts, [s["fds"] for s in samples], label="open fds")
    ax_fd.plot(ts, [s["tasks"] for s in samples], label="tasks")
    ax_fd.plot(ts, [s["live"] for s in samples], lw=0.8, label="books live (sampled each second)")
    ax_fd.set_ylabel("count")
    ax_fd.legend(loc="upper right", fontsize=8)
    # Rates over 5-sample windows: a sample that woke late is followed at once by the next one.
    rates = [
        (s["frames"] - samples[i - 5]["frames"]) / max(1e-9, s["t"] - samples[i - 5]["t"]) if i >= 5 else None
        for i, s in enumerate(samples)
    ]
    ax_rate.plot(ts, rates, lw=0.8, label="frames/s (5 s windows)")
    ax_rate.set_ylabel("per second")
    ax_rate.set_xlabel("seconds since the client started")
    ax_rate.legend(loc="lower right", fontsize=8)
    fig.suptitle("Soak: open_backpack, 5 symbols, trades + book, forced reconnect every 30 s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(summary: dict[str, Any], result: dict[str, Any], command: str, backend: str, verify: float) -> str:
    s = summary
    lines = [
        f"## Soak: full Backpack pipeline with forced reconnects (run {datetime.date.today().isoformat()})",
        "",
        f"`{command}`: simulator process pinned to CPU 1, client process pinned to CPU 0, backend {backend}, "
        f"CPython {platform.python_version()}, {platform.machine()}. 5 symbols ({', '.join(SOAK_SYMBOLS)}), "
        f"channels trades + book, a forced disconnect every 30 s (alternately close 1001 and TCP drop), "
        f"REST verification of the books {'every ' + format(verify, 'g') + ' s' if verify else 'off'}. "
        f"Warm-up: the first {s['warmup_s']:.0f} s.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| duration | {s['seconds']:.0f} s |",
        f"| frames received | {s['frames']:,} ({s['msgs_per_s']:,.0f}/s) |",
        f"| events (trades / book deltas / snapshots) | {result['events']:,} ({result['trades']:,} / "
        f"{result['deltas']:,} / {result['snapshots']:,}) |",
        f"| forced disconnects / client reconnects | {s['forced_disconnects']} / {result['reconnects']} |",
        f"| book resyncs (all 5 live again) after a disconnect | {s['resync_episodes_after_disconnect']} "
        f"(median {_num(s['resync_seconds_median'])} s, max {_num(s['resync_seconds_max'])} s) |",
        f"| snapshots requested / failed | {result['snapshots_requested']} / {result['snapshot_failures']} |",
        f"| initial sync of the 5 books | {_num(s['initial_sync_seconds'])} s |",
        f"| other resync episodes (gaps, verification mismatches...) | {len(s['other_episodes'])} |",
        f"| RSS start / after warm-up / end / max | {s['rss_start_mib']:.1f} / {s['rss_at_warmup_mib']:.1f} / "
        f"{s['rss_end_mib']:.1f} / {s['rss_max_mib']:.1f} MiB |",
        f"| **RSS growth after warm-up (least-squares slope)** | **{s['rss_growth_mib_per_10min']:+.2f} MiB / 10 min** |",
        f"| RSS end - RSS after warm-up | {s['rss_growth_after_warmup_mib']:+.2f} MiB |",
        f"| RSS slope over the second half of the run | {s['rss_growth_second_half_mib_per_10min']:+.2f} MiB / 10 min |",
        f"| open fds (max in warm-up / first after / max after / end) | {s['fds_before_warmup_max']} / "
        f"{s['fds_at_warmup']} / {s['fds_max_after_warmup']} / {s['fds_end']} |",
        f"| tasks (max in warm-up / max after / end) | {s['tasks_before_warmup_max']} / "
        f"{s['tasks_max_after_warmup']} / {s['tasks_end']} |",
        f"| GC-tracked objects (first → last sample) | {_first_last(s['gc_objects'])} |",
        f"| levels held in the 5 books (first → last sample) | {_first_last(s['book_levels'])} |",
        f"| sampler woke late (event-loop stall or CPU taken by other processes) | max {s['sampler_lag_max_s']:.2f} s, "
        f"{s['sampler_lag_over_100ms']} samples > 0.1 s |",
        "",
        "| goal | required | measured | verdict |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for g in s["goals"]:
        verdict = "-" if g["met"] is None else ("**met**" if g["met"] else "**not met**")
        lines.append(f"| {g['goal']} | {g['required']} | {g['measured']} | {verdict} |")
    if result.get("sequence_error_examples"):
        lines += [
            "",
            "Sequence breaks (first ones):",
            "",
            *[f"- {e}" for e in result["sequence_error_examples"]],
        ]
    if result.get("failed"):
        lines += ["", "Failed books:", "", *[f"- {e}" for e in result["failed"][:10]]]
    if result.get("tracemalloc_top"):
        lines += ["", "tracemalloc, top growth between the end of the warm-up and the end:", "",
                  "| where | size diff | count diff | size at end |", "|---|---:|---:|---:|"]  # fmt: skip
        for d in result["tracemalloc_top"]:
            lines.append(
                f"| `{d['where']}` | {d['size_diff'] / 1024:+,.1f} KiB | {d['count_diff']:+,} | {d['size'] / 1024:,.1f} KiB |"
            )
    return "\n".join([*lines, ""])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _first_last(series: list[tuple[float, int]]) -> str:
    return f"{series[0][1]:,} → {series[-1][1]:,}" if series else "-"


def run(args: argparse.Namespace) -> int:
    seconds = 60.0 if args.quick else args.minutes * 60.0
    full = not args.quick and seconds >= 600
    warmup = 120.0 if seconds >= 600 else 0.2 * seconds
    verify = args.verify_interval if args.verify_interval is not None else (0.0 if args.quick else 10.0)
    tmp = tempfile.mkdtemp(prefix="soak-")
    samples_path, result_path = os.path.join(tmp, "samples.jsonl"), os.path.join(tmp, "result.json")
    server = Child(
        [
            sys.executable,
            os.path.join(HERE, "_paced_server.py"),
            "backpack",
            "--update-rate",
            str(args.update_rate),
            "--reconnect-every",
            str(args.reconnect_every),
            "--first-disconnect",
            str(args.reconnect_every / 2),
            "--max-seconds",
            str(seconds + 300),
        ],
        stdin=True,
    )
    client: Child | None = None
    faults: list[tuple[float, str]] = []
    try:
        ready = server.readline(timeout=60)
        if not ready.startswith("READY"):
            raise RuntimeError(f"simulator did not start: {ready!r}")
        _, ws_url, rest_url = ready.split()
        log(
            f"simulator: {ws_url} {rest_url} (pid {server.proc.pid}); soaking {seconds:.0f} s on {args.backend}"
        )
        opts = {"ws_url": ws_url, "rest_url": rest_url, "symbols": list(SOAK_SYMBOLS), "seconds": seconds,
                "backend": args.backend, "samples": samples_path, "result": result_path, "warmup": warmup,
                "verify_interval": verify, "tracemalloc": args.tracemalloc}  # fmt: skip
        client = Child([sys.executable, os.path.abspath(__file__), "--client", json.dumps(opts)], stdin=False)
        client.proc.wait(timeout=seconds + 120)
        if client.proc.returncode != 0:
            raise RuntimeError(f"soak client exited with {client.proc.returncode}")
    finally:
        if client is not None:
            client.stop()
        server.stop()
        while True:  # the server's lines, all read by now (it exited)
            line = server.readline(timeout=0.5)
            if not line:
                break
            if line.startswith("FAULT "):
                _, when, kind, _conns = line.split()
                faults.append((float(when), kind))
    with open(samples_path, encoding="utf-8") as f:
        header, *samples = [json.loads(line) for line in f if line.strip()]
    with open(result_path, encoding="utf-8") as f:
        result = json.load(f)
    faults = [(when - header["t0"], kind) for when, kind in faults if when - header["t0"] <= seconds]
    config = {"seconds": seconds, "warmup": warmup, "full": full, "verify": verify, "quick": args.quick,
              "reconnect_every": args.reconnect_every, "update_rate": args.update_rate}  # fmt: skip
    command = " ".join(["python benchmarks/bench_soak.py", *sys.argv[1:]])
    publish(args, command, config, samples, result, faults)
    return 0


def publish(
    args: argparse.Namespace,
    command: str,
    config: dict[str, Any],
    samples: list[dict[str, Any]],
    result: dict[str, Any],
    faults: list[tuple[float, str]],
) -> None:
    """Analyse a run and write the Markdown, JSON and PNG outputs."""
    summary = analyse(
        samples,
        result,
        faults,
        config["seconds"],
        config["warmup"],
        config["full"],
        config["reconnect_every"],
    )
    text = report(summary, result, command, args.backend, config["verify"])
    if config["quick"]:
        text += (
            "\nQuick run: 60 s with a 12 s warm-up is indicative only: bounded caches are still filling (the "
            "trade-id window of 10,000 ids per symbol fills in ~110 s at this rate, the books' verification "
            "rings when verification is on), so the slope overstates growth.\n"
        )
    print(text)
    for path in (args.out, args.json_out, args.plot_out):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(args.json_out, "w", encoding="utf-8") as f:
        json.dump({"command": command, "backend": args.backend, "config": config, "summary": summary,
                   "result": result, "faults": faults, "samples": samples}, f, indent=1)  # fmt: skip
    plot(samples, faults, summary, args.plot_out)
    log(f"written to {args.out}, {args.json_out}, {args.plot_out}")


def reanalyse(args: argparse.Namespace) -> int:
    """Re-analyse a saved ``--json-out`` file (for example after changing a check) without re-running."""
    with open(args.reanalyse, encoding="utf-8") as f:
        saved = json.load(f)
    seconds = 60.0 if args.quick else args.minutes * 60.0
    config = saved.get("config") or {
        "seconds": seconds, "warmup": 120.0 if seconds >= 600 else 0.2 * seconds, "full": seconds >= 600,
        "verify": args.verify_interval or 0.0, "quick": args.quick, "reconnect_every": args.reconnect_every,
        "update_rate": args.update_rate,
    }  # fmt: skip
    args.backend = saved.get("backend", args.backend)
    faults = [(t, kind) for t, kind in saved["faults"]]
    publish(args, saved["command"], config, saved["samples"], saved["result"], faults)
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client_main(json.loads(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description="soak: RSS, fds, tasks and book consistency over minutes")
    parser.add_argument("--minutes", type=float, default=10.0, help="duration (default 10)")
    parser.add_argument("--quick", action="store_true", help="60 s (indicative only)")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument(
        "--update-rate", type=float, default=400.0, help="book updates/s per symbol (default 400)"
    )
    parser.add_argument(
        "--reconnect-every", type=float, default=30.0, help="seconds between forced disconnects"
    )
    parser.add_argument("--verify-interval", type=float, default=None,
                        help="seconds between REST verifications of each book (default 10; quick: off; 0: off)")  # fmt: skip
    parser.add_argument(
        "--tracemalloc", action="store_true", help="report the top allocation growth (slower)"
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results", "soak.md"))
    parser.add_argument("--json-out", default=os.path.join(HERE, "results", "soak.json"))
    parser.add_argument("--plot-out", default=os.path.join(HERE, "results", "soak.png"))
    parser.add_argument("--reanalyse", metavar="PATH.json", help="re-analyse a saved --json-out file instead")
    args = parser.parse_args()
    return reanalyse(args) if args.reanalyse else run(args)


if __name__ == "__main__":
    sys.exit(main())
