"""
End-to-end benchmark: a local server pushes N Backpack-shaped trade and depth frames as fast as it can,
over ``ws://`` and ``wss://``; each client receives them and processes every one.

    python benchmarks/bench_e2e.py            # N=200,000, 7 rounds, ws + wss (~3 min quiet, up to ~6 busy)
    python benchmarks/bench_e2e.py --quick    # N=50,000, 3 rounds (~35 s quiet, up to ~100 s busy)

Rows (``_clients.py``):

* ``native-anyio backpack (asyncio / trio / asyncio+uvloop)``: our full pipeline, ``open_backpack()``
  and ``async for event in client`` (session, router, typed decode, book sync from a REST snapshot,
  normalized events);
* ``native-anyio session (...)``: the toolkit path, ``open_session()`` + ``receive_batch()`` +
  ``Router.iter_decode()`` into the benchmark's msgspec structs;
* peers decoding into the very same msgspec structs: ``picows (asyncio)`` (the reference), ``aiohttp``,
  ``websockets``, ``trio-websocket``; and ``cryptofeed-style (websockets)``: websockets + ``json.loads``
  + Decimal and dict handling per message, as cryptofeed's feeds do;
* like-for-like peers of the pipeline (``--feed backpack``): ``picows + Backpack structs`` (picows, then
  the pipeline's own ``decode_frame`` into the Backpack wire structs with Decimal prices) and
  ``picows + Backpack structs + books`` (the same, plus each depth delta applied to a ``BookSync`` per
  symbol from its REST snapshot; no events). The pipeline's ratios against them separate the cost of
  the transport and session (and of the events) from that of the decode and the books.

Method (``shared/docs/performance-anchors.md`` section 2): the feed server (``_server.py``) runs in its
own process pinned to CPU 1; every client run is a fresh process pinned to CPU 0 and reports wall time,
process CPU time and peak RSS for connect + N messages. Each round runs every (row, scheme) once, in a
shuffled order; a row's ratio is the median over rounds of (row msgs/s / ``picows (asyncio)`` msgs/s on
the same scheme *in the same round*), which cancels most of the host's drift; ``wss/ws`` is the median
over rounds of the row's wss msgs/s / its ws msgs/s. The same ratios from CPU time are kept too (they do
not move when another process takes the CPU), and a run whose CPU/wall falls below ``--min-util`` is
repeated (at most ``--retries`` times). Slow peers receive fewer messages (the ``N`` column).

The Markdown table goes to ``--out`` (``benchmarks/results/e2e.md``), all rows and goal verdicts as JSON
to ``--json-out``, and a bar chart to ``--plot-out``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _clients import VARIANTS  # noqa: E402

REFERENCE = "picows (asyncio)"
TRIO_PEER = "trio-websocket (trio)"
LIKE = "picows + Backpack structs (asyncio)"
LIKE_BOOKS = "picows + Backpack structs + books (asyncio)"
SCHEMES = ("ws", "wss")
PIPELINE = {
    "asyncio": "native-anyio backpack (asyncio)",
    "trio": "native-anyio backpack (trio)",
    "asyncio+uvloop": "native-anyio backpack (asyncio+uvloop)",
}
SESSION = {
    "asyncio": "native-anyio session (asyncio)",
    "trio": "native-anyio session (trio)",
    "asyncio+uvloop": "native-anyio session (asyncio+uvloop)",
}

PACKAGES = (
    "anyio",
    "trio",
    "msgspec",
    "httpx",
    "picows",
    "aiofastnet",
    "aiohttp",
    "websockets",
    "trio-websocket",
    "wsproto",
    "uvloop",
    "order_book",
)


@dataclass
class Row:
    """One (client, scheme) pair and its run per round."""

    label: str
    scheme: str
    n: int
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # round -> result
    failures: list[str] = field(default_factory=list)

    def rate(self, rnd: int) -> float | None:
        """msgs/s of round ``rnd`` (wall clock)."""
        r = self.runs.get(rnd)
        return r["count"] / r["wall"] if r else None

    def cpu_rate(self, rnd: int) -> float | None:
        """msgs per CPU second of round ``rnd``: insensitive to other load time-sharing the CPU."""
        r = self.runs.get(rnd)
        return r["count"] / r["cpu"] if r and r["cpu"] > 0 else None

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.runs.values() if key in r]


Rows = dict[tuple[str, str], Row]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def _start_server(
    sizes: list[int], args: argparse.Namespace, cert: str | None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    command = [
        sys.executable,
        os.path.join(HERE, "_server.py"),
        "--sizes",
        ",".join(map(str, sizes)),
        "--seed",
        str(args.seed),
        "--feed",
        args.feed,
        "--max-seconds",
        "1500",
    ]
    if cert:
        command += ["--tls-cert", cert]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server builds its blobs first (a few seconds), then says READY
    if not line.startswith("READY "):
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError(f"feed server did not start: {line!r}")
    ready = json.loads(line[6:])
    ready["meta"] = {int(k): v for k, v in ready["meta"].items()}
    return proc, ready


def _check(label: str, result: dict[str, Any], n: int, meta: dict[str, Any]) -> None:
    """Refuse a run whose counts are not exactly what the feed holds."""
    if result["count"] != n:
        raise RuntimeError(f"processed {result['count']} of {n} messages")
    if result.get("parse_errors") or result.get("disconnects") or result.get("decode_errors"):
        raise RuntimeError(f"unclean run: {result}")
    kind = VARIANTS[label].kind
    if (kind == "pipeline" or "cryptofeed" in label) and (
        result["trades"] != meta["trades"] or result.get("gaps")
    ):
        raise RuntimeError(f"trades {result['trades']} of {meta['trades']}, gaps {result.get('gaps')}")
    if kind == "pipeline" and (
        not result["books_live"] or result["deltas_applied"] != meta["depth"] or result["duplicate_trades"]
    ):
        raise RuntimeError(f"books not in sync: {result}")
    if label == LIKE_BOOKS and (
        not result["books_live"] or result["deltas_applied"] != meta["depth"] or result["gaps"]
    ):
        raise RuntimeError(f"books not in sync: {result}")


def _run_client(label: str, spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_clients.py"), label, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=spec["timeout"] + 30,
        check=False,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            _check(label, result, spec["n"], spec["meta"])
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"exit {proc.returncode}: {' | '.join(tail)}")


# --------------------------------------------------------------------------- statistics


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _paired(
    rows: Rows, num: tuple[str, str], den: tuple[str, str], rounds: int, *, cpu: bool = False
) -> list[float]:
    """Per-round ratios num/den of msgs/s (or of msgs per CPU second)."""
    out: list[float] = []
    if num not in rows or den not in rows:
        return out
    for rnd in range(rounds):
        if cpu:
            a, b = rows[num].cpu_rate(rnd), rows[den].cpu_rate(rnd)
        else:
            a, b = rows[num].rate(rnd), rows[den].rate(rnd)
        if a and b:
            out.append(a / b)
    return out


def _fmt(s: dict[str, float] | None, digits: int | None = None) -> str:
    if not s:
        return "-"
    if digits is None:
        digits = 3 if s["median"] < 0.1 else 2
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def _summaries(rows: Rows, rounds: int) -> list[dict[str, Any]]:
    out = []
    for (label, scheme), row in rows.items():
        rates = [r for r in (row.rate(k) for k in range(rounds)) if r]
        cpu = [1e6 * v["cpu"] / v["count"] for v in row.runs.values()]
        util = [v["cpu"] / v["wall"] for v in row.runs.values()]
        entry: dict[str, Any] = {
            "label": label,
            "scheme": scheme,
            "stack": label.partition(" (")[0],
            "backend": label.partition(" (")[2].rstrip(")"),
            "kind": VARIANTS[label].kind,
            "n": row.n,
            "rounds_measured": len(row.runs),
            "msgs_per_s": _stats(rates),
            "cpu_us_per_msg": _stats(cpu),
            "cpu_over_wall": _stats(util),
            "peak_rss_mib": _stats(row.values("rss_mib")),
            "ratio_vs_picows": _stats(_paired(rows, (label, scheme), (REFERENCE, scheme), rounds)),
            "cpu_ratio_vs_picows": _stats(
                _paired(rows, (label, scheme), (REFERENCE, scheme), rounds, cpu=True)
            ),
            "wss_over_ws": (
                _stats(_paired(rows, (label, "wss"), (label, "ws"), rounds)) if scheme == "wss" else None
            ),
            "failures": row.failures,
            "runs": {str(k): v for k, v in sorted(row.runs.items())},
        }
        if entry["kind"] == "pipeline":
            for key, den in (("ratio_vs_like", LIKE), ("ratio_vs_like_books", LIKE_BOOKS)):
                entry[key] = _stats(_paired(rows, (label, scheme), (den, scheme), rounds))
                entry["cpu_" + key] = _stats(_paired(rows, (label, scheme), (den, scheme), rounds, cpu=True))
            entry["events_per_s"] = _stats([v["events"] / v["wall"] for v in row.runs.values()])
            entry["startup_ms"] = _stats(row.values("startup_ms"))
            entry["msgs_per_s_after_first_event"] = _stats(
                [v["count"] / (v["wall"] - v["startup_ms"] / 1e3) for v in row.runs.values()]
            )
            entry["events_per_run"] = _stats(row.values("events"))
        out.append(entry)
    return out


def _goals(rows: Rows, rounds: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The issue's goals per backend and scheme with their verdicts, and informative ratios."""
    goals: list[dict[str, Any]] = []
    informative: list[dict[str, Any]] = []

    def add(
        name: str, num: tuple[str, str], den: tuple[str, str], required: float, *, info: bool = False
    ) -> None:
        measured = _stats(_paired(rows, num, den, rounds))
        if measured is None:
            return
        (informative if info else goals).append(
            {
                "goal": name,
                "numerator": f"{num[0]} [{num[1]}]",
                "denominator": f"{den[0]} [{den[1]}]",
                "required": f"≥ {required:g}",
                "threshold": required,
                "measured": _fmt(measured, 3),
                "measured_stats": measured,
                "by_cpu_time": _stats(_paired(rows, num, den, rounds, cpu=True)),
                "met": measured["median"] >= required,
            }
        )

    for scheme in SCHEMES:
        for path, labels in (("full pipeline", PIPELINE), ("session path", SESSION)):
            for backend, label in labels.items():
                add(
                    f"{path} ({backend}) / picows + msgspec, {scheme}",
                    (label, scheme),
                    (REFERENCE, scheme),
                    1.0,
                )
    for scheme in SCHEMES:
        for path, labels in (("full pipeline", PIPELINE), ("session path", SESSION)):
            add(
                f"{path}: trio / asyncio, {scheme}",
                (labels["trio"], scheme),
                (labels["asyncio"], scheme),
                0.9,
            )
    for label in sorted({label for label, _ in rows}):
        add(f"wss / ws: {label}", (label, "wss"), (label, "ws"), 0.7)
    add("session path (trio) / trio-websocket, ws (earlier goal)", (SESSION["trio"], "ws"), (TRIO_PEER, "ws"), 15.0,
        info=True)  # fmt: skip
    add("full pipeline (asyncio) / cryptofeed-style, ws", (PIPELINE["asyncio"], "ws"),
        ("cryptofeed-style (websockets)", "ws"), 1.0, info=True)  # fmt: skip
    for scheme in SCHEMES:
        for backend, label in PIPELINE.items():
            for den, what in (
                (LIKE, "picows + Backpack structs"),
                (LIKE_BOOKS, "picows + Backpack structs + books"),
            ):
                add(f"full pipeline ({backend}) / {what}, {scheme}", (label, scheme), (den, scheme), 1.0,
                    info=True)  # fmt: skip
    return goals, informative


