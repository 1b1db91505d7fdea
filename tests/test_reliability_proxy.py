"""
Network faults between the real Backpack client and the simulator, injected by the loopback fault
proxy (``native_anyio.testing.open_fault_proxy``): the websocket goes through the proxy, REST goes
direct. Runs under virtual clocks on asyncio and trio, real sockets on 127.0.0.1.

For each fault that breaks the connection (RST, FIN, a frame cut mid-way, a corrupted byte, a
half-open path) the client must notice, reconnect through the proxy (now passing), resync from a
fresh snapshot, and every book it emits, before and after, must equal the simulator's ground truth
at that update id (``sim.book_at``). A half-open path is noticed by the ping/pong watchdog within
``ping_interval + ping_timeout + 1`` s. Delay and Throttle must not break anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import pytest

from native_anyio import Backoff, LivenessConfig, OrderBook, SessionConfig
from native_anyio.backpack import BackpackConfig, BookDelta, BookSnapshot, BookStatus, Trade, open_backpack
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator
from native_anyio.testing import (
    Blackhole,
    CorruptByte,
    CutMidFrame,
    Delay,
    Fin,
    Mode,
    Pass,
    Reset,
    Throttle,
    open_fault_proxy,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from native_anyio import InstrumentationEvent
    from native_anyio.backpack import BackpackClient, Event
    from native_anyio.backpack.simulator import Simulator

#: The reliability scenarios run in their own nox session (`reliability-short`), on 3 loops.
pytestmark = pytest.mark.reliability

SYMBOLS = ("SOL_USDC", "BTC_USDC_PERP")
NOT_LIVE = ("syncing", "resyncing", "failed")
PING_INTERVAL = 2.0
PING_TIMEOUT = 3.0
SESSION = SessionConfig(
    handshake_timeout=5.0,
    close_timeout=2.0,
    liveness=LivenessConfig(
        ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT, server_ping_interval=None
    ),
)
#: For the real-time runs (asyncio, asyncio+uvloop, trio): reconnect quickly.
FAST_SESSION = SessionConfig(
    handshake_timeout=5.0,
    close_timeout=2.0,
    liveness=SESSION.liveness,
    backoff=Backoff(initial=0.05, max_delay=0.2),
)


def wire(symbol: str) -> str:
    return symbol.replace("-", "_")


@dataclass
class Watch:
    """Every emitted book event applied to an own book and compared with the ground truth."""

    sim: Simulator
    books: dict[str, OrderBook | None] = field(default_factory=dict)
    #: per symbol: ("status", state) / ("snapshot", id) / ("delta", U, u), in order
    log: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    trade_ids: dict[str, list[int]] = field(default_factory=dict)
    checked: int = 0

    def feed(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Trade):
                self._trade(wire(event.symbol), event)
            elif isinstance(event, (BookStatus, BookSnapshot, BookDelta)):
                self._book(wire(event.symbol), event)

    def _trade(self, symbol: str, trade: Trade) -> None:
        truth = {t.id: t for t in self.sim.trades(symbol)}[trade.id]
        assert (trade.price, trade.amount) == (truth.price, truth.qty), trade
        self.trade_ids.setdefault(symbol, []).append(trade.id)

    def _book(self, symbol: str, event: BookStatus | BookSnapshot | BookDelta) -> None:
        log = self.log.setdefault(symbol, [])
        if isinstance(event, BookStatus):
            log.append(("status", event.state))
            if event.state in NOT_LIVE:
                self.books[symbol] = None  # fail-closed: only a fresh snapshot may follow
            return
        if isinstance(event, BookSnapshot):
            book = self.books[symbol] = OrderBook()
            book.load(event.bids, event.asks, event.sequence)
            log.append(("snapshot", event.sequence))
        else:
            maybe = self.books.get(symbol)
            assert maybe is not None, f"{symbol}: a delta after a non-live status, before a snapshot"
            book = maybe
            assert event.first_sequence == book.last_update_id + 1, f"{symbol}: applied across a gap"
            book.apply(event.bids, event.asks)
            book.last_update_id = event.sequence
            log.append(("delta", event.first_sequence, event.sequence))
        truth = self.sim.book_at(symbol, book.last_update_id)
        assert (book.bids(), book.asks()) == (list(truth.bids), list(truth.asks)), (
            f"{symbol}: a wrong book at {book.last_update_id}"
        )
        self.checked += 1

    def live(self, symbol: str) -> bool:
        return self.books.get(symbol) is not None

    def mark(self) -> dict[str, int]:
        return {s: len(self.log.get(s, [])) for s in SYMBOLS}

    def since(self, mark: dict[str, int], symbol: str) -> list[tuple[Any, ...]]:
        return self.log.get(symbol, [])[mark[symbol] :]


@dataclass
class Recorder:
    """Session instrumentation events with their (virtual) time."""

    events: list[tuple[float, str, InstrumentationEvent]] = field(default_factory=list)

    def __call__(self, event: InstrumentationEvent) -> None:
        self.events.append((anyio.current_time(), event.name, event))

    def named(self, name: str) -> list[tuple[float, InstrumentationEvent]]:
        return [(t, e) for t, n, e in self.events if n == name and e.source == "session"]


async def pump(
    client: BackpackClient, watch: Watch, until: Callable[[], bool], *, limit: int = 20_000
) -> None:
    """Feed the watch until ``until()`` holds (bounded in batches; callers bound time)."""
    for _ in range(limit):
        if until():
            return
        watch.feed(await client.receive_events())
    raise AssertionError("the condition never held")


async def pump_for(client: BackpackClient, watch: Watch, seconds: float) -> None:
    deadline = anyio.current_time() + seconds
    await pump(client, watch, lambda: anyio.current_time() >= deadline)


def resynced(watch: Watch, mark: dict[str, int]) -> Callable[[], bool]:
    """Every symbol went non-live after ``mark`` and is live again from a fresh snapshot."""

    def check() -> bool:
        for symbol in SYMBOLS:
            entries = watch.since(mark, symbol)
            down = next((i for i, e in enumerate(entries) if e[0] == "status" and e[1] in NOT_LIVE), None)
            if down is None or not watch.live(symbol):
                return False
            if not any(e[0] == "snapshot" for e in entries[down:]):
                return False
        return True

    return check


@dataclass
class Outcome:
    watch: Watch
    recorder: Recorder
    mark: dict[str, int]
    faulted_at: float
    accepted: int
    modes: list[Mode]
    sim_connections: int
    #: bytes forwarded to the client on the last connection since the fault, and over how long
    forwarded: int
    elapsed: float


async def run_scenario(
    fault: Mode, *, breaks: bool, settle: float = 3.0, session: SessionConfig = SESSION, warmup: float = 1.0
) -> Outcome:
    """Books live through the proxy, then ``fault`` on the live connection, then recovery (or not)."""
    recorder = Recorder()
    sim_config = SimulatorConfig(symbols=SYMBOLS, seed=5, update_rate=20.0)
    async with open_simulator(sim_config) as sim:
        ws = urlsplit(sim.ws_url)
        async with open_fault_proxy(ws.hostname or "", ws.port or 0) as proxy:
            config = BackpackConfig(ws_url=proxy.rewrite_url(sim.ws_url), rest_url=sim.rest_url)
            with anyio.fail_after(120):
                async with open_backpack(
                    config,
                    symbols=SYMBOLS,
                    channels=["trades", "book"],
                    session_config=session,
                    hooks=[recorder],
                ) as client:
                    watch = Watch(sim)
                    await pump(client, watch, lambda: all(watch.live(s) for s in SYMBOLS))
                    await pump_for(client, watch, warmup)
                    assert proxy.accepted == 1
                    mark = watch.mark()
                    proxy.set_default(Pass())  # the reconnect goes through a healthy path
                    faulted_at = anyio.current_time()
                    bytes_before = proxy.connections[0].bytes_down
                    proxy.apply_all(fault)
                    if breaks:
                        await pump(client, watch, resynced(watch, mark))
                    await pump_for(client, watch, settle)
                    modes = [c.mode for c in proxy.connections]
                    rtt = client.session.statistics().last_rtt
                    # What the last connection forwarded since the fault, over how long.
                    forwarded = proxy.connections[-1].bytes_down - (bytes_before if not breaks else 0)
                    elapsed = anyio.current_time() - faulted_at
            accepted = proxy.accepted
        sim_connections = len(sim.connections)
    if isinstance(fault, Delay):  # the pongs really came through the delayed path
        legs = 2 if fault.direction == "both" else 1
        assert rtt == pytest.approx(legs * fault.seconds, abs=1e-3)
    for symbol in SYMBOLS:
        ids = watch.trade_ids.get(symbol, [])
        assert len(ids) == len(set(ids)), f"{symbol}: a trade delivered twice"
    assert watch.checked > 20
    return Outcome(watch, recorder, mark, faulted_at, accepted, modes, sim_connections, forwarded, elapsed)


def assert_recovered(outcome: Outcome) -> None:
    """One reconnect through the proxy, every book rebuilt from a fresh snapshot, then flowing."""
    watch, mark = outcome.watch, outcome.mark
    assert outcome.accepted == 2
    assert outcome.modes[-1] == Pass()
    assert len(outcome.recorder.named("connected")) == 2
    for symbol in SYMBOLS:
        entries = watch.since(mark, symbol)
        down = next(i for i, e in enumerate(entries) if e[0] == "status")
        assert entries[down][1] in NOT_LIVE
        first_book = next(e for e in entries[down:] if e[0] != "status")
        assert first_book[0] == "snapshot", f"{symbol}: continued from the old book"
        assert any(e[0] == "delta" for e in entries[entries.index(first_book) :]), symbol
        assert watch.live(symbol)


# -------------------------------------------------------------------------- breaking faults


@pytest.mark.virtual_time
@pytest.mark.parametrize(
    ("fault", "kinds"),
    [
        pytest.param(Reset(), {"transport"}, id="reset"),
        pytest.param(Fin(), {"transport"}, id="fin"),
        pytest.param(CutMidFrame(after_bytes=7), {"transport"}, id="cut-mid-frame"),
        pytest.param(CorruptByte(offset=40), {"protocol_error"}, id="corrupt-byte"),
    ],
)
async def test_a_broken_connection_is_detected_and_books_resync_exactly(fault: Mode, kinds: set[str]):
    outcome = await run_scenario(fault, breaks=True)
    assert_recovered(outcome)
    (at, disconnected), _at_exit = outcome.recorder.named("disconnected")
    reason = str(disconnected.get("reason"))
    assert reason.split(" ")[0].rstrip(":") in kinds, reason
    # Noticed at once: RST/FIN/cut end the read, a corrupted byte fails the frame parser as soon
    # as the next frames arrive (20 updates/s per symbol).
    assert at - outcome.faulted_at <= 1.0


@pytest.mark.virtual_time
async def test_a_half_open_path_is_detected_by_ping_pong_within_the_bound():
    outcome = await run_scenario(Blackhole(), breaks=True)
    assert_recovered(outcome)
    [(failed_at, failed)] = outcome.recorder.named("liveness_failed")
    assert failed.get("kind") == "ping_timeout"
    detection = failed_at - outcome.faulted_at
    # A ping in flight at the fault times out after PING_TIMEOUT; the latest a ping can go out
    # is PING_INTERVAL after the fault: so (0, interval + timeout], within the +1 s budget.
    assert 0 < detection <= PING_INTERVAL + PING_TIMEOUT
    assert detection <= PING_INTERVAL + PING_TIMEOUT + 1.0
    (down_at, _), _at_exit = outcome.recorder.named("disconnected")
    assert down_at - failed_at <= 0.5  # a dead peer is not waited for (no close_timeout)


# ----------------------------------------------------------------------- degrading faults


@pytest.mark.virtual_time
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Delay(0.25), id="delay"),
        pytest.param(Delay(0.25, direction="both"), id="delay-both"),
        # The feed averages about 9.5 kB/s with bursts of 2.3 kB per 0.1 s: this rate binds.
        pytest.param(Throttle(12_000), id="throttle"),
    ],
)
async def test_a_slow_path_keeps_the_client_working_and_books_exact(fault: Mode):
    settle = 10.0
    outcome = await run_scenario(fault, breaks=False, settle=settle)
    assert outcome.accepted == 1  # never reconnected
    if isinstance(fault, Throttle):
        burst = fault.bytes_per_second // 10
        assert outcome.forwarded <= fault.bytes_per_second * outcome.elapsed + burst
        assert outcome.forwarded > 0.5 * fault.bytes_per_second * outcome.elapsed  # but kept up
    assert len(outcome.recorder.named("disconnected")) == 1  # only when the client closed
    for symbol in SYMBOLS:
        entries = outcome.watch.since(outcome.mark, symbol)
        assert [e for e in entries if e[0] == "status"] == [], symbol  # never resynced
        assert sum(e[0] == "delta" for e in entries) > 100, symbol  # books kept flowing


# --------------------------------------------------------------------------- real time too


@pytest.mark.uvloop
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Reset(), id="reset"),
        pytest.param(CutMidFrame(after_bytes=7), id="cut-mid-frame"),
        pytest.param(CorruptByte(offset=40), id="corrupt-byte"),
    ],
)
async def test_a_broken_connection_resyncs_exactly_in_real_time(fault: Mode):
    """The same recovery on real clocks, including asyncio with uvloop (property H3)."""
    outcome = await run_scenario(fault, breaks=True, settle=0.5, session=FAST_SESSION, warmup=0.3)
    assert_recovered(outcome)
