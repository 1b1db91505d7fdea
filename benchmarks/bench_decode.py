"""
Decode micro-benchmarks (issue 6, item 5): our decoders against ``json.loads``, ``orjson.loads``
and untyped ``msgspec.json.decode``, on every Backpack websocket message kind.

    python benchmarks/bench_decode.py            # full: 15 repeats, about 1-2 min
    python benchmarks/bench_decode.py --quick    # 7 repeats: about 15-25 s
    python benchmarks/bench_decode.py --quick --out benchmarks/results/decode.md \\
        --json-out benchmarks/results/decode.json --plot-out benchmarks/results/decode.png

Inputs: the real frames recorded on the wire and quoted in ``shared/docs/backpack-protocol.md``
(BBGO, NEMA, TSCAP captures; ccxt's printed frames turned back into JSON, with ``E``/``T`` as JSON
numbers as in every raw capture). Kinds never captured use the documented example (keys sorted as
on the wire), and event types that share a struct with a captured one (the other order, position
and RFQ events, ``externalTicker``) are that capture with its ``e`` (and status) changed; the
``source`` column says which. The untagged position
snapshot sent on subscription and an error frame are included, because they take other paths
through the decoder, and so is the REST depth snapshot the book loads from.

Columns, all from ``bytes`` (what the session hands over):

* ``json.loads``, ``orjson.loads``, ``msgspec.json.decode`` (untyped): a dict of strings; no
  validation, no ``Decimal``;
* ``ours: decode_frame``: what ``BackpackClient`` calls per frame, a ``msgspec.json.Decoder`` of
  the envelope with the payloads as a union tagged on ``e`` (strict, ``Decimal`` prices, finite
  and range checks), plus its fallback for the untagged position snapshot;
* ``ours: decode + normalize``: the same plus ``parse_stream`` (cached) and ``normalize`` to the
  public event (``Trade``, ``BookDelta``...), as ``BackpackClient`` does for every non-depth
  frame (depth frames go to the book synchronizer instead; this column shows their ``BookDelta``).

Method: ``timeit`` (the statement ``f(p)``, garbage collector off while timing, as ``timeit``
does), timed in CPU time of the process (``time.process_time``: time the scheduler gives to other
processes does not count). Each (frame, decoder) pair loops ``number`` times, calibrated to a
fixed time, once per repeat; the pairs run in a shuffled order in each repeat, so that a
disturbance hits every decoder alike. The tables show the min over repeats (the least disturbed run; the JSON also has
the median), and each decoder's ratio to ``json.loads`` on the same frame.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import timeit
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

import native_anyio
from native_anyio.backpack import decode_frame, normalize, parse_stream, snapshot_from_rest
from native_anyio.backpack._wire_rest import decode_depth

try:
    import orjson
except ImportError:  # the bench extra installs it; without it that column reads n/a
    orjson = None

NA = "n/a (not installed)"

# -- the frames -------------------------------------------------------------------------------------

_ENCODE = msgspec.json.Encoder(order="sorted").encode  # the wire's key order (protocol doc §2.3)

_TRADE = b'{"data":{"E":1736186248745457,"T":1736186248744398,"a":"113782701997686784","b":"113782700596854784","e":"trade","m":true,"p":"218.50","q":"0.07","s":"SOL_USDC","t":341399899},"stream":"trade.SOL_USDC"}'
_DEPTH_1 = b'{"data":{"E":1788367430247494,"T":1788367430246081,"U":4330360995,"a":[["98.97","22.39"]],"b":[],"e":"depth","s":"SOL_USDC","u":4330360995},"stream":"depth.SOL_USDC"}'
_DEPTH_200MS = b'{"data":{"E":1790134357903774,"T":1790134357900446,"U":7501116422,"a":[["2766.95","6.9498"],["2766.98","22.8939"],["2766.99","0.2710"]],"b":[["2754.43","45.0537"],["2755.33","0.0000"],["2763.10","0.1579"]],"e":"depth","s":"ETH_USDC_PERP","u":7501116464},"stream":"depth.200ms.ETH_USDC_PERP"}'
_BOOK_TICKER = b'{"data":{"A":"22.39","B":"288.77","E":1788367430247487,"T":1788367430246081,"a":"98.97","b":"98.96","e":"bookTicker","s":"SOL_USDC","u":4330360995},"stream":"bookTicker.SOL_USDC"}'
_TICKER = b'{"data":{"E":1788367430549233,"V":"1498114.9234","c":"98.98","e":"ticker","h":"101.19","l":"97.38","n":6796,"o":"100.87","s":"SOL_USDC","v":"15089.56"},"stream":"ticker.SOL_USDC"}'
_KLINE = b'{"data":{"E":1754519557526056,"T":"2025-08-07T00:00:00","X":false,"c":"3680.520000000","e":"kline","h":"3681.370000000","l":"3667.650000000","n":255,"o":"3670.150000000","s":"ETH_USDC","t":"2025-08-06T22:00:00","v":"62.2621000"},"stream":"kline.2h.ETH_USDC"}'
_MARK_PRICE = b'{"data":{"E":1788367430422109,"T":1788367430421396,"e":"markPrice","f":"0.0000125","i":"98.94998504","n":1788368400000,"p":"98.94","s":"SOL_USDC_PERP"},"stream":"markPrice.SOL_USDC_PERP"}'
_OPEN_INTEREST = b'{"data":{"E":1694687965941000,"e":"openInterest","o":"100","s":"SOL_USDC_PERP"},"stream":"openInterest.SOL_USDC_PERP"}'
_LIQUIDATION = b'{"data":{"E":1694688638091000,"S":"Bid","T":567,"e":"liquidation","p":"18.70","q":"10","s":"SOL_USDC"},"stream":"liquidation.SOL_USDC"}'
_ORDER_ACCEPTED = b'{"data":{"E":1788368290063153,"O":"USER","Q":"20.1520","S":"Ask","T":1788368290062979,"V":"RejectTaker","X":"New","Z":"0","e":"orderAccepted","f":"GTC","i":"59887375336","o":"LIMIT","p":"1.0076","q":"20","r":false,"s":"USDT_USDC","t":null,"y":true,"z":"0"},"stream":"account.orderUpdate"}'
_ORDER_CANCELLED = b'{"data":{"E":1788368293114025,"O":"USER","Q":"20.1520","S":"Ask","T":1788368293113270,"V":"RejectTaker","X":"Cancelled","Z":"0","e":"orderCancelled","f":"GTC","i":"59887375336","o":"LIMIT","p":"1.0076","q":"20","r":false,"s":"USDT_USDC","t":null,"y":true,"z":"0"},"stream":"account.orderUpdate"}'
_ORDER_FILL = b'{"data":{"E":1754939110175879,"L":"4299.16","N":"ETH","O":"USER","Q":"4.30","S":"Bid","T":1754939110174705,"V":"RejectTaker","X":"Filled","Z":"4.299160","e":"orderFill","f":"GTC","i":"5406825793","l":"0.0010","m":false,"n":"0.000001","o":"MARKET","q":"0.0010","r":false,"s":"ETH_USDC","t":2888471,"z":"0.0010"},"stream":"account.orderUpdate.ETH_USDC"}'
_POSITION_ENTRY = '{"B":"4236.36","E":1754943862040486,"M":"4235.88650933","P":"-0.000473","Q":"0.0010","T":1754943862040487,"b":"4238.479","f":"0.02","i":5411399049,"l":"0","m":"0.0125","n":"4.23588650933","p":"0","q":"0.0010","s":"ETH_USDC_PERP"}'
_POSITION_OPENED = b'{"data":{"B":"4236.36","E":1754943862040486,"M":"4235.88650933","P":"-0.000473","Q":"0.0010","T":1754943862040487,"b":"4238.479","e":"positionOpened","f":"0.02","i":5411399049,"l":"0","m":"0.0125","n":"4.23588650933","p":"0","q":"0.0010","s":"ETH_USDC_PERP"},"stream":"account.positionUpdate"}'
_RFQ_ACTIVE = b'{"data":{"E":1730225420369829,"R":113392053149171712,"T":1730225420368765,"W":1730225540368,"X":"New","e":"rfqActive","q":"10","s":"SOL_USDC_RFQ","w":1730225480368},"stream":"account.rfqUpdate"}'
_QUOTE_ACCEPTED = b'{"data":{"C":"123","E":1730225434631394,"R":113392053149171712,"T":1730225434629778,"X":"New","e":"quoteAccepted","s":"SOL_USDC_RFQ","u":113392054083780608},"stream":"account.rfqUpdate"}'
_RFQ_CANDIDATE = b'{"data":{"C":"123","E":1730225490648996,"Q":"150","R":113392053149171712,"S":"Bid","T":1730225490647080,"X":"New","e":"rfqCandidate","p":"15.50","q":"10","s":"SOL_USDC_RFQ","u":113392054083780608},"stream":"account.rfqUpdate"}'
_RFQ_FILLED = b'{"data":{"C":"123","E":1730225497648996,"R":113392053149171712,"T":1730225497647080,"X":"Filled","e":"rfqFilled","p":"15.00","s":"SOL_USDC_RFQ","u":113392054083780608},"stream":"account.rfqUpdate"}'
_BALANCE = b'{"data":{"A":"10","E":1788368290063168,"L":"20","S":"0","T":1788368290062981,"a":"USDT","e":"balanceUpdate"},"stream":"account.balanceUpdate"}'
_ERROR = b'{"id":null,"error":{"code":4006,"message":"Invalid stream"}}'
_REST_DEPTH = b'{"asks":[["100.65","65.5"],["100.66","240.6"],["100.67","30.64"],["100.68","149.03"],["100.69","109.73"],["100.7","13.24"],["100.71","110.78"],["100.72","51.64"],["100.73","47.2"],["100.74","1.7"],["100.77","2.4"],["100.78","95.6"],["100.86","2.14"],["100.89","0.22"],["100.9","169.4"],["100.95","2.86"],["101.15","1.81"],["101.16","347.64"],["101.17","0.19"],["101.26","10"]],"bids":[["100.19","5.52"],["100.2","4.37"],["100.29","1.03"],["100.32","2.34"],["100.4","169.65"],["100.41","2.31"],["100.45","3.96"],["100.49","0.19"],["100.5","0.04"],["100.52","100.62"],["100.53","1.81"],["100.55","1.39"],["100.57","136.01"],["100.58","102.87"],["100.59","90.95"],["100.6","102.26"],["100.61","11.89"],["100.62","168.89"],["100.63","149.64"],["100.64","67.95"]],"lastUpdateId":"4324522523","timestamp":1788285151254895}'


def _retag(frame: bytes, tag: str, stream: str | None = None, **fields: Any) -> bytes:
    """``frame`` with its event type (and some fields) changed, re-encoded in the wire's key order."""
    body = json.loads(frame)
    body["data"]["e"] = tag
    body["data"].update(fields)
    if stream is not None:
        body["stream"] = stream
    return _ENCODE(body)


