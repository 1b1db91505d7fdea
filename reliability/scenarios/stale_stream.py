"""
Stale-stream detection (property A3): a depth stream that stops while the connection stays up.

The Backpack client runs against the simulator under a virtual clock with three books: two busy
ones (10 updates/s) and a quiet-but-alive one (one update every 4 s), all with
``stale_after=5 s`` checked every second. Each trial stops one busy book's depth stream
(``sim.faults.stop_stream``: pings, trades and the other streams keep flowing) and measures the
virtual time from the stop to the book's stale ``BookStatus``; the client's resubscribe clears
the stuck stream and the trial ends when that book is live again. Afterwards the streams run
unfaulted ("quiet minutes"): no book may be flagged then, and the quiet book never at all.
Every book is compared with the simulator's ground truth at the end.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio

from native_anyio.backpack import BackpackConfig, BookStatus, open_backpack
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator
from reliability._figures import Context, Result, Scenario
from reliability._support import fmt_seconds, percentile

if TYPE_CHECKING:
    from native_anyio.backpack import BackpackClient, Event
    from native_anyio.backpack.simulator import Simulator

__all__ = ["SCENARIOS"]

BUSY = ("SOL_USDC", "BTC_USDC")
QUIET = "ETH_USDC"
T_IDLE = 5.0
CHECK = 1.0


def _wire(symbol: str) -> str:
    return symbol.replace("-", "_")


def _truth_ok(client: BackpackClient, sim: Simulator, symbol: str) -> bool:
    book = client.book(symbol)
    if book is None:
        return False
    truth = sim.book_at(symbol, book.last_update_id)
    return book.bids() == list(truth.bids) and book.asks() == list(truth.asks)


async def _run(ctx: Context) -> Result:
    trials = 10 if ctx.short else 200
    quiet_seconds = 120.0 if ctx.short else 600.0
    config = SimulatorConfig(symbols=(*BUSY, QUIET), seed=17, update_rate=10.0, update_rates={QUIET: 0.25})
    latencies: list[float] = []
    false_positives = 0
    wrong_flags: list[str] = []
    with anyio.fail_after(trials * 120 + quiet_seconds + 600):
        async with (
            open_simulator(config) as sim,
            open_backpack(
                BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url, unknown_symbol_timeout=5.0),
                symbols=(*BUSY, QUIET),
                channels=("book", "trades"),
                stale_after=T_IDLE,
                stale_check_interval=CHECK,
            ) as client,
        ):

            async def until(done: object, limit: int = 1_000_000) -> list[Event]:
                seen: list[Event] = []
                for _ in range(limit):
                    events = await client.receive_events()
                    seen.extend(events)
                    if done(seen):  # type: ignore[operator]
                        return seen
                raise AssertionError("condition never held")

            def all_live(_seen: list[Event]) -> bool:
                return all(client.book(s) is not None for s in (*BUSY, QUIET))

            await until(all_live)
            for trial in range(trials):
                target = BUSY[trial % len(BUSY)]
                stopped = anyio.current_time()
                sim.faults.stop_stream(f"depth.{target}")
                flagged_at: float | None = None

                def flagged(seen: list[Event], target: str = target) -> bool:
                    nonlocal flagged_at
                    for event in seen:
                        if isinstance(event, BookStatus) and event.reason.startswith("stale"):
                            if _wire(event.symbol) != target:
                                wrong_flags.append(event.symbol)
                            elif flagged_at is None:
                                flagged_at = anyio.current_time()
                    return flagged_at is not None

                await until(flagged)
                assert flagged_at is not None
                latencies.append(flagged_at - stopped)
                await until(all_live)  # resubscribed and rebuilt from a fresh snapshot
            flags_before_quiet = client.statistics().stale_flags
            start = anyio.current_time()
            await until(lambda _s: anyio.current_time() - start >= quiet_seconds)
            false_positives = client.statistics().stale_flags - flags_before_quiet
            books_ok = all(_truth_ok(client, sim, s) for s in (*BUSY, QUIET))
            total_flags = client.statistics().stale_flags

    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    bound = T_IDLE + CHECK
    detected = len(latencies)
    passed = (
        detected == trials
        and not math.isnan(p99)
        and p99 <= bound
        and false_positives == 0
        and not wrong_flags
        and total_flags == trials
        and books_ok
    )
    value = (
        f"{detected}/{trials} detected; p50 {fmt_seconds(p50)}, p99 {fmt_seconds(p99)} "
        f"(bound {bound:g} s); {false_positives} false positives in {quiet_seconds / 60:g} quiet min "
        f"(+{len(wrong_flags)} during trials); books = truth: {'yes' if books_ok else 'NO'}"
    )
    return Result(
        value,
        passed,
        {
            "trials": trials,
            "detected": detected,
            "p50_s": p50,
            "p99_s": p99,
            "bound_s": bound,
            "false_positives_quiet": false_positives,
            "wrong_flags_during_trials": len(wrong_flags),
            "quiet_seconds": quiet_seconds,
        },
    )


SCENARIOS = [
    Scenario(
        key="stale_stream",
        figure="Stale-stream detection (A3)",
        how=(
            "200 trials: one busy depth stream stopped while pings, trades and the other streams flow "
            "(virtual clock; stale_after 5 s, checked every 1 s); then 10 quiet minutes, with a book "
            "updating only every 4 s"
        ),
        target="p99 <= T_idle + check interval (6 s); 0 false positives",
        run=_run,
        virtual_time=True,
    )
]
