"""
Order books that are never wrong, end to end: the Backpack client against the embedded simulator
(real sockets on 127.0.0.1), on asyncio and trio under virtual clocks.

Ten symbols stream books; one of them gets a fault. A :class:`Watch` applies every emitted
``BookSnapshot``/``BookDelta`` to its own :class:`OrderBook` and compares it, level by level,
with the simulator's ground truth at that update id (``sim.book_at``) after every single event.
It also enforces fail-closed delivery: after a non-live ``BookStatus`` the next book event of
that symbol must be a fresh ``BookSnapshot``, and deltas must follow each other (``U == u + 1``)
from the snapshot on, so a gap the client missed could not go unnoticed here.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import pytest

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

if TYPE_CHECKING:
    from collections.abc import Callable

    from native_anyio.backpack import BackpackClient, Event
    from native_anyio.backpack.simulator import Simulator, TradeInfo

pytestmark = pytest.mark.virtual_time

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
FAULTED = "ETH_USDC"
OTHERS = tuple(s for s in SYMBOLS if s != FAULTED)
DEPTH = "/api/v1/depth"
NOT_LIVE = ("syncing", "resyncing", "failed")


def wire(symbol: str) -> str:
    return symbol.replace("-", "_")


@dataclass
class Watch:
    """The emitted book events of every symbol, checked against the ground truth as they come."""

    sim: Simulator
    books: dict[str, OrderBook | None] = field(default_factory=dict)
    #: per symbol: ("status", state, reason) / ("snapshot", id) / ("delta", U, u), in order
    log: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    #: per symbol: the virtual time each log entry was received at
    when: dict[str, list[float]] = field(default_factory=dict)
    #: per symbol: the update id of the last snapshot emitted
    snapshot_at: dict[str, int] = field(default_factory=dict)
    #: books that differed from the truth, each only where a corrupt_level fault explains it
    wrong_books: int = 0
    checked: int = 0

    def feed(self, events: list[Event]) -> None:
        now = anyio.current_time()
        for event in events:
            if isinstance(event, (BookStatus, BookSnapshot, BookDelta)):
                symbol = wire(event.symbol)
                self._book_event(symbol, event)
                self.when.setdefault(symbol, []).append(now)

    def _book_event(self, symbol: str, event: BookStatus | BookSnapshot | BookDelta) -> None:
        log = self.log.setdefault(symbol, [])
        if isinstance(event, BookStatus):
            log.append(("status", event.state, event.reason))
            if event.state in NOT_LIVE:
                self.books[symbol] = None  # fail-closed: only a fresh snapshot may follow
            return
        book: OrderBook | None
        if isinstance(event, BookSnapshot):
            book = self.books[symbol] = OrderBook()
            book.load(event.bids, event.asks, event.sequence)
            self.snapshot_at[symbol] = event.sequence
            log.append(("snapshot", event.sequence))
        else:
            book = self.books.get(symbol)
            assert book is not None, f"{symbol}: a delta after a non-live status, before a snapshot"
            assert event.first_sequence == book.last_update_id + 1, (
                f"{symbol}: delta {event.first_sequence}..{event.sequence} does not follow "
                f"{book.last_update_id}: the client applied across a gap"
            )
            book.apply(event.bids, event.asks)
            book.last_update_id = event.sequence
            log.append(("delta", event.first_sequence, event.sequence))
        self._compare(symbol, book)

    def _compare(self, symbol: str, book: OrderBook) -> None:
        truth = self.sim.book_at(symbol, book.last_update_id)
        self.checked += 1
        bids, asks = book.bids(), book.asks()
        if bids == list(truth.bids) and asks == list(truth.asks):
            return
        # The only excuse: a level corrupted on the wire (same U/u, wrong size) since the snapshot.
        corrupted = {
            Decimal(r.detail["price"])
            for r in self.sim.fault_log
            if r.kind == "corrupt_level"
            and r.symbol == symbol
            and self.snapshot_at[symbol] < r.detail["u"] <= book.last_update_id
        }
        assert corrupted, f"{symbol}: a wrong book at {book.last_update_id}"
        wrong = (set(bids) ^ set(truth.bids)) | (set(asks) ^ set(truth.asks))
        assert {p for p, _ in wrong} <= corrupted, f"{symbol}: wrong beyond the corrupted level: {wrong}"
        self.wrong_books += 1

    def live(self, symbol: str) -> bool:
        return self.books.get(symbol) is not None

    def statuses(self, symbol: str, since: int = 0) -> list[tuple[Any, ...]]:
        return [e for e in self.log.get(symbol, [])[since:] if e[0] == "status"]

    def mark(self) -> dict[str, int]:
        """Where each symbol's log stands now (for "since the fault" questions)."""
        return {s: len(self.log.get(s, [])) for s in SYMBOLS}


