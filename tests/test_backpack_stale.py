"""
Stale-stream detection (reliability property A3), end to end against the simulator under virtual
clocks: a depth stream that stops while the connection stays alive (pings answered, other streams
flowing) is flagged within ``stale_after + check interval``, its book stops being valid until a
resubscribe and a fresh snapshot rebuild it, and a quiet-but-alive stream is never flagged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from native_anyio.backpack import BackpackConfig, BookSnapshot, BookStatus, open_backpack
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

if TYPE_CHECKING:
    from native_anyio.backpack import BackpackClient, Event
    from native_anyio.backpack.simulator import Simulator

pytestmark = pytest.mark.virtual_time

STALE = "SOL_USDC"
OTHER = "BTC_USDC"
QUIET = "ETH_USDC"
LIMIT = 5.0
CHECK = 1.0


def client_config(sim: Simulator) -> BackpackConfig:
    return BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url, unknown_symbol_timeout=5.0)


def book_is_truth(client: BackpackClient, sim: Simulator, symbol: str) -> bool:
    book = client.book(symbol)
    if book is None:
        return False
    truth = sim.book_at(symbol, book.last_update_id)
    return book.bids() == list(truth.bids) and book.asks() == list(truth.asks)


async def events_until(client: BackpackClient, done: object, *, limit: int = 20_000) -> list[Event]:
    """Receive batches until ``done(events so far)`` holds (bounded in batches; callers bound time)."""
    seen: list[Event] = []
    for _ in range(limit):
        seen.extend(await client.receive_events())
        if done(seen):  # type: ignore[operator]
            return seen
    raise AssertionError("the condition never held")


def live(client: BackpackClient, *symbols: str) -> object:
    return lambda _seen: all(client.book(s) is not None for s in symbols)


async def test_stopped_depth_stream_is_flagged_resubscribed_and_rebuilt() -> None:
    config = SimulatorConfig(symbols=(STALE, OTHER), seed=5, update_rate=10.0)
    with anyio.fail_after(600):
        async with (
            open_simulator(config) as sim,
            open_backpack(
                client_config(sim),
                symbols=(STALE, OTHER),
                channels=("book", "trades"),
                stale_after=LIMIT,
                stale_check_interval=CHECK,
            ) as client,
        ):
            await events_until(client, live(client, STALE, OTHER))
            connections = sim.connections
            assert len(connections) == 1
            stopped_at = anyio.current_time()
            sim.faults.stop_stream(f"depth.{STALE}")

            def flagged(seen: list[Event]) -> bool:
                return any(isinstance(e, BookStatus) and e.symbol == "SOL-USDC" for e in seen)

            seen = await events_until(client, flagged)
            detected = anyio.current_time() - stopped_at
            status = next(e for e in seen if isinstance(e, BookStatus) and e.symbol == "SOL-USDC")
            assert status.state == "resyncing"
            assert status.reason.startswith("stale")
            # Flagged within T_idle + check interval (A3), and not before T_idle.
            assert LIMIT <= detected <= LIMIT + CHECK + 0.2
            assert client.book(STALE) is None  # fail-closed from the flag on
            # Trades of the stale symbol and the other book kept flowing meanwhile.
            assert not any(isinstance(e, BookStatus) and e.symbol == "BTC-USDC" for e in seen)
            assert client.book(OTHER) is not None

            # The resubscribe clears the stuck stream; a fresh snapshot rebuilds the book.
            def rebuilt(seen: list[Event]) -> bool:
                return client.book(STALE) is not None and any(
                    isinstance(e, BookSnapshot) and e.symbol == "SOL-USDC" for e in seen
                )

            await events_until(client, rebuilt)
            assert book_is_truth(client, sim, STALE)
            assert book_is_truth(client, sim, OTHER)
            # Same connection throughout: a stale stream is not a dead connection.
            assert len(sim.connections) == 1
            methods = [(r.method, r.params) for r in sim.subscriptions() if f"depth.{STALE}" in r.params]
            assert ("UNSUBSCRIBE", (f"depth.{STALE}",)) in methods
            assert methods[-1] == ("SUBSCRIBE", (f"depth.{STALE}",))
            stats = client.statistics()
            assert stats.stale_flags == 1
            assert dict(stats.books) == {"SOL-USDC": "live", "BTC-USDC": "live"}


async def test_quiet_but_alive_stream_is_never_flagged() -> None:
    # ETH_USDC changes every 4 s (0.25 updates/s): quiet, but inside a 6 s limit. 10 virtual minutes.
    config = SimulatorConfig(symbols=(QUIET, OTHER), seed=7, update_rate=5.0, update_rates={QUIET: 0.25})
    with anyio.fail_after(900):
        async with (
            open_simulator(config) as sim,
            open_backpack(
                client_config(sim), symbols=(QUIET, OTHER), channels=("book",), stale_after=6.0
            ) as client,
        ):
            await events_until(client, live(client, QUIET, OTHER))
            start = anyio.current_time()
            seen = await events_until(client, lambda _s: anyio.current_time() - start >= 600.0, limit=200_000)
            assert not [e for e in seen if isinstance(e, BookStatus)]
            assert client.statistics().stale_flags == 0
            assert book_is_truth(client, sim, QUIET)
            # The quiet book did move during those ten minutes (so the test saw real updates).
            assert client.book(QUIET).last_update_id > 100  # type: ignore[union-attr]


async def test_a_mute_without_limit_is_not_flagged_and_limits_are_per_symbol() -> None:
    # Only OTHER has a limit: STALE's stop goes unflagged (its limit is off), OTHER's is caught.
    config = SimulatorConfig(symbols=(STALE, OTHER), seed=3, update_rate=10.0)
    with anyio.fail_after(600):
        async with (
            open_simulator(config) as sim,
            open_backpack(
                client_config(sim),
                symbols=(STALE, OTHER),
                channels=("book",),
                stale_after={"BTC-USDC": 3.0},
            ) as client,
        ):
            await events_until(client, live(client, STALE, OTHER))
            sim.faults.stop_stream(f"depth.{STALE}")
            start = anyio.current_time()
            await events_until(client, lambda _s: anyio.current_time() - start >= 30.0)
            assert client.book(STALE) is not None  # no limit configured for it
            assert client.statistics().stale_flags == 0
            sim.faults.stop_stream(f"depth.{OTHER}")
            seen = await events_until(
                client, lambda s: any(isinstance(e, BookStatus) and e.symbol == "BTC-USDC" for e in s)
            )
            assert next(e.reason for e in seen if isinstance(e, BookStatus)).startswith("stale")


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True, {"SOL_USDC": 0}])
async def test_invalid_stale_limits_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="stale_after"):
        async with open_backpack(BackpackConfig(), stale_after=bad):  # type: ignore[arg-type]
            pass
