"""
The rig shared by the network scenarios (``net_disconnects``, ``net_half_open``, ``net_cycles``,
``net_day``); it defines no scenario itself.

One rig is the embedded Backpack simulator, the loopback fault proxy in front of its websocket
port, and the real client (``open_backpack``, trades and books of a few symbols) connected
through the proxy (REST goes straight to the simulator). A single task pumps the client and
feeds every event to a :class:`Checker`, which holds the client to the ground truth:

* every emitted ``BookSnapshot`` and every book after a ``BookDelta`` equals
  ``sim.book_at(symbol, update_id)``, level by level;
* within a live stretch deltas follow each other exactly (``U == previous u + 1``); anything
  else is counted as duplicated (``u <= previous u``), lost (``U > previous u + 1``) or out of
  order (an overlap), and the book is ignored until the next snapshot so one fault counts once;
* no ``BookDelta`` arrives between a non-live ``BookStatus`` and the next snapshot, and
  ``client.book()`` is ``None`` exactly while the emitted stream says the book is not live;
* no trade id is delivered twice.

A *drop* (:meth:`Rig.drop`) injects one fault of a :data:`KINDS` kind and pumps until every
book is valid again, that is until each symbol went non-live after the fault and then emitted a
fresh snapshot that matched the truth. Its timings come from the session's instrumentation
hooks: the fault-to-``disconnected`` delay (detection) and the reconnect delays the backoff
scheduled meanwhile (deliberate waiting, reported apart from the time to a valid book).
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import random
import subprocess
import sys
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.buffered import BufferedByteReceiveStream

import native_anyio
from native_anyio import OrderBook
from native_anyio.backpack import (
    BackpackConfig,
    BookDelta,
    BookSnapshot,
    BookStatus,
    Trade,
    open_backpack,
)
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator
from native_anyio.testing import Blackhole, CutMidFrame, Fin, Reset, open_fault_proxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence

    from native_anyio import InstrumentationEvent, SessionConfig
    from native_anyio.backpack import BackpackClient, Event
    from native_anyio.backpack.simulator import Simulator
    from native_anyio.testing import FaultProxy, ProxyConnection

__all__ = [
    "KINDS",
    "Checker",
    "DropResult",
    "Rig",
    "RigConfig",
    "SimControl",
    "fd_count",
    "open_rig",
    "rss_bytes",
    "task_count",
]

#: Forced-disconnect kinds, each injected the way a real network or venue does it:
#:
#: * ``rst``: the proxy aborts both sockets with a TCP RST;
#: * ``fin``: the proxy closes both sockets in order (EOF, no close frame);
#: * ``cut_mid_frame``: the proxy forwards 1-120 more bytes (inside a frame), then RST;
#: * ``blackhole``: the proxy forwards nothing and keeps both sockets open (half-open); only the
#:   client's ping deadline can tell;
#: * ``close_1001``: the simulator sends close 1001 "going away" (a planned restart);
#: * ``handshake_drop``: a RST, then the reconnect's handshake fails too: alternately the proxy
#:   resets the next TCP connection before the upgrade, and the simulator completes the 101 and
#:   drops the socket at once.
KINDS: Final = ("rst", "fin", "cut_mid_frame", "blackhole", "close_1001", "handshake_drop")

_NOT_LIVE: Final = ("syncing", "resyncing", "failed")
_TRADE_WINDOW: Final = 20_000


def fd_count() -> int:
    """Open file descriptors of this process (``/proc/self/fd``)."""
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    """Live tasks of the running event loop."""
    return len(anyio.get_running_tasks())


def rss_bytes(*, trim: bool = False) -> int:
    """
    Resident set size of this process after a full collection (``/proc/self/statm``).

    ``trim=True`` first hands the free heap memory back to the OS (glibc ``malloc_trim(0)``), so
    the figure counts memory in use rather than what the allocator keeps cached: read buffers of
    128-256 KiB per socket read leave holes that glibc retains, which is not a leak.
    """
    gc.collect()
    if trim:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: nothing to trim
            pass
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _wire(symbol: str) -> str:
    return symbol.replace("-", "_")


class Checker:
    """Checks every emitted book and trade against the simulator's ground truth (module docs)."""

    def __init__(self, sim: Simulator | None, symbols: Iterable[str], *, track_trades: bool = True) -> None:
        self.sim = sim
        self.track_trades = track_trades
        self.symbols = tuple(symbols)
        self.books: dict[str, OrderBook | None] = dict.fromkeys(self.symbols)
        #: symbols whose stream broke an invariant: ignored until their next snapshot
        self.poisoned: set[str] = set()
        self.snapshots = 0
        self.deltas = 0
        self.wrong_books = 0
        self.duplicated = 0
        self.lost = 0
        self.out_of_order = 0
        self.emitted_while_invalid = 0
        self.fail_open = 0
        self.trades = 0
        self.duplicate_trades = 0
        self._trade_ids: dict[str, tuple[set[int], deque[int]]] = {}
        # per drop: did the symbol go down since mark(), and when it came back with a snapshot
        self._down: dict[str, bool] = dict.fromkeys(self.symbols, False)
        self._back: dict[str, float | None] = dict.fromkeys(self.symbols)
        self._deltas_since: dict[str, int] = dict.fromkeys(self.symbols, 0)

    @property
    def violations(self) -> int:
        """Every broken invariant so far (the target is 0)."""
        return (self.wrong_books + self.duplicated + self.lost + self.out_of_order
                + self.emitted_while_invalid + self.fail_open + self.duplicate_trades)  # fmt: skip

    def mark(self) -> None:
        """Start watching for one drop's recovery."""
        for symbol in self.symbols:
            self._down[symbol] = False
            self._back[symbol] = None
            self._deltas_since[symbol] = 0

    def recovered_at(self) -> float | None:
        """When the last book became valid again after going down since :meth:`mark` (else None)."""
        if not all(self._down.values()):
            return None
        times = list(self._back.values())
        if any(t is None for t in times) or not all(self.books[s] is not None for s in self.symbols):
            return None
        return max(t for t in times if t is not None)

    def deltas_since_mark(self) -> int:
        """Deltas checked on the least active symbol since :meth:`mark`."""
        return min(self._deltas_since.values())

    def feed(self, events: Sequence[Event], now: float) -> None:
        """Check one batch of client events, received at ``now``."""
        for event in events:
            if isinstance(event, BookDelta):
                self._delta(_wire(event.symbol), event)
            elif isinstance(event, Trade):
                self._trade(_wire(event.symbol), event.id)
            elif isinstance(event, BookSnapshot):
                self._snapshot(_wire(event.symbol), event, now)
            elif isinstance(event, BookStatus) and event.state in _NOT_LIVE:
                symbol = _wire(event.symbol)
                self.books[symbol] = None
                self.poisoned.discard(symbol)
                self._down[symbol] = True
                self._back[symbol] = None

    def check_client(self, client: BackpackClient) -> None:
        """The client's own view agrees with what it emitted (fail-closed ``book()``)."""
        for symbol in self.symbols:
            if symbol in self.poisoned:
                continue
            mine = self.books[symbol]
            theirs = client.book(symbol)
            if (mine is None) != (theirs is None) or (
                mine is not None and theirs is not None and mine.last_update_id != theirs.last_update_id
            ):
                self.fail_open += 1

    def _snapshot(self, symbol: str, event: BookSnapshot, now: float) -> None:
        self.snapshots += 1
        book = self.books[symbol] = OrderBook()
        book.load(event.bids, event.asks, event.sequence)
        self.poisoned.discard(symbol)
        if self._compare(symbol, book) and self._down[symbol] and self._back[symbol] is None:
            self._back[symbol] = now

    def _delta(self, symbol: str, event: BookDelta) -> None:
        book = self.books[symbol]
        if book is None:
            if symbol not in self.poisoned:
                self.emitted_while_invalid += 1
            return
        expected = book.last_update_id + 1
        if event.first_sequence != expected:
            if event.sequence < expected:
                self.duplicated += 1
            elif event.first_sequence > expected:
                self.lost += 1
            else:
                self.out_of_order += 1
            self.books[symbol] = None
            self.poisoned.add(symbol)
            return
        book.apply(event.bids, event.asks)
        book.last_update_id = event.sequence
        self.deltas += 1
        self._deltas_since[symbol] += 1
        self._compare(symbol, book)

    def _compare(self, symbol: str, book: OrderBook) -> bool:
        if self.sim is None:  # the simulator runs in another process: no ground truth here
            return True
        # The current truth is cheap; book_at() replays up to 512 updates from a checkpoint, so it
        # is only asked for when the simulator has already moved on.
        truth = self.sim.book(symbol)
        if truth.last_update_id != book.last_update_id:
            truth = self.sim.book_at(symbol, book.last_update_id)
        if book.bids() == list(truth.bids) and book.asks() == list(truth.asks):
            return True
        self.wrong_books += 1
        return False

    def _trade(self, symbol: str, trade_id: int) -> None:
        self.trades += 1
        if not self.track_trades:
            return
        seen = self._trade_ids.get(symbol)
        if seen is None:
            seen = self._trade_ids[symbol] = (set(), deque())
        ids, order = seen
        if trade_id in ids:
            self.duplicate_trades += 1
            return
        ids.add(trade_id)
        order.append(trade_id)
        if len(order) > _TRADE_WINDOW:
            ids.discard(order.popleft())