def sim_config(**overrides: object) -> SimulatorConfig:
    values: dict[str, object] = {"symbols": SYMBOLS, "seed": 11, "update_rate": 20.0}
    values.update(overrides)
    return SimulatorConfig(**values)  # type: ignore[arg-type]


def client_config(sim: Simulator) -> BackpackConfig:
    return BackpackConfig(rest_url=sim.rest_url, ws_url=sim.ws_url, unknown_symbol_timeout=5.0)


async def pump(client: BackpackClient, watch: Watch, until: Callable[[], bool], *, limit: int = 5000) -> None:
    """Feed the watch until ``until()`` holds (bounded in batches; callers bound time)."""
    for _ in range(limit):
        if until():
            return
        batch = await client.receive_events()
        watch.feed(batch)
        for symbol in SYMBOLS:  # the client's own view agrees with what it emitted
            mine = watch.books.get(symbol)
            theirs = client.book(symbol)
            if mine is None:
                assert theirs is None, f"{symbol}: client.book() is not fail-closed"
            else:
                assert theirs is not None
                assert theirs.last_update_id == mine.last_update_id
    raise AssertionError("the condition never held")


async def pump_for(client: BackpackClient, watch: Watch, seconds: float) -> None:
    deadline = anyio.current_time() + seconds
    await pump(client, watch, lambda: anyio.current_time() >= deadline)


def all_live(watch: Watch) -> Callable[[], bool]:
    return lambda: all(watch.live(s) for s in SYMBOLS)


def resynced(watch: Watch, symbol: str, since: int) -> Callable[[], bool]:
    """A non-live status, then live again with a snapshot, after ``since``."""

    def check() -> bool:
        entries = watch.log.get(symbol, [])[since:]
        down = next((i for i, e in enumerate(entries) if e[0] == "status" and e[1] in NOT_LIVE), None)
        return down is not None and watch.live(symbol) and any(e[0] == "snapshot" for e in entries[down:])

    return check


async def start(client: BackpackClient, watch: Watch) -> dict[str, int]:
    """All ten books live (and a second of clean updates checked); returns the log marks."""
    await pump(client, watch, all_live(watch))
    await pump_for(client, watch, 1.0)
    return watch.mark()


def assert_untouched(watch: Watch, mark: dict[str, int], symbols: tuple[str, ...] = OTHERS) -> None:
    """No status at all (so no resync) for ``symbols`` since ``mark``, and their books kept flowing."""
    for symbol in symbols:
        assert watch.statuses(symbol, mark[symbol]) == [], symbol
        assert any(e[0] == "delta" for e in watch.log[symbol][mark[symbol] :]), symbol
        assert watch.live(symbol)


def assert_one_detected_gap(watch: Watch, mark: dict[str, int]) -> None:
    """Exactly one resync of FAULTED, for a gap, and it completed from a snapshot."""
    entries = watch.log[FAULTED][mark[FAULTED] :]
    statuses = [e for e in entries if e[0] == "status"]
    assert [s[1] for s in statuses] == ["resyncing", "live"], statuses
    assert "gap" in statuses[0][2]
    down = entries.index(statuses[0])
    assert entries[down + 1] == statuses[1]
    assert entries[down + 2][0] == "snapshot"  # the first book after the detection is fresh


