"""
The sans-IO order book and its synchronizer (``native_anyio._book``): exact unit tests of every
sync rule, and a Hypothesis state machine that feeds :class:`BookSync` faulty delta streams and
lagging snapshots while checking it against a plain dict model of the ground truth.
"""

from __future__ import annotations

import functools
import itertools
import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from native_anyio import OrderBook
from native_anyio._book import BookSync, SyncOutput

D = Decimal


def lv(*pairs: tuple[str, str]) -> list[tuple[Decimal, Decimal]]:
    return [(D(p), D(s)) for p, s in pairs]


def assert_ordered(book: OrderBook) -> None:
    """Bids strictly descending, asks strictly ascending, every size > 0."""
    bids, asks = book.bids(), book.asks()
    assert all(a[0] > b[0] for a, b in itertools.pairwise(bids)), bids
    assert all(a[0] < b[0] for a, b in itertools.pairwise(asks)), asks
    assert all(size > 0 for _, size in bids + asks)
    assert len(book) == len(bids) + len(asks)


# ---------------------------------------------------------------------------------- OrderBook


def test_prices_are_keyed_by_decimal_value_not_spelling():
    book = OrderBook()
    book.load(lv(("98.9", "1"), ("98.8", "2")), lv(("99.1", "3")), 10)  # REST: stripped
    book.apply(lv(("98.90", "5.00")), lv(("99.10", "0.00")))  # socket: padded
    assert book.bids() == lv(("98.9", "5"), ("98.8", "2"))
    assert book.asks() == []
    assert len(book) == 2
    book.apply(lv(("98.900", "0")), [])
    assert book.bids() == lv(("98.8", "2"))


def test_size_zero_deletes_and_deleting_an_absent_level_is_a_no_op():
    book = OrderBook()
    book.apply(lv(("10", "1"), ("9", "2")), lv(("11", "1")))
    book.apply(lv(("8", "0"), ("9", "0")), lv(("12", "0.000")))
    assert book.bids() == lv(("10", "1"))
    assert book.asks() == lv(("11", "1"))
    book.apply(lv(("9", "0")), [])  # deleting it twice changes nothing either
    assert book.bids() == lv(("10", "1"))
    assert_ordered(book)


def test_load_replaces_everything_accepts_any_order_and_skips_zero_sizes():
    book = OrderBook()
    book.apply(lv(("1", "1")), lv(("100", "1")))
    book.load(lv(("9", "1"), ("10", "2"), ("8", "0")), lv(("12", "1"), ("11", "0"), ("13", "2")), 77)
    assert book.bids() == lv(("10", "2"), ("9", "1"))
    assert book.asks() == lv(("12", "1"), ("13", "2"))
    assert book.last_update_id == 77
    book.clear()
    assert (len(book), book.last_update_id, book.best_bid, book.best_ask) == (0, 0, None, None)


def test_top_n_and_best_levels():
    book = OrderBook()
    assert book.best_bid is None
    assert book.best_ask is None
    book.load(lv(("1", "1"), ("3", "3"), ("2", "2")), lv(("6", "6"), ("4", "4"), ("5", "5")), 1)
    assert book.best_bid == (D(3), D(3))
    assert book.best_ask == (D(4), D(4))
    assert book.bids(2) == lv(("3", "3"), ("2", "2"))
    assert book.asks(2) == lv(("4", "4"), ("5", "5"))
    assert book.bids(1) == [book.best_bid]
    assert book.bids(0) == book.asks(0) == []
    assert book.bids(100) == book.bids() == lv(("3", "3"), ("2", "2"), ("1", "1"))
    assert book.asks(100) == book.asks() == lv(("4", "4"), ("5", "5"), ("6", "6"))


def test_crossed_and_locked_books():
    book = OrderBook()
    book.load(lv(("10", "1")), lv(("11", "1")), 1)
    assert not book.is_crossed()
    book.apply(lv(("11", "2")), [])  # locked: bid == ask
    assert not book.is_crossed()
    book.apply(lv(("11.01", "2")), [])
    assert book.is_crossed()
    book.clear()
    book.apply(lv(("5", "1")), [])  # one side only: never crossed
    assert not book.is_crossed()


PRICE_TENTHS = st.integers(1, 60)
SIZE_HUNDREDTHS = st.integers(0, 4)


