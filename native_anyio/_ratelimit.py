"""
Client-side rate limiting: a sans-IO sliding-window-log policy and its async wrapper.

Why a sliding *log* and not a token bucket: venues state their limits as "at most N requests per
period" (Backpack: 2000 per minute) and count them in a window whose alignment we do not know.
A token bucket of capacity N refilled at N/period lets a full burst of N go at once and then
keeps refilling while the burst is still inside the window, so a window can hold up to 2N - 1
requests. The log remembers the grant times of the last N requests and schedules the next grant
no earlier than ``log[-N] + period``, which bounds *every* half-open window ``[t, t + period)`` to
N grants, whatever its alignment. It costs N floats of memory and O(1) per request.

Rules:

* grants are reservations: :meth:`RateLimitPolicy.reserve` returns the wait and records the grant
  at ``now + wait`` (exactly, in float arithmetic), so concurrent callers get distinct,
  non-decreasing slots without a lock;
* a reservation whose caller is cancelled while waiting is not given back (the slot stays used):
  the limiter only ever errs on the slow side;
* the request must be sent right after the wait: a send delayed past its slot can bunch with
  later grants (see :class:`native_anyio.RestClient`, which re-checks its gate after the wait).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import final

import anyio
import anyio.lowlevel

__all__ = ["RateLimitPolicy", "RateLimiter", "RateLimiterStatistics"]


@final
class RateLimitPolicy:
    """
    At most ``max_requests`` grants in any window of ``period`` seconds (sans-IO, no clock).

    Args:
        max_requests: the largest number of grants in any half-open window of length ``period``.
        period: the window length, seconds.
    """

    __slots__ = ("_log", "max_requests", "period")

    def __init__(self, max_requests: int, period: float) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        if not period > 0:
            raise ValueError("period must be > 0")
        self.max_requests = max_requests
        self.period = float(period)
        # Grant times, non-decreasing: the last max_requests, plus any younger than one period.
        self._log: deque[float] = deque()

    def reserve(self, now: float) -> float:
        """Reserve the next slot for a request made at ``now``; return the seconds to wait (>= 0)."""
        log = self._log
        limit = self.max_requests
        horizon = now - self.period
        while len(log) > limit and log[0] <= horizon:
            log.popleft()
        at = now
        if log:
            at = max(at, log[-1])  # keep the log sorted even if a caller's clock steps back
            if len(log) >= limit:
                at = max(at, log[-limit] + self.period)
        # Return a wait that lands on the slot: ``now + (at - now)`` can round one ulp below ``at``
        # when ``at > 2 * now``; then the wait is >= at / 2, so two ulp steps of it always suffice.
        wait = at - now
        for _ in range(2):
            if now + wait >= at:
                break
            wait = math.nextafter(wait, math.inf)
        log.append(now + wait)
        return wait

    def in_window(self, now: float) -> int:
        """How many grants fell in ``(now - period, now]``."""
        horizon = now - self.period
        return sum(1 for granted in self._log if horizon < granted <= now)

    def pending(self, now: float) -> int:
        """How many grants are reserved for after ``now``."""
        return sum(1 for granted in self._log if granted > now)

    def __repr__(self) -> str:
        return f"RateLimitPolicy(max_requests={self.max_requests}, period={self.period})"


@final
@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """
    A snapshot of a :class:`RateLimiter`.

    Attributes:
        max_requests: the configured limit.
        period: the configured window, seconds.
        granted: acquisitions granted (including those still waiting for their slot).
        delayed: acquisitions that had to wait.
        total_wait: the sum of all waits, seconds.
        waiting: tasks currently waiting for their slot.
        in_window: grants in the last ``period`` seconds (``(now - period, now]``).
    """

    max_requests: int
    period: float
    granted: int
    delayed: int
    total_wait: float
    waiting: int
    in_window: int


@final
class RateLimiter:
    """
    Waits so that at most ``max_requests`` requests start in any ``period`` seconds.

    Uses ``anyio.current_time()`` and ``anyio.sleep``, so it runs on virtual clocks in tests. One
    limiter may be shared by several clients that draw on the same venue budget.

    Args:
        max_requests: the largest number of requests in any window of length ``period``.
        period: the window length, seconds.
    """

    __slots__ = ("_delayed", "_granted", "_policy", "_total_wait", "_waiting")

    def __init__(self, max_requests: int, period: float) -> None:
        self._policy = RateLimitPolicy(max_requests, period)
        self._granted = 0
        self._delayed = 0
        self._total_wait = 0.0
        self._waiting = 0

    @property
    def policy(self) -> RateLimitPolicy:
        """The sans-IO policy deciding the waits."""
        return self._policy

    async def acquire(self) -> None:
        """
        Wait for this request's slot. Always a checkpoint.

        Raises:
            anyio.get_cancelled_exc_class(): when cancelled while waiting (the slot is not reused).
        """
        wait = self._policy.reserve(anyio.current_time())
        self._granted += 1
        if wait <= 0:
            await anyio.lowlevel.checkpoint()
            return
        self._delayed += 1
        self._total_wait += wait
        self._waiting += 1
        try:
            await anyio.sleep(wait)
        finally:
            self._waiting -= 1

    def statistics(self) -> RateLimiterStatistics:
        """A frozen snapshot of the counters (call it from inside the event loop)."""
        policy = self._policy
        return RateLimiterStatistics(
            max_requests=policy.max_requests,
            period=policy.period,
            granted=self._granted,
            delayed=self._delayed,
            total_wait=self._total_wait,
            waiting=self._waiting,
            in_window=policy.in_window(anyio.current_time()),
        )

    def __repr__(self) -> str:
        return f"RateLimiter(max_requests={self._policy.max_requests}, period={self._policy.period})"