def _delay(event: InstrumentationEvent) -> float:
    """The ``delay`` of a ``reconnect_scheduled`` event."""
    delay = event.get("delay", 0.0)
    return float(delay) if isinstance(delay, (int, float)) else 0.0


class Recorder:
    """Session instrumentation events with their loop time (cleared per drop: bounded)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, InstrumentationEvent]] = []

    def __call__(self, event: InstrumentationEvent) -> None:
        if event.source == "session":
            self.events.append((anyio.current_time(), event.name, event))

    def times(self, name: str) -> list[float]:
        return [t for t, n, _ in self.events if n == name]


@dataclass(frozen=True)
class RigConfig:
    """
    How a rig runs.

    Attributes:
        symbols: simulated markets, each subscribed to ``trades`` and ``book``.
        update_rate: book updates per second per symbol.
        tick_interval: seconds between simulator market ticks.
        session_config: the client's session settings (``None``: the Backpack default, 60 s
            server pings watched, client pings every 20 s with a 20 s deadline).
        sim_ping_interval: the simulator's server-ping cadence (Backpack: 60 s).
        sim_pong_timeout: the simulator's pong deadline (Backpack: 120 s).
        sim_history: update ids per symbol the simulator keeps for ``book_at``.
        sim_trade_history: trades per symbol the simulator keeps.
        isolated: run the simulator in a child process (real time only), so that this process
            holds only the client, the proxy and the checker (whose truth comparisons are then
            skipped: the other invariants still hold it).
        track_trades: check trade ids for duplicates (a window of 20,000 per symbol, which a
            memory measurement does not want to count).
        seed: seeds the markets and the fault choices.
    """

    symbols: tuple[str, ...] = ("SOL_USDC", "BTC_USDC_PERP", "ETH_USDC")
    update_rate: float = 50.0
    tick_interval: float = 0.02
    session_config: SessionConfig | None = None
    sim_ping_interval: float | None = 60.0
    sim_pong_timeout: float | None = 120.0
    sim_history: int = 100_000
    sim_trade_history: int = 10_000
    isolated: bool = False
    track_trades: bool = True
    seed: int = 7


@dataclass(frozen=True)
class DropResult:
    """One forced disconnect, measured (times in seconds of the loop clock)."""

    kind: str
    recovered: bool
    #: fault -> every book valid again (``nan`` when not recovered)
    to_valid: float
    #: reconnect delays the backoff scheduled meanwhile
    backoff: float
    #: fault -> the session noticed (its ``disconnected`` event)
    detect: float
    #: connections opened by the session for this drop
    connects: int
    #: why the session closed the connection (the first ``disconnected`` reason)
    reason: str = ""
    #: the first new connection came this long after the session noticed plus the backoff delay
    #: it scheduled (the handshake time: reconnecting "on schedule" keeps it near 0)
    reconnect_lag: float = math.nan

    @property
    def to_valid_excluding_backoff(self) -> float:
        return self.to_valid - self.backoff


@dataclass
class Rig:
    """A running rig (see the module docs); made by :func:`open_rig`."""

    #: the simulator, when it runs in this process (``None``: a child process, see ``isolated``)
    sim: Simulator | None
    control: SimControl
    proxy: FaultProxy
    client: BackpackClient
    checker: Checker
    recorder: Recorder
    rng: random.Random
    #: ``disconnected`` events that no drop caused (e.g. a ping deadline missed under load)
    unexpected_disconnects: int = 0
    #: handshake drops injected so far (they alternate between the proxy and the simulator)
    handshake_drops: int = 0
    #: events checked so far
    batches: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    async def pump(self, until: Callable[[], bool], deadline: float) -> bool:
        """Feed the checker until ``until()`` holds (True) or the loop clock reaches ``deadline``."""
        client, checker = self.client, self.checker
        # One cancel scope for the whole pump, not one per receive: it is the hot loop of net_day.
        with anyio.move_on_at(deadline):
            while not until():
                events = await client.receive_events()
                checker.feed(events, anyio.current_time())
                checker.check_client(client)
                self.batches += 1
            return True
        return until()

    async def dwell(self, seconds: float, *, min_deltas: int = 0, limit: float = 30.0) -> None:
        """
        Keep checking the live stream for ``seconds`` and until each book had ``min_deltas`` more
        deltas (bounded by ``limit``); a disconnect meanwhile is counted as unexpected.
        """
        self.checker.mark()
        start = anyio.current_time()
        await self.pump(
            lambda: (
                anyio.current_time() >= start + seconds and self.checker.deltas_since_mark() >= min_deltas
            ),
            start + max(seconds, limit),
        )
        self._count_unexpected()

    async def wait_until(self, when: float) -> None:
        """Keep checking the stream until the loop clock reaches ``when``."""
        self.checker.mark()
        await self.pump(lambda: anyio.current_time() >= when, when)
        self._count_unexpected()

    def _count_unexpected(self) -> None:
        """Count the disconnects recorded outside a drop, and forget the recorded events."""
        self.unexpected_disconnects += len(self.recorder.times("disconnected"))
        self.recorder.events.clear()

    def current(self) -> ProxyConnection:
        """The client's live proxy connection (the newest one)."""
        return max(self.proxy.connections, key=lambda conn: conn.id)

    async def inject(self, kind: str) -> None:
        """Inject one fault of ``kind`` (see :data:`KINDS`) on the live connection, now."""
        conn = self.current()
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if kind == "rst":
            conn.apply(Reset())
        elif kind == "fin":
            conn.apply(Fin())
        elif kind == "cut_mid_frame":
            conn.apply(CutMidFrame(self.rng.randint(1, 120)))
        elif kind == "blackhole":
            conn.apply(Blackhole())
        elif kind == "close_1001":
            await self.control.close_newest()
        elif kind == "handshake_drop":
            self.handshake_drops += 1
            if self.handshake_drops % 2:
                self.proxy.script([Reset()])  # RST before the upgrade
            else:
                await self.control.drop_after_accept()  # the 101, then EOF
            conn.apply(Reset())
        else:
            raise ValueError(f"unknown kind {kind!r}")

    async def drop(self, kind: str, *, limit: float) -> DropResult:
        """Inject ``kind`` and pump until every book is valid again (at most ``limit`` seconds)."""
        checker, recorder = self.checker, self.recorder
        checker.mark()
        self._count_unexpected()
        connects = self.client.session.statistics().connects
        t0 = anyio.current_time()
        await self.inject(kind)
        # Recovered: every book went down and came back from a fresh, correct snapshot, on a
        # connection opened after the fault.
        recovered = await self.pump(
            lambda: (
                self.client.session.statistics().connects > connects and checker.recovered_at() is not None
            ),
            t0 + limit,
        )
        back = checker.recovered_at() if recovered else None
        end = back if back is not None else anyio.current_time()
        events = [(t, name, event) for t, name, event in recorder.events if t <= end]
        disconnects = [(t, event) for t, name, event in events if name == "disconnected"]
        backoff = sum(_delay(event) for _, name, event in events if name == "reconnect_scheduled")
        lag = math.nan
        first = next((i for i, (_, name, _) in enumerate(events) if name == "connected"), None)
        scheduled = [(t, e) for t, name, e in events[: first or 0] if name == "reconnect_scheduled"]
        if first is not None and scheduled:  # the delay scheduled last before the first new connection
            planned = scheduled[-1][0] + _delay(scheduled[-1][1])
            lag = events[first][0] - planned
        result = DropResult(
            kind=kind,
            recovered=back is not None,
            to_valid=(back - t0) if back is not None else math.nan,
            backoff=backoff,
            detect=(disconnects[0][0] - t0) if disconnects else math.nan,
            connects=self.client.session.statistics().connects - connects,
            reason=str(disconnects[0][1].get("reason", "")) if disconnects else "",
            reconnect_lag=lag,
        )
        # Whatever happened after the recovery is not this drop's doing.
        recorder.events = [item for item in recorder.events if item[0] > end]
        await self.release_stale()
        return result

    async def release_stale(self) -> None:
        """
        Reset every proxy connection but the live one. A blackholed path stays open forever by
        design (that is what half-open means); the client has long left it, and a real network
        would eventually time it out, so the rig cleans it up.
        """
        live = self.current()
        for conn in self.proxy.connections:
            if conn is not live:
                conn.apply(Reset())
        await anyio.lowlevel.checkpoint()