# (kind, source, payload, expected tag of the decoded payload; "error" for an error frame)
FRAMES: list[tuple[str, str, bytes, str]] = [
    ("trade", "wire (TSCAP)", _TRADE, "trade"),
    ("depth (realtime, 1 level)", "wire (BBGO)", _DEPTH_1, "depth"),
    ("depth (200ms, 6 levels)", "wire (NEMA)", _DEPTH_200MS, "depth"),
    ("bookTicker", "wire (BBGO)", _BOOK_TICKER, "bookTicker"),
    ("ticker", "wire (BBGO)", _TICKER, "ticker"),
    ("externalTicker", "ticker capture, e changed", _retag(_TICKER, "externalTicker", "externalTicker.SOL_USDC"), "externalTicker"),
    ("kline", "wire (ccxt's printed frame)", _KLINE, "kline"),
    ("markPrice", "wire (BBGO)", _MARK_PRICE, "markPrice"),
    ("openInterest", "docs example", _OPEN_INTEREST, "openInterest"),
    ("liquidation", "docs example", _LIQUIDATION, "liquidation"),
    ("orderAccepted", "wire (BBGO)", _ORDER_ACCEPTED, "orderAccepted"),
    ("orderCancelled", "wire (BBGO)", _ORDER_CANCELLED, "orderCancelled"),
    ("orderFill", "wire (ccxt's printed frame)", _ORDER_FILL, "orderFill"),
    ("orderExpired", "orderAccepted capture, e/X/R changed", _retag(_ORDER_ACCEPTED, "orderExpired", X="Expired", R="PRICE_BAND"), "orderExpired"),
    ("orderModified", "orderAccepted capture, e changed", _retag(_ORDER_ACCEPTED, "orderModified"), "orderModified"),
    ("triggerPlaced", "orderAccepted capture + docs trigger fields", _retag(_ORDER_ACCEPTED, "triggerPlaced", X="TriggerPending", P="1.0070", B="LastPrice", Y="20"), "triggerPlaced"),
    ("triggerFailed", "orderAccepted capture, e/X changed", _retag(_ORDER_ACCEPTED, "triggerFailed", X="TriggerFailed"), "triggerFailed"),
    ("positionOpened", "wire (ccxt's printed frame)", _POSITION_OPENED, "positionOpened"),
    ("positionAdjusted", "positionOpened capture, e changed", _retag(_POSITION_OPENED, "positionAdjusted"), "positionAdjusted"),
    ("positionClosed", "positionOpened capture, e changed", _retag(_POSITION_OPENED, "positionClosed", q="0", Q="0"), "positionClosed"),
    ("positionUpdated", "positionOpened capture, e changed", _retag(_POSITION_OPENED, "positionUpdated"), "positionUpdated"),
    ("position snapshot (untagged, fallback path)", "positionOpened capture without e", b'{"data":' + _POSITION_ENTRY.encode() + b',"stream":"account.positionUpdate"}', "positionSnapshot"),
    ("rfqActive", "docs example", _RFQ_ACTIVE, "rfqActive"),
    ("rfqAccepted", "rfqActive docs example, e changed", _retag(_RFQ_ACTIVE, "rfqAccepted", C="123"), "rfqAccepted"),
    ("rfqRefreshed", "rfqActive docs example, e changed", _retag(_RFQ_ACTIVE, "rfqRefreshed", C="123"), "rfqRefreshed"),
    ("rfqCancelled", "rfqActive docs example, e/X changed", _retag(_RFQ_ACTIVE, "rfqCancelled", C="123", X="Cancelled"), "rfqCancelled"),
    ("rfqCandidate", "docs example", _RFQ_CANDIDATE, "rfqCandidate"),
    ("rfqFilled", "docs example", _RFQ_FILLED, "rfqFilled"),
    ("quoteAccepted", "docs example", _QUOTE_ACCEPTED, "quoteAccepted"),
    ("quoteCancelled", "quoteAccepted docs example, e/X changed", _retag(_QUOTE_ACCEPTED, "quoteCancelled", X="Cancelled"), "quoteCancelled"),
    ("balanceUpdate", "wire (BBGO)", _BALANCE, "balanceUpdate"),
    ("error frame (4006)", "wire (NEMA)", _ERROR, "error"),
    ("REST /depth snapshot (20 levels/side)", "wire (BBGO)", _REST_DEPTH, "rest"),
]  # fmt: skip

