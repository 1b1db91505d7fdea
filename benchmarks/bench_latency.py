"""
Latency under bursts: server-stamped send time to decoded message, per client stack, at 10 %, 50 % and
90 % of each stack's own saturation rate.

    python benchmarks/bench_latency.py            # 1 ms and 10 ms bursts, 5 s per level (~5 min)
    python benchmarks/bench_latency.py --quick    # 1 ms bursts, 2 s per level (~1.5 min)

Method: the paced server (``_paced_server.py paced``) runs in its own process pinned to CPU 1; each stack
runs in a fresh process pinned to CPU 0 (``_latency_clients.py``). A stack first measures its
saturation rate in this run (median of ``--sat-runs`` unpaced runs of the ``mix`` feed, msgs/s), then
receives ``--duration`` seconds of paced bursts at each fraction of it: every period (1 ms or 10 ms)
the server sends, in one ``sendall()``, the frames due by then, each stamped with
``perf_counter_ns()`` (``CLOCK_MONOTONIC``, shared by every process on Linux) in its ``E`` field. The
client records ``perf_counter_ns()`` after decoding each message minus that stamp. The first
``--warmup`` seconds' worth of messages are not counted.

Reported per stack and level: p50/p99/p99.9 (µs), messages measured, messages *late* (latency above
one burst period: the stack had not finished a burst when the next one was due), messages *dropped*
(expected but not received by the deadline), bursts the server sent more than one period behind
schedule (it overslept, or ``sendall`` blocked because the client was not reading), the client's
CPU/wall and the share of the level it spent waiting for a CPU (``/proc/thread-self/schedstat``: other
processes on its core). Results: ``--out`` (Markdown), ``--json-out``, ``--plot-out`` (PNG).

Everything is on 127.0.0.1; every wait is bounded (per-run deadlines in the clients, a process timeout
here, the server's socket timeouts and lifetime cap), and the server is stopped on every exit path.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _latency_clients import STACKS, available  # noqa: E402

PACKAGES = ("anyio", "trio", "msgspec", "picows", "aiohttp", "websockets", "trio-websocket", "uvloop")
OURS = "native-anyio (asyncio)"
REFERENCE = "picows (asyncio)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Server:
    """The paced server process; collects its ``STATS`` lines by tag."""

    def __init__(self, seed: int, max_seconds: float) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "_paced_server.py"),
                "paced",
                "--seed",
                str(seed),
                "--max-seconds",
                str(max_seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.stats: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the server builds its frame pool first (about a second)
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"paced server did not start: {line!r}")
        self.port = int(line.split()[1])
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends at EOF, when the server exits
            if line.startswith("STATS "):
                stats = json.loads(line[6:])
                with self._lock:
                    self.stats[stats["tag"]] = stats

    def stats_for(self, tag: str, wait: float = 2.0) -> dict[str, Any] | None:
        """The server's statistics of one paced run (printed right after its last burst)."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if tag in self.stats:
                    return self.stats[tag]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()  # the server exits at stdin EOF
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def run_stack(label: str, port: int, cfg: dict[str, Any]) -> dict[str, Any]:
    levels = len(cfg["periods_us"]) * len(cfg["fractions"])
    timeout = 90 + levels * (cfg["duration"] + cfg["drain"] + 2)
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_latency_clients.py"), label, str(port), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=None,  # the client's progress goes straight to our stderr
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    return {"error": f"exit {proc.returncode}, no RESULT line"}


# --------------------------------------------------------------------------- report


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _cpu_per_msg(level: dict[str, Any]) -> str:
    """The client's CPU time per message received during a level (connect and drain included)."""
    return f"{1e6 * level['cpu_util'] * level['wall'] / max(1, level['received']):.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def disturbance(result: dict[str, Any]) -> float:
    """The largest share of a level that the client or the server spent waiting for a CPU."""
    shares = [0.0]
    for level in result.get("levels", []):
        shares.append(level["preempted"])
        shares.append((level.get("server") or {}).get("preempted") or 0.0)
    return max(shares) if "levels" in result else float("inf")


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| stack | saturation msgs/s | burst period | load | msgs/s | measured | p50 µs | p99 µs | p99.9 µs "
        "| max µs | late (> period) | dropped | server bursts behind | server stamp→sent µs (median) "
        "| client CPU µs/msg (saturation run) | client CPU/wall | waited for a CPU: client / server |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, result in results.items():
        name = f"**{label}**" if label.startswith("native-anyio") else label
        if "levels" not in result:
            lines.append(f"| {name} | failed: {result.get('error', '?')} |" + " |" * 15)
            continue
        sat_cpu = statistics.median(1e6 * r["cpu"] / max(1, r["count"]) for r in result["sat_runs"])
        for level in result["levels"]:
            server = level.get("server") or {}
            measured = max(1, level["measured"])
            late = level.get("late")
            lines.append(
                f"| {name} | {result['saturation']:,.0f} | {level['period_us'] / 1000:g} ms "
                f"| {level['fraction']:.0%} | {level['rate']:,.0f} | {level['measured']:,} "
                f"| {_us(level.get('p50_us'))} | {_us(level.get('p99_us'))} | {_us(level.get('p999_us'))} "
                f"| {_us(level.get('max_us'))} "
                f"| {'-' if late is None else f'{late:,} ({late / measured:.1%})'} | {level['dropped']:,} "
                f"| {server.get('late_bursts', '?')} of {server.get('bursts', '?')} "
                f"| {_us(server.get('send_us_median'))} "
                f"| {_cpu_per_msg(level)} ({sat_cpu:.2f}) "
                f"| {level['cpu_util']:.2f} | {level['preempted']:.0%} / {_pct(server.get('preempted'))} |"
            )
    return lines


