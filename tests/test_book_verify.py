"""Periodic verification of a checksum-less book: rolling snapshots forward, mismatches, pending."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native_anyio import OrderBook
from native_anyio._book_verify import BookVerifier


def levels(*pairs: tuple[str, str]) -> list[tuple[D, D]]:
    return [(D(p), D(s)) for p, s in pairs]


class Feed:
    """A ground-truth book plus the deltas that built it, and a live copy fed the same deltas."""

    def __init__(self) -> None:
        self.truth = OrderBook()
        self.truth.load(levels(("99", "1"), ("98", "2")), levels(("101", "1"), ("102", "2")), 100)
        self.live = OrderBook()
        self.live.load(self.truth.bids(), self.truth.asks(), 100)
        self.history: dict[int, tuple[list, list]] = {100: (self.truth.bids(), self.truth.asks())}
        self.live_history: dict[int, tuple[list, list]] = {100: (self.live.bids(), self.live.asks())}
        self.verifier = BookVerifier(depth=5)

    def step(self, bids: list, asks: list, *, corrupt: bool = False) -> None:
        last = self.truth.last_update_id + 1
        self.truth.apply(bids, asks)
        self.truth.last_update_id = last
        wire_bids = [(p, s + 1) for p, s in bids] if corrupt else bids
        self.live.apply(wire_bids, asks)
        self.live.last_update_id = last
        self.verifier.record(last, last, wire_bids, asks)
        self.history[last] = (self.truth.bids(), self.truth.asks())
        self.live_history[last] = (self.live.bids(), self.live.asks())

    def snapshot(self, at: int) -> tuple[int, list, list]:
        bids, asks = self.history[at]
        return at, sorted(bids), sorted(asks)  # REST sends both sides ascending


def test_a_snapshot_at_the_current_id_matches_a_correct_book():
    feed = Feed()
    feed.step(levels(("99", "3")), [])
    assert feed.verifier.verify(feed.live, *feed.snapshot(101)) == "ok"
    assert feed.verifier.checks == 1


def test_an_older_snapshot_is_rolled_forward_with_the_recorded_deltas():
    feed = Feed()
    for i in range(20):
        feed.step(levels((f"9{i % 9}.5", str(i + 1))), levels(("101", str(i + 2))))
    assert feed.verifier.verify(feed.live, *feed.snapshot(105)) == "ok"


def test_a_silently_corrupted_level_is_a_mismatch():
    feed = Feed()
    feed.step(levels(("99", "3")), [], corrupt=True)  # U/u stay continuous, the size is wrong
    feed.step(levels(("97", "1")), [])
    assert feed.verifier.verify(feed.live, *feed.snapshot(101)) == "mismatch"
    assert feed.verifier.mismatches == 1


def test_a_snapshot_ahead_of_the_book_is_checked_when_the_book_catches_up():
    feed = Feed()
    ahead = Feed()
    ahead.step(levels(("99", "3")), [])
    assert feed.verifier.verify(feed.live, *ahead.snapshot(101)) == "pending"
    assert feed.verifier.check_pending(feed.live) is None
    feed.step(levels(("99", "3")), [])
    assert feed.verifier.check_pending(feed.live) == "ok"
    assert feed.verifier.check_pending(feed.live) is None  # consumed


def test_a_snapshot_older_than_the_ring_is_inconclusive():
    feed = Feed()
    feed.verifier = BookVerifier(depth=5, window=3)
    for i in range(10):
        feed.step(levels(("99", str(i + 2))), [])
    assert feed.verifier.verify(feed.live, *feed.snapshot(101)) == "inconclusive"
    assert feed.verifier.verify(feed.live, *feed.snapshot(108)) == "ok"
    feed.verifier.reset()
    assert feed.verifier.verify(feed.live, *feed.snapshot(108)) == "inconclusive"


def test_invalid_settings():
    with pytest.raises(ValueError):
        BookVerifier(depth=0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["97", "98", "99", "96.5"]), st.sampled_from(["0", "1", "2.5"]), st.booleans()
        ),
        min_size=1,
        max_size=40,
    ),
    st.data(),
)
def test_verification_has_no_false_alarms_and_catches_corruption_before_the_snapshot(steps, data):
    """
    A snapshot at L is rolled forward with the deltas as received. So: a mismatch only ever means
    the book was wrong at L (no false alarm), and a book that is wrong now because of corruption
    at or before L is always caught. Corruption after L is for a later round.
    """
    feed = Feed()
    corrupted_ids = []
    for price, size, corrupt in steps:
        corrupt = corrupt and size != "0"
        feed.step(levels((price, size)), [], corrupt=corrupt)
        if corrupt:
            corrupted_ids.append(feed.truth.last_update_id)
    at = data.draw(st.integers(100, feed.truth.last_update_id))
    result = feed.verifier.verify(feed.live, *feed.snapshot(at))
    assert result in ("ok", "mismatch")
    wrong_at_snapshot = [side[:5] for side in feed.live_history[at]] != [
        side[:5] for side in feed.history[at]
    ]
    wrong_now = feed.live.bids(5) != feed.truth.bids(5)
    if result == "mismatch":
        assert wrong_at_snapshot
    if wrong_now and all(i <= at for i in corrupted_ids):
        assert result == "mismatch"
    if not corrupted_ids:
        assert result == "ok"
