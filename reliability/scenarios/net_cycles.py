"""
Resources across reconnect cycles (reliability properties B6 and D5; figure "fds, tasks and RSS
before and after 1,000 reconnect cycles").

One cycle is what a reconnect costs the client: a forced drop (the six
:data:`~reliability.scenarios._net_harness.KINDS` in turn), the new connection, the subscription
replay, fresh REST snapshots and the live stream again. The simulator runs in a child process,
so this process holds only what is measured: the client, plus the rig's fault proxy and event
checker, which keep nothing per past connection (the checker's trade-id window is off here).
Real time, with the short keepalive and small backoff of ``net_disconnects``.

After 100 warm-up cycles (10 short), at a quiet point (every book live, one connection), the
baseline is taken: open file descriptors (``/proc/self/fd``), live tasks
(``anyio.get_running_tasks()``) and RSS (``/proc/self/statm``) after ``gc.collect()`` and glibc's
``malloc_trim(0)``. Untrimmed, RSS also counts the free heap glibc keeps cached after the
128-256 KiB socket read buffers, which grows for a while without being in use (reported too).
Then 1,000 cycles (50 short) and the same measurement at the next quiet point. Target: fds and
tasks back at the baseline exactly, RSS growth under 2 MiB. Growth within the client's bounded
caches (recent trade ids, 10,000 per symbol; the REST rate limiter's last 2,000 grants) counts.
"""

from __future__ import annotations

import sys

from reliability._figures import Context, Result, Scenario
from reliability.scenarios._net_harness import (
    KINDS,
    Rig,
    RigConfig,
    WallClock,
    fd_count,
    open_rig,
    rss_bytes,
    task_count,
)
from reliability.scenarios.net_disconnects import SESSION

__all__ = ["SCENARIOS"]

#: RSS growth bound over the measured cycles, bytes.
RSS_BOUND = 2 << 20
#: Bound on one cycle's recovery (real seconds).
CYCLE_LIMIT = 20.0


async def _cycles(rig: Rig, count: int, start: int) -> int:
    """Run ``count`` cycles; returns how many recovered."""
    recovered = 0
    for index in range(start, start + count):
        await rig.dwell(rig.rng.uniform(0.02, 0.06), min_deltas=1)
        drop = await rig.drop(KINDS[index % len(KINDS)], limit=CYCLE_LIMIT)
        if not drop.recovered:
            break
        recovered += 1
    return recovered


async def _quiet(rig: Rig) -> tuple[int, int, int, int, int]:
    """
    At a quiet point (one proxy connection, every book live for a while): fds, tasks, RSS, raw
    RSS and the Python heap blocks in use.
    """
    for _ in range(50):  # a FIN'd proxy connection may take a moment to finish closing
        await rig.dwell(0.1, min_deltas=1)
        if len(rig.proxy.connections) == 1:
            break
    raw = rss_bytes()
    return fd_count(), task_count(), rss_bytes(trim=True), raw, sys.getallocatedblocks()


async def run_cycles(ctx: Context) -> Result:
    """Run the cycles; see the module docs."""
    warmup, count = (10, 50) if ctx.short else (100, 1000)
    wall = WallClock()
    config = RigConfig(
        session_config=SESSION,
        isolated=True,
        track_trades=False,
        update_rate=50.0,
        tick_interval=0.02,
        seed=13,
    )
    async with open_rig(config) as rig:
        warmed = await _cycles(rig, warmup, 0)
        fds0, tasks0, rss0, raw0, blocks0 = await _quiet(rig)
        done = await _cycles(rig, count, warmup)
        fds1, tasks1, rss1, raw1, blocks1 = await _quiet(rig)
        checker = rig.checker
    growth = rss1 - rss0
    passed = (
        warmed == warmup
        and done == count
        and fds1 == fds0
        and tasks1 == tasks0
        and growth < RSS_BOUND
        and checker.violations == 0
    )
    value = (
        f"after {done}/{count} cycles (past {warmup} warm-up): fds {fds0} -> {fds1}, tasks {tasks0} -> "
        f"{tasks1}, RSS after gc + malloc_trim {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB "
        f"({growth / 2**10:+.0f} KiB; bound {RSS_BOUND >> 20} MiB; untrimmed {(raw1 - raw0) / 2**10:+.0f} KiB), "
        f"Python heap blocks {blocks1 - blocks0:+d}; {checker.violations} integrity violations"
    )
    data: dict[str, float | int | str] = {
        "warmup": warmup,
        "cycles": count,
        "recovered": done,
        "fds_before": fds0,
        "fds_after": fds1,
        "tasks_before": tasks0,
        "tasks_after": tasks1,
        "rss_before_bytes": rss0,
        "rss_after_bytes": rss1,
        "rss_growth_bytes": growth,
        "rss_untrimmed_before_bytes": raw0,
        "rss_untrimmed_after_bytes": raw1,
        "python_blocks_before": blocks0,
        "python_blocks_after": blocks1,
        "rss_bound_bytes": RSS_BOUND,
        "violations": checker.violations,
        "wall_s": round(wall.elapsed(), 1),
        "cpu_s": round(wall.cpu(), 1),
    }
    return Result(value=value, passed=passed, data=data)


SCENARIOS = [
    Scenario(
        key="net_cycles",
        figure="fds, tasks and RSS before and after 1,000 reconnect cycles",
        how=(
            "the real client through the loopback fault proxy, the simulator in a child process; 1,000 "
            "cycles of forced drop (6 kinds in turn), reconnect, resubscribe, fresh snapshots, live stream; "
            "/proc/self/fd, anyio.get_running_tasks() and RSS after gc + malloc_trim, after 100 warm-up "
            "cycles and after the 1,000"
        ),
        target="fds and tasks back to the baseline exactly; RSS growth < 2 MiB",
        run=run_cycles,
    )
]
