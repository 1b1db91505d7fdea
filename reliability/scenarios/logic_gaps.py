"""
Gap-detection recall of the order-book synchronizer (properties C1-C3, C5).

Sans-IO: the simulator's ground-truth engine (:class:`MarketEngine`, one per symbol, seeded)
generates delta streams for 10 symbols; 4 of them get faults injected on the way to
:class:`native_anyio._book.BookSync` (the synchronizer the Backpack client runs per book), the 6
others stay clean. Fault kinds, in random order:

* ``drop``: one frame is not delivered;
* ``duplicate``: one frame is delivered twice;
* ``swap``: two consecutive frames are delivered in reverse order;
* ``jump``: the stream skips ``k`` update ids (2-20), as :meth:`FaultController.jump_sequence`.

A fault is injected only while its book is live and its previous fault has been resolved, so
every fault is a separate question. The expected answer: a drop, swap or jump is a gap, detected
(the book leaves ``live``) on the very frame that breaks ``U == previous u + 1``; a duplicate is
stale and dropped, the book staying live and unchanged. A gap's resync is served a snapshot
from the engine's history after 1-30 frames, at a random lag of -5 (ahead of the socket), 0, 9 or
50 updates; the synchronizer must align it or ask again.

Checked on every frame: every book the synchronizer emits (after a snapshot aligned, and after
each live delta) equals the ground truth at its update id, level by level; the emitted delta
sequence continues exactly from the last snapshot (no duplicated, lost or out-of-order delta);
nothing is emitted between a detection and the next snapshot; no resync happens that no injected
fault explains (collateral), on the clean symbols or on the faulted ones.

The end-to-end version, through the simulator and the real client over loopback, is in
:mod:`reliability.scenarios.logic_gaps_e2e`.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from native_anyio._book import BookSync, OrderBook
from native_anyio.backpack.simulator import TruthBook
from native_anyio.backpack.simulator._config import spec_for
from native_anyio.backpack.simulator._engine import MarketEngine
from native_anyio.backpack.simulator._numbers import to_decimal
from reliability._figures import Context, Result, Scenario
from reliability._support import percentile

if TYPE_CHECKING:
    from decimal import Decimal

    from native_anyio._book import SyncOutput

__all__ = ["SCENARIOS"]

SYMBOLS = (
    "SOL_USDC",
    "BTC_USDC",
    "ETH_USDC",
    "SOL_USDC_PERP",
    "BTC_USDC_PERP",
    "ETH_USDC_PERP",
    "AAPL.US_USDC_PERP",
    "kPEPE_USDC_PERP",
    "DOGE_USDC",
    "XRP_USDC_PERP",
)
FAULTED = ("ETH_USDC", "BTC_USDC_PERP", "kPEPE_USDC_PERP", "XRP_USDC_PERP")
KINDS = ("drop", "duplicate", "swap", "jump")
SNAPSHOT_OFFSETS = (-5, 0, 9, 50)  # updates behind the socket (negative: ahead of it)
LOOKAHEAD = 8  # frames generated ahead of delivery, so a snapshot can be ahead of the socket
MERGE_CHANCE = 0.02  # a frame carrying two updates (U < u), as Backpack sends under load
FRAME_SECONDS = 0.05  # simulated time per delivery round (20 updates/s per symbol)
FULL_FAULTS = 10_000
SHORT_FAULTS = 400

Levels = list[tuple["Decimal", "Decimal"]]
Frame = tuple[int, int, Levels, Levels]


@dataclass
class Fault:
    """One injected fault and what became of it."""

    kind: str
    symbol: str
    injected_round: int
    detected: bool = False
    resync_frames: int | None = None


@dataclass
class Totals:
    """Everything counted over a run."""

    checked_books: int = 0
    wrong_books: int = 0
    duplicated: int = 0
    lost: int = 0
    out_of_order: int = 0
    emitted_while_invalid: int = 0
    collateral: int = 0
    resnapshots: int = 0
    frames: int = 0


@dataclass
class _Symbol:
    name: str
    engine: MarketEngine
    rng: random.Random
    sync: BookSync = field(default_factory=BookSync)
    generated: deque[Frame] = field(default_factory=deque)  # not yet delivered
    wire: deque[Frame] = field(default_factory=deque)  # about to be delivered, faults applied
    truth: OrderBook = field(default_factory=OrderBook)  # the ground truth at truth_frames' start
    truth_frames: deque[Frame] = field(default_factory=deque)  # generated, not yet in ``truth``
    emitted_last: int | None = None  # the last update id of the emitted book (None: invalid)
    snapshot_due: tuple[int, int] | None = None  # (round, generation)
    generation: int = 0
    fault: Fault | None = None  # the fault in progress
    expect: str = ""  # "gap" (a frame that must trigger a resync) or "stale" (a duplicate)
    expect_frame: Frame | None = None
    cooldown: int = 0
    detected_round: int = 0
    delivered: int = 0  # frames delivered since the detection
    last_delivered: int = 0  # the highest update id delivered so far

    def levels(self, changes: list[tuple[int, int]]) -> Levels:
        dp, ds = self.engine.dp, self.engine.ds
        return [(to_decimal(p, dp), to_decimal(s, ds)) for p, s in changes]

    def generate(self) -> None:
        """One more frame from the engine (sometimes two updates merged, as Backpack does)."""
        event = self.engine.next_event()
        first = event.update_id
        bids, asks = dict(event.bids), dict(event.asks)
        if self.rng.random() < MERGE_CHANCE:
            later = self.engine.next_event()
            bids.update(later.bids)
            asks.update(later.asks)
        frame = (first, self.engine.last_id, self.levels(list(bids.items())), self.levels(list(asks.items())))
        self.generated.append(frame)
        self.truth_frames.append(frame)

    def truth_at(self, update_id: int) -> tuple[Levels, Levels]:
        """The ground truth after ``update_id``, best levels first."""
        if update_id < self.truth.last_update_id:  # never expected: rebuild it from the history
            sides = self.engine.history.book_at(update_id)
            book = TruthBook.build(self.name, update_id, *sides, self.engine.dp, self.engine.ds)
            return list(book.bids), list(book.asks)
        frames = self.truth_frames
        while frames and frames[0][1] <= update_id:
            _, last, bid_levels, ask_levels = frames.popleft()
            self.truth.apply(bid_levels, ask_levels)
            self.truth.last_update_id = last
        if self.truth.last_update_id != update_id:
            raise AssertionError(f"{self.name}: {update_id} is not a frame boundary")
        return self.truth.bids(), self.truth.asks()

    def snapshot(self, offset: int) -> TruthBook:
        """The engine's book ``offset`` updates behind the last delivered id (ahead when negative)."""
        history = self.engine.history
        target = max(history.oldest, min(self.last_delivered - offset, history.newest))
        bids, asks = self.engine.history.book_at(target)
        return TruthBook.build(self.name, target, bids, asks, self.engine.dp, self.engine.ds)


