"""
Clock-skew table (property G4): signed requests against a simulator whose clock is off by
-90, -30, -3, 0, +3, +30 and +90 s, with and without time sync, in virtual time.

The simulator verifies every signature and its window on its own clock (``now > ts + window``:
expired; ``ts > now + window``: in the future); the client signs with the default 5,000 ms
window. For each offset, each cell uses a fresh client:

* POST order, no sync: accepted exactly when the skew fits the window; when it does not, the
  client re-syncs its clock but never resends the order (the POST is sent once);
* GET balances, no sync: an idempotent request whose "expired/future" answer triggers one re-sync
  and one retry, so it succeeds at every offset;
* POST order after ``sync_clock()``: accepted at every offset; the measured offset is reported;
* the same with an asymmetric round trip (the ``/api/v1/time`` answer delayed 400 ms, the request
  leg instant): the midpoint estimate is off by 0.2 s, still well inside the window;
* a private websocket subscription (``account.orderUpdate``) without and with sync: the
  simulator answers 4003 to a stale signature.

Also checked: the window is never widened to make a request pass (still 5,000 ms), and a
warning is logged exactly when the measured offset exceeds 1 s.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING

import anyio

from native_anyio import AuthError
from native_anyio.backpack import BackpackConfig, BackpackRest, open_backpack
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator, virtual_wall_clock
from reliability._figures import Context, Result, Scenario

if TYPE_CHECKING:
    from native_anyio.backpack.simulator import Simulator

__all__ = ["SCENARIOS"]

OFFSETS = (-90.0, -30.0, -3.0, 0.0, 3.0, 30.0, 90.0)
WINDOW_MS = 5000
ASYMMETRIC_DELAY = 0.4


class _Warnings(logging.Handler):
    """Counts the clock warnings of the Backpack logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "clock" in record.getMessage():
            self.count += 1


def _config(sim: Simulator) -> BackpackConfig:
    return BackpackConfig(
        rest_url=sim.rest_url,
        ws_url=sim.ws_url,
        api_key=sim.api_key,
        api_secret=sim.api_secret,
        clock=virtual_wall_clock(),
        window_ms=WINDOW_MS,
    )


def _order(sim: Simulator) -> dict[str, str]:
    price = sim.book("SOL_USDC").bids[0][0] - Decimal(1)
    return {"symbol": "SOL_USDC", "side": "Bid", "orderType": "Limit", "quantity": "1", "price": str(price)}


async def _post(sim: Simulator, *, sync: bool, delay: float = 0.0) -> tuple[bool, int, float | None, bool]:
    """(accepted, HTTP requests sent besides clock sync, measured offset, window unchanged)."""
    config = _config(sim)
    measured = None
    async with BackpackRest(config) as rest:
        if delay:
            sim.faults.delay_rest("/api/v1/time", delay)
        if sync:
            measured = await rest.sync_clock()
        sim.faults.clear()
        before = rest.statistics().requests
        try:
            await rest.execute_order(**_order(sim))
            accepted = True
        except AuthError:
            accepted = False
        sent = rest.statistics().requests - before
        if not accepted:
            sent -= 5  # the automatic re-sync: five GET /api/v1/time
            measured = rest.clock_offset
    signer = config.signer
    assert signer is not None
    return accepted, sent, measured, signer.window_ms == WINDOW_MS


async def _get(sim: Simulator) -> bool:
    async with BackpackRest(_config(sim)) as rest:
        try:
            await rest.balances()
        except AuthError:
            return False
    return True


async def _ws_private(sim: Simulator, *, sync: bool) -> bool:
    """Whether a private subscription is accepted (a rejected one ends the client with AuthError)."""
    seen = len(sim.subscriptions())
    try:
        async with open_backpack(_config(sim)) as client:
            if sync:
                await client.rest.sync_clock()
            await client.subscribe([], ["orders"])
            with anyio.move_on_after(3.0):
                while True:
                    await client.receive_events()
    except AuthError:
        return False
    records = [r for r in sim.subscriptions()[seen:] if r.signed]
    return bool(records) and all(not r.errors for r in records)


async def _row(offset: float) -> dict[str, object]:
    config = SimulatorConfig(
        symbols=("SOL_USDC",), seed=2, update_rate=5.0, clock=virtual_wall_clock(), clock_offset=offset
    )
    async with open_simulator(config) as sim:
        post, post_sent, post_offset, window_ok = await _post(sim, sync=False)
        get = await _get(sim)
        synced, synced_sent, measured, window_ok2 = await _post(sim, sync=True)
        skewed, _, skew_measured, window_ok3 = await _post(sim, sync=True, delay=ASYMMETRIC_DELAY)
        ws_plain = await _ws_private(sim, sync=False)
        ws_synced = await _ws_private(sim, sync=True)
    return {
        "offset": offset,
        "post": post,
        "post_sent": post_sent,
        "post_resynced": post_offset,
        "get": get,
        "synced": synced,
        "synced_sent": synced_sent,
        "measured": measured,
        "asym": skewed,
        "asym_measured": skew_measured,
        "ws_plain": ws_plain,
        "ws_synced": ws_synced,
        "window_kept": window_ok and window_ok2 and window_ok3,
    }


