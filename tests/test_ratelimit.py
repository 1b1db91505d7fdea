"""The sliding-window-log rate limit: the sans-IO policy (sync, Hypothesis) and the async limiter."""

from __future__ import annotations

import bisect

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from native_anyio._ratelimit import RateLimiter, RateLimitPolicy

# ---------------------------------------------------------------- policy (sans-IO)


def grant_all(policy: RateLimitPolicy, times: list[float]) -> list[float]:
    return [t + policy.reserve(t) for t in times]


def test_burst_then_one_full_period_later() -> None:
    policy = RateLimitPolicy(3, 10.0)
    assert grant_all(policy, [0.0] * 7) == [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 20.0]


def test_spaced_requests_are_never_delayed() -> None:
    policy = RateLimitPolicy(2, 10.0)
    assert [policy.reserve(t) for t in (0.0, 5.0, 10.0, 15.0, 20.0)] == [0.0] * 5


def test_wait_counts_from_the_oldest_of_the_last_n() -> None:
    policy = RateLimitPolicy(2, 10.0)
    assert [policy.reserve(t) for t in (0.0, 4.0, 6.0, 7.0)] == [0.0, 0.0, 4.0, 7.0]


def test_in_window_counts_recent_grants_and_reservations() -> None:
    policy = RateLimitPolicy(2, 10.0)
    grant_all(policy, [0.0, 0.0, 0.0])  # the third is reserved for t=10
    assert (policy.in_window(5.0), policy.pending(5.0)) == (2, 1)
    assert (policy.in_window(10.0), policy.pending(10.0)) == (1, 0)
    assert (policy.in_window(25.0), policy.pending(25.0)) == (0, 0)


def test_long_runs_keep_counting_only_the_current_window() -> None:
    policy = RateLimitPolicy(3, 1.5)
    assert [policy.reserve(float(t)) for t in range(1000)] == [0.0] * 1000
    assert (policy.in_window(999.0), policy.pending(999.0)) == (2, 0)


@pytest.mark.parametrize(("max_requests", "period"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, float("nan"))])
def test_invalid_limits_are_refused(max_requests: int, period: float) -> None:
    with pytest.raises(ValueError):
        RateLimitPolicy(max_requests, period)


@given(
    max_requests=st.integers(1, 12),
    period=st.floats(0.001, 1000.0),
    gaps=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=150),
)
def test_no_window_ever_holds_more_than_max_requests(
    max_requests: int, period: float, gaps: list[float]
) -> None:
    policy = RateLimitPolicy(max_requests, period)
    times = []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)
    grants = grant_all(policy, times)

    assert all(g >= t for g, t in zip(grants, times, strict=False))
    assert grants == sorted(grants)
    # The worst windows start at a grant: count the grants in [g, g + period) for each of them.
    for g in grants:
        assert bisect.bisect_left(grants, g + period) - bisect.bisect_left(grants, g) <= max_requests
    # And the limiter is not more conservative than that: a delayed grant is exactly one
    # period after the grant max_requests earlier, never later.
    for i, (g, t) in enumerate(zip(grants, times, strict=False)):
        if g > t and g > grants[i - 1]:
            assert g == pytest.approx(grants[i - max_requests] + period, rel=1e-12, abs=1e-12)


# ---------------------------------------------------------------- async limiter (virtual time)


@pytest.mark.virtual_time
async def test_acquire_waits_exactly_per_the_policy() -> None:
    limiter = RateLimiter(3, 10.0)
    start = anyio.current_time()
    stamps = []
    with anyio.fail_after(100):
        for _ in range(7):
            await limiter.acquire()
            stamps.append(anyio.current_time() - start)
    assert stamps == pytest.approx([0, 0, 0, 10, 10, 10, 20], abs=1e-6)
    stats = limiter.statistics()
    assert (stats.granted, stats.delayed, stats.waiting) == (7, 2, 0)
    assert stats.total_wait == pytest.approx(20, abs=1e-6)
    assert stats.in_window == 1  # (10, 20] holds only the grant at 20
    assert (stats.max_requests, stats.period) == (3, 10.0)


@pytest.mark.virtual_time
async def test_concurrent_acquirers_get_distinct_slots() -> None:
    limiter = RateLimiter(2, 5.0)
    start = anyio.current_time()
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        stamps.append(anyio.current_time() - start)

    with anyio.fail_after(100):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
            await anyio.sleep(1)
            assert limiter.statistics().waiting == 3
    assert sorted(stamps) == pytest.approx([0, 0, 5, 5, 10], abs=1e-6)


@pytest.mark.virtual_time
async def test_cancelled_waiter_keeps_its_slot_used() -> None:
    limiter = RateLimiter(1, 10.0)
    start = anyio.current_time()
    with anyio.fail_after(100):
        await limiter.acquire()
        with anyio.move_on_after(1) as scope:
            await limiter.acquire()  # reserved for t=10, cancelled at t=1
        assert scope.cancelled_caught
        assert limiter.statistics().waiting == 0
        await limiter.acquire()  # the cancelled slot is not handed out again: t=20
    assert anyio.current_time() - start == pytest.approx(20, abs=1e-6)


async def test_acquire_without_wait_is_a_checkpoint() -> None:
    limiter = RateLimiter(5, 1.0)
    with anyio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(anyio.get_cancelled_exc_class()):
            await limiter.acquire()
    assert "RateLimiter(max_requests=5, period=1.0)" in repr(limiter)
    assert limiter.policy.max_requests == 5
