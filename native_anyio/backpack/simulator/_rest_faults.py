"""
The fault log, and the REST side of fault injection (delays, failures, 429s, snapshot offsets).

REST faults match a request path exactly (``None``: every path) and are consumed in the order
they were armed; per request at most one answer-replacing fault (``fail_rest`` or
``rate_limit_rest``) applies, plus every matching delay. Each is logged when it takes effect.
"""

from __future__ import annotations

import email.utils
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["FaultLog", "FaultRecord", "RestFaults"]


@final
@dataclass(frozen=True, slots=True)
class FaultRecord:
    """
    One injected fault.

    Attributes:
        kind: the fault, named after the :class:`FaultController` method that armed it.
        at: ``anyio.current_time()`` when it took effect.
        conn_id: the connection it hit, if any.
        symbol: the market it hit, if any.
        detail: what exactly happened (update ids, sizes, paths...).
    """

    kind: str
    at: float
    conn_id: int | None = None
    symbol: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(slots=True)
class _RestRule:
    kind: str
    path: str | None
    remaining: int | None
    status: int = 429
    body: str = ""
    seconds: float = 0.0
    http_date: bool = False
    drop: bool = False


class FaultLog:
    """The bounded log of injected faults."""

    def __init__(self) -> None:
        self.log: deque[FaultRecord] = deque(maxlen=100_000)

    def record(self, kind: str, conn_id: int | None = None, symbol: str | None = None, **detail: Any) -> None:
        """Append one record to the fault log."""
        self.log.append(FaultRecord(kind, anyio.current_time(), conn_id, symbol, detail))

    def count(self, kind: str, *, conn_id: int | None = None, symbol: str | None = None) -> int:
        """How many times ``kind`` took effect (optionally on one connection or symbol)."""
        return sum(
            1
            for r in self.log
            if r.kind == kind and conn_id in (None, r.conn_id) and symbol in (None, r.symbol)
        )


class RestFaults(FaultLog):
    """REST faults and ``/api/v1/depth`` snapshot offsets (part of ``sim.faults``)."""

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        super().__init__()
        self._wall = wall_clock
        self._rest: list[_RestRule] = []
        self._snapshots: dict[str, list[int | None]] = {}

    def _clear_rest(self) -> None:
        self._rest.clear()
        self._snapshots.clear()

    def delay_rest(self, path: str | None, seconds: float, *, count: int | None = None) -> None:
        """Answer requests to ``path`` ``seconds`` late (``count=None``: until :meth:`clear`)."""
        self._rest.append(_RestRule("delay_rest", path, count, seconds=seconds))

    def rate_limit_rest(
        self,
        count: int = 1,
        *,
        retry_after: float | None = None,
        http_date: bool = False,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests 429, with ``Retry-After`` seconds or an HTTP-date."""
        seconds = -1.0 if retry_after is None else retry_after
        self._rest.append(_RestRule("rate_limit_rest", path, count, seconds=seconds, http_date=http_date))

    def fail_rest(
        self,
        path: str | None,
        *,
        status: int = 503,
        body: str = "service unavailable",
        count: int = 1,
        drop: bool = False,
    ) -> None:
        """Answer the next ``count`` requests to ``path`` with ``status``/``body`` (or drop them)."""
        self._rest.append(_RestRule("fail_rest", path, count, status=status, body=body, drop=drop))

    def snapshot_offset(self, symbol: str, updates: int, *, count: int | None = None) -> None:
        """Serve ``/api/v1/depth`` ``updates`` behind the socket (negative: ahead of it)."""
        self._snapshots[symbol] = [updates, count]

    def take_rest(self, path: str) -> list[_RestRule]:
        """The REST faults that apply to one request to ``path`` (consumed and logged)."""
        taken: list[_RestRule] = []
        terminal = False
        for rule in list(self._rest):
            if rule.path not in (None, path) or (terminal and rule.kind != "delay_rest"):
                continue
            terminal = terminal or rule.kind != "delay_rest"
            taken.append(rule)
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rest.remove(rule)
            self.record(
                rule.kind,
                path=path,
                status=rule.status if rule.kind != "delay_rest" else None,
                seconds=rule.seconds,
                drop=rule.drop,
            )
        return taken

    def retry_after_header(self, rule: _RestRule) -> dict[str, str]:
        """The ``Retry-After`` header of a 429 rule (none when it has no delay)."""
        if rule.seconds < 0:
            return {}
        if rule.http_date:
            return {"retry-after": email.utils.formatdate(self._wall() + rule.seconds, usegmt=True)}
        seconds = rule.seconds
        return {"retry-after": str(int(seconds)) if seconds == int(seconds) else str(seconds)}

    def take_snapshot_offset(self, symbol: str) -> int:
        """The offset of the next ``/api/v1/depth`` of ``symbol`` (0: none armed)."""
        entry = self._snapshots.get(symbol)
        if entry is None:
            return 0
        offset, remaining = entry
        assert offset is not None
        if remaining is not None:
            entry[1] = remaining - 1
            if remaining <= 1:
                del self._snapshots[symbol]
        return offset