@given(
    st.lists(st.tuples(st.booleans(), PRICE_TENTHS, SIZE_HUNDREDTHS, st.booleans()), min_size=1, max_size=120)
)
@settings(max_examples=200, deadline=None)
def test_order_book_equals_a_dict_model_and_keeps_its_invariants(updates):
    book = OrderBook()
    model: tuple[dict[int, int], dict[int, int]] = ({}, {})
    for is_bid, price, size, padded in updates:
        # the same level spelled "4.5"/"0.02" or "4.50"/"0.020": one key
        p = D(price * 10).scaleb(-2) if padded else D(price).scaleb(-1)
        s = D(size * 10).scaleb(-3) if padded else D(size).scaleb(-2)
        book.apply([(p, s)] if is_bid else [], [] if is_bid else [(p, s)])
        side = model[0] if is_bid else model[1]
        if size:
            side[price] = size
        else:
            side.pop(price, None)
        assert_ordered(book)
    assert book.bids() == [(D(p).scaleb(-1), D(s).scaleb(-2)) for p, s in sorted(model[0].items())[::-1]]
    assert book.asks() == [(D(p).scaleb(-1), D(s).scaleb(-2)) for p, s in sorted(model[1].items())]


# ---------------------------------------------------------------------------------- BookSync


def live_sync(last: int = 8, *, bids=(("10", "1"),), asks=(("11", "1"),), **kwargs: object) -> BookSync:
    """A synchronizer that went live through the ordinary path at ``last``."""
    sync = BookSync(**kwargs)  # type: ignore[arg-type]
    assert sync.on_delta(last, last, [], [], 0.0) == SyncOutput()
    out = sync.on_snapshot(last - 1, lv(*bids), lv(*asks), 0.0)
    assert out.snapshot_loaded
    assert sync.state == "live"
    assert sync.book.last_update_id == last
    return sync


def test_starts_syncing_and_buffers_deltas_until_a_snapshot():
    sync = BookSync()
    assert sync.state == "syncing"
    assert not sync.is_live
    assert sync.on_delta(5, 5, lv(("1", "1")), [], 0.0) == SyncOutput()
    assert sync.statistics().buffered == 1
    assert len(sync.book) == 0


def test_first_delta_must_straddle_the_snapshot():
    sync = BookSync()
    sync.on_delta(5, 5, lv(("9", "1")), [], 0.0)  # u <= L: dropped
    sync.on_delta(6, 7, lv(("9", "2")), [], 0.0)  # U <= L + 1 <= u: the first applied
    sync.on_delta(8, 8, [], lv(("12", "1")), 0.0)
    out = sync.on_snapshot(6, lv(("9", "5"), ("8", "1")), lv(("11", "1")), 1.0)
    assert out.snapshot_loaded
    assert out.status == ("live", "synchronized")
    assert not out.need_snapshot
    assert [(u1, u2) for u1, u2, _, _ in out.applied] == [(6, 7), (8, 8)]
    assert sync.book.bids() == lv(("9", "2"), ("8", "1"))
    assert sync.book.asks() == lv(("11", "1"), ("12", "1"))
    assert sync.book.last_update_id == 8
    stats = sync.statistics()
    assert (stats.state, stats.applied, stats.stale_dropped, stats.snapshots, stats.buffered) == (
        "live", 2, 1, 1, 0
    )  # fmt: skip


def test_a_snapshot_level_with_the_next_delta_needs_no_overlap():
    sync = BookSync()
    sync.on_delta(8, 8, lv(("9", "2")), [], 0.0)
    out = sync.on_snapshot(7, lv(("9", "1")), [], 0.0)  # U == L + 1 exactly
    assert [a[:2] for a in out.applied] == [(8, 8)]
    assert sync.is_live


def test_a_snapshot_behind_every_buffered_delta_is_refetched():
    sync = BookSync()
    sync.on_delta(10, 10, lv(("9", "2")), [], 0.0)
    sync.on_delta(11, 11, lv(("9", "3")), [], 0.0)
    out = sync.on_snapshot(8, lv(("9", "1")), [], 0.0)  # update 9 is missing: a gap
    assert out.need_snapshot
    assert out.status is not None
    assert out.status[0] == "syncing"
    assert not out.applied
    assert not sync.is_live
    assert len(sync.book) == 0
    stats = sync.statistics()
    assert (stats.gaps, stats.buffered) == (1, 0)


