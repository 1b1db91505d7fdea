"""
Reconnect-storm bound: a server that accepts every connection and closes it at once, for 10
virtual minutes (property B2). A client that reset its backoff on a bare handshake would
reconnect every 0.25-0.5 s (over 1,000 attempts); ours must follow its capped schedule.

Two clients, each with its default reconnect policy (``SessionConfig().backoff``: 0.5 s doubling
to a 30 s cap, jitter 0.5):

* ``open_session`` against :func:`native_anyio.testing.open_ws_server` whose handler closes every
  connection with 1000 right after the handshake;
* the Backpack client (``open_backpack``, book channel) against the simulator with
  ``drop_after_accept``: every handshake completes, then the TCP connection is dropped.

Measured: the attempts the server saw in 600 s, the schedule bound computed from the policy
(attempts possible if every delay drew the largest jitter, so every wait is
``base * (1 - jitter)``), the nominal count (no jitter), the number of backoff resets before the
first data message (``reconnect_scheduled`` events whose attempt number does not follow the
previous one), and that every delay lies in its jitter band. After the storm the Backpack client
must recover (book live) and, once data has flowed, restart its schedule at the first delay.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from native_anyio import Backoff, InstrumentationEvent, SessionConfig, open_session
from native_anyio.backpack import BackpackConfig, BookSnapshot, open_backpack
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator
from native_anyio.testing import ServerConnection, open_ws_server
from reliability._figures import Context, Result, Scenario

if TYPE_CHECKING:
    from native_anyio.backpack import BackpackClient

__all__ = ["SCENARIOS", "schedule_bound"]

STORM = 600.0  # seconds of storm (virtual)
SHORT_STORM = STORM  # cheap in virtual time: CI runs the full 10 minutes too


def schedule_bound(policy: Backoff, horizon: float, *, jitter: bool = True) -> int:
    """
    Attempts that fit in ``[0, horizon)`` when the first is at 0 and each later one waits the
    shortest delay the policy allows (``jitter=False``: the un-jittered nominal delay).
    """
    attempts, at = 1, 0.0
    for retry in range(1, 100_000):
        base = policy.base_delay(retry)
        at += base * (1 - policy.jitter) if jitter else base
        if at >= horizon:
            return attempts
        attempts += 1
    raise ValueError("the policy allows unbounded attempts (zero delays)")


class Schedule:
    """An instrumentation hook that keeps the ``reconnect_scheduled`` events of one session."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, float]] = []  # (time, attempt, delay)
        self.changed = anyio.Event()

    def __call__(self, event: InstrumentationEvent) -> None:
        if event.name == "reconnect_scheduled":
            fields = dict(event.fields)
            attempt, delay = fields["attempt"], fields["delay"]
            assert isinstance(attempt, int)
            assert isinstance(delay, (int, float))
            self.events.append((anyio.current_time(), attempt, float(delay)))
            self.changed.set()
            self.changed = anyio.Event()

    def resets(self, until: float) -> int:
        """Attempt numbers that restart (or skip) instead of following the previous one."""
        attempts = [a for t, a, _ in self.events if t < until]
        return sum(1 for before, after in zip([0, *attempts], attempts, strict=False) if after != before + 1)

    def out_of_band(self, policy: Backoff, until: float) -> int:
        """Delays outside ``[base * (1 - jitter), base]`` for their attempt number."""
        bad = 0
        for t, attempt, delay in self.events:
            base = policy.base_delay(attempt)
            if t < until and not base * (1 - policy.jitter) - 1e-9 <= delay <= base + 1e-9:
                bad += 1
        return bad


async def _closing_server_storm(horizon: float) -> dict[str, float | int]:
    policy = SessionConfig().backoff

    async def close_at_once(conn: ServerConnection) -> None:
        await conn.close(1000)

    schedule = Schedule()
    async with open_ws_server(close_at_once) as server:
        start = anyio.current_time()
        with anyio.move_on_after(horizon):
            async with open_session(server.url, subscriptions=["depth.SOL_USDC"], hooks=[schedule]):
                await anyio.sleep_forever()
        attempts = sum(1 for t in server.attempt_times if t - start < horizon)
    return {
        "attempts": attempts,
        "bound": schedule_bound(policy, horizon),
        "nominal": schedule_bound(policy, horizon, jitter=False),
        "resets": schedule.resets(start + horizon),
        "out_of_band": schedule.out_of_band(policy, start + horizon),
    }