def _new_symbol(name: str, seed: int) -> _Symbol:
    engine = MarketEngine(spec_for(name), seed, history_limit=4096)
    state = _Symbol(name, engine, random.Random(f"{seed}:{name}:faults"))
    start = engine.history.book_at(engine.last_id)
    truth = TruthBook.build(name, engine.last_id, *start, engine.dp, engine.ds)
    state.truth.load(truth.bids, truth.asks, truth.last_update_id)
    for _ in range(LOOKAHEAD):
        state.generate()
    return state


class GapRun:
    """The harness: feeds every symbol one frame per round and checks every answer."""

    def __init__(self, seed: int, faults: int) -> None:
        self.rng = random.Random(seed)
        self.target = faults
        self.symbols = [_new_symbol(name, seed) for name in SYMBOLS]
        for state in self.symbols:  # the first snapshot of every book
            state.snapshot_due = (state.rng.randint(1, 30), state.generation)
        self.faulted = set(FAULTED)
        self.faults: list[Fault] = []
        self.totals = Totals()
        self.round = 0

    # -- the loop ------------------------------------------------------------------------------

    def step(self) -> None:
        """One round: every symbol gets its next frame (and maybe its snapshot)."""
        self.round += 1
        now = self.round * FRAME_SECONDS
        for state in self.symbols:
            if state.snapshot_due is not None and state.snapshot_due[0] <= self.round:
                self._deliver_snapshot(state, now)
            if state.name in self.faulted and not state.wire:
                self._maybe_inject(state)
            if not state.wire:
                state.wire.append(state.generated.popleft())
            while len(state.generated) < LOOKAHEAD:
                state.generate()
            frame = state.wire.popleft()
            self._deliver(state, frame, now)
            out = state.sync.check_timeout(now)
            if out.need_snapshot:
                self._on_output(state, out)

    @property
    def done(self) -> bool:
        return len(self.faults) >= self.target and all(s.fault is None for s in self.symbols)

    # -- faults --------------------------------------------------------------------------------

    def _maybe_inject(self, state: _Symbol) -> None:
        if state.fault is not None or not state.sync.is_live or len(self.faults) >= self.target:
            return
        if state.cooldown > 0:
            state.cooldown -= 1
            return
        kind = self.rng.choice(KINDS)
        fault = Fault(kind, state.name, self.round)
        gen = state.generated
        if kind == "drop":
            gen.popleft()
            state.expect, state.expect_frame = "gap", gen[0]
            state.wire.append(gen.popleft())
        elif kind == "duplicate":
            frame = gen.popleft()
            state.wire.extend((frame, frame))
            state.expect, state.expect_frame = "stale", frame
        elif kind == "swap":
            one, two = gen.popleft(), gen.popleft()
            state.wire.extend((two, one))
            state.expect, state.expect_frame = "gap", two
        else:  # jump: skip k update ids, whole frames (U of the next frame is prev u + 1 + k or more)
            k = self.rng.randint(2, 20)
            skipped = 0
            while skipped < k:
                first, last, _, _ = gen.popleft()
                skipped += last - first + 1
                if not gen:
                    state.generate()
            state.expect, state.expect_frame = "gap", gen[0]
            state.wire.append(gen.popleft())
        state.fault = fault
        self.faults.append(fault)

    # -- delivery and checks -------------------------------------------------------------------

    def _deliver(self, state: _Symbol, frame: Frame, now: float) -> None:
        first, last, bids, asks = frame
        state.last_delivered = max(state.last_delivered, last)
        self.totals.frames += 1
        if state.fault is not None and state.fault.detected:
            state.delivered += 1
        stats_before = state.sync.statistics() if frame is state.expect_frame else None
        out = state.sync.on_delta(first, last, bids, asks, now)
        if stats_before is not None:
            self._judge(state, out, stats_before.stale_dropped)
        self._on_output(state, out)

    def _judge(self, state: _Symbol, out: SyncOutput, stale_before: int) -> None:
        """The frame the fault should be caught on was just fed: was it?"""
        fault = state.fault
        assert fault is not None
        if state.expect == "stale":
            # The first copy of a duplicated frame applies as usual; the second one is the question.
            if out.applied and state.sync.is_live:
                state.expect = "stale-second"
            else:
                self._resolve(state)  # not detected: counted as a miss
            return
        if state.expect == "stale-second":
            stale = state.sync.statistics().stale_dropped == stale_before + 1
            fault.detected = stale and not out.applied and out.status is None and state.sync.is_live
            fault.resync_frames = 0
            self._resolve(state)
            return
        # A gap: the book must leave "live" on this very frame.
        fault.detected = out.status is not None and out.status[0] == "resyncing" and "gap" in out.status[1]
        state.detected_round = self.round
        state.delivered = 0
        state.expect, state.expect_frame = "", None
        if not fault.detected:
            self._resolve(state)

    def _resolve(self, state: _Symbol) -> None:
        state.fault = None
        state.expect, state.expect_frame = "", None
        state.cooldown = state.rng.randint(3, 40)

    def _on_output(self, state: _Symbol, out: SyncOutput) -> None:
        totals = self.totals
        if out.status is not None and out.status[0] != "live":
            if state.emitted_last is not None:  # a live book just became invalid
                fault = state.fault
                explained = fault is not None and fault.detected and self.round == state.detected_round
                if not explained:
                    totals.collateral += 1
            else:
                totals.resnapshots += 1  # a restart while not live (a misaligned snapshot)
            state.emitted_last = None
        if out.snapshot_loaded:
            book = state.sync.book
            self._check_book(state, book.last_update_id)
            state.emitted_last = book.last_update_id
            fault = state.fault
            if fault is not None and fault.detected and state.expect == "":
                fault.resync_frames = state.delivered
                self._resolve(state)
        elif out.applied:
            for first, last, _, _ in out.applied:
                if state.emitted_last is None:
                    totals.emitted_while_invalid += 1
                elif last <= state.emitted_last:
                    totals.duplicated += 1
                elif first > state.emitted_last + 1:
                    totals.lost += 1
                elif first != state.emitted_last + 1:
                    totals.out_of_order += 1
                state.emitted_last = last
            self._check_book(state, out.applied[-1][1])
        if out.need_snapshot:
            state.generation += 1
            state.snapshot_due = (self.round + state.rng.randint(1, 30), state.generation)

    def _deliver_snapshot(self, state: _Symbol, now: float) -> None:
        _, generation = state.snapshot_due  # type: ignore[misc]
        state.snapshot_due = None
        if generation != state.generation:
            return
        truth = state.snapshot(state.rng.choice(SNAPSHOT_OFFSETS))
        out = state.sync.on_snapshot(truth.last_update_id, truth.bids, truth.asks, now)
        self._on_output(state, out)

    def _check_book(self, state: _Symbol, update_id: int) -> None:
        self.totals.checked_books += 1
        book = state.sync.book
        bids, asks = state.truth_at(update_id)
        if book.bids() != bids or book.asks() != asks:
            self.totals.wrong_books += 1


