"""
Run the reliability scenarios and write RELIABILITY.md (issue 7).

Usage::

    python reliability/run.py [--short|--full] [--only key,...] [--backends asyncio,uvloop,trio]
                              [--out RELIABILITY.md] [--json-out reliability.json]

Every scenario discovered in :mod:`reliability.scenarios` runs once per backend, each in a fresh
``anyio.run``: asyncio, asyncio with uvloop, and trio. Virtual-time scenarios run asyncio on
:class:`native_anyio.testing.VirtualClockEventLoop` and trio with ``MockClock(autojump_threshold=0)``;
uvloop has no virtual clock, so they report "n/a (virtual time)" there. A scenario that raises is a
failed figure (its traceback goes to stderr). The exit status is 1 when any figure missed its target.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    # Run as a script: make the repository root importable (``reliability`` and ``native_anyio``).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from reliability._figures import BACKENDS, Context, Result, Scenario
from reliability.scenarios import discover

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Outcome", "backend_options", "main", "render_markdown", "run_one"]

BACKEND_TITLES = {"asyncio": "asyncio", "uvloop": "asyncio+uvloop", "trio": "trio"}
PACKAGES = ("native-anyio", "anyio", "trio", "uvloop", "httpx", "msgspec", "pynacl")


@dataclass(frozen=True)
class Outcome:
    """One scenario on one backend: its result (``None``: not run) and the wall time it took."""

    scenario: Scenario
    backend: str
    result: Result | None
    wall: float
    skipped: str = ""


def available(backend: str) -> str:
    """Why ``backend`` cannot run here ("" when it can)."""
    if backend == "trio" and importlib.util.find_spec("trio") is None:
        return "n/a (trio not installed)"
    if backend == "uvloop" and importlib.util.find_spec("uvloop") is None:
        return "n/a (uvloop not installed)"
    return ""


def backend_options(backend: str, virtual_time: bool) -> tuple[str, dict[str, Any]]:
    """The ``anyio.run`` backend name and options for a Context backend."""
    if backend == "trio":
        if not virtual_time:
            return "trio", {}
        from trio.testing import MockClock

        return "trio", {"clock": MockClock(autojump_threshold=0)}
    if backend == "uvloop":
        if virtual_time:
            raise ValueError("uvloop has no virtual clock")
        return "asyncio", {"use_uvloop": True}
    if backend != "asyncio":
        raise ValueError(f"unknown backend {backend!r}")
    if virtual_time:
        from native_anyio.testing import VirtualClockEventLoop

        return "asyncio", {"loop_factory": VirtualClockEventLoop}
    return "asyncio", {}


def skip_reason(scenario: Scenario, backend: str) -> str:
    """Why ``scenario`` does not run on ``backend`` ("" when it does)."""
    if backend not in scenario.backends:
        return "n/a"
    if scenario.virtual_time and backend == "uvloop":
        return "n/a (virtual time)"
    return available(backend)


def run_one(scenario: Scenario, backend: str, *, short: bool) -> Outcome:
    """Run ``scenario`` on ``backend`` in a fresh event loop; an exception is a failed result."""
    reason = skip_reason(scenario, backend)
    if reason:
        return Outcome(scenario, backend, None, 0.0, reason)
    name, options = backend_options(backend, scenario.virtual_time)
    context = Context(short=short, backend=backend)
    started = time.perf_counter()
    try:
        result = anyio.run(scenario.run, context, backend=name, backend_options=options)
    except Exception as exc:
        traceback.print_exc()
        result = Result(f"error: {type(exc).__name__}: {exc}", False)
    return Outcome(scenario, backend, result, time.perf_counter() - started)


# ---------------------------------------------------------------------------------- report


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _versions() -> str:
    import native_anyio

    found = [f"native-anyio {native_anyio.__version__}"]
    for package in PACKAGES[1:]:
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _commit() -> str:
    """The git commit of the working tree (read-only git calls), or "unknown"."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head


def _machine() -> str:
    cpus = os.cpu_count() or 0
    memory = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            kib = int(meminfo.readline().split()[1])
        memory = f", {kib / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{platform.system()} {platform.release()} {platform.machine()}, {cpus} CPUs{memory}"


def _met(outcomes: Sequence[Outcome]) -> str:
    ran = [o for o in outcomes if o.result is not None]
    if not ran:
        return "n/a"
    return "yes" if all(o.result is not None and o.result.passed for o in ran) else "**NO**"