def test_a_snapshot_ahead_of_the_socket_waits_for_the_straddling_delta():
    sync = BookSync(max_wait=10.0)
    sync.on_delta(5, 5, lv(("9", "5")), [], 0.0)
    out = sync.on_snapshot(7, lv(("9", "7")), [], 1.0)  # ahead of everything buffered
    assert out == SyncOutput()
    assert sync.state == "syncing"
    assert sync.on_delta(6, 6, lv(("9", "6")), [], 2.0) == SyncOutput()  # stale
    assert sync.on_delta(7, 7, lv(("9", "7")), [], 3.0) == SyncOutput()  # stale
    assert sync.check_timeout(10.9) == SyncOutput()  # within max_wait
    out = sync.on_delta(8, 9, lv(("9", "9")), [], 4.0)
    assert out.snapshot_loaded
    assert [a[:2] for a in out.applied] == [(8, 9)]
    assert sync.book.bids() == lv(("9", "9"))
    assert sync.statistics().stale_dropped == 3


def test_a_merged_delta_straddling_a_waiting_snapshot_is_accepted():
    sync = BookSync()
    assert sync.on_snapshot(7, lv(("9", "7")), [], 0.0) == SyncOutput()  # nothing buffered yet
    out = sync.on_delta(6, 9, lv(("9", "9")), [], 0.5)
    assert out.snapshot_loaded
    assert sync.book.last_update_id == 9


def test_a_gap_while_waiting_for_the_straddling_delta_refetches():
    sync = BookSync()
    sync.on_snapshot(7, lv(("9", "7")), [], 0.0)
    out = sync.on_delta(9, 9, lv(("9", "9")), [], 0.5)  # update 8 is missing
    assert out.need_snapshot
    assert not out.applied
    assert not sync.is_live
    assert len(sync.book) == 0
    assert sync.statistics().gaps == 1


def test_a_snapshot_that_stays_ahead_is_refetched_after_max_wait():
    sync = BookSync(max_wait=10.0)
    sync.on_snapshot(100, lv(("9", "7")), [], 50.0)
    assert sync.check_timeout(60.0) == SyncOutput()  # exactly max_wait: still waiting
    out = sync.check_timeout(60.5)
    assert out.need_snapshot
    assert out.status == ("syncing", "snapshot stayed ahead of the socket too long")
    assert len(sync.book) == 0
    assert sync.check_timeout(1000.0) == SyncOutput()  # nothing to time out any more


def test_stale_deltas_past_max_wait_also_refetch():
    sync = BookSync(max_wait=10.0)
    sync.on_snapshot(100, [], [], 0.0)
    assert sync.on_delta(50, 50, [], [], 5.0) == SyncOutput()
    out = sync.on_delta(51, 51, [], [], 10.5)
    assert out.need_snapshot


def test_live_applies_only_contiguous_deltas_and_ignores_duplicates():
    sync = live_sync(8)
    out = sync.on_delta(9, 9, lv(("10", "2")), [], 0.0)
    assert out == SyncOutput(applied=((9, 9, lv(("10", "2")), []),))
    assert sync.on_delta(9, 9, lv(("10", "99")), [], 0.0) == SyncOutput()  # duplicate
    assert sync.on_delta(3, 5, lv(("10", "99")), [], 0.0) == SyncOutput()  # older still
    out = sync.on_delta(10, 12, [], lv(("11", "3")), 0.0)
    assert [a[:2] for a in out.applied] == [(10, 12)]
    assert sync.book.bids() == lv(("10", "2"))
    assert sync.book.asks() == lv(("11", "3"))
    assert sync.book.last_update_id == 12
    stats = sync.statistics()
    assert (stats.stale_dropped, stats.gaps, stats.resyncs) == (2, 0, 0)


@pytest.mark.parametrize(
    ("first", "last"),
    [(14, 14), (14, 20), (12, 13), (11, 13)],
    ids=["skip", "skip-merged", "overlap-by-one", "overlap-by-two"],
)
def test_anything_but_u_plus_one_is_a_gap_and_fails_closed(first: int, last: int):
    sync = live_sync(12)
    out = sync.on_delta(first, last, lv(("10", "5")), [], 0.0)
    assert out.status is not None
    assert out.status[0] == "resyncing"
    assert "gap" in out.status[1]
    assert out.need_snapshot
    assert not out.applied
    assert not sync.is_live
    assert len(sync.book) == 0
    stats = sync.statistics()
    assert (stats.gaps, stats.resyncs) == (1, 1)