def _mark(ok: bool) -> str:
    return "accepted" if ok else "rejected"


def _table(rows: list[dict[str, object]], warnings: list[int]) -> str:
    lines = [
        "| Server offset | POST, no sync | GET, no sync (auto re-sync) | POST after sync (measured) "
        "| POST after sync, 400 ms one-way (measured) | WS private, no sync | WS private after sync "
        "| Warning logged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, warned in zip(rows, warnings, strict=True):
        offset = float(row["offset"])  # type: ignore[arg-type]
        post = _mark(bool(row["post"])) + ("" if row["post"] else f", sent {row['post_sent']}x")
        lines.append(
            f"| {offset:+g} s | {post} | {_mark(bool(row['get']))} "
            f"| {_mark(bool(row['synced']))} ({float(row['measured']):+.3f} s) "  # type: ignore[arg-type]
            f"| {_mark(bool(row['asym']))} ({float(row['asym_measured']):+.3f} s) "  # type: ignore[arg-type]
            f"| {_mark(bool(row['ws_plain']))} | {_mark(bool(row['ws_synced']))} | {'yes' if warned else 'no'} |"
        )
    lines.append("")
    lines.append(
        f"Window {WINDOW_MS} ms, never widened. The simulator rejects `now > ts + window` (expired) and "
        "`ts > now + window` (future). A rejected POST is never resent (sent once), but the client "
        "re-syncs its clock; GET requests re-sync and retry once."
    )
    return "\n".join(lines)


async def run_skew(ctx: Context) -> Result:
    started = time.perf_counter()
    handler = _Warnings()
    logger = logging.getLogger("native_anyio.backpack")
    rows: list[dict[str, object]] = []
    warnings: list[int] = []
    logger.addHandler(handler)
    try:
        for offset in OFFSETS:
            before = handler.count
            rows.append(await _row(offset))
            warnings.append(handler.count - before)
    finally:
        logger.removeHandler(handler)
    failures = []
    for row, warned in zip(rows, warnings, strict=True):
        offset = float(row["offset"])  # type: ignore[arg-type]
        fits = abs(offset) * 1000 <= WINDOW_MS
        checks = {
            "POST without sync": row["post"] == fits,
            "POST sent once": row["post_sent"] == 1,
            "GET with auto re-sync": row["get"],
            "POST after sync": row["synced"],
            "measured offset": abs(float(row["measured"]) - offset) <= 0.01,  # type: ignore[arg-type]
            "asymmetric POST": row["asym"],
            "asymmetric offset": abs(float(row["asym_measured"]) - offset) <= ASYMMETRIC_DELAY,  # type: ignore[arg-type]
            "WS without sync": row["ws_plain"] == fits,
            "WS after sync": row["ws_synced"],
            "window kept": row["window_kept"],
            "warning": (warned > 0) == (abs(offset) > 1.0),
        }
        failures += [f"{offset:+g} s: {name}" for name, ok in checks.items() if not ok]
    accepted_plain = sum(bool(r["post"]) for r in rows)
    accepted_synced = sum(bool(r["synced"]) and bool(r["asym"]) and bool(r["ws_synced"]) for r in rows)
    value = (
        f"no sync: {accepted_plain}/7 offsets accepted (exactly |offset| <= 5 s); with sync: "
        f"{accepted_synced}/7 accepted (REST, 400 ms asymmetric RTT, WS); window kept at 5000 ms"
    )
    if failures:
        value += "; FAILED: " + ", ".join(failures)
    data: dict[str, float | int | str] = {
        "table_md": _table(rows, warnings),
        "accepted_without_sync": accepted_plain,
        "accepted_with_sync": accepted_synced,
        "failures": len(failures),
        "wall_seconds": time.perf_counter() - started,
    }
    return Result(value, not failures, data)


SCENARIOS = [
    Scenario(
        key="clock_skew",
        figure="Clock-skew table",
        how=(
            "Signed REST (POST order, GET balances) and a private WS subscription against the simulator "
            "with its clock at -90/-30/-3/0/+3/+30/+90 s, with and without sync_clock(), and with a "
            "400 ms one-way delay on the time endpoint (virtual time); the table is below"
        ),
        target=(
            "without sync: rejected exactly when skew > 5 s window (POST never resent); with sync: all "
            "accepted; window never widened"
        ),
        run=run_skew,
        virtual_time=True,
    )
]
