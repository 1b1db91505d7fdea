"""
Order books and their synchronization from a snapshot plus sequenced deltas (sans-IO).

:class:`OrderBook` keeps each side as two parallel lists, prices sorted so that the *end* is the best
level (bids ascending, asks stored as negated prices ascending) and their sizes, so an update is a
binary search (a few exact ``Decimal`` comparisons) and inserts/deletes near the touch shift only a
few list slots. There is deliberately no dict: hashing a fresh ``Decimal`` (every decoded price is
one) costs about 0.45 µs, several times the search. Prices are matched by exact ``Decimal`` value:
``"98.90"`` and ``"98.9"`` are the same level (the first spelling stays). Asks are negated with
``copy_negate()``, never unary minus, which rounds to the context precision (28 digits): a longer
price would get a key that no longer finds its level. Size zero deletes; deleting an absent level
is a no-op.

:class:`BookSync` is the per-symbol state machine (no I/O, no anyio, time passed in):

* ``syncing``: deltas are buffered (bounded) from subscription; the owner fetches a snapshot.
* On a snapshot with ``lastUpdateId = L``: buffered deltas with ``u <= L`` are dropped; the first
  kept delta must straddle ``U <= L + 1 <= u``. A snapshot *ahead* of every buffered delta keeps
  waiting for the straddling delta, bounded by ``max_wait`` seconds, then asks for a new snapshot.
  A snapshot *behind* the oldest buffered delta (``L + 1 < U`` of the first) is a gap: re-snapshot.
* ``live``: a delta is applied only when ``U == previous u + 1``; ``u <= previous u`` is a stale
  duplicate and is ignored; anything else is a gap.
* A gap, a crossed book (best bid > best ask; a locked book is fine), an invalid delta (or
  ``invalidate()``: a depth frame the owner could not decode) or a buffer overflow moves to
  ``resyncing``: from that moment no book is emitted until a new snapshot
  completes, and the old book is discarded (never merged). ``reset()`` does the same on a
  reconnect.
* ``failed``: the owner gave up fetching snapshots (``fail()``); stays fail-closed until
  ``reset()``.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, final

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["BookState", "BookSync", "BookSyncStatistics", "Level", "OrderBook", "SyncOutput"]

Level = tuple[Decimal, Decimal]
BookState = Literal["syncing", "live", "resyncing", "failed"]

_ZERO: Final = Decimal(0)
_NEGATE: Final = Decimal.copy_negate  # exact, unlike unary minus (see the module docs)
_PRICE: Final = itemgetter(0)


@final
class OrderBook:
    """A price-level order book with exact Decimal prices (see the module docs)."""

    __slots__ = ("_ask_keys", "_ask_sizes", "_bid_keys", "_bid_sizes", "last_update_id")

    def __init__(self) -> None:
        self._bid_keys: list[Decimal] = []  # ascending: best bid last
        self._bid_sizes: list[Decimal] = []  # the size of each _bid_keys entry
        self._ask_keys: list[Decimal] = []  # negated prices ascending: best ask last
        self._ask_sizes: list[Decimal] = []
        self.last_update_id = 0

    def __repr__(self) -> str:
        return (
            f"<OrderBook bids={len(self._bid_keys)} asks={len(self._ask_keys)} "
            f"last_update_id={self.last_update_id}>"
        )

    def clear(self) -> None:
        """Remove every level."""
        self._bid_keys.clear()
        self._bid_sizes.clear()
        self._ask_keys.clear()
        self._ask_sizes.clear()
        self.last_update_id = 0

    def load(self, bids: Iterable[Level], asks: Iterable[Level], last_update_id: int) -> None:
        """Replace the whole book with a snapshot (levels in any order; zero sizes skipped)."""
        # A dict first: a repeated price keeps its first spelling and its last size.
        bid_map = {p: s for p, s in bids if s > _ZERO}
        ask_map = {p: s for p, s in asks if s > _ZERO}
        bid_levels = sorted(bid_map.items(), key=_PRICE)
        ask_levels = sorted(ask_map.items(), key=_PRICE, reverse=True)
        self._bid_keys = [p for p, _ in bid_levels]
        self._bid_sizes = [s for _, s in bid_levels]
        self._ask_keys = [p.copy_negate() for p, _ in ask_levels]
        self._ask_sizes = [s for _, s in ask_levels]
        self.last_update_id = last_update_id

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Apply absolute level updates: size zero deletes, anything else sets the level."""
        # The two sides are written out rather than shared through a helper: this is the hot path,
        # and a call per level costs more than the search itself.
        keys = self._bid_keys
        sizes = self._bid_sizes
        for price, size in bids:
            i = bisect_left(keys, price)
            if i < len(keys) and keys[i] == price:
                if size:
                    sizes[i] = size
                else:
                    del keys[i]
                    del sizes[i]
            elif size:
                keys.insert(i, price)
                sizes.insert(i, size)
        keys = self._ask_keys
        sizes = self._ask_sizes
        for price, size in asks:
            neg = price.copy_negate()
            i = bisect_left(keys, neg)
            if i < len(keys) and keys[i] == neg:
                if size:
                    sizes[i] = size
                else:
                    del keys[i]
                    del sizes[i]
            elif size:
                keys.insert(i, neg)
                sizes.insert(i, size)

    @property
    def best_bid(self) -> Level | None:
        """The best bid ``(price, size)``, or None."""
        if not self._bid_keys:
            return None
        return self._bid_keys[-1], self._bid_sizes[-1]

    @property
    def best_ask(self) -> Level | None:
        """The best ask ``(price, size)``, or None."""
        if not self._ask_keys:
            return None
        return self._ask_keys[-1].copy_negate(), self._ask_sizes[-1]

    def is_crossed(self) -> bool:
        """True when best bid > best ask (a locked book, bid == ask, is not crossed)."""
        bids, asks = self._bid_keys, self._ask_keys
        return bool(bids and asks and bids[-1] > asks[-1].copy_negate())

    def bids(self, depth: int | None = None) -> list[Level]:
        """Bid levels, best first (``depth`` levels, or all)."""
        keys, sizes = self._bid_keys, self._bid_sizes
        if depth is None:
            return list(zip(keys[::-1], sizes[::-1], strict=True))
        if depth <= 0:
            return []
        return list(zip(keys[: -depth - 1 : -1], sizes[: -depth - 1 : -1], strict=True))

    def asks(self, depth: int | None = None) -> list[Level]:
        """Ask levels, best first (``depth`` levels, or all)."""
        keys, sizes = self._ask_keys, self._ask_sizes
        if depth is None:
            return list(zip(map(_NEGATE, keys[::-1]), sizes[::-1], strict=True))
        if depth <= 0:
            return []
        return list(zip(map(_NEGATE, keys[: -depth - 1 : -1]), sizes[: -depth - 1 : -1], strict=True))

    def __len__(self) -> int:
        return len(self._bid_keys) + len(self._ask_keys)