# ------------------------------------------------------------------------------------ gaps


@pytest.mark.parametrize("fault", ["drop_delta", "jump_sequence", "reorder_deltas"])
async def test_a_gap_on_one_symbol_is_detected_and_only_that_book_resyncs(fault: str):
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                if fault == "jump_sequence":
                    sim.faults.jump_sequence(FAULTED, 3)
                else:
                    getattr(sim.faults, fault)(FAULTED)
                await pump(client, watch, resynced(watch, FAULTED, mark[FAULTED]))
                await pump_for(client, watch, 1.0)
                assert client.book_state(FAULTED) == "live"
    [record] = [r for r in sim.fault_log if r.kind == fault]
    assert record.symbol == FAULTED
    assert_one_detected_gap(watch, mark)
    assert_untouched(watch, mark)
    # The ids the socket skipped (or sent late) were never handed out as applied.
    missing = record.detail["first"] if fault == "reorder_deltas" else record.detail["U"]
    deltas = [e for e in watch.log[FAULTED][mark[FAULTED] :] if e[0] == "delta"]
    assert not any(first <= missing <= last for _, first, last in deltas)
    assert watch.checked > 300


async def test_a_duplicated_delta_is_ignored_without_a_resync():
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                sim.faults.duplicate_delta(FAULTED, count=3)
                await pump_for(client, watch, 2.0)
    assert sim.faults.count("duplicate_delta", symbol=FAULTED) == 3
    assert_untouched(watch, mark, SYMBOLS)  # the faulted book too: a duplicate is not a gap


async def test_a_corrupted_level_is_confined_to_that_level_until_a_fresh_snapshot():
    """
    ``corrupt_level`` keeps ``U``/``u`` intact, so sequence checks cannot see it (Backpack has no
    checksum). What the design guarantees without periodic verification: the wrong size stays at
    that one price (absolute sizes: the next update of the level repairs it), nothing else is
    disturbed, and the next snapshot (here: after a reconnect) rebuilds the book exactly. A
    resync of the faulted book is allowed (verification, or a ghost level that crosses the book).
    """
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                sim.faults.corrupt_level(FAULTED)
                await pump_for(client, watch, 2.0)
                assert sim.faults.count("corrupt_level", symbol=FAULTED) == 1
                assert watch.wrong_books >= 1  # the corruption reached the emitted book (no checksum)
                assert_untouched(watch, mark)
                for status in watch.statuses(FAULTED, mark[FAULTED]):
                    assert status[1] in ("resyncing", "live"), status  # detected: allowed, never wrong
                # A reconnect rebuilds every book from a fresh snapshot: exact again.
                marks = watch.mark()
                sim.faults.close(code=1001)
                await pump(client, watch, lambda: all(resynced(watch, s, marks[s])() for s in SYMBOLS))
                wrong = watch.wrong_books
                await pump_for(client, watch, 1.0)
    assert watch.wrong_books == wrong  # exact again after the fresh snapshot
    book = watch.books[FAULTED]
    assert book is not None
    truth = sim.book_at(FAULTED, book.last_update_id)
    assert (book.bids(), book.asks()) == (list(truth.bids), list(truth.asks))


# ------------------------------------------------------------------------ connection faults