class Snapshots:
    """Drains a client, keeping its book snapshots; ``changed`` fires on each new one."""

    def __init__(self) -> None:
        self.seen: list[BookSnapshot] = []
        self.changed = anyio.Event()

    async def drain(self, client: BackpackClient) -> None:
        while True:
            found = [e for e in await client.receive_events() if isinstance(e, BookSnapshot)]
            if found:
                self.seen += found
                self.changed.set()
                self.changed = anyio.Event()


async def _backpack_storm(horizon: float) -> dict[str, float | int]:
    policy = SessionConfig().backoff
    schedule = Schedule()
    config = SimulatorConfig(symbols=("SOL_USDC",), seed=5, update_rate=20.0)
    async with open_simulator(config) as sim:
        sim.faults.drop_after_accept(1_000_000)
        client_config = BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url)
        start = anyio.current_time()
        async with open_backpack(
            client_config, symbols=["SOL_USDC"], channels=["book"], hooks=[schedule]
        ) as client:
            snapshots = Snapshots()
            async with anyio.create_task_group() as tg:
                tg.start_soon(snapshots.drain, client)
                await anyio.sleep_until(start + horizon)
                attempts = sum(
                    1 for r in sim.fault_log if r.kind == "drop_after_accept" and r.at - start < horizon
                )
                books_during = len(snapshots.seen)
                # The storm ends: the client must come back within one capped delay (plus slack)...
                sim.faults.clear()
                ended = anyio.current_time()
                recovered = None
                with anyio.move_on_after(policy.max_delay + 10.0):
                    while len(snapshots.seen) == books_during:
                        await snapshots.changed.wait()
                    recovered = anyio.current_time() - ended
                # ... and, data having flowed, restart its schedule at the first delay on a drop.
                events_before = len(schedule.events)
                await anyio.sleep(2.0)
                sim.faults.drop()
                with anyio.move_on_after(10.0):
                    while len(schedule.events) == events_before:
                        await schedule.changed.wait()
                after_data = schedule.events[events_before][1] if len(schedule.events) > events_before else -1
                tg.cancel_scope.cancel()
    return {
        "attempts": attempts,
        "bound": schedule_bound(policy, horizon),
        "nominal": schedule_bound(policy, horizon, jitter=False),
        "resets": schedule.resets(start + horizon),
        "out_of_band": schedule.out_of_band(policy, start + horizon),
        "books_during_storm": books_during,
        "recovered_s": -1.0 if recovered is None else recovered,
        "attempt_after_data": after_data,
    }


async def run_storm(ctx: Context) -> Result:
    horizon = SHORT_STORM if ctx.short else STORM
    started = time.perf_counter()
    closing = await _closing_server_storm(horizon)
    backpack = await _backpack_storm(horizon)
    ok = all(
        run["attempts"] <= run["bound"] and run["resets"] == 0 and run["out_of_band"] == 0
        for run in (closing, backpack)
    )
    ok = ok and backpack["books_during_storm"] == 0 and backpack["recovered_s"] >= 0
    ok = ok and backpack["attempt_after_data"] == 1
    minutes = horizon / 60
    value = (
        f"{minutes:g} min: session {closing['attempts']} attempts, Backpack client {backpack['attempts']} "
        f"(bound {closing['bound']}, nominal {closing['nominal']}); backoff resets before data "
        f"{closing['resets'] + backpack['resets']}; delays off schedule "
        f"{closing['out_of_band'] + backpack['out_of_band']}; recovered {backpack['recovered_s']:.1f} s "
        f"after the storm, schedule restarted after data: {'yes' if backpack['attempt_after_data'] == 1 else 'no'}"
    )
    data: dict[str, float | int | str] = {f"session_{k}": v for k, v in closing.items()}
    data.update({f"backpack_{k}": v for k, v in backpack.items()})
    data["horizon_s"] = horizon
    data["wall_seconds"] = time.perf_counter() - started
    return Result(value, ok, data)


SCENARIOS = [
    Scenario(
        key="reconnect_storm",
        figure="Reconnect-storm bound",
        how=(
            "Accept-then-close server for 10 virtual minutes: open_session vs a server closing with 1000 "
            "after every handshake, and the Backpack client vs the simulator dropping every accepted "
            "connection; default policy (0.5 s doubling, 30 s cap, jitter 0.5)"
        ),
        target=(
            "attempts <= schedule bound (shortest jittered delays; nominal ~25); 0 backoff resets before "
            "the first data message"
        ),
        run=run_storm,
        virtual_time=True,
    )
]
