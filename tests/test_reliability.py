"""
The short (CI) version of every reliability scenario (``reliability/scenarios``, issue 7): each
must meet its target on every backend it runs on.

Real-time scenarios run on asyncio, asyncio+uvloop and trio; virtual-time scenarios on asyncio
with ``VirtualClockEventLoop`` and trio with ``MockClock(autojump_threshold=0)`` (see conftest).
The full versions, and RELIABILITY.md, come from ``nox -s reliability``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``reliability`` is a top-level directory, not part of the package
    sys.path.insert(0, str(ROOT))

from reliability import Context, Scenario  # noqa: E402
from reliability.run import render_markdown, run_one  # noqa: E402
from reliability.scenarios import discover  # noqa: E402

#: The reliability scenarios run in their own nox session (`reliability-short`), on 3 loops.
pytestmark = pytest.mark.reliability

SCENARIOS = discover()
REAL_TIME = [pytest.param(s, id=s.key) for s in SCENARIOS if not s.virtual_time]
VIRTUAL_TIME = [pytest.param(s, id=s.key) for s in SCENARIOS if s.virtual_time]

#: conftest backend name -> Context backend
BACKENDS = {
    "asyncio": "asyncio",
    "asyncio-uvloop": "uvloop",
    "trio": "trio",
    "asyncio-autojump": "asyncio",
    "trio-autojump": "trio",
}


def _context(scenario: Scenario, request: pytest.FixtureRequest) -> Context:
    backend = BACKENDS[request.node.callspec.params["anyio_backend"]]
    if backend not in scenario.backends:
        pytest.skip(f"{scenario.key} does not run on {backend} (declared in its Scenario)")
    return Context(short=True, backend=backend)


def test_scenarios_are_discovered_with_unique_keys() -> None:
    keys = [s.key for s in SCENARIOS]
    assert len(keys) == len(set(keys))
    assert {"gap_recall", "gap_recall_e2e", "reconnect_storm", "rest_politeness", "clock_skew"} <= set(keys)
    assert {"secret_canary", "fuzz"} <= set(keys)


@pytest.mark.uvloop
@pytest.mark.parametrize("scenario", REAL_TIME)
async def test_real_time_scenario_meets_its_target(
    scenario: Scenario, request: pytest.FixtureRequest
) -> None:
    result = await scenario.run(_context(scenario, request))
    assert result.passed, result.value


@pytest.mark.virtual_time
@pytest.mark.parametrize("scenario", VIRTUAL_TIME)
async def test_virtual_time_scenario_meets_its_target(
    scenario: Scenario, request: pytest.FixtureRequest
) -> None:
    result = await scenario.run(_context(scenario, request))
    assert result.passed, result.value


def test_the_runner_reports_failures_and_renders_the_table() -> None:
    """run_one turns an exception into a failed figure; the report shows it and the n/a cells."""

    async def broken(ctx: Context) -> object:
        raise RuntimeError(f"boom on {ctx.backend}")

    failing = Scenario("broken", "Broken figure", "how", "target", broken)  # type: ignore[arg-type]
    virtual = Scenario("virtual", "Virtual figure", "how", "target", broken, virtual_time=True)  # type: ignore[arg-type]
    outcomes = [run_one(failing, "asyncio", short=True), run_one(virtual, "uvloop", short=True)]
    assert outcomes[0].result is not None
    assert not outcomes[0].result.passed
    assert "boom on asyncio" in outcomes[0].result.value
    assert outcomes[1].result is None
    assert outcomes[1].skipped == "n/a (virtual time)"
    text = render_markdown(outcomes, short=True, command="python reliability/run.py --short")
    assert "| Broken figure | how | target | error: RuntimeError: boom on asyncio **(FAILED)**" in text
    assert "n/a (virtual time)" in text
    assert "**Missed targets**: `broken` on asyncio" in text