# -- the decoders -----------------------------------------------------------------------------------


def decode_normalize(payload: bytes) -> object:
    """What ``BackpackClient._handle_frame`` does with a data frame: decode, then normalize."""
    frame = decode_frame(payload)
    data = frame.data
    if data is None:
        return None
    return normalize(data, parse_stream(frame.stream), 0.0)  # type: ignore[arg-type]


def rest_depth_normalize(payload: bytes) -> object:
    return snapshot_from_rest("SOL_USDC", decode_depth(payload), 0.0)


# name -> label
DECODERS: dict[str, str] = {
    "json": "json.loads",
    "orjson": "orjson.loads",
    "msgspec": "msgspec.json.decode (untyped)",
    "ours": "ours: decode_frame",
    "ours_norm": "ours: decode + normalize",
}


def decoder_for(name: str, kind_tag: str) -> Any:
    """The callable timed for ``name`` on a frame of ``kind_tag`` (None: not available)."""
    if name == "json":
        return json.loads
    if name == "orjson":
        return None if orjson is None else orjson.loads
    if name == "msgspec":
        return msgspec.json.decode
    if kind_tag == "rest":
        return decode_depth if name == "ours" else rest_depth_normalize
    if name == "ours":
        return decode_frame
    return None if kind_tag == "error" else decode_normalize