@final
class SyncOutput(NamedTuple):
    """
    What the owner must do or may emit after feeding the synchronizer.

    A named tuple rather than a frozen dataclass: one is built per applied delta, and a frozen
    dataclass's ``__init__`` alone cost more than applying the delta (benchmarks/bench_book.py).

    Attributes:
        applied: ``(first_id, last_id, bids, asks)`` of each delta applied to the live book, in order.
        snapshot_loaded: a snapshot was just loaded and the book went live.
        need_snapshot: the owner should (re)fetch a snapshot now.
        status: a new state with its reason, when the state changed.
    """

    applied: tuple[tuple[int, int, Sequence[Level], Sequence[Level]], ...] = ()
    snapshot_loaded: bool = False
    need_snapshot: bool = False
    status: tuple[BookState, str] | None = None


@final
@dataclass(frozen=True, slots=True)
class BookSyncStatistics:
    """Counters of one synchronizer."""

    state: BookState
    last_update_id: int
    applied: int
    gaps: int
    stale_dropped: int
    resyncs: int
    buffer_overflows: int
    snapshots: int
    buffered: int


_NOTHING: Final = SyncOutput()
_new_output = tuple.__new__


@final
class BookSync:
    """
    Snapshot + delta synchronizer for one symbol's book (see the module docs).

    Args:
        max_buffer: deltas buffered while waiting for a snapshot; overflow restarts the sync.
        max_wait: seconds to wait for the delta that straddles a snapshot ahead of the socket.
    """

    __slots__ = ("_buffer", "_counters", "_reason", "_snapshot_at", "book", "max_buffer", "max_wait", "state")

    def __init__(self, *, max_buffer: int = 10_000, max_wait: float = 10.0) -> None:
        self.book = OrderBook()
        self.state: BookState = "syncing"
        self.max_buffer = max_buffer
        self.max_wait = max_wait
        self._buffer: list[tuple[int, int, Sequence[Level], Sequence[Level]]] = []
        self._snapshot_at: float | None = None  # when a snapshot ahead of the socket was loaded
        self._reason = "subscribed"
        # applied, gaps, stale, resyncs, overflows, snapshots
        self._counters = [0, 0, 0, 0, 0, 0]

    def __repr__(self) -> str:
        return f"<BookSync {self.state} last_update_id={self.book.last_update_id}>"

    @property
    def is_live(self) -> bool:
        """True when the book may be emitted."""
        return self.state == "live"

    def statistics(self) -> BookSyncStatistics:
        """A frozen snapshot of the counters."""
        c = self._counters
        return BookSyncStatistics(self.state, self.book.last_update_id, c[0], c[1], c[2], c[3], c[4], c[5],
                                  len(self._buffer))  # fmt: skip

    def reset(self, reason: str) -> SyncOutput:
        """Drop the book and every buffered delta (e.g. on reconnect); a new snapshot is needed."""
        return self._restart("syncing", reason)

    def invalidate(self, reason: str) -> SyncOutput:
        """
        The delta stream is broken in a way only the owner can see (a depth frame that failed
        validation, so its ids are lost): a gap. Resync now; nothing while ``failed``.
        """
        state = self.state
        if state == "failed":
            return _NOTHING
        self._counters[1] += 1
        return self._restart("resyncing" if state == "live" else state, reason)

    def fail(self, reason: str) -> SyncOutput:
        """The owner gave up on snapshots: stay fail-closed until :meth:`reset`."""
        self.book.clear()
        self._buffer.clear()
        self._snapshot_at = None
        self.state = "failed"
        self._reason = reason
        return SyncOutput(status=("failed", reason))

    def _restart(self, state: BookState, reason: str) -> SyncOutput:
        if state == "resyncing":
            self._counters[3] += 1
        self.book.clear()
        self._buffer.clear()
        self._snapshot_at = None
        self.state = state
        self._reason = reason
        return SyncOutput(need_snapshot=True, status=(state, reason))

    def on_delta(
        self, first: int, last: int, bids: Sequence[Level], asks: Sequence[Level], now: float
    ) -> SyncOutput:
        """Feed one depth delta covering update ids ``first..last``."""
        state = self.state
        if last < first:
            if state == "failed":
                return _NOTHING  # fail-closed until reset(), whatever arrives
            self._counters[1] += 1
            return self._restart(
                "resyncing" if state == "live" else state, f"invalid delta: u={last} < U={first}"
            )
        if state == "live":
            book = self.book
            expected = book.last_update_id + 1
            if first == expected:
                book.apply(bids, asks)
                book.last_update_id = last
                self._counters[0] += 1
                bid_keys = book._bid_keys
                ask_keys = book._ask_keys
                # Inlined is_crossed().
                if bid_keys and ask_keys and bid_keys[-1] > ask_keys[-1].copy_negate():
                    return self._restart("resyncing", f"crossed book after update {last}")
                # tuple.__new__: a NamedTuple built with keywords costs more than the apply itself.
                return _new_output(SyncOutput, (((first, last, bids, asks),), False, False, None))
            if last < expected:
                self._counters[2] += 1
                return _NOTHING
            self._counters[1] += 1
            return self._restart("resyncing", f"gap: expected U={expected}, got U={first} (u={last})")
        if state == "failed":
            return _NOTHING
        # syncing / resyncing: buffer until a snapshot aligns.
        if self._snapshot_at is not None:
            return self._try_align_waiting(first, last, bids, asks, now)
        if len(self._buffer) >= self.max_buffer:
            self._counters[4] += 1
            return self._restart(state, f"delta buffer overflow ({self.max_buffer})")
        self._buffer.append((first, last, bids, asks))
        return _NOTHING

    def on_snapshot(
        self, last_update_id: int, bids: Iterable[Level], asks: Iterable[Level], now: float
    ) -> SyncOutput:
        """Feed a REST snapshot taken after the subscription started."""
        if self.state in ("live", "failed"):
            return _NOTHING  # a late answer to an earlier request
        self._counters[5] += 1
        book = self.book
        book.load(bids, asks, last_update_id)
        buffer = self._buffer
        self._buffer = []
        kept = [d for d in buffer if d[1] > last_update_id]
        self._counters[2] += len(buffer) - len(kept)
        if not kept:
            # The snapshot is ahead of (or level with) everything buffered: wait for the straddling delta.
            self._snapshot_at = now
            return _NOTHING
        first = kept[0][0]
        if first > last_update_id + 1:
            self._counters[1] += 1
            state = self.state
            return self._restart(
                state, f"snapshot {last_update_id} is older than the buffered deltas (U={first})"
            )
        return self._go_live(kept)

    def _try_align_waiting(self, first: int, last: int, bids: Sequence[Level], asks: Sequence[Level],
                           now: float) -> SyncOutput:  # fmt: skip
        book = self.book
        if last <= book.last_update_id:
            self._counters[2] += 1
            if self._snapshot_at is not None and now - self._snapshot_at > self.max_wait:
                return self._restart(self.state, "snapshot stayed ahead of the socket too long")
            return _NOTHING
        if first > book.last_update_id + 1:
            self._counters[1] += 1
            return self._restart(
                self.state, f"gap while waiting: expected U<={book.last_update_id + 1}, got {first}"
            )
        self._snapshot_at = None
        return self._go_live([(first, last, bids, asks)])

    def _go_live(self, deltas: list[tuple[int, int, Sequence[Level], Sequence[Level]]]) -> SyncOutput:
        book = self.book
        applied: list[tuple[int, int, Sequence[Level], Sequence[Level]]] = []
        for first, last, bids, asks in deltas:
            # deltas[0] straddles the snapshot (checked by the caller); each later one must
            # follow it. A duplicate or replay inside the buffer is stale, as it is when live.
            if applied and first != book.last_update_id + 1:
                if last <= book.last_update_id:
                    self._counters[2] += 1
                    continue
                self._counters[1] += 1
                return self._restart(self.state, f"gap in buffered deltas at U={first}")
            book.apply(bids, asks)
            book.last_update_id = last
            self._counters[0] += 1
            applied.append((first, last, bids, asks))
        if book.is_crossed():
            return self._restart("resyncing", "crossed book after snapshot alignment")
        self.state = "live"
        self._reason = "synchronized"
        return SyncOutput(applied=tuple(applied), snapshot_loaded=True, status=("live", "synchronized"))

    def check_timeout(self, now: float) -> SyncOutput:
        """Call periodically: a snapshot that stays ahead of the socket past ``max_wait`` is retried."""
        if self._snapshot_at is not None and now - self._snapshot_at > self.max_wait:
            return self._restart(self.state, "snapshot stayed ahead of the socket too long")
        return _NOTHING