@pytest.mark.parametrize("fault", ["close", "drop", "cut_frame"])
async def test_a_connection_fault_rebuilds_every_book_from_a_fresh_snapshot(fault: str):
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                requested = client.statistics().snapshots_requested
                if fault == "close":
                    sim.faults.close(code=1001)
                else:
                    getattr(sim.faults, fault)()
                await pump(client, watch, lambda: all(resynced(watch, s, mark[s])() for s in SYMBOLS))
                await pump_for(client, watch, 1.0)
                stats = client.statistics()
    assert len(sim.connections) == 2
    assert stats.snapshots_requested - requested >= len(SYMBOLS)  # fetched after the reconnect
    for symbol in SYMBOLS:
        entries = watch.log[symbol][mark[symbol] :]
        down = next(i for i, e in enumerate(entries) if e[0] == "status")
        assert entries[down][1] == "syncing"
        first_book = next(e for e in entries[down:] if e[0] != "status")
        assert first_book[0] == "snapshot", symbol  # never continued from the old book
        assert watch.live(symbol)
    assert dict(stats.books) == dict.fromkeys((s.replace("_", "-") for s in SYMBOLS), "live")


async def test_an_invalid_depth_frame_is_treated_as_a_gap_of_that_book():
    """A depth frame that fails validation (negative size) is never skipped silently (E)."""
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                errors = client.statistics().decode_errors
                uid = sim.book(FAULTED).last_update_id + 1
                data = {"E": 1, "T": 1, "U": uid, "u": uid, "a": [], "b": [["1.00", "-1.00"]], "e": "depth",
                        "s": FAULTED}  # fmt: skip
                frame = json.dumps({"data": data, "stream": f"depth.{FAULTED}"}).encode()
                sim.faults.send_malformed(payload=frame)
                await pump(client, watch, resynced(watch, FAULTED, mark[FAULTED]))
                await pump_for(client, watch, 1.0)
                assert client.statistics().decode_errors == errors + 1
    statuses = watch.statuses(FAULTED, mark[FAULTED])
    assert [s[1] for s in statuses] == ["resyncing", "live"]
    assert "invalid" in statuses[0][2]
    assert_untouched(watch, mark)


async def test_a_malformed_frame_is_counted_and_disturbs_no_book():
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                errors = client.statistics().decode_errors
                sim.faults.send_malformed()
                await pump_for(client, watch, 2.0)
                assert client.statistics().decode_errors == errors + 1
    assert_untouched(watch, mark, SYMBOLS)
    assert len(sim.connections) == 1


# --------------------------------------------------------------------------- snapshot faults


@pytest.mark.parametrize(
    ("offset", "held_back", "fetches"),
    [
        pytest.param(9, 1.0, 1, id="lag-9-within-the-buffer"),
        pytest.param(50, 4.0, 1, id="lag-50-within-the-buffer"),
        pytest.param(-5, None, 1, id="lead-5-waits-for-the-socket"),
        pytest.param(-500, None, 2, id="lead-500-waits-at-most-max-wait-then-refetches"),
        pytest.param(500, None, 2, id="lag-500-behind-the-buffer-refetches"),
    ],
)
async def test_a_lagging_or_leading_snapshot_aligns_or_is_refetched(
    offset: int, held_back: float | None, fetches: int
):
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                requested = client.statistics().snapshots_requested
                if held_back is not None:  # deltas pile up in the buffer meanwhile
                    sim.faults.rate_limit_rest(1, retry_after=held_back, path=DEPTH)
                sim.faults.snapshot_offset(FAULTED, offset, count=1)
                sim.faults.drop_delta(FAULTED)
                await pump(client, watch, lambda: bool(watch.statuses(FAULTED, mark[FAULTED])))
                detected = anyio.current_time()
                await pump(client, watch, resynced(watch, FAULTED, mark[FAULTED]))
                recovered = anyio.current_time()
                await pump_for(client, watch, 1.0)
                stats = client.statistics()
    kind = "snapshot_lag" if offset > 0 else "snapshot_lead"
    [record] = [r for r in sim.fault_log if r.kind == kind]
    assert record.symbol == FAULTED
    assert record.detail["lastUpdateId"] == record.detail["socket"] - offset or offset == 500
    assert stats.snapshots_requested - requested == fetches
    entries = watch.log[FAULTED][mark[FAULTED] :]
    statuses = [e for e in entries if e[0] == "status"]
    assert statuses[0][1] == "resyncing"
    assert statuses[-1][1] == "live"
    if fetches == 1:
        assert_one_detected_gap(watch, mark)
        first_snapshot = next(e for e in entries if e[0] == "snapshot")
        assert first_snapshot[1] > record.detail["lastUpdateId"]  # aligned with a later delta
    elif offset > 0:
        assert "older than the buffered deltas" in statuses[1][2] or "gap while waiting" in statuses[1][2]
    else:
        # Ahead by 25 s of updates: waited the bounded 10 s (BookSync max_wait), then refetched.
        assert "stayed ahead" in statuses[1][2]
        assert 10.0 <= recovered - detected <= 12.0
    assert_untouched(watch, mark)