def test_after_a_gap_the_resync_completes_from_a_new_snapshot_only():
    sync = live_sync(12)
    sync.on_delta(14, 14, lv(("10", "5")), [], 0.0)  # gap
    sync.on_delta(15, 15, lv(("10", "6")), [], 0.0)  # buffered, not applied
    assert not sync.is_live
    out = sync.on_snapshot(14, lv(("10", "5"), ("9", "1")), lv(("11", "1")), 1.0)
    assert out.snapshot_loaded
    assert sync.book.bids() == lv(("10", "6"), ("9", "1"))
    assert sync.statistics().resyncs == 1


def test_a_crossed_book_resyncs_and_a_locked_one_does_not():
    sync = live_sync(8, bids=(("10", "1"),), asks=(("11", "1"),))
    out = sync.on_delta(9, 9, lv(("11", "4")), [], 0.0)  # locked
    assert out.applied
    assert sync.is_live
    assert sync.book.best_bid == (D(11), D(4))
    assert sync.book.best_ask == (D(11), D(1))
    out = sync.on_delta(10, 10, lv(("11.5", "1")), [], 0.0)  # crossed
    assert out.status is not None
    assert out.status[0] == "resyncing"
    assert "crossed" in out.status[1]
    assert out.need_snapshot
    assert not out.applied  # the crossing delta is never handed out
    assert not sync.is_live
    assert len(sync.book) == 0


def test_a_crossed_book_after_snapshot_alignment_does_not_go_live():
    sync = BookSync()
    sync.on_delta(6, 6, lv(("12", "1")), [], 0.0)
    out = sync.on_snapshot(5, lv(("10", "1")), lv(("11", "1")), 0.0)
    assert out.need_snapshot
    assert not out.snapshot_loaded
    assert not sync.is_live


def test_buffer_overflow_restarts_the_sync_and_never_uses_a_truncated_history():
    sync = BookSync(max_buffer=3)
    for uid in (1, 2, 3):
        assert sync.on_delta(uid, uid, lv(("9", str(uid))), [], 0.0) == SyncOutput()
    out = sync.on_delta(4, 4, lv(("9", "4")), [], 0.0)
    assert out.need_snapshot
    assert out.status is not None
    assert out.status[0] == "syncing"
    assert "overflow" in out.status[1]
    stats = sync.statistics()
    assert (stats.buffer_overflows, stats.buffered) == (1, 0)
    # Update 4 went with the overflow: a snapshot at 3 cannot be completed from what is left.
    sync.on_delta(5, 5, lv(("9", "5")), [], 0.0)
    out = sync.on_snapshot(3, lv(("9", "3")), [], 0.0)
    assert out.need_snapshot
    assert not sync.is_live
    assert sync.statistics().buffered <= 3


def test_overflow_while_resyncing_is_counted_and_stays_resyncing():
    sync = live_sync(8, max_buffer=2)
    sync.on_delta(20, 20, [], [], 0.0)  # gap: resyncing, and this delta is dropped with the book
    sync.on_delta(21, 21, [], [], 0.0)
    sync.on_delta(22, 22, [], [], 0.0)
    out = sync.on_delta(23, 23, [], [], 0.0)
    assert out.status is not None
    assert out.status[0] == "resyncing"
    assert sync.statistics().buffer_overflows == 1


def test_reset_discards_the_old_book_and_the_buffer():
    sync = live_sync(8, bids=(("10", "1"), ("9", "1")), asks=(("11", "1"),))
    out = sync.reset("reconnected")
    assert out.status == ("syncing", "reconnected")
    assert out.need_snapshot
    assert not sync.is_live
    assert len(sync.book) == 0
    # The new connection's stream and a fresh snapshot: none of the old levels survive.
    sync.on_delta(31, 31, lv(("7", "1")), [], 0.0)
    sync.on_snapshot(30, lv(("8", "1")), lv(("12", "1")), 0.0)
    assert sync.is_live
    assert sync.book.bids() == lv(("8", "1"), ("7", "1"))
    assert sync.book.asks() == lv(("12", "1"))


