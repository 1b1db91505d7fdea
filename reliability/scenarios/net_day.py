"""
A simulated day at Backpack's real cadence with a forced drop every minute (reliability
property H4; figure "Deterministic time").

Virtual time (trio ``MockClock(autojump_threshold=0)``, asyncio ``VirtualClockEventLoop``): 24
hours (one hour in the short version) of the real client streaming trades and books of two
symbols through the fault proxy. The simulator pings every 60 s and closes a connection whose
pong is 120 s late; the client runs ``open_backpack``'s default keepalive (ping every 20 s, 20 s
deadline, 60 s server-ping watchdog) and the default backoff (0.25-0.5 s first delay). One drop
falls in each virtual minute, at a random second 0-15 of it (so connections live 45-75 s and some
see the server's 60 s ping), cycling through the six kinds of
:data:`~reliability.scenarios._net_harness.KINDS`: 1,440 drops (60 short), 240 of each kind.

Every drop must be recovered (every book valid again from a fresh snapshot) before the next one,
every emitted book must equal the ground truth, and the full day must take under 60 s of wall
time on trio.
"""

from __future__ import annotations

import random

import anyio

from native_anyio import LivenessConfig, SessionConfig
from reliability._figures import Context, Result, Scenario
from reliability._support import fmt_seconds, percentile
from reliability.scenarios._net_harness import KINDS, RigConfig, WallClock, open_rig

__all__ = ["SCENARIOS"]

#: ``open_backpack``'s default keepalive, written out.
LIVENESS = LivenessConfig(ping_interval=20.0, ping_timeout=20.0, server_ping_interval=60.0)
#: Wall-time target of the full day on trio, seconds.
WALL_TARGET = 60.0


async def run_day(ctx: Context) -> Result:
    """Run the simulated day; see the module docs."""
    minutes = 60 if ctx.short else 24 * 60
    wall = WallClock()
    order = [KINDS[i % len(KINDS)] for i in range(minutes)]
    random.Random(86_400).shuffle(order)
    config = RigConfig(
        symbols=("SOL_USDC", "BTC_USDC_PERP"),
        update_rate=0.5,
        tick_interval=2.0,
        session_config=SessionConfig(liveness=LIVENESS, seed=5),
        sim_ping_interval=60.0,
        sim_pong_timeout=120.0,
        seed=24,
    )
    recovered = late = server_pings = pongs = 0
    times: list[float] = []
    async with open_rig(config) as rig:
        sim = rig.sim
        assert sim is not None  # in this process: the scenario reads its connections
        start = anyio.current_time()
        for minute, kind in enumerate(order):
            at = start + 60.0 * (minute + 1) + rig.rng.uniform(0.0, 15.0)
            late += anyio.current_time() > at  # the previous drop spilled into this minute
            await rig.wait_until(at)
            live = max((info for info in sim.connections if info.open), key=lambda info: info.id)
            server_pings += live.pings_sent
            pongs += live.pongs_received
            drop = await rig.drop(kind, limit=59.0)
            if not drop.recovered:
                break
            recovered += 1
            times.append(drop.to_valid)
        virtual = anyio.current_time() - start
        checker = rig.checker
        unexpected = rig.unexpected_disconnects
    elapsed, cpu = wall.elapsed(), wall.cpu()
    fast_enough = ctx.short or ctx.backend != "trio" or elapsed < WALL_TARGET
    passed = (
        recovered == minutes
        and late == 0
        and checker.violations == 0
        and unexpected == 0
        and pongs == server_pings
        and fast_enough
    )
    value = (
        f"{virtual / 3600:.1f} h simulated in {elapsed:.1f} s wall ({cpu:.1f} s CPU); {recovered}/{minutes} "
        f"drops recovered (time to a valid book p50 {fmt_seconds(percentile(times, 50))}, "
        f"p99 {fmt_seconds(percentile(times, 99))}, incl. detection and backoff); {checker.snapshots + checker.deltas} books checked, "
        f"{checker.violations} integrity violations; {unexpected} unexpected disconnects; "
        f"server pings answered {pongs}/{server_pings}"
    )
    data: dict[str, float | int | str] = {
        "virtual_hours": round(virtual / 3600, 3),
        "wall_s": round(elapsed, 2),
        "cpu_s": round(cpu, 2),
        "wall_target_s": WALL_TARGET,
        "drops": minutes,
        "recovered": recovered,
        "late": late,
        "to_valid_p50_s": round(percentile(times, 50), 3),
        "to_valid_p99_s": round(percentile(times, 99), 3),
        "to_valid_max_s": round(max(times, default=float("nan")), 3),
        "books_checked": checker.snapshots + checker.deltas,
        "trades": checker.trades,
        "violations": checker.violations,
        "unexpected_disconnects": unexpected,
        "server_pings": server_pings,
        "server_pings_answered": pongs,
    }
    return Result(value=value, passed=passed, data=data)


SCENARIOS = [
    Scenario(
        key="net_day",
        figure="Deterministic time: a simulated day at Backpack's cadence",
        how=(
            "24 h of virtual time (60 s server pings, 120 s pong deadline, the client's default 20 s "
            "keepalive and backoff) with 1,440 forced drops, one per minute, mixed kinds; the real client "
            "(trades + books of 2 symbols) through the fault proxy; every book compared with the truth"
        ),
        target="every drop recovered, 0 integrity violations; < 60 s wall time on trio",
        run=run_day,
        virtual_time=True,
    )
]