def check(tag: str, payload: bytes) -> None:
    """Every frame must decode to what it claims, by every decoder: a benchmark of failures is no use."""
    reference = json.loads(payload)
    for name in DECODERS:
        fn = decoder_for(name, tag)
        if fn is None or name in ("ours", "ours_norm"):
            continue
        assert fn(payload) == reference, (name, tag)
    if tag == "rest":
        assert decode_depth(payload).last_update_id == 4324522523
        assert len(rest_depth_normalize(payload).bids) == 20  # type: ignore[attr-defined]
        return
    frame = decode_frame(payload)
    if tag == "error":
        assert frame.error is not None
        assert frame.error.code == 4006
        return
    assert frame.data is not None
    assert type(frame.data).__struct_config__.tag == tag, (type(frame.data), tag)
    if tag.startswith(("rfq", "quote")):
        assert decode_normalize(payload) is None  # RFQ updates have no public event
    else:
        assert decode_normalize(payload) is not None, tag


# -- measurement ------------------------------------------------------------------------------------

MODES = {"quick": {"repeats": 7, "seconds": 0.008}, "full": {"repeats": 15, "seconds": 0.02}}


def log(message: str) -> None:
    print(f"[bench_decode] {message}", file=sys.stderr, flush=True)


def measure(repeats: int, seconds: float) -> dict[str, dict[str, list[float]]]:
    """µs per message for each (kind, decoder): one value per repeat."""
    timers: dict[tuple[str, str], tuple[timeit.Timer, int]] = {}
    for kind, _source, payload, tag in FRAMES:
        check(tag, payload)
        for name in DECODERS:
            fn = decoder_for(name, tag)
            if fn is None:
                continue
            # CPU time of the process: time given to other processes (a shared machine) does not count.
            timer = timeit.Timer("f(p)", timer=time.process_time, globals={"f": fn, "p": payload})
            # Calibrate (and warm up): the smallest power-of-two loop count reaching ``seconds``.
            number = 1
            while timer.timeit(number) < seconds and number < 1 << 22:
                number *= 2
            timers[kind, name] = (timer, number)
    log(f"{len(FRAMES)} frames checked and calibrated")
    results: dict[str, dict[str, list[float]]] = {kind: {} for kind, *_ in FRAMES}
    order = list(timers)
    for repeat in range(repeats):
        random.shuffle(order)
        started = time.perf_counter()
        for kind, name in order:
            timer, number = timers[kind, name]
            results[kind].setdefault(name, []).append(timer.timeit(number) / number * 1e6)
        log(f"repeat {repeat + 1}/{repeats} done in {time.perf_counter() - started:.1f} s")
    return results


