"""
The benchmark suite in one command: every benchmark, its Markdown table, its JSON and its PNG plot
in one results folder, and a summary of the goals of issue 6.

    python benchmarks/run.py --quick     # under 5 minutes on 2 cores (what `nox -s bench` runs)
    python benchmarks/run.py --full      # under 30 minutes, including the 10-minute soak
    python benchmarks/run.py --quick --only e2e,book --out-dir /tmp/bench

Each benchmark runs as its own process (one after the other: they measure, so they must not
share the CPU) with a hard time limit; its progress lines go to stderr as it runs. The summary,
``SUMMARY.md`` in the results folder, lists every goal with its figures and verdict, taken from the
benchmarks' JSON outputs, and links each table and plot. The exit status is 0 when every benchmark
ran, whether or not its goals were met (a missed goal is a finding, reported in the summary).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    title: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    #: hard limit in seconds (quick, full): the process is killed past it
    limit: tuple[float, float]


BENCHES = (
    Bench("decode", "bench_decode.py", "Decode micro-benchmarks", ("--quick",), (), (120, 420)),
    Bench("book", "bench_book.py", "Order-book cost", ("--quick",), (), (120, 420)),
    Bench("e2e", "bench_e2e.py", "End-to-end throughput (ws and wss)", ("--quick",), (), (240, 900)),
    Bench("latency", "bench_latency.py", "Latency under bursts", ("--quick",), (), (180, 600)),
    Bench("soak", "bench_soak.py", "Soak: RSS over time", ("--quick",), ("--minutes", "10"), (180, 900)),
)


def _run(bench: Bench, mode: str, out_dir: Path, extra: list[str]) -> tuple[int, float]:
    args = list(bench.quick if mode == "quick" else bench.full)
    out = out_dir / bench.name
    cmd = [
        sys.executable,
        str(HERE / bench.script),
        *args,
        "--out",
        f"{out}.md",
        "--json-out",
        f"{out}.json",
        "--plot-out",
        f"{out}.png",
        *extra,
    ]
    limit = bench.limit[0 if mode == "quick" else 1]
    print(f"\n=== {bench.name}: {' '.join(cmd[1:])} (limit {limit:.0f} s)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    # stdout (the tables) and stderr (progress) pass straight through, so long runs show progress.
    with subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL) as proc:
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -9
            print(f"=== {bench.name}: killed after {limit:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    print(f"=== {bench.name}: exit {code} in {wall:.0f} s", file=sys.stderr, flush=True)
    return code, wall


def _goals(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The goal verdicts of one benchmark's JSON, as {goal, required, measured, met} rows."""
    rows = []
    for goal in [*data.get("goals", []), *data.get("summary", {}).get("goals", [])]:
        name = goal.get("goal") or goal.get("label") or goal.get("name", "?")
        measured = goal.get("measured") or goal.get("value", "")
        if not measured and "ratio" in goal:  # the book's form: live path / decode per level count
            name = f"{name} ({goal.get('levels', '?'):,} levels/side)"
            measured = f"{goal['ratio']:.2f}x decode ({goal.get('live_us', 0):.2f} vs {goal.get('decode_us', 0):.2f} µs)"
        met = goal["met"] if "met" in goal else goal.get("verdict") == "met"
        rows.append({"goal": name, "required": goal.get("required") or goal.get("target", "< 1x decode" if "ratio" in goal else ""),
                     "measured": measured, "met": bool(met)})  # fmt: skip
    return rows


def _summary(mode: str, out_dir: Path, ran: list[tuple[Bench, int, float]]) -> str:
    lines = [
        "# Benchmark summary",
        "",
        f"`python benchmarks/run.py --{mode}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"CPython {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs. Every ratio compares stacks measured in the same run.",
        "",
        "## Goals (issue 6)",
        "",
        "| benchmark | goal | required | measured | verdict |",
        "|---|---|---|---|---|",
    ]
    if mode == "quick":
        lines += [
            "",
            "Quick mode: fewer messages and rounds, and a 60-second soak whose RSS slope is only "
            "indicative (the 10-minute soak with its 2-minute warm-up is in `--full`).",
        ]
    sections = ["", "## Results", ""]
    for bench, code, wall in ran:
        json_path = out_dir / f"{bench.name}.json"
        data: dict[str, Any] = {}
        if json_path.exists():
            try:
                data = json.loads(json_path.read_text())
            except ValueError:
                data = {}
        for goal in _goals(data):
            verdict = "**met**" if goal["met"] else "**not met**"
            lines.append(
                f"| {bench.name} | {goal['goal']} | {goal['required']} | {goal['measured']} | {verdict} |"
            )
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        took = f", {wall:.0f} s" if wall else ""
        sections.append(
            f"- **{bench.title}** ({status}{took}): [{bench.name}.md]({bench.name}.md)"
            + (
                f", plot [{bench.name}.png]({bench.name}.png)"
                if (out_dir / f"{bench.name}.png").exists()
                else ""
            )
        )
    return "\n".join([*lines, *sections, ""])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick", help="under 5 minutes")
    mode.add_argument("--full", action="store_const", dest="mode", const="full", help="under 30 minutes")
    parser.add_argument(
        "--only", default="", help="comma-separated benchmark names: " + ",".join(b.name for b in BENCHES)
    )
    parser.add_argument("--out-dir", default=str(HERE / "results"), help="where tables, JSON and plots go")
    parser.add_argument(
        "--summarize", action="store_true", help="only rebuild SUMMARY.md from the JSON files already there"
    )
    args = parser.parse_args()
    mode_name = args.mode or "quick"
    only = {name for name in args.only.split(",") if name}
    unknown = only - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ran: list[tuple[Bench, int, float]] = []
    selected = [b for b in BENCHES if not only or b.name in only]
    for index, bench in enumerate(selected, 1):
        if args.summarize:
            ran.append((bench, 0 if (out_dir / f"{bench.name}.json").exists() else -1, 0.0))
            continue
        print(f"\n[{index}/{len(selected)}] {bench.title}", file=sys.stderr, flush=True)
        code, wall = _run(bench, mode_name, out_dir, [])
        ran.append((bench, code, wall))
    summary = _summary(mode_name, out_dir, ran)
    (out_dir / "SUMMARY.md").write_text(summary)
    print(summary)
    total = time.perf_counter() - started
    print(f"total {total:.0f} s; summary in {out_dir / 'SUMMARY.md'}", file=sys.stderr)
    if any(code != 0 for _, code, _ in ran):
        sys.exit(1)


if __name__ == "__main__":
    main()