class SimControl(Protocol):
    """The two simulator faults the rig injects (the others are the proxy's)."""

    async def close_newest(self) -> None:
        """Send close 1001 on the newest open connection."""
        ...

    async def drop_after_accept(self) -> None:
        """Complete the next handshake, then drop the socket at once."""
        ...


class _LocalControl:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    async def close_newest(self) -> None:
        newest = max(info.id for info in self._sim.connections if info.open)
        self._sim.faults.close(newest, code=1001)
        await anyio.lowlevel.checkpoint()

    async def drop_after_accept(self) -> None:
        self._sim.faults.drop_after_accept(1)
        await anyio.lowlevel.checkpoint()


#: The repository root (the child process imports ``native_anyio`` from it).
_ROOT: Final = str(Path(native_anyio.__file__).resolve().parent.parent)

#: The simulator in a child process: prints its URLs, then applies one fault per stdin line and
#: answers ``ok`` once it is armed; EOF on stdin ends it.
_CHILD = """
import json, sys, anyio
from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

async def main():
    async with open_simulator(SimulatorConfig(**json.loads(sys.argv[1]))) as sim:
        print(sim.ws_url, sim.rest_url, flush=True)
        async for line in anyio.wrap_file(sys.stdin):
            if line.strip() == "close":
                sim.faults.close(max(i.id for i in sim.connections if i.open), code=1001)
            elif line.strip() == "drop_after_accept":
                sim.faults.drop_after_accept(1)
            print("ok", flush=True)

anyio.run(main)
"""