def test_a_late_snapshot_while_live_is_ignored():
    sync = live_sync(8)
    before = (sync.book.bids(), sync.book.asks(), sync.book.last_update_id)
    assert sync.on_snapshot(3, lv(("1", "1")), [], 0.0) == SyncOutput()
    assert (sync.book.bids(), sync.book.asks(), sync.book.last_update_id) == before


def test_failed_stays_closed_until_reset():
    sync = live_sync(8)
    out = sync.fail("snapshot failed 5 times")
    assert out.status == ("failed", "snapshot failed 5 times")
    assert not out.need_snapshot
    assert len(sync.book) == 0
    assert sync.on_delta(9, 9, lv(("1", "1")), [], 0.0) == SyncOutput()
    assert sync.on_delta(12, 11, [], [], 0.0) == SyncOutput()  # invalid: still nothing
    assert sync.on_snapshot(9, lv(("1", "1")), [], 0.0) == SyncOutput()
    assert sync.check_timeout(1e9) == SyncOutput()
    assert sync.state == "failed"
    assert sync.statistics().buffered == 0
    out = sync.reset("reconnected")
    assert out.need_snapshot
    assert sync.state == "syncing"


def test_an_invalid_delta_is_a_gap():
    sync = live_sync(8)
    out = sync.on_delta(10, 9, [], [], 0.0)
    assert out.need_snapshot
    assert out.status is not None
    assert out.status[0] == "resyncing"
    assert not sync.is_live


def test_invalidate_is_a_gap_in_every_state_but_failed():
    sync = live_sync(8)
    out = sync.invalidate("invalid depth frame")
    assert out.status == ("resyncing", "invalid depth frame")
    assert out.need_snapshot
    assert len(sync.book) == 0
    sync.on_delta(20, 20, [], [], 0.0)
    out = sync.invalidate("again")  # while resyncing: restart the buffering, stay resyncing
    assert out.status == ("resyncing", "again")
    assert sync.statistics().buffered == 0
    assert (sync.statistics().gaps, sync.statistics().resyncs) == (2, 2)
    syncing = BookSync()
    assert syncing.invalidate("x").status == ("syncing", "x")
    sync.fail("gave up")
    assert sync.invalidate("ignored") == SyncOutput()
    assert sync.state == "failed"


def test_duplicates_and_replays_inside_the_buffer_are_dropped_not_a_gap():
    sync = BookSync()
    for first, last, size in [(5, 5, "5"), (6, 6, "6"), (6, 6, "6"), (5, 5, "5"), (7, 8, "8"), (8, 8, "8")]:
        sync.on_delta(first, last, lv(("9", size)), [], 0.0)
    out = sync.on_snapshot(4, lv(("9", "4")), [], 0.0)
    assert out.snapshot_loaded
    assert [a[:2] for a in out.applied] == [(5, 5), (6, 6), (7, 8)]
    assert sync.book.bids() == lv(("9", "8"))
    assert sync.statistics().gaps == 0


def test_a_reorder_inside_the_buffer_is_a_gap():
    sync = BookSync()
    for uid in (5, 7, 6):
        sync.on_delta(uid, uid, lv(("9", str(uid))), [], 0.0)
    out = sync.on_snapshot(4, lv(("9", "4")), [], 0.0)
    assert out.need_snapshot
    assert not sync.is_live


# ---------------------------------------------------------------------------------- the model

LAGS = (-5, 0, 9, 50, 500)
BID_TENTHS = (1, 50)  # bids at 5.0 and asks at 5.0 lock the book
ASK_TENTHS = (50, 99)
CROSS_CHANCE = 0.01  # per update: a bid at 5.1 or 5.2 may cross the asks (for one update)
SIZES = (0, 0, 1, 2, 3)  # in hundredths; zero deletes


@functools.cache
def tenths(price: int, padded: bool) -> Decimal:
    return D(price * 10).scaleb(-2) if padded else D(price).scaleb(-1).normalize()


@functools.cache
def hundredths(size: int, padded: bool) -> Decimal:
    return D(size * 10).scaleb(-3) if padded else D(size).scaleb(-2).normalize()