# -- reporting --------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return NA


def environment(mode: str) -> dict[str, Any]:
    commit = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "mode": mode,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "packages": {
            "native-anyio": native_anyio.__version__ + (f" (git {commit})" if commit else ""),
            "msgspec": msgspec.__version__,
            "orjson": orjson.__version__ if orjson is not None else NA,
        },
    }


def summarize(results: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows = []
    for kind, source, payload, tag in FRAMES:
        base = min(results[kind]["json"])
        decoders = {}
        for name in DECODERS:
            values = results[kind].get(name)
            if not values:
                status = "n/a (not installed)" if name == "orjson" else "n/a (no public event)"
                decoders[name] = {"status": status}
                continue
            decoders[name] = {
                "status": "ok",
                "us_min": min(values),
                "us_median": statistics.median(values),
                "ratio_vs_json_loads": min(values) / base,
                "values": values,
            }
        rows.append({"kind": kind, "tag": tag, "source": source, "bytes": len(payload), "decoders": decoders})
    return rows


def geomean_ratios(rows: list[dict[str, Any]], name: str, *, stream_only: bool = True) -> float | None:
    ratios = [
        row["decoders"][name]["ratio_vs_json_loads"]
        for row in rows
        if row["decoders"][name]["status"] == "ok" and not (stream_only and row["tag"] in ("rest", "error"))
    ]
    return math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None


def markdown(env: dict[str, Any], rows: list[dict[str, Any]], repeats: int) -> str:
    pk = env["packages"]
    load = env["load_average"]
    lines = [
        f"## Decode cost per Backpack message kind ({env['date']}, {env['mode']} mode)",
        "",
        f"{env['python']} on {env['platform']}, {env['cpus']} CPUs; native-anyio {pk['native-anyio']}, "
        f"msgspec {pk['msgspec']}, orjson {pk['orjson']}. Load average at start: "
        f"{', '.join(map(str, load)) if load else 'n/a'} (a shared machine: figures are noisy).",
        "",
        f"CPU µs per message, min of {repeats} interleaved `timeit` repeats, from `bytes`; in brackets the ratio to "
        "`json.loads` on the same frame (lower is faster). The untyped decoders return dicts of strings; ours "
        "returns validated structs with `Decimal` prices, and the last column also builds the public event.",
        "",
        "| kind | source | bytes | " + " | ".join(DECODERS.values()) + " |",
        "|---|---|---:|" + "---:|" * len(DECODERS),
    ]
    for row in rows:
        cells = []
        for name in DECODERS:
            d = row["decoders"][name]
            if d["status"] != "ok":
                cells.append(d["status"])
            elif name == "json":
                cells.append(f"{d['us_min']:.2f}")
            else:
                cells.append(f"{d['us_min']:.2f} ({d['ratio_vs_json_loads']:.2f}x)")
        lines.append(f"| {row['kind']} | {row['source']} | {row['bytes']} | {' | '.join(cells)} |")
    geo = []
    for name in DECODERS:
        value = geomean_ratios(rows, name)
        geo.append("-" if value is None else f"{value:.2f}x")
    lines += [
        f"| **geometric mean of the ratios, stream frames** | | | {' | '.join(geo)} |",
        "",
        "Ratios below 1 are faster than `json.loads`. `ours` / `msgspec.json.decode (untyped)` on the same frames, "
        "geometric mean: "
        + _ours_vs(rows, "msgspec")
        + "; `ours` / `orjson.loads`: "
        + _ours_vs(rows, "orjson")
        + ".",
        "",
    ]
    faster = check_faster_than_json(rows)
    lines.append(
        f"Informational check, {faster['check']}: **{faster['verdict']}**"
        + (f" (not on: {', '.join(faster['slower_kinds'])})." if faster["slower_kinds"] else ".")
    )
    return "\n".join(lines) + "\n"


def _ours_vs(rows: list[dict[str, Any]], other: str) -> str:
    ratios = [
        row["decoders"]["ours"]["us_min"] / row["decoders"][other]["us_min"]
        for row in rows
        if row["tag"] not in ("rest", "error") and row["decoders"][other]["status"] == "ok"
    ]
    if not ratios:
        return NA
    return f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x)"


