"""
Property tests for the capped, jittered exponential backoff in ``native_anyio._backoff`` (B1).

Sans-IO and synchronous: time is a float handed to ``BackoffRun.next_delay`` and randomness is a
seeded ``random.Random``. The main property test runs 10,000 generated configurations.
"""

from __future__ import annotations

import itertools
import math
import random
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native_anyio._backoff import Backoff, BackoffRun, set_testing

if TYPE_CHECKING:
    from collections.abc import Iterator

ATTEMPTS = 30

POLICIES = st.builds(
    Backoff,
    initial=st.floats(min_value=0.0, max_value=100.0),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    max_delay=st.floats(min_value=0.0, max_value=1000.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    max_attempts=st.one_of(st.none(), st.integers(min_value=1, max_value=ATTEMPTS)),
    max_elapsed=st.one_of(st.none(), st.floats(min_value=0.0, max_value=5000.0)),
)


@contextmanager
def zero_delays() -> Iterator[None]:
    set_testing(True)
    try:
        yield
    finally:
        set_testing(False)


def run_schedule(run: BackoffRun, start: float = 0.0) -> list[tuple[float, float]]:
    """Fail, sleep the delay, fail again ... until the run gives up: ``[(failed_at, delay), ...]``."""
    now = start
    schedule: list[tuple[float, float]] = []
    for _ in range(ATTEMPTS + 1):
        delay = run.next_delay(now)
        if delay is None:
            return schedule
        schedule.append((now, delay))
        now += delay
    return schedule


@settings(max_examples=10_000, deadline=None)
@given(policy=POLICIES, seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_backoff_properties_hold_for_generated_configs(policy: Backoff, seed: int) -> None:
    # Base delays: non-decreasing, never above the cap, starting at min(initial, cap).
    bases = [policy.base_delay(n) for n in range(1, ATTEMPTS + 1)]
    assert bases[0] == min(policy.initial, policy.max_delay)
    assert all(a <= b for a, b in itertools.pairwise(bases))
    assert all(0 <= b <= policy.max_delay for b in bases)

    # Jittered delays stay within [base * (1 - jitter), base].
    rng = random.Random(seed)
    for n, base in enumerate(bases, start=1):
        delay = policy.delay(n, rng)
        assert base * (1 - policy.jitter) - 1e-9 <= delay <= base

    # A run honours max_attempts and max_elapsed, and its delays are the policy's, in order.
    run = policy.start(random.Random(seed))
    schedule = run_schedule(run)
    replay = random.Random(seed)
    expected = [policy.delay(n, replay) for n in range(1, len(schedule) + 1)]
    assert [delay for _, delay in schedule] == expected
    if policy.max_attempts is not None:
        # ``max_attempts`` attempts in total: the last failure gives up instead of sleeping.
        assert len(schedule) <= policy.max_attempts - 1
        if policy.max_elapsed is None:
            assert len(schedule) == policy.max_attempts - 1
            assert run.attempts == policy.max_attempts
    if policy.max_elapsed is not None:
        for failed_at, delay in schedule:
            assert failed_at + delay <= policy.max_elapsed
    if policy.max_attempts is None and policy.max_elapsed is None:
        assert len(schedule) == ATTEMPTS + 1

    # Reset restores the initial delay, whatever happened before.
    run.reset()
    assert (run.attempts, run.started_at) == (0, None)
    fresh = policy.start(random.Random(seed + 1))
    run.rng = random.Random(seed + 1)
    first = run.next_delay(1e6)
    assert first == fresh.next_delay(1e6)
    if first is not None:
        assert policy.base_delay(1) * (1 - policy.jitter) - 1e-9 <= first <= policy.base_delay(1)


def test_default_schedule_is_exact_without_jitter() -> None:
    policy = Backoff(initial=0.5, multiplier=2.0, max_delay=30.0, jitter=0.0)
    run = policy.start(random.Random(0))
    delays = [run.next_delay(float(i)) for i in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_max_attempts_counts_every_attempt() -> None:
    run = Backoff(initial=1.0, jitter=0.0, max_attempts=3).start(random.Random(0))
    assert run.next_delay(0.0) == 1.0
    assert run.next_delay(1.0) == 2.0
    assert run.next_delay(3.0) is None
    assert run.attempts == 3


def test_max_attempts_one_never_retries() -> None:
    run = Backoff(max_attempts=1).start(random.Random(0))
    assert run.next_delay(0.0) is None


def test_max_elapsed_is_measured_from_the_first_failure_of_the_run() -> None:
    run = Backoff(initial=1.0, multiplier=2.0, jitter=0.0, max_elapsed=10.0).start(random.Random(0))
    now = 100.0
    delays = []
    while (delay := run.next_delay(now)) is not None:
        delays.append(delay)
        now += delay
    assert delays == [1.0, 2.0, 4.0]  # 100 + 7 = 107; the next 8 s sleep would end at 115 > 110
    assert run.started_at == 100.0
    run.reset()
    assert run.next_delay(500.0) == 1.0
    assert run.started_at == 500.0


def test_seeded_runs_are_reproducible() -> None:
    policy = Backoff()
    a = run_schedule(policy.start(random.Random(42)))
    b = run_schedule(policy.start(random.Random(42)))
    c = run_schedule(policy.start(random.Random(43)))
    assert a == b
    assert a != c


def test_set_testing_makes_every_delay_zero_and_is_reversible() -> None:
    policy = Backoff(initial=5.0, jitter=0.5)
    with zero_delays():
        assert {policy.delay(n, random.Random(n)) for n in range(1, 20)} == {0.0}
    assert policy.delay(1, random.Random(0)) > 0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    policy = Backoff(initial=0.5, multiplier=10.0, max_delay=30.0)
    assert policy.base_delay(10_000) == 30.0
    assert math.isfinite(policy.delay(10_000, random.Random(0)))


def test_attempt_numbers_are_one_based() -> None:
    with pytest.raises(ValueError):
        Backoff().base_delay(0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1.0},
        {"max_delay": -1.0},
        {"multiplier": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"jitter": math.nan},
        {"max_attempts": 0},
        {"max_elapsed": -1.0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


@pytest.mark.parametrize("field", ["initial", "max_delay", "multiplier", "max_elapsed"])
def test_nan_policies_are_refused(field: str) -> None:
    kwargs: dict[str, Any] = {field: math.nan}
    with pytest.raises(ValueError):
        Backoff(**kwargs)