class Truth:
    """The ground truth: a plain dict book per side (integer ticks) after every update id."""

    CHECKPOINT = 32

    def __init__(self, rng: random.Random) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.head = 0
        self.changes: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]] = [([], [])]
        self.checkpoints: dict[int, tuple[dict[int, int], dict[int, int]]] = {}
        for _ in range(rng.randint(0, 12)):
            self.bids[rng.randint(1, 48)] = rng.randint(1, 4)
            self.asks[rng.randint(51, 99)] = rng.randint(1, 4)
        self.checkpoints[0] = (dict(self.bids), dict(self.asks))

    @staticmethod
    def crossed(bids: dict[int, int], asks: dict[int, int]) -> bool:
        return bool(bids and asks and max(bids) > min(asks))

    def generate(self, rng: random.Random) -> None:
        r = rng.random  # randint is slow, and bursts generate hundreds of updates
        low, span = BID_TENTHS[0], BID_TENTHS[1] - BID_TENTHS[0] + 1
        bids = [(low + int(r() * span), SIZES[int(r() * 5)]) for _ in range(int(r() * 4))]
        low, span = ASK_TENTHS[0], ASK_TENTHS[1] - ASK_TENTHS[0] + 1
        asks = [(low + int(r() * span), SIZES[int(r() * 5)]) for _ in range(int(r() * 4))]
        if r() < CROSS_CHANCE:
            bids.append((51 + int(r() * 2), 1))
        if self.crossed(self.bids, self.asks):
            # A venue's book is crossed at most for one update: the next one uncrosses it.
            best_ask = min(self.asks)
            bids += [(p, 0) for p in self.bids if p > best_ask]
        if not bids and not asks:
            asks = [(rng.randint(*ASK_TENTHS), 1)]  # every frame carries at least one level
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, size in levels:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        self.head += 1
        self.changes.append((bids, asks))
        if self.head % self.CHECKPOINT == 0:
            self.checkpoints[self.head] = (dict(self.bids), dict(self.asks))

    def book_at(self, update_id: int) -> tuple[dict[int, int], dict[int, int]]:
        assert 0 <= update_id <= self.head
        base = update_id - update_id % self.CHECKPOINT
        bids, asks = (dict(s) for s in self.checkpoints[base])
        for uid in range(base + 1, update_id + 1):
            for side, levels in zip((bids, asks), self.changes[uid], strict=True):
                for price, size in levels:
                    if size:
                        side[price] = size
                    else:
                        side.pop(price, None)
        return bids, asks

    def frame(self, first: int, last: int, padded: bool) -> Frame:
        """The wire delta covering ``first..last`` (later changes of a level win)."""
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for uid in range(first, last + 1):
            b, a = self.changes[uid]
            bids.update(b)
            asks.update(a)
        return (
            first,
            last,
            tuple((tenths(p, padded), hundredths(s, padded)) for p, s in bids.items()),
            tuple((tenths(p, padded), hundredths(s, padded)) for p, s in asks.items()),
        )


def expected_levels(bids: dict[int, int], asks: dict[int, int]):
    return (
        [(tenths(p, False), hundredths(s, False)) for p, s in sorted(bids.items(), reverse=True)],
        [(tenths(p, False), hundredths(s, False)) for p, s in sorted(asks.items())],
    )


Frame = tuple[int, int, tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]
FAULTS = ("drop", "duplicate", "reorder", "jump", "replay")
#: A snapshot delivered in the middle of a send: ``(lag, before which frame)``, or none.
SNAP = st.none() | st.tuples(st.sampled_from(LAGS), st.integers(0, 24))


def note(what: str) -> None:
    """``hypothesis.event`` that also works in the scripted (non-Hypothesis) run below."""
    if currently_in_test_context():
        event(what)


