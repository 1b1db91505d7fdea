"""
REST politeness of the Backpack REST client (property F1), in virtual time against
:func:`native_anyio.testing.open_http_server` on loopback.

* ``Retry-After``: trials of a 429 carrying ``Retry-After`` as delta-seconds (whole or fractional)
  or as an HTTP-date (converted with the client's wall clock, which follows the virtual clock);
  the rate-limited caller retries and a second caller starts half-way through the wait. The server
  counts requests that arrive before the moment ``Retry-After`` names (target 0) and how late the
  retry came.
* 418 ban: a 418 with ``Retry-After: 3600``. Longer than the client waits inside a request, so the
  call raises ``RateLimited`` at once; the application keeps calling every 10 s (a call made
  within the client's ``max_retry_after`` of 60 s of the end waits it out instead). The server
  must see no request until the ban is over, and the first one right after it.
* Burst: 3,000 requests offered at once by 30 concurrent callers through the client's default
  limiter (2,000 per 60 s, Backpack's published limit), against a server enforcing 2,000 per
  minute over a sliding window at millisecond resolution: 0 answers 429, and no 60 s window
  holds more than 2,000 requests (the short version: 600 requests, 400 per 12 s).
"""

from __future__ import annotations

import bisect
import email.utils
import math
import random
import time
from typing import TYPE_CHECKING

import anyio

from native_anyio import RateLimited, RateLimiter
from native_anyio.backpack import BackpackConfig, BackpackRest
from native_anyio.backpack.simulator import virtual_wall_clock
from native_anyio.testing import HttpRequest, HttpResponse, open_http_server
from reliability._figures import Context, Result, Scenario

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SCENARIOS"]

TIME_BODY = b"1788000000000"
#: (requests offered, limit, period): the full burst uses the client's default limiter (Backpack's
#: 2,000/min); the short one scales the same test down to 600 requests against 400 per 12 s.
FULL_BURST = (3000, 2000, 60.0)
SHORT_BURST = (600, 400, 12.0)


def _client(url: str, wall: Callable[[], float], limiter: RateLimiter | None = None) -> BackpackRest:
    config = BackpackConfig(rest_url=url, ws_url="ws://127.0.0.1:1", clock=wall)
    return BackpackRest(config, rate_limiter=limiter)