# --------------------------------------------------------------------------- output


def _markdown(
    summary: list[dict[str, Any]],
    goals: list[dict[str, Any]],
    informative: list[dict[str, Any]],
    header: list[str],
) -> str:
    by_key = {(e["label"], e["scheme"]): e for e in summary}
    labels = list(dict.fromkeys(e["label"] for e in summary))
    schemes = [s for s in SCHEMES if any(e["scheme"] == s for e in summary)]

    def sort_key(label: str) -> float:
        for scheme in schemes:
            e = by_key.get((label, scheme))
            if e and e["ratio_vs_picows"]:
                return -e["ratio_vs_picows"]["median"]
        return 0.0

    labels.sort(key=sort_key)
    columns = ["stack", "N"]
    for scheme in schemes:
        columns += [
            f"{scheme} msgs/s median (min-max)",
            f"{scheme} CPU µs/msg",
            f"{scheme} ratio vs picows (median, min-max)",
        ]
    if len(schemes) == 2:
        columns.append("wss/ws (median, min-max)")
    columns += ["peak RSS MiB (" + "/".join(schemes) + ")", "CPU/wall"]
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for label in labels:
        entries = [by_key.get((label, s)) for s in schemes]
        n = next(e["n"] for e in entries if e)
        name = f"**{label}**" if VARIANTS[label].kind != "peer" or label == REFERENCE else label
        cells = [name, f"{n:,}"]
        for e in entries:
            if not e or not e["msgs_per_s"]:
                cells += ["failed", "", ""]
                continue
            m = e["msgs_per_s"]
            ratio = "**1.00**" if label == REFERENCE else _fmt(e["ratio_vs_picows"])
            cells += [
                f"{m['median']:,.0f} ({m['min']:,.0f}-{m['max']:,.0f})",
                f"{e['cpu_us_per_msg']['median']:.2f}",
                ratio,
            ]
        if len(schemes) == 2:
            wss = by_key.get((label, "wss"))
            cells.append(_fmt(wss["wss_over_ws"]) if wss else "-")
        cells.append(
            "/".join(f"{e['peak_rss_mib']['max']:.0f}" if e and e["peak_rss_mib"] else "-" for e in entries)
        )
        cells.append(
            "/".join(
                f"{e['cpu_over_wall']['median']:.2f}" if e and e["cpu_over_wall"] else "-" for e in entries
            )
        )
        lines.append("| " + " | ".join(cells) + " |")

    pipeline = [e for e in summary if e["kind"] == "pipeline" and e["msgs_per_s"]]
    extra: list[str] = []
    if pipeline:
        extra = [
            "",
            "Full pipeline detail (per run: frames = N; events delivered = trades + book events; the deltas "
            "that arrived before a book's snapshot are folded into its `BookSnapshot`, so events < frames; "
            "startup = clock start to the first event, which includes the REST markets and depth requests):",
            "",
            "| stack | scheme | events/s median | events per run | startup ms median (min-max) "
            "| msgs/s after the first event |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for e in pipeline:
            extra.append(
                f"| {e['label']} | {e['scheme']} | {e['events_per_s']['median']:,.0f} "
                f"| {e['events_per_run']['median']:,.0f} | {_fmt(e['startup_ms'], 0)} "
                f"| {e['msgs_per_s_after_first_event']['median']:,.0f} |"
            )

    like = [e for e in pipeline if e.get("ratio_vs_like") or e.get("ratio_vs_like_books")]
    if like:
        extra += [
            "",
            f"Like-for-like (median of per-round ratios, min-max; by CPU time in brackets): the pipeline against "
            f"`{LIKE}` (picows + the pipeline's own `decode_frame` into the Backpack structs, Decimal prices) and "
            f"`{LIKE_BOOKS}` (the same plus every depth delta applied to a `BookSync`, no events); the "
            f"reference `{REFERENCE}` decodes into string-price benchmark structs.",
            "",
            "| stack | scheme | vs picows (string structs) | vs picows + Backpack structs "
            "| vs picows + Backpack structs + books |",
            "|---|---|---:|---:|---:|",
        ]
        for e in like:
            cells = [
                f"{_fmt(e[key])} [{_fmt(e['cpu_' + key])}]"
                for key in ("ratio_vs_picows", "ratio_vs_like", "ratio_vs_like_books")
            ]
            extra.append(f"| {e['label']} | {e['scheme']} | " + " | ".join(cells) + " |")

    goal_lines = [
        "",
        "| goal | required | measured (median of per-round ratios, min-max) | same by CPU time | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    goal_lines += [
        f"| {g['goal']} | {g['required']} | {g['measured']} | {_fmt(g['by_cpu_time'], 3)} "
        f"| **{'met' if g['met'] else 'not met'}** |"
        for g in goals
    ]
    goal_lines += [
        f"| *{g['goal']}* | *{g['required']}* | *{g['measured']}* | *{_fmt(g['by_cpu_time'], 3)}* | *informative* |"
        for g in informative
    ]
    failures = [f"- {e['label']} [{e['scheme']}]: {f}" for e in summary for f in e["failures"]]
    tail = ["", "Failed runs:", "", *failures] if failures else []
    return "\n".join([*header, "", *lines, *extra, *goal_lines, *tail, ""])


def _plot(summary: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {(e["label"], e["scheme"]): e for e in summary if e["msgs_per_s"]}
    labels = list(dict.fromkeys(e["label"] for e in summary))
    labels.sort(
        key=lambda label: (
            -max(by_key[k]["msgs_per_s"]["median"] for k in by_key if k[0] == label)
            if any(k[0] == label for k in by_key)
            else 0
        )
    )
    schemes = [s for s in SCHEMES if any(k[1] == s for k in by_key)]
    width = 0.8 / max(1, len(schemes))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(labels) + 2), 5.5))
    colors = {"ws": "#4C72B0", "wss": "#DD8452"}
    for i, scheme in enumerate(schemes):
        xs, heights, lows, highs = [], [], [], []
        for x, label in enumerate(labels):
            e = by_key.get((label, scheme))
            if not e:
                continue
            m = e["msgs_per_s"]
            xs.append(x + (i - (len(schemes) - 1) / 2) * width)
            heights.append(m["median"])
            lows.append(m["median"] - m["min"])
            highs.append(m["max"] - m["median"])
        ax.bar(xs, heights, width, yerr=[lows, highs], capsize=3, label=scheme, color=colors.get(scheme))
        ref = by_key.get((REFERENCE, scheme))
        if ref:
            ax.axhline(ref["msgs_per_s"]["median"], color=colors.get(scheme), linestyle="--", linewidth=1,
                       label=f"picows + msgspec ({scheme})")  # fmt: skip
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("messages/s (median, min-max bars)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _versions() -> str:
    parts = [f"CPython {platform.python_version()}"]
    for pkg in PACKAGES:
        try:
            parts.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


# --------------------------------------------------------------------------- main


def _select(args: argparse.Namespace, n: int) -> Rows:
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    rows: Rows = {}
    for label, variant in VARIANTS.items():
        if not variant.available:
            _progress(f"skipping {label}: not installed")
            continue
        if wanted:
            if not any(w == label or w in label for w in wanted):
                continue
        elif not (variant.default or args.all):
            continue
        if variant.backpack_only and args.feed != "backpack":
            continue
        for scheme in schemes:
            rows[(label, scheme)] = Row(label, scheme, max(1000, n // variant.divisor))
    if wanted:
        for scheme in schemes:  # the reference always runs: every ratio is taken against it
            rows.setdefault((REFERENCE, scheme), Row(REFERENCE, scheme, n))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="end-to-end Backpack feed benchmark (ws and wss)")
    parser.add_argument(
        "--n", type=int, default=None, help="messages per run (default 200,000; quick 50,000)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 7; quick 3)")
    parser.add_argument("--quick", action="store_true", help="smaller and fewer runs (about 1-1.5 minutes)")
    parser.add_argument("--only", default="", help="comma-separated labels or substrings to run")
    parser.add_argument(
        "--all", action="store_true", help="also the extra session variants (decode_batch list...)"
    )
    parser.add_argument("--schemes", default="ws,wss", help="ws, wss or both (default)")
    parser.add_argument("--feed", choices=("backpack", "mix"), default="backpack",
                        help="backpack: trade + depth with books (default); mix: the earlier 4-type feed")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="feed and shuffle seed")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on one client run, seconds")
    parser.add_argument("--min-util", type=float, default=0.9,
                        help="re-run a client whose CPU/wall is below this (another process took the CPU)")  # fmt: skip
    parser.add_argument(
        "--retries", type=int, default=None, help="re-runs per client per round (default 2; quick 1)"
    )
    parser.add_argument("--structs-gc-off", action="store_true",
                        help="build the benchmark's msgspec structs with gc=False (every client alike)")  # fmt: skip
    parser.add_argument("--out", default=os.path.join(HERE, "results", "e2e.md"), help="Markdown output file")
    parser.add_argument("--json-out", default="", help="write every row and the goal verdicts as JSON here")
    parser.add_argument("--plot-out", default="", help="write a bar chart (PNG) here")
    args = parser.parse_args()
    n = args.n or (50_000 if args.quick else 200_000)
    rounds = args.rounds or (3 if args.quick else 7)
    if args.retries is None:
        args.retries = 1 if args.quick else 2

    rows = _select(args, n)
    started = time.perf_counter()
    retried = 0
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        tls = None
        if any(scheme == "wss" for _, scheme in rows):
            from _tls import make_certificates

            tls = make_certificates(tmp)
        env = dict(os.environ, BENCH_STRUCT_GC="0" if args.structs_gc_off else "1")
        if tls:
            env["SSL_CERT_FILE"] = tls.ca  # open_backpack builds its own default context: trust our CA
        server, ready = _start_server(sorted({r.n for r in rows.values()}), args, tls.server if tls else None)
        _progress(
            f"feed server pid {server.pid}: ws 127.0.0.1:{ready['ws_port']}, wss 127.0.0.1:{ready['wss_port']}; "
            f"{rounds} rounds x {len(rows)} runs, N={n:,}"
        )
        rest_url = f"http://127.0.0.1:{ready['ws_port']}"
        try:
            rng = random.Random(args.seed)
            for rnd in range(rounds):
                order = list(rows)
                rng.shuffle(order)
                for i, key in enumerate(order):
                    row = rows[key]
                    label, scheme = key
                    spec = {
                        "url": f"{scheme}://127.0.0.1:{ready[f'{scheme}_port']}/?n={row.n}",
                        "n": row.n,
                        "timeout": args.timeout,
                        "ca": tls.ca if tls else None,
                        "rest_url": rest_url,
                        "meta": ready["meta"][row.n],
                    }
                    for attempt in range(1 + args.retries):  # bounded: 1 + --retries runs at most
                        try:
                            result = _run_client(label, spec, env)
                        except (RuntimeError, subprocess.TimeoutExpired) as exc:
                            row.failures.append(f"round {rnd + 1}: {exc}")
                            _progress(
                                f"[round {rnd + 1}/{rounds}] ({i + 1}/{len(order)}) {scheme:3} {label}: FAILED {exc}"
                            )
                            break
                        util = result["cpu"] / result["wall"]
                        _progress(
                            f"[round {rnd + 1}/{rounds}] ({i + 1}/{len(order)}) {scheme:3} {label:40} "
                            f"{result['count'] / result['wall']:>10,.0f} msgs/s "
                            f"{1e6 * result['cpu'] / result['count']:6.2f} µs/msg  CPU/wall {util:.2f}  "
                            f"RSS {result['rss_mib']:.0f} MiB"
                        )
                        row.runs[rnd] = result
                        if util >= args.min_util or attempt == args.retries:
                            break
                        retried += 1
                        time.sleep(0.3 if args.quick else 1.0)  # let the other load pass before the re-run
        finally:
            assert server.stdin is not None
            server.stdin.close()  # the server exits at stdin EOF
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    elapsed = time.perf_counter() - started

    summary = _summaries(rows, rounds)
    goals, informative = _goals(rows, rounds)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    today = datetime.date.today().isoformat()
    structs = "`gc=False`" if args.structs_gc_off else "default (GC-tracked)"
    command = " ".join(["python benchmarks/bench_e2e.py", *sys.argv[1:]])
    header = [
        f"## End-to-end: Backpack `{args.feed}` feed over ws:// and wss:// (run {today})",
        "",
        f"`{command}`: {rounds} shuffled rounds, N={n:,} per run (fewer for the slow peers, see N), feed server "
        f"pinned to CPU 1, each client a fresh process pinned to CPU 0, {cpus} CPUs, {platform.machine()}, "
        f"{elapsed:.0f} s in all, {retried} runs repeated because another process took the CPU "
        f"(CPU/wall < {args.min_util:g}). wss: TLS with a trustme CA, Python's default server context. "
        f"Benchmark structs: {structs}. {_versions()}.",
        "",
        "Ratios are the median over rounds of (row msgs/s / picows (asyncio) msgs/s on the same scheme in the "
        "same round); wss/ws is the median over rounds of the row's wss msgs/s / its ws msgs/s. Bold: our rows "
        "and the reference.",
    ]
    text = _markdown(summary, goals, informative, header)
    print()
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    _progress(f"written to {args.out}")
    if args.json_out:
        document = {
            "command": command,
            "date": today,
            "n": n,
            "rounds": rounds,
            "feed": args.feed,
            "elapsed_s": elapsed,
            "retried": retried,
            "cpus": cpus,
            "versions": _versions(),
            "reference": REFERENCE,
            "rows": summary,
            "goals": goals,
            "informative": informative,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1)
        _progress(f"written to {args.json_out}")
    if args.plot_out:
        _plot(
            summary, args.plot_out, f"End-to-end msgs/s, {args.feed} feed, N={n:,}, {rounds} rounds ({today})"
        )
        _progress(f"written to {args.plot_out}")


if __name__ == "__main__":
    main()
