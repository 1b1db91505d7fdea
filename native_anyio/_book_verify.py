"""
Periodic verification of a checksum-less order-book feed (sans-IO).

Backpack's depth stream carries no checksum, so a silently corrupted level (a wrong size that keeps
``U``/``u`` continuous) would survive forever. The verifier compares the top ``depth`` levels of
the live book with a REST snapshot *at a matching update id*:

* it keeps a ring of the last ``window`` applied deltas (one ``deque.append`` per delta, nothing
  copied), so a snapshot taken at ``L`` older than the book's current id ``C`` is rolled forward
  with the deltas ``L+1..C`` and then compared with the live book;
* a snapshot *ahead* of the book (``L > C``) is kept and checked once the book reaches ``L``;
* a snapshot older than the ring, or a hole in the ring, is ``inconclusive`` (try again later).

A mismatch means the book is wrong: the owner must resync it (fail-closed).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, final

from ._book import OrderBook

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ._book import Level

__all__ = ["BookVerifier", "VerifyResult"]

VerifyResult = Literal["ok", "mismatch", "pending", "inconclusive"]


@final
@dataclass(frozen=True, slots=True)
class _Pending:
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@final
class BookVerifier:
    """
    Verifies one symbol's book against REST snapshots (see the module docs).

    Args:
        depth: levels per side compared (keep it well below the snapshot's depth, since rolling
            a snapshot forward can expose levels below its limit).
        window: applied deltas remembered for rolling snapshots forward.
    """

    __slots__ = ("_pending", "_ring", "checks", "depth", "mismatches")

    def __init__(self, *, depth: int = 10, window: int = 10_000) -> None:
        if depth < 1 or window < 1:
            raise ValueError("depth and window must be >= 1")
        self.depth = depth
        self._ring: deque[tuple[int, int, Sequence[Level], Sequence[Level]]] = deque(maxlen=window)
        self._pending: _Pending | None = None
        self.checks = 0
        self.mismatches = 0

    def __repr__(self) -> str:
        return f"<BookVerifier depth={self.depth} checks={self.checks} mismatches={self.mismatches}>"

    def record(self, first: int, last: int, bids: Sequence[Level], asks: Sequence[Level]) -> None:
        """Remember one delta applied to the live book."""
        self._ring.append((first, last, bids, asks))

    def reset(self) -> None:
        """Forget everything (the book was rebuilt from a new snapshot)."""
        self._ring.clear()
        self._pending = None

    def verify(
        self, book: OrderBook, last_update_id: int, bids: Iterable[Level], asks: Iterable[Level]
    ) -> VerifyResult:
        """Compare ``book`` with a snapshot taken at ``last_update_id``."""
        if last_update_id > book.last_update_id:
            self._pending = _Pending(last_update_id, tuple(bids), tuple(asks))
            return "pending"
        return self._compare(book, last_update_id, bids, asks)

    def check_pending(self, book: OrderBook) -> VerifyResult | None:
        """Check a snapshot that was ahead of the book, once the book caught up (else ``None``)."""
        pending = self._pending
        if pending is None or book.last_update_id < pending.last_update_id:
            return None
        self._pending = None
        return self._compare(book, pending.last_update_id, pending.bids, pending.asks)

    def _compare(
        self, book: OrderBook, last_update_id: int, bids: Iterable[Level], asks: Iterable[Level]
    ) -> VerifyResult:
        replica = OrderBook()
        replica.load(bids, asks, last_update_id)
        if last_update_id < book.last_update_id:
            expected = last_update_id + 1
            for first, last, d_bids, d_asks in self._ring:
                if last < expected:
                    continue
                if first > expected:
                    return "inconclusive"  # the snapshot is older than what the ring remembers
                replica.apply(d_bids, d_asks)
                expected = last + 1
                if last >= book.last_update_id:
                    break
            if expected != book.last_update_id + 1:
                return "inconclusive"
        self.checks += 1
        depth = self.depth
        if replica.bids(depth) == book.bids(depth) and replica.asks(depth) == book.asks(depth):
            return "ok"
        self.mismatches += 1
        return "mismatch"