def render_markdown(outcomes: Sequence[Outcome], *, short: bool, command: str) -> str:
    """The RELIABILITY.md text for ``outcomes`` (grouped by scenario, in discovery order)."""
    scenarios: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        scenarios.setdefault(outcome.scenario.key, []).append(outcome)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability figures",
        "",
        "Generated by `reliability/run.py`; do not edit by hand (issue 7).",
        "",
        f"- Date: {now}",
        f"- Machine: {_machine()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- Packages: {_versions()}",
        f"- Commit: {_commit()}",
        f"- Command: `{command}`",
        f"- Version: {'short (CI)' if short else 'full'}",
        "",
        "## Figures",
        "",
        "| Figure | How measured | Target | " + " | ".join(BACKEND_TITLES[b] for b in BACKENDS) + " | Met? |",
        "|---|---|---|" + "---|" * len(BACKENDS) + "---|",
    ]
    for group in scenarios.values():
        scenario = group[0].scenario
        by_backend = {o.backend: o for o in group}
        cells = []
        for backend in BACKENDS:
            ran = by_backend.get(backend)
            if ran is None:
                cells.append("not run")
            elif ran.result is None:
                cells.append(ran.skipped)
            else:
                mark = "" if ran.result.passed else " **(FAILED)**"
                cells.append(_cell(ran.result.value) + mark)
        row = [scenario.figure, scenario.how, scenario.target, *cells, _met(group)]
        lines.append("| " + " | ".join(_cell(c) if i < 3 else c for i, c in enumerate(row)) + " |")
    lines += _extra_sections(scenarios)
    lines += ["", "## Wall time", "", "| Scenario | " + " | ".join(BACKEND_TITLES[b] for b in BACKENDS) + " |",
              "|---|" + "---|" * len(BACKENDS)]  # fmt: skip
    for key, group in scenarios.items():
        by_backend = {o.backend: o for o in group}
        times = [
            f"{by_backend[b].wall:.1f} s" if b in by_backend and by_backend[b].result is not None else "-"
            for b in BACKENDS
        ]
        lines.append(f"| `{key}` | " + " | ".join(times) + " |")
    lines += [
        "",
        "## Notes",
        "",
        "- Every scenario runs in a fresh event loop per backend, against real sockets on 127.0.0.1 only.",
        "- Virtual-time scenarios run asyncio on `native_anyio.testing.VirtualClockEventLoop` and trio with "
        "`MockClock(autojump_threshold=0)`: their times are virtual seconds, exact and independent of "
        'machine load; uvloop has no virtual clock, hence "n/a (virtual time)".',
        "- A failing figure is a bug to fix, not a number to report (issue 7).",
    ]
    failed = [
        f"`{o.scenario.key}` on {BACKEND_TITLES[o.backend]}"
        for o in outcomes
        if o.result is not None and not o.result.passed
    ]
    if failed:
        lines.append(f"- **Missed targets**: {', '.join(failed)}.")
    return "\n".join(lines) + "\n"


def _extra_sections(scenarios: dict[str, list[Outcome]]) -> list[str]:
    """Each scenario's ``table_md`` (once when every backend produced the same table)."""
    lines: list[str] = []
    for group in scenarios.values():
        tables = [
            (o.backend, str(o.result.data["table_md"]))
            for o in group
            if o.result is not None and "table_md" in o.result.data
        ]
        if not tables:
            continue
        title = group[0].scenario.figure
        if len({table for _, table in tables}) == 1:
            names = ", ".join(BACKEND_TITLES[b] for b, _ in tables)
            lines += ["", f"## {title}", "", f"Identical on {names}.", "", tables[0][1].rstrip()]
            continue
        for backend, table in tables:
            lines += ["", f"## {title} ({BACKEND_TITLES[backend]})", "", table.rstrip()]
    return lines


def to_json(outcomes: Sequence[Outcome], *, short: bool, command: str) -> dict[str, Any]:
    """The raw results for ``--json-out``."""
    return {
        "short": short,
        "command": command,
        "python": platform.python_version(),
        "packages": _versions(),
        "results": [
            {
                "key": o.scenario.key,
                "figure": o.scenario.figure,
                "backend": o.backend,
                "skipped": o.skipped or None,
                "passed": None if o.result is None else o.result.passed,
                "value": None if o.result is None else o.result.value,
                "data": None if o.result is None else dict(o.result.data),
                "wall_seconds": round(o.wall, 3),
            }
            for o in outcomes
        ],
    }


# ---------------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--short", action="store_true", help="CI's short version (the default)")
    size.add_argument("--full", action="store_true", help="the full version (issue 7 counts)")
    parser.add_argument("--only", default="", help="comma-separated scenario keys")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated backends")
    parser.add_argument("--out", default="", help="write the Markdown report here")
    parser.add_argument("--json-out", default="", help="write the raw results here as JSON")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = discover()
    if args.list:
        for scenario in scenarios:
            flag = " (virtual time)" if scenario.virtual_time else ""
            print(f"{scenario.key}: {scenario.figure}{flag}")
        return 0
    if args.only:
        wanted = [key.strip() for key in args.only.split(",") if key.strip()]
        unknown = sorted(set(wanted) - {s.key for s in scenarios})
        if unknown:
            print(f"unknown scenario keys: {', '.join(unknown)}", file=sys.stderr)
            return 2
        scenarios = [s for s in scenarios if s.key in wanted]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = sorted(set(backends) - set(BACKENDS))
    if bad:
        print(f"unknown backends: {', '.join(bad)} (known: {', '.join(BACKENDS)})", file=sys.stderr)
        return 2
    short = not args.full
    command = "python reliability/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    for scenario in scenarios:
        for backend in [b for b in BACKENDS if b in backends]:
            print(f"[{scenario.key}] {BACKEND_TITLES[backend]} ...", flush=True)
            outcome = run_one(scenario, backend, short=short)
            outcomes.append(outcome)
            if outcome.result is None:
                print(f"[{scenario.key}] {BACKEND_TITLES[backend]}: {outcome.skipped}", flush=True)
            else:
                verdict = "PASS" if outcome.result.passed else "FAIL"
                print(f"[{scenario.key}] {BACKEND_TITLES[backend]}: {verdict} in {outcome.wall:.1f} s: "
                      f"{outcome.result.value}", flush=True)  # fmt: skip
    print(f"total wall time {time.perf_counter() - started:.1f} s", flush=True)
    if args.out:
        Path(args.out).write_text(render_markdown(outcomes, short=short, command=command), encoding="utf-8")
        print(f"wrote {args.out}")
    if args.json_out:
        data = to_json(outcomes, short=short, command=command)
        Path(args.json_out).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}")
    failed = [o for o in outcomes if o.result is not None and not o.result.passed]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