def comparison(results: dict[str, dict[str, Any]]) -> list[str]:
    """p50/p99 of every stack ÷ picows at the same period and load."""
    ref = results.get(REFERENCE, {}).get("levels")
    if not ref:
        return []
    by_key = {(lv["period_us"], lv["fraction"]): lv for lv in ref}
    lines = [
        f"Latency ratio to {REFERENCE} at the same burst period and load fraction (below 1: lower latency):",
        "",
        "| stack | burst period | load | p50 ratio | p99 ratio | p99.9 ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, result in results.items():
        if label == REFERENCE or "levels" not in result:
            continue
        for level in result["levels"]:
            other = by_key.get((level["period_us"], level["fraction"]))
            if other is None or "p50_us" not in level or "p50_us" not in other:
                continue
            ratios = [level[k] / other[k] for k in ("p50_us", "p99_us", "p999_us")]
            lines.append(
                f"| {label} | {level['period_us'] / 1000:g} ms | {level['fraction']:.0%} | "
                + " | ".join(f"{r:.2f}" for r in ratios)
                + " |"
            )
    return lines


def plot(results: dict[str, dict[str, Any]], periods_us: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))
    fig, axes = plt.subplots(
        len(periods_us), 3, figsize=(15, 4.2 * len(periods_us)), squeeze=False, sharey="row"
    )
    for row, period in enumerate(periods_us):
        for col, (key, title) in enumerate(keys):
            ax = axes[row][col]
            for label, result in results.items():
                levels = [lv for lv in result.get("levels", []) if lv["period_us"] == period and key in lv]
                if not levels:
                    continue
                style = "-" if label.startswith("native-anyio") else "--"
                ax.plot(
                    [100 * lv["fraction"] for lv in levels],
                    [lv[key] for lv in levels],
                    style,
                    marker="o",
                    label=label,
                )
            ax.set_yscale("log")
            ax.set_title(f"{title}, {period / 1000:g} ms bursts")
            ax.set_xlabel("load, % of the stack's saturation rate")
            ax.grid(True, which="both", alpha=0.3)
            if col == 0:
                ax.set_ylabel("latency, µs (log)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=9)
    fig.suptitle("Server send → decoded message latency under bursts (127.0.0.1)")
    fig.tight_layout(rect=(0, 0.1 / len(periods_us) + 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _versions() -> str:
    parts = [f"CPython {platform.python_version()}"]
    for pkg in PACKAGES:
        try:
            parts.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description="latency under bursts, per client stack")
    parser.add_argument("--quick", action="store_true", help="1 ms bursts only, 2 s per level (~1.5 min)")
    parser.add_argument("--only", default="", help="comma-separated labels or substrings of stacks to run")
    parser.add_argument("--fractions", default="0.1,0.5,0.9", help="load levels, fractions of saturation")
    parser.add_argument("--periods-ms", default=None, help="burst periods in ms (default 1,10; quick 1)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per level (default 5; quick 2)")
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds not counted (default 0.5; quick 0.2)"
    )
    parser.add_argument(
        "--sat-n", type=int, default=None, help="frames per saturation run (default 200k; quick 100k)"
    )
    parser.add_argument("--sat-runs", type=int, default=5, help="saturation runs per stack (median)")
    parser.add_argument(
        "--max-waited",
        type=float,
        default=0.05,
        help="re-run a stack when the client or server waited for a CPU longer than this share of a level",
    )
    parser.add_argument(
        "--retries", type=int, default=None, help="at most this many re-runs per stack (default 1; quick 0)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds; re-runs stop when they would exceed it (default 360)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "latency.md"))
    parser.add_argument("--json-out", default=os.path.join(HERE, "results", "latency.json"))
    parser.add_argument("--plot-out", default=os.path.join(HERE, "results", "latency.png"))
    args = parser.parse_args()
    periods_ms = args.periods_ms or ("1" if args.quick else "1,10")
    if args.retries is None:
        args.retries = 0 if args.quick else 1
    if args.budget is None:
        args.budget = 90.0 if args.quick else 360.0
    cfg = {
        "sat_n": args.sat_n or (100_000 if args.quick else 200_000),
        "sat_runs": args.sat_runs,
        "periods_us": [round(float(p) * 1000) for p in periods_ms.split(",")],
        "fractions": [float(f) for f in args.fractions.split(",")],
        "duration": args.duration or (2.0 if args.quick else 5.0),
        "warmup": args.warmup if args.warmup is not None else (0.2 if args.quick else 0.5),
        "drain": 5.0,
        "timeout": 30.0,
    }
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    labels = [label for label in STACKS if not wanted or any(w == label or w in label for w in wanted)]
    results: dict[str, dict[str, Any]] = {}
    retried = 0
    started = time.perf_counter()
    server = Server(args.seed, max_seconds=3600)
    log(f"paced server on 127.0.0.1:{server.port} (pid {server.proc.pid}); {len(labels)} stacks")
    try:
        runs_done, run_seconds = 0, 0.0
        for index, label in enumerate(labels):
            if not available(label):
                log(f"skipping {label}: not installed")
                continue
            best: dict[str, Any] | None = None
            for attempt in range(1 + args.retries):  # bounded: 1 + --retries runs at most
                log(f"{label} ..." if attempt == 0 else f"{label}: again (attempt {attempt + 1})")
                t0 = time.perf_counter()
                try:
                    result = run_stack(label, server.port, dict(cfg, attempt=attempt))
                except subprocess.TimeoutExpired as exc:
                    result = {"error": f"timed out after {exc.timeout:.0f} s"}
                runs_done, run_seconds = runs_done + 1, run_seconds + time.perf_counter() - t0
                for level in result.get("levels", []):
                    level["server"] = server.stats_for(level["tag"])
                result["attempt"] = attempt + 1
                if "error" in result:
                    log(f"  {label}: FAILED {result['error']}")
                if best is None or disturbance(result) < disturbance(best):
                    best = result
                if disturbance(result) <= args.max_waited or attempt == args.retries:
                    break
                # Re-run only while the remaining stacks still fit in the time budget.
                per_run = run_seconds / runs_done
                remaining = len(labels) - index - 1
                if time.perf_counter() - started + per_run * (remaining + 1) > args.budget:
                    log(
                        f"  {label}: disturbed ({disturbance(result):.0%} of a level), no time left to re-run"
                    )
                    break
                retried += 1
                log(f"  {label}: another process took the CPU ({disturbance(result):.0%} of a level)")
            assert best is not None
            results[label] = best
    finally:
        server.stop()
    elapsed = time.perf_counter() - started

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    command = " ".join(["python benchmarks/bench_latency.py", *sys.argv[1:]])
    report = [
        f"## Latency under bursts: server send → decoded message (run {datetime.date.today().isoformat()})",
        "",
        f"`{command}`: paced server pinned to CPU 1, each stack a fresh process pinned to CPU 0, "
        f"{cpus} CPUs, {platform.machine()}, {elapsed:.0f} s in all. Saturation: median of "
        f"{cfg['sat_runs']} unpaced runs of {cfg['sat_n']:,} frames (fewer for the slow stacks), "
        f"measured in this run. Each level: {cfg['duration']:g} s of bursts, the first "
        f"{cfg['warmup']:g} s not counted. {retried} stack runs repeated because the client or the server "
        f"waited for a CPU more than {args.max_waited:.0%} of a level (the least disturbed run is shown). "
        f"{_versions()}.",
        "",
        *table(results),
        "",
        *comparison(results),
        "",
    ]
    text = "\n".join(report)
    print(text)
    for path in (args.out, args.json_out, args.plot_out):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(args.json_out, "w", encoding="utf-8") as f:
        json.dump({"command": command, "config": cfg, "elapsed_s": elapsed, "versions": _versions(),
                   "results": results}, f, indent=1)  # fmt: skip
    plot(results, cfg["periods_us"], args.plot_out)
    log(f"written to {args.out}, {args.json_out}, {args.plot_out}")


if __name__ == "__main__":
    main()