def check_faster_than_json(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Informational (not an issue goal): is our typed decode faster than ``json.loads`` on every kind?"""
    slower = [
        row["kind"]
        for row in rows
        if row["tag"] != "rest" and row["decoders"]["ours"]["ratio_vs_json_loads"] >= 1.0
    ]
    return {
        "check": "ours: decode_frame faster than json.loads on every stream frame kind",
        "verdict": "met" if not slower else "not met",
        "slower_kinds": slower,
    }


def plot(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [row["kind"] for row in rows]
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(kinds) + 1.5))
    height = 0.8 / len(DECODERS)
    for i, (name, label) in enumerate(DECODERS.items()):
        ys = [k + (i - (len(DECODERS) - 1) / 2) * height for k in range(len(kinds))]
        widths = [
            row["decoders"][name]["us_min"] if row["decoders"][name]["status"] == "ok" else 0.0
            for row in rows
        ]
        ax.barh(ys, widths, height, label=label)
    ax.set_yticks(range(len(kinds)), kinds, fontsize=8)
    ax.set_ylim(len(kinds) - 0.5, -0.5)  # first kind on top, no empty margins
    ax.set_xscale("log")
    ax.set_xlabel("CPU µs per message (min of repeats, log scale)")
    ax.set_title("Decode cost per Backpack message kind")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description="Decode cost per Backpack message kind.")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats (about 15-25 s)")
    parser.add_argument("--repeats", type=int, default=None, help="override the mode's repeat count")
    parser.add_argument("--out", default=None, help="write the Markdown table here")
    parser.add_argument("--json-out", default=None, help="write machine-readable results here")
    parser.add_argument("--plot-out", default=None, help="write a PNG plot here (needs matplotlib)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    cfg = MODES[mode]
    repeats = args.repeats or cfg["repeats"]
    if orjson is None:
        log("orjson is not installed: its column reads 'n/a (not installed)'")
    env = environment(mode)
    started = time.perf_counter()
    rows = summarize(measure(repeats, cfg["seconds"]))
    env["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = markdown(env, rows, repeats)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.json_out:
        summary = {name: {"geomean_ratio_vs_json_loads": geomean_ratios(rows, name)} for name in DECODERS}
        payload = {
            "benchmark": "bench_decode",
            "environment": env,
            "repeats": repeats,
            "rows": rows,
            "summary": summary,
            # Item 5 sets no numeric goal; item 7's (book delta apply < decode) is bench_book's.
            "goals": [],
            "checks": [check_faster_than_json(rows)],
        }
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(payload, indent=2) + "\n")
    if args.plot_out:
        plot(rows, args.plot_out)
    log(f"done in {env['wall_seconds']} s")


if __name__ == "__main__":
    main()