class BookSyncMachine(RuleBasedStateMachine):
    """
    One synchronizer against the dict model, fed a delta stream with duplicates, reorders, gaps
    and replays, snapshots at every lag of {-5, 0, 9, 50, 500}, clock ticks, resets and failures.
    """

    @initialize(seed=st.integers(0, 2**32 - 1), max_buffer=st.sampled_from([48, 1024]))
    def start(self, seed: int, max_buffer: int) -> None:
        self.rng = random.Random(seed)
        self.truth = Truth(self.rng)
        self.sync = BookSync(max_buffer=max_buffer, max_wait=10.0)
        self.max_buffer = max_buffer
        self.now = 0.0
        self.sent_head = 0  # the highest update id framed so far (delivered or lost)
        self.delivered_head = 0  # the highest update id delivered so far: snapshot lags count from it
        self.sent: list[Frame] = []  # recent frames, for replays
        self.snapshot_id: int | None = None  # L of the last snapshot the sync took
        self.cursor: int | None = None  # the last update id the sync handed out as applied
        self.went_live = 0
        self.bursts = 0

    # -- checking every output -----------------------------------------------------------------

    def check(self, out: SyncOutput, was_live: bool) -> None:
        sync = self.sync
        if out.status is not None and out.status[0] in ("syncing", "resyncing"):
            assert out.need_snapshot
            assert len(sync.book) == 0  # the old book is gone, never merged
        rest = out.applied
        if out.snapshot_loaded:
            assert not was_live
            assert out.applied, "going live always applies the straddling delta"
            first, last = out.applied[0][:2]
            assert self.snapshot_id is not None
            assert first <= self.snapshot_id + 1 <= last, "the first applied delta must straddle L + 1"
            self.cursor = last
            rest = out.applied[1:]
            self.went_live += 1
        elif out.applied:
            assert was_live
        for first, last, _, _ in rest:
            assert self.cursor is not None
            assert first == self.cursor + 1, "an applied delta must follow the previous one"
            self.cursor = last
        if not sync.is_live:
            self.cursor = None

    def deliver(self, frame: Frame) -> None:
        first, last, bids, asks = frame
        self.delivered_head = max(self.delivered_head, last)
        sync = self.sync
        was_live = sync.is_live
        before = sync.statistics()
        previous = sync.book.last_update_id
        out = sync.on_delta(first, last, bids, asks, self.now)
        self.check(out, was_live)
        if was_live:
            if last <= previous:
                assert out == SyncOutput(), "a duplicate or replay must be ignored"
                assert sync.is_live
            elif first != previous + 1:
                # An injected gap: detected on the spot, before any book could be emitted.
                assert not sync.is_live
                assert out.status is not None
                assert out.status[0] == "resyncing"
                assert sync.statistics().gaps == before.gaps + 1
                note("gap detected while live")
            else:
                assert out.applied or not sync.is_live  # applied, or crossed -> resync
        if sync.state == "failed":
            assert out == SyncOutput()
        assert sync.statistics().buffered <= self.max_buffer

    # -- rules ---------------------------------------------------------------------------------

    def _frames(self, count: int) -> list[Frame]:
        """Frame the next ``count`` updates (generating truth beyond the head as needed)."""
        frames = []
        for _ in range(count):
            first = self.sent_head + 1
            last = first + (1 if self.rng.random() < 0.1 else 0)  # sometimes U < u
            while self.truth.head < last:
                self.truth.generate(self.rng)
            frames.append(self.truth.frame(first, last, padded=self.rng.random() < 0.8))
            self.sent_head = last
        return frames

    def _send(self, frames: list[Frame], snap: tuple[int, int] | None = None) -> None:
        """Deliver ``frames``; ``snap = (lag, index)``: the fetched snapshot lands before frame ``index``."""
        for index, frame in enumerate(frames):
            if snap is not None and index == snap[1] % len(frames) and not self.sync.is_live:
                self._snapshot(snap[0], shuffled=index % 2 == 1)
            self.deliver(frame)
        self.sent = (self.sent + frames)[-600:]

    @rule(count=st.integers(1, 25), snap=SNAP)
    def send_clean(self, count: int, snap: tuple[int, int] | None) -> None:
        self._send(self._frames(count), snap)

    @precondition(lambda self: self.bursts < 2)
    @rule(count=st.sampled_from([40, 520]))
    def send_burst(self, count: int) -> None:
        """Enough deltas for a snapshot lagging 500 behind to still align (or to overflow)."""
        self.bursts += 1
        self._send(self._frames(count))

    @rule(
        count=st.integers(2, 25),
        faults=st.lists(st.tuples(st.sampled_from(FAULTS), st.integers(0, 24)), min_size=1, max_size=3),
        snap=SNAP,
    )
    def send_faulty(self, count: int, faults: list[tuple[str, int]], snap: tuple[int, int] | None) -> None:
        frames = self._frames(count)
        for kind, position in faults:
            i = position % len(frames)
            if kind == "drop":
                del frames[i]
            elif kind == "jump":
                del frames[i : i + 3]
            elif kind == "duplicate":
                frames.insert(i, frames[i])
            elif kind == "reorder" and i + 1 < len(frames):
                frames[i], frames[i + 1] = frames[i + 1], frames[i]
            elif kind == "replay" and self.sent:
                frames.insert(i, self.rng.choice(self.sent))
            if not frames:
                break
            note(f"fault: {kind}")
        self._send(frames, snap)

    @precondition(lambda self: self.sync.state in ("syncing", "resyncing"))
    @rule(lag=st.sampled_from(LAGS), shuffled=st.booleans())
    def snapshot(self, lag: int, shuffled: bool) -> None:
        """The snapshot the owner fetched because the sync asked for one."""
        self._snapshot(lag, shuffled)

    @precondition(lambda self: self.sync.state in ("live", "failed"))
    @rule(lag=st.sampled_from(LAGS))
    def late_snapshot(self, lag: int) -> None:
        """An answer to an earlier request, arriving when it is no longer wanted: ignored."""
        self._snapshot(lag, shuffled=False)

    def _snapshot(self, lag: int, shuffled: bool) -> None:
        last_update_id = max(0, self.delivered_head - lag)
        while self.truth.head < last_update_id:  # a snapshot ahead of the socket
            self.truth.generate(self.rng)
        bids, asks = self.truth.book_at(last_update_id)
        levels = [
            [(tenths(p, False), hundredths(s, False)) for p, s in sorted(side.items())]
            for side in (bids, asks)
        ]
        if shuffled:
            for side in levels:
                self.rng.shuffle(side)
        sync = self.sync
        was_live = sync.is_live
        taken = sync.state not in ("live", "failed")
        if taken:
            self.snapshot_id = last_update_id
        out = sync.on_snapshot(last_update_id, levels[0], levels[1], self.now)
        if not taken:
            assert out == SyncOutput()
        self.check(out, was_live)
        note(f"snapshot lag {lag}")

    @rule(seconds=st.sampled_from([0.5, 4.0, 11.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        was_live = self.sync.is_live
        out = self.sync.check_timeout(self.now)
        self.check(out, was_live)
        if was_live:
            assert out == SyncOutput()

    @rule(give_up=st.integers(0, 3).map(lambda v: v == 3))  # giving up is absorbing: keep it rare
    def interrupt(self, give_up: bool) -> None:
        """A reconnect (``reset``), or the owner giving up on snapshots (``fail``)."""
        if give_up:
            out = self.sync.fail("snapshot failed")
            assert out.status == ("failed", "snapshot failed")
        else:
            out = self.sync.reset("reconnected")
            assert out.need_snapshot
            assert self.sync.state == "syncing"
        self.check(out, False)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def live_book_equals_the_truth(self) -> None:
        if not hasattr(self, "sync"):
            return
        sync = self.sync
        if not sync.is_live:
            return
        book = sync.book
        assert book.last_update_id == self.cursor
        assert not book.is_crossed()
        assert_ordered(book)
        bids, asks = expected_levels(*self.truth.book_at(book.last_update_id))
        assert book.bids() == bids
        assert book.asks() == asks

    def teardown(self) -> None:
        if hasattr(self, "went_live"):
            note(f"went live {min(self.went_live, 3)}+ times")


BookSyncMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_book_sync_against_the_model = BookSyncMachine.TestCase


def test_the_model_reaches_every_interesting_path():
    """Guard against a vacuous state machine: a scripted run goes live, detects, recovers."""
    machine = BookSyncMachine()
    machine.start(seed=1, max_buffer=1024)
    machine.send_clean(20, None)
    machine.snapshot(9, shuffled=True)
    assert machine.sync.is_live
    machine.live_book_equals_the_truth()
    machine.send_faulty(10, [("drop", 3)], None)
    assert not machine.sync.is_live
    machine.send_burst(520)
    machine.snapshot(500, shuffled=False)
    assert machine.sync.is_live
    machine.live_book_equals_the_truth()
    machine.send_faulty(6, [("duplicate", 1), ("replay", 4)], None)
    assert machine.sync.is_live
    machine.interrupt(give_up=False)
    machine.send_clean(3, None)
    machine.snapshot(-5, shuffled=False)
    assert not machine.sync.is_live  # ahead: waits for the straddling delta
    machine.send_clean(8, None)
    assert machine.sync.is_live
    machine.live_book_equals_the_truth()
    machine.teardown()
