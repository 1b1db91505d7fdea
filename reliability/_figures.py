"""
The contract between the reliability runner and its scenarios.

Every module in :mod:`reliability.scenarios` defines ``SCENARIOS: list[Scenario]``. A scenario is
one figure of the RELIABILITY.md table: :attr:`Scenario.run` is called once per backend, inside an
anyio event loop of ``ctx.backend``, and returns a :class:`Result` (the human-readable value, whether
the target was met, and the raw numbers for the JSON output).

Backends (``Context.backend``): ``"asyncio"``, ``"uvloop"`` (asyncio with uvloop) and ``"trio"``.
For ``virtual_time`` scenarios ``"asyncio"`` means asyncio on
:class:`native_anyio.testing.VirtualClockEventLoop` and ``"trio"`` means trio with
``MockClock(autojump_threshold=0)``; uvloop has no virtual clock, so the runner reports
"n/a (virtual time)" for it.

``Result.data`` may carry a ``"table_md"`` string (a Markdown table); the runner appends it as an
extra section under the figures table (for example the clock-skew table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

__all__ = ["BACKENDS", "Context", "Result", "Scenario"]

#: Every backend a scenario may run on, in table order.
BACKENDS: tuple[str, ...] = ("asyncio", "uvloop", "trio")


@dataclass(frozen=True)
class Result:
    """What one scenario measured on one backend."""

    #: Human-readable result, e.g. ``"1000/1000 recovered; p50 0.21 s, p99 0.48 s"``.
    value: str
    #: Whether the target was met.
    passed: bool
    #: Raw numbers for the JSON output (``"table_md"``: an extra Markdown section).
    data: Mapping[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """How a scenario should run."""

    #: CI's short version (small counts) rather than the full one.
    short: bool
    #: ``"asyncio"``, ``"uvloop"`` or ``"trio"`` (see the module docstring for virtual time).
    backend: str


@dataclass(frozen=True)
class Scenario:
    """One figure: how it is measured, its target, and the coroutine that measures it."""

    #: Unique key, e.g. ``"gap_recall"`` (``run.py --only`` selects by it).
    key: str
    #: The figure's name in the table.
    figure: str
    #: How it is measured (the full version; mention counts).
    how: str
    #: The target, e.g. ``"100% detected; 0 collateral resyncs"``.
    target: str
    #: Runs inside an anyio event loop of ``ctx.backend``.
    run: Callable[[Context], Awaitable[Result]]
    #: Needs a virtual clock (uvloop is then reported "n/a (virtual time)").
    virtual_time: bool = False
    #: The backends this scenario runs on.
    backends: tuple[str, ...] = BACKENDS
