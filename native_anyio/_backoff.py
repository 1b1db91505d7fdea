"""
Capped exponential backoff with jitter (sans-IO: no clock, no anyio).

Rules:

* attempt ``n`` (1-based) has the base delay ``min(initial * multiplier ** (n - 1), max_delay)``;
* "full-ish" jitter: the actual delay is drawn uniformly from ``[base * (1 - jitter), base]``, so it
  never exceeds the cap and never collapses to zero (unless ``jitter == 1``);
* the run is bounded by ``max_attempts`` (``None`` = unlimited) and by ``max_elapsed`` seconds
  (``None`` = unlimited), measured from the first failure of the current run;
* :meth:`BackoffRun.reset` restores the initial delay. The session calls it only after the first
  data message of a new connection, never on a bare handshake (reliability property B2).

:func:`set_testing` turns every delay into zero for tests that do not care about timing, in the
spirit of stamina's ``set_testing``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import final

__all__ = ["Backoff", "BackoffRun", "set_testing"]

_testing = False


def set_testing(enabled: bool) -> None:
    """Make every backoff delay zero (``True``) or restore normal delays (``False``)."""
    global _testing
    _testing = enabled


@final
@dataclass(frozen=True, slots=True)
class Backoff:
    """
    Backoff policy: an immutable description of a retry schedule.

    Args:
        initial: base delay of the first retry, seconds.
        multiplier: growth factor per attempt (> 1).
        max_delay: cap on any single delay, seconds.
        jitter: fraction in ``[0, 1]`` of the base delay that may be randomly removed.
        max_attempts: give up after this many consecutive failures (``None``: never).
        max_elapsed: give up once this many seconds passed since the first failure of a run.
    """

    initial: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5
    max_attempts: int | None = None
    max_elapsed: float | None = None

    def __post_init__(self) -> None:
        for name in ("initial", "multiplier", "max_delay", "jitter", "max_elapsed"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"backoff {name} must be a finite number")
        if self.initial < 0 or self.max_delay < 0:
            raise ValueError("backoff delays must be >= 0")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be within [0, 1]")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")
        if self.max_elapsed is not None and self.max_elapsed < 0:
            raise ValueError("max_elapsed must be >= 0 or None")

    def base_delay(self, attempt: int) -> float:
        """The un-jittered delay before retry number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        if self.initial == 0 or self.multiplier == 1 or self.initial >= self.max_delay:
            return min(self.initial, self.max_delay)
        # The cap is reached after a bounded number of steps; never raise to a huge power.
        steps_to_cap = math.ceil(
            (math.log(self.max_delay) - math.log(self.initial)) / math.log(self.multiplier)
        )
        if attempt - 1 >= steps_to_cap:
            return self.max_delay
        return min(self.initial * self.multiplier ** (attempt - 1), self.max_delay)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay before retry number ``attempt``, drawn from ``rng``."""
        if _testing:
            return 0.0
        base = self.base_delay(attempt)
        if self.jitter == 0:
            return base
        return base - base * self.jitter * rng.random()

    def start(self, rng: random.Random | None = None) -> BackoffRun:
        """Begin a new retry run (the mutable companion of this policy)."""
        return BackoffRun(self, rng if rng is not None else random.Random())


@final
@dataclass(slots=True)
class BackoffRun:
    """
    The mutable state of one retry run: how many failures so far and since when.

    ``next_delay(now)`` returns the delay to sleep before the next attempt, or ``None`` when the
    policy says to give up.
    """

    policy: Backoff
    rng: random.Random
    attempts: int = 0
    started_at: float | None = field(default=None)

    def next_delay(self, now: float) -> float | None:
        """Record one more failure at time ``now`` and return the delay, or ``None`` to give up."""
        if self.started_at is None:
            self.started_at = now
        self.attempts += 1
        policy = self.policy
        if policy.max_attempts is not None and self.attempts >= policy.max_attempts:
            return None
        delay = policy.delay(self.attempts, self.rng)
        if policy.max_elapsed is not None and (now - self.started_at) + delay > policy.max_elapsed:
            return None
        return delay

    def reset(self) -> None:
        """Forget past failures: the next failure starts a fresh run at the initial delay."""
        self.attempts = 0
        self.started_at = None