async def test_a_buffer_overflow_during_a_slow_snapshot_restarts_the_sync_instead_of_truncating():
    """C6: 2 000 deltas/s while the snapshot takes 6 s; the client buffers at most 10 000."""
    rates = {FAULTED: 2000.0}
    async with open_simulator(sim_config(update_rates=rates)) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                requested = client.statistics().snapshots_requested
                sim.faults.delay_rest(DEPTH, 6.0, count=1)
                sim.faults.drop_delta(FAULTED)
                await pump(client, watch, resynced(watch, FAULTED, mark[FAULTED]), limit=50_000)
                await pump_for(client, watch, 0.3)
                stats = client.statistics()
    statuses = watch.statuses(FAULTED, mark[FAULTED])
    assert [s[1] for s in statuses] == ["resyncing", "resyncing", "live"]
    assert "gap" in statuses[0][2]
    assert "overflow" in statuses[1][2]  # restarted and counted, not truncated
    assert stats.snapshots_requested - requested == 2  # the slow answer was discarded
    assert_untouched(watch, mark)


@pytest.mark.parametrize("status", [429, 503])
async def test_snapshot_errors_are_retried_with_backoff_honouring_retry_after(status: int):
    async with open_simulator(sim_config()) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                if status == 429:
                    sim.faults.rate_limit_rest(2, retry_after=1.5, path=DEPTH)
                else:
                    sim.faults.fail_rest(DEPTH, status=503, count=2)
                sim.faults.drop_delta(FAULTED)
                await pump(client, watch, lambda: bool(watch.statuses(FAULTED, mark[FAULTED])))
                detected = anyio.current_time()
                await pump(client, watch, resynced(watch, FAULTED, mark[FAULTED]))
                recovered = anyio.current_time()
                await pump_for(client, watch, 1.0)
    kind = "rate_limit_rest" if status == 429 else "fail_rest"
    assert sim.faults.count(kind) == 2
    if status == 429:
        assert recovered - detected >= 3.0  # two Retry-After: 1.5 waited out
    # The snapshot was fetched off the reader: the other books kept coming, on time (not as a
    # backlog once the fetch was over), while it was pending.
    assert recovered - detected > 0.5
    for symbol in OTHERS:
        times = [t for t, e in zip(watch.when[symbol], watch.log[symbol], strict=True) if e[0] == "delta"]
        assert any(detected < t <= detected + 0.25 for t in times), symbol
    assert_one_detected_gap(watch, mark)
    assert_untouched(watch, mark)