class _ChildControl:
    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)

    async def readline(self) -> str:
        return (await self._stdout.receive_until(b"\n", 4096)).decode()

    async def _command(self, command: str) -> None:
        await self._stdin.send(command.encode() + b"\n")
        with anyio.fail_after(10):
            answer = await self.readline()
        if answer != "ok":
            raise RuntimeError(f"the simulator process answered {answer!r} to {command!r}")

    async def close_newest(self) -> None:
        await self._command("close")

    async def drop_after_accept(self) -> None:
        await self._command("drop_after_accept")


@asynccontextmanager
async def _child_simulator(config: SimulatorConfig) -> AsyncIterator[tuple[str, str, _ChildControl]]:
    """Run the simulator in a child process (real time only); yield its URLs and its control."""
    values = {
        name: getattr(config, name)
        for name in ("symbols", "seed", "update_rate", "tick_interval", "ping_interval", "pong_timeout",
                     "history", "trade_history")
    }  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (_ROOT, os.environ.get("PYTHONPATH"))))}
    process = await anyio.open_process(
        [sys.executable, "-c", _CHILD, json.dumps(values)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=None, env=env,
    )  # fmt: skip
    try:
        control = _ChildControl(process)
        with anyio.fail_after(30):
            ws_url, rest_url = (await control.readline()).split()
        yield ws_url, rest_url, control
    finally:
        with anyio.move_on_after(10, shield=True):
            await process.aclose()  # closes stdin: the child leaves its loop and exits
        if process.returncode is None:
            process.kill()
            with anyio.move_on_after(5, shield=True):
                await process.wait()


def _sim_config(config: RigConfig) -> SimulatorConfig:
    return SimulatorConfig(
        symbols=config.symbols,
        seed=config.seed,
        update_rate=config.update_rate,
        tick_interval=config.tick_interval,
        ping_interval=config.sim_ping_interval,
        pong_timeout=config.sim_pong_timeout,
        history=config.sim_history,
        trade_history=config.sim_trade_history,
    )


@asynccontextmanager
async def _simulator(config: RigConfig) -> AsyncIterator[tuple[str, str, Simulator | None, SimControl]]:
    if config.isolated:
        async with _child_simulator(_sim_config(config)) as (ws_url, rest_url, child):
            yield ws_url, rest_url, None, child
    else:
        async with open_simulator(_sim_config(config)) as sim:
            yield sim.ws_url, sim.rest_url, sim, _LocalControl(sim)


@asynccontextmanager
async def open_rig(config: RigConfig) -> AsyncIterator[Rig]:
    """Start the simulator, the proxy and the client; yield once every book is live."""
    async with _simulator(config) as (ws_url, rest_url, sim, control):
        target = urlsplit(ws_url)
        async with open_fault_proxy(target.hostname or "127.0.0.1", target.port or 0) as proxy:
            recorder = Recorder()
            client_config = BackpackConfig(
                rest_url=rest_url, ws_url=proxy.rewrite_url(ws_url), unknown_symbol_timeout=5.0
            )
            async with open_backpack(
                client_config,
                symbols=config.symbols,
                channels=["trades", "book"],
                session_config=config.session_config,
                hooks=[recorder],
            ) as client:
                checker = Checker(sim, config.symbols, track_trades=config.track_trades)
                rig = Rig(sim, control, proxy, client, checker, recorder, random.Random(config.seed))
                checker.mark()
                start = anyio.current_time()
                if not await rig.pump(
                    lambda: all(checker.books[s] is not None for s in config.symbols), start + 60.0
                ):
                    raise RuntimeError("the books never went live")
                yield rig


class WallClock:
    """Real elapsed seconds and CPU seconds of this process, whatever the loop clock does."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._cpu = time.process_time()

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def cpu(self) -> float:
        return time.process_time() - self._cpu
