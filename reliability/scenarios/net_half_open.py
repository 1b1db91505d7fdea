"""
Half-open detection latency (reliability property A1; figure "Half-open detection latency").

The fault proxy blackholes the client's live connection: it forwards nothing either way and keeps
both sockets open, so no error, FIN or RST ever reaches the client. Only its own ping deadline
can tell. 200 trials (10 in the short version), in virtual time, with the Backpack client's
default keepalive: a ping every 20 s, a 20 s pong deadline (and the 60 s server-ping watchdog,
which is slower and must not be the one that fires). Each trial waits a random 1-25 s of live
stream first, so the blackhole falls at a random phase of the ping cycle.

Measured per trial: fault -> the session declares the connection dead (``ping_timeout``), then
that the reconnect starts on the backoff schedule (the first new connection within 0.5 s of the
scheduled delay) and that every book is valid again.
"""

from __future__ import annotations

from native_anyio import LivenessConfig, SessionConfig
from reliability._figures import Context, Result, Scenario
from reliability._support import fmt_seconds, percentile
from reliability.scenarios._net_harness import RigConfig, WallClock, open_rig

__all__ = ["SCENARIOS"]

#: The keepalive ``open_backpack`` uses by default (written out: the bound is computed from it).
LIVENESS = LivenessConfig(ping_interval=20.0, ping_timeout=20.0, server_ping_interval=60.0)
#: p99 bound: ``ping_interval + ping_timeout + 1 s``.
BOUND = (LIVENESS.ping_interval or 0.0) + LIVENESS.ping_timeout + 1.0
#: The reconnect must start within this long of the backoff delay (virtual seconds).
ON_SCHEDULE = 0.5


async def run_half_open(ctx: Context) -> Result:
    """Run the blackhole trials; see the module docs."""
    trials = 10 if ctx.short else 200
    wall = WallClock()
    config = RigConfig(
        symbols=("SOL_USDC", "BTC_USDC_PERP"),
        update_rate=4.0,
        tick_interval=0.5,
        session_config=SessionConfig(liveness=LIVENESS, seed=3),
        seed=11,
    )
    detections: list[float] = []
    lags: list[float] = []
    recoveries: list[float] = []
    by_ping = reconnected = on_schedule = 0
    async with open_rig(config) as rig:
        for _ in range(trials):
            await rig.dwell(rig.rng.uniform(1.0, 25.0), min_deltas=1, limit=120.0)
            drop = await rig.drop("blackhole", limit=300.0)
            detections.append(drop.detect)
            by_ping += drop.reason.startswith("ping_timeout")
            reconnected += drop.connects >= 1 and drop.recovered
            on_schedule += drop.reconnect_lag <= ON_SCHEDULE
            lags.append(drop.reconnect_lag)
            recoveries.append(drop.to_valid)
            if not drop.recovered:
                break
        checker = rig.checker
    p50, p99, worst = percentile(detections, 50), percentile(detections, 99), max(detections)
    passed = (
        len(detections) == trials
        and p99 <= BOUND
        and by_ping == trials
        and reconnected == trials
        and on_schedule == trials
        and checker.violations == 0
    )
    value = (
        f"p50 {fmt_seconds(p50)}, p99 {fmt_seconds(p99)}, max {fmt_seconds(worst)} over {len(detections)} "
        f"blackholes (bound {BOUND:g} s = 20 s ping + 20 s deadline + 1 s); {by_ping}/{trials} by the ping "
        f"deadline; reconnect on schedule {on_schedule}/{trials} (max lag {fmt_seconds(max(lags))}); "
        f"books valid again {reconnected}/{trials} (p99 {fmt_seconds(percentile(recoveries, 99))} after "
        f"the fault); {checker.violations} integrity violations"
    )
    data: dict[str, float | int | str] = {
        "trials": trials,
        "detect_p50_s": round(p50, 3),
        "detect_p99_s": round(p99, 3),
        "detect_max_s": round(worst, 3),
        "detect_min_s": round(min(detections), 3),
        "bound_s": BOUND,
        "by_ping_deadline": by_ping,
        "reconnected": reconnected,
        "on_schedule": on_schedule,
        "reconnect_lag_max_s": round(max(lags), 4),
        "to_valid_p99_s": round(percentile(recoveries, 99), 3),
        "violations": checker.violations,
        "wall_s": round(wall.elapsed(), 1),
        "cpu_s": round(wall.cpu(), 1),
    }
    return Result(value=value, passed=passed, data=data)


SCENARIOS = [
    Scenario(
        key="net_half_open",
        figure="Half-open detection latency",
        how=(
            "200 blackhole trials through the loopback fault proxy (no data, no FIN/RST, sockets kept "
            "open) at a random phase of the ping cycle; the real client with Backpack's default "
            "keepalive (20 s ping, 20 s deadline); virtual time"
        ),
        target="p99 <= ping_interval + ping_timeout + 1 s (41 s); reconnect on the backoff schedule",
        run=run_half_open,
        virtual_time=True,
    )
]