async def test_a_snapshot_endpoint_failing_forever_fails_closed_while_the_socket_flows():
    async with open_simulator(sim_config(update_rate=10.0)) as sim:
        with anyio.fail_after(300):
            async with open_backpack(client_config(sim), symbols=SYMBOLS, channels=["book"]) as client:
                watch = Watch(sim)
                mark = await start(client, watch)
                sim.faults.fail_rest(DEPTH, status=503, count=1_000_000)
                sim.faults.drop_delta(FAULTED)

                def failed() -> bool:
                    return any(s[1] == "failed" for s in watch.statuses(FAULTED, mark[FAULTED]))

                await pump(client, watch, failed, limit=50_000)
                attempts = sim.faults.count("fail_rest")
                during = watch.mark()
                await pump_for(client, watch, 30.0)
                # Bounded: nothing more was asked for; fail-closed: no book, no book events.
                assert sim.faults.count("fail_rest") == attempts
                assert client.book(FAULTED) is None
                assert client.book_state(FAULTED) == "failed"
                assert watch.log[FAULTED][during[FAULTED] :] == []
                assert not client.health().ok
                # Only a resubscribe (or a reconnect) tries again.
                sim.faults.clear()
                marks = watch.mark()
                await client.subscribe([FAULTED], ["book"])
                await pump(client, watch, resynced(watch, FAULTED, marks[FAULTED]))
                await pump_for(client, watch, 1.0)
    assert 1 < attempts <= 5 * 4  # 5 snapshot attempts, each at most 4 HTTP attempts
    statuses = [s[1] for s in watch.statuses(FAULTED, mark[FAULTED])]
    assert statuses == ["resyncing", "failed", "syncing", "live"]
    # The other nine kept streaming, untouched, the whole time.
    assert_untouched(watch, mark)
    for symbol in OTHERS:
        assert any(e[0] == "delta" for e in watch.log[symbol][mark[symbol] : during[symbol]]), symbol


# ----------------------------------------------------------------------------------- trades


def trade_frame(symbol: str, trade: TradeInfo) -> bytes:
    """A ``trade.<symbol>`` frame as Backpack sends it, rebuilt from the simulator's record."""
    data = {
        "E": trade.time,
        "T": trade.time,
        "a": "111",
        "b": "222",
        "e": "trade",
        "m": trade.buyer_is_maker,
        "p": format(trade.price, "f"),
        "q": format(trade.qty, "f"),
        "s": symbol,
        "t": trade.id,
    }
    return json.dumps({"data": data, "stream": f"trade.{symbol}"}, separators=(",", ":")).encode()


async def test_trades_are_delivered_once_across_a_reconnect_with_overlapping_resends():
    symbols = ("SOL_USDC", "BTC_USDC_PERP")
    async with open_simulator(sim_config(symbols=symbols, update_rate=40.0)) as sim:
        with anyio.fail_after(120):
            async with open_backpack(client_config(sim), symbols=symbols, channels=["trades"]) as client:
                delivered: list[Trade] = []

                async def collect(until: Callable[[], bool]) -> None:
                    for _ in range(5000):
                        if until():
                            return
                        delivered.extend(e for e in await client.receive_events() if isinstance(e, Trade))
                    raise AssertionError("the condition never held")

                await collect(lambda: len(delivered) >= 20)
                before = {t.id for t in delivered}
                sim.faults.close(code=1001)
                for symbol in symbols:
                    await sim.wait_subscribed(f"trade.{symbol}", conn_id=2)
                # The venue re-sends recent trades on the new connection: some were delivered
                # before the drop, some were published while the client was away.
                resent = [(s, t) for s in symbols for t in sim.trades(s)[-15:]]
                for symbol, trade in resent:
                    sim.faults.send_malformed(conn=2, payload=trade_frame(symbol, trade))
                start = len(delivered)
                await collect(lambda: len(delivered) >= start + 20)
                stats = client.statistics()
    counts = Counter((t.symbol, t.id) for t in delivered)
    assert max(counts.values()) == 1  # each trade exactly once
    truth = {(s.replace("_", "-"), t.id): t for s in symbols for t in sim.trades(s)}
    assert set(counts) <= set(truth)
    for got in delivered:
        assert got.price == truth[got.symbol, got.id].price
    resent_ids = {(s.replace("_", "-"), t.id) for s, t in resent}
    assert resent_ids <= set(counts)  # every re-sent trade arrived (once)
    already = {(s.replace("_", "-"), t.id) for s, t in resent if t.id in before}
    assert already  # the overlap is real
    assert stats.duplicate_trades == len(already)