def summarize(run: GapRun, wall: float) -> Result:
    """The figure from a finished run."""
    totals = run.totals
    faults = run.faults
    detected = sum(f.detected for f in faults)
    by_kind = {kind: sum(1 for f in faults if f.kind == kind) for kind in KINDS}
    latencies = [
        float(f.resync_frames) for f in faults if f.kind != "duplicate" and f.resync_frames is not None
    ]
    clean = [s for s in run.symbols if s.name not in run.faulted]
    clean_resyncs = sum(s.sync.statistics().resyncs for s in clean)
    gap_faults = sum(1 for f in faults if f.kind != "duplicate")
    faulted_resyncs = sum(s.sync.statistics().resyncs for s in run.symbols if s.name in run.faulted)
    integrity = totals.duplicated + totals.lost + totals.out_of_order + totals.wrong_books
    unrecovered = sum(1 for f in faults if f.detected and f.resync_frames is None)
    passed = (
        detected == len(faults) >= run.target
        and unrecovered == 0
        and clean_resyncs == 0
        and totals.collateral == 0
        and integrity == 0
        and totals.emitted_while_invalid == 0
        and totals.checked_books > 0
    )
    recall = 100.0 * detected / len(faults) if faults else 0.0
    value = (
        f"recall {recall:.2f}% ({detected}/{len(faults)}: "
        + ", ".join(f"{n} {k}" for k, n in by_kind.items())
        + f"); collateral resyncs {totals.collateral + clean_resyncs}; detection to a valid book p50/p99 "
        f"{percentile(latencies, 50):.0f}/{percentile(latencies, 99):.0f} deltas (snapshot served 1-30 "
        "deltas after its request); "
        f"{totals.checked_books} books checked: {totals.wrong_books} wrong, {totals.duplicated} duplicated, "
        f"{totals.lost} lost, {totals.out_of_order} out-of-order, "
        f"{totals.emitted_while_invalid} emitted while invalid"
    )
    data: dict[str, float | int | str] = {
        "faults": len(faults),
        "detected": detected,
        "recall_percent": recall,
        **{f"faults_{k}": n for k, n in by_kind.items()},
        "collateral_resyncs": totals.collateral,
        "clean_symbol_resyncs": clean_resyncs,
        "gap_faults": gap_faults,
        "faulted_symbol_resyncs": faulted_resyncs,
        "resnapshots": totals.resnapshots,
        "unrecovered": unrecovered,
        "resync_p50_deltas": percentile(latencies, 50),
        "resync_p99_deltas": percentile(latencies, 99),
        "resync_max_deltas": max(latencies, default=0.0),
        "books_checked": totals.checked_books,
        "wrong_books": totals.wrong_books,
        "duplicated_deltas": totals.duplicated,
        "lost_deltas": totals.lost,
        "out_of_order_deltas": totals.out_of_order,
        "emitted_while_invalid": totals.emitted_while_invalid,
        "frames": totals.frames,
        "wall_seconds": wall,
    }
    return Result(value, passed, data)


async def run_gap_recall(ctx: Context) -> Result:
    """Inject the faults, checking every frame; the loop checkpoints every 500 rounds."""
    run = GapRun(seed=7, faults=SHORT_FAULTS if ctx.short else FULL_FAULTS)
    started = time.perf_counter()
    limit = run.target * 400  # rounds: far more than needed, so a stuck run ends (and fails)
    while not run.done and run.round < limit:
        run.step()
        if run.round % 500 == 0:
            await anyio.lowlevel.checkpoint()
    return summarize(run, time.perf_counter() - started)


SCENARIOS = [
    Scenario(
        key="gap_recall",
        figure="Gap-detection recall (sans-IO synchronizer)",
        how=(
            "10,000 faults (drop, duplicate, swap two, jump U by 2-20) injected one at a time into "
            "ground-truth delta streams (simulator engine) of 4 of 10 symbols, fed to BookSync; "
            "snapshots served 1-30 frames later at lag -5/0/9/50; every emitted book compared with "
            "the truth"
        ),
        target=(
            "100% detected (gaps resync on the breaking frame, duplicates dropped); 0 collateral "
            "resyncs; 0 wrong/duplicated/lost/out-of-order"
        ),
        run=run_gap_recall,
    )
]