async def _retry_after_trial(rng: random.Random, form: str) -> tuple[int, float]:
    """One 429 trial: (requests that arrived early, seconds the retry came after it was allowed)."""
    wall = virtual_wall_clock()
    seconds = float(rng.randint(1, 30)) if form != "fraction" else round(rng.uniform(0.1, 30.0), 3)
    allowed_at: list[float] = []  # the anyio time before which nothing may arrive
    arrivals: list[float] = []

    async def venue(request: HttpRequest) -> HttpResponse:
        arrivals.append(request.arrived_at)
        if len(arrivals) > 1:
            return HttpResponse(200, TIME_BODY)
        if form == "date":
            when = wall() + seconds
            value = email.utils.formatdate(when, usegmt=True)
            # The date names a whole second; requests are allowed from that moment on.
            allowed_at.append(request.arrived_at + (math.floor(when) - wall()))
        else:
            value = format(seconds, "g")
            allowed_at.append(request.arrived_at + seconds)
        return HttpResponse(429, '{"code":"TOO_MANY_REQUESTS","message":"slow down"}', {"Retry-After": value})

    async with (
        open_http_server(venue) as server,
        _client(server.url, wall) as rest,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(rest.time)
        await anyio.sleep(seconds / 2)
        tg.start_soon(rest.time)  # a second caller during the wait: held by the same gate
    allowed = allowed_at[0]
    early = sum(1 for t in arrivals[1:] if t < allowed - 1e-9)
    return early, arrivals[1] - allowed


async def _ban_trial() -> dict[str, float | int]:
    wall = virtual_wall_clock()
    ban = 3600.0
    arrivals: list[float] = []

    async def venue(request: HttpRequest) -> HttpResponse:
        arrivals.append(request.arrived_at)
        if len(arrivals) == 1:
            return HttpResponse(418, '{"code":"BANNED","message":"IP banned"}', {"Retry-After": "3600"})
        return HttpResponse(200, TIME_BODY)

    refused = 0
    unhealthy = 0
    async with open_http_server(venue) as server, _client(server.url, wall) as rest:
        start = anyio.current_time()
        for _ in range(int(ban // 10) + 1):
            try:
                await rest.time()
            except RateLimited:
                refused += 1
                unhealthy += rest.health().status == "unhealthy"
                await anyio.sleep(10.0)
                continue
            break
    during = sum(1 for t in arrivals[1:] if t - start < ban - 1e-9)
    return {
        "ban_requests_during": during,
        "ban_refused_locally": refused,
        "ban_unhealthy_reports": unhealthy,
        "ban_first_after_s": (arrivals[1] - start) if len(arrivals) > 1 else -1.0,
    }


async def _burst(requests: int, limit: int, period: float) -> dict[str, float | int]:
    arrivals_ms: list[int] = []
    limited = 0
    period_ms = round(period * 1000)

    async def venue(request: HttpRequest) -> HttpResponse:
        nonlocal limited
        now_ms = round(request.arrived_at * 1000)
        window = len(arrivals_ms) - bisect.bisect_right(arrivals_ms, now_ms - period_ms)
        arrivals_ms.append(now_ms)
        if window >= limit:
            limited += 1
            return HttpResponse(429, '{"code":"TOO_MANY_REQUESTS","message":"Too many requests"}')
        return HttpResponse(200, TIME_BODY)

    wall = virtual_wall_clock()
    # The full burst goes through the client's own default limiter (None: 2,000 per 60 s).
    limiter = None if (limit, period) == (2000, 60.0) else RateLimiter(limit, period)
    async with open_http_server(venue, record=False) as server, _client(server.url, wall, limiter) as rest:
        start = anyio.current_time()

        async def caller(n: int) -> None:
            for _ in range(n):
                await rest.time()

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(caller, requests // 30)
        stats = rest.statistics()
        elapsed = anyio.current_time() - start
    worst = max((_last_within(arrivals_ms, i, period_ms) - i for i in range(len(arrivals_ms))), default=0)
    return {
        "burst_requests": len(arrivals_ms),
        "burst_limit": limit,
        "burst_period_s": period,
        "burst_429": limited,
        "burst_retries": stats.retries,
        "burst_max_per_window": worst,
        "burst_elapsed_s": elapsed,
    }


def _last_within(times: list[int], start: int, span: int) -> int:
    """One past the last index whose time is within ``[times[start], times[start] + span)``."""
    lo, hi = start, len(times)
    limit = times[start] + span
    while lo < hi:
        mid = (lo + hi) // 2
        if times[mid] < limit:
            lo = mid + 1
        else:
            hi = mid
    return lo


async def run_politeness(ctx: Context) -> Result:
    started = time.perf_counter()
    rng = random.Random(3)
    trials = 30 if ctx.short else 300
    early = 0
    slack: list[float] = []
    for index in range(trials):
        e, s = await _retry_after_trial(rng, ("seconds", "fraction", "date")[index % 3])
        early += e
        slack.append(s)
    ban = await _ban_trial()
    offered, limit, period = SHORT_BURST if ctx.short else FULL_BURST
    burst = await _burst(offered, limit, period)
    passed = (
        early == 0
        and max(slack) < 0.01
        and ban["ban_requests_during"] == 0
        and ban["ban_refused_locally"] >= 1
        and ban["ban_unhealthy_reports"] == ban["ban_refused_locally"]
        and 3600.0 - 1e-6 <= ban["ban_first_after_s"] <= 3610.0
        and burst["burst_429"] == 0
        and burst["burst_requests"] == offered
        and burst["burst_max_per_window"] <= limit
    )
    value = (
        f"{early} requests before Retry-After in {trials} 429 trials (seconds, fractional, HTTP-date; "
        f"retry at most {max(slack) * 1000:.1f} ms late); 418 ban of 1 h: {ban['ban_requests_during']} "
        f"requests during it ({ban['ban_refused_locally']} calls refused locally), next one at "
        f"+{ban['ban_first_after_s']:.0f} s; burst of {offered:,}: {burst['burst_429']} 429s, at most "
        f"{burst['burst_max_per_window']} per {period:g} s (limit {limit:,}), done in "
        f"{burst['burst_elapsed_s']:.1f} s"
    )
    data: dict[str, float | int | str] = {
        "trials": trials,
        "early_requests": early,
        "max_retry_slack_s": max(slack),
        **ban,
        **burst,
        "wall_seconds": time.perf_counter() - started,
    }
    return Result(value, passed, data)


SCENARIOS = [
    Scenario(
        key="rest_politeness",
        figure="REST politeness",
        how=(
            "300 trials of 429 + Retry-After (delta seconds, fractional, HTTP-date) with a second caller "
            "during the wait; a 418 with Retry-After 3600 and a caller retrying every 10 s; 3,000 "
            "requests at once through the default limiter vs a server enforcing 2,000/min (virtual time)"
        ),
        target="0 requests before Retry-After; 418 fully respected; 0 429s under the limiter",
        run=run_politeness,
        virtual_time=True,
    )
]
