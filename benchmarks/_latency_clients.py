"""
The client stacks of the latency benchmark, one process per stack.

``python benchmarks/_latency_clients.py STACK PORT CONFIG_JSON`` pins itself to CPU 0 (when the machine
has two or more CPUs), then, on one event loop:

1. measures the stack's *saturation rate*: ``sat_runs`` unpaced runs of ``sat_n`` frames from ``/sat``
   (clock from before the connect to the last decoded message, as ``bench_e2e.py``), median msgs/s;
2. for each burst period and each load fraction, connects to ``/paced`` at ``fraction * saturation``
   msgs/s for ``duration`` seconds and records, for every message, ``perf_counter_ns()`` right after
   it was decoded minus the server's stamp (``E - STAMP_BASE``);
3. prints one ``RESULT {json}`` line: the saturation runs and, per level, messages expected and
   received, latency percentiles (µs) after the warm-up, messages later than one burst period, and
   the process's CPU/wall during the level.

Every stack records through the same code (one clock read, one subtraction, one ``array.append`` per
message); the saturation runs include that cost too, so a level's fraction is of what the stack can
do *while measuring*. Every run is bounded (cancel scope, ``asyncio.timeout``, ``trio.move_on_after``)
and a run that misses its deadline reports what it received; the runner adds a process timeout.
"""

from __future__ import annotations

import array
import json
import os
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.dirname(_HERE))  # the repository root, for native_anyio

from _paced_server import DECODER, STAMP_BASE, SUBSCRIBE, Envelope, _pin, run_queue_wait_ns  # noqa: E402

# --------------------------------------------------------------------------- native-anyio


def _native_imports() -> tuple[Any, Any, Any, Any]:
    try:
        from native_anyio import Disconnected, Router, SessionConfig, open_session
    except ImportError:
        from native_anyio._router import Router
        from native_anyio._session import Disconnected, SessionConfig, open_session
    return open_session, SessionConfig, Router, Disconnected


async def _native(url: str, expected: int, timeout: float, rec: array.array[int]) -> int:
    """The documented fast path: ``receive_batch()`` + ``Router.iter_decode()``, as in ``bench_e2e``."""
    import anyio

    open_session, SessionConfig, Router, Disconnected = _native_imports()
    router = Router(Envelope)
    events: list[object] = []
    router.add_event_handler(events.append)
    clock = time.perf_counter_ns
    append = rec.append
    got = 0
    with anyio.move_on_after(timeout):
        async with open_session(url, subscriptions=["feed.mix"], config=SessionConfig(seed=0)) as session:
            while got < expected:
                batch = await session.receive_batch()
                for message in router.iter_decode(batch):
                    append(clock() - message.data.E)
                    got += 1
                if events and any(isinstance(e, Disconnected) for e in events):
                    break  # the server closed: do not let the session reconnect into a new run
    return got


# --------------------------------------------------------------------------- asyncio peers


async def _picows(url: str, expected: int, timeout: float, rec: array.array[int]) -> int:
    """picows' callback API: ``frame.get_payload_as_bytes()``, then the typed decode."""
    import asyncio

    from picows import WSListener, WSMsgType, ws_connect

    decode = DECODER.decode
    clock = time.perf_counter_ns
    append = rec.append
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    class Listener(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.count = 0

        def on_ws_connected(self, transport: Any) -> None:
            transport.send(WSMsgType.TEXT, SUBSCRIBE.encode())

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                stamp = decode(frame.get_payload_as_bytes()).data.E
                append(clock() - stamp)  # read the clock after the decode
                self.count += 1
                if self.count == expected and not done.done():
                    done.set_result(None)
            elif frame.msg_type == WSMsgType.CLOSE and not done.done():
                done.set_result(None)

        def on_ws_disconnected(self, transport: Any) -> None:
            if not done.done():
                done.set_result(None)

    transport, listener = await ws_connect(Listener, url)
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout)
    except TimeoutError:
        pass
    finally:
        transport.disconnect()
        await asyncio.wait_for(transport.wait_disconnected(), 10)
    return int(listener.count)


async def _aiohttp(url: str, expected: int, timeout: float, rec: array.array[int]) -> int:
    """aiohttp: ``await ws.receive()`` per message (a ``str``), then the typed decode."""
    import asyncio

    import aiohttp

    decode = DECODER.decode
    clock = time.perf_counter_ns
    append = rec.append
    text = aiohttp.WSMsgType.TEXT
    got = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(url, compress=0, max_msg_size=0) as ws:
        await ws.send_str(SUBSCRIBE)
        receive = ws.receive
        try:
            async with asyncio.timeout(timeout):
                while got < expected:
                    msg = await receive()
                    if msg.type is not text:
                        break  # CLOSE / CLOSED / ERROR: the run is over
                    stamp = decode(msg.data).data.E
                    append(clock() - stamp)  # read the clock after the decode
                    got += 1
        except TimeoutError:
            pass
    return got


async def _websockets(url: str, expected: int, timeout: float, rec: array.array[int]) -> int:
    """websockets (new asyncio API): ``await ws.recv()`` per message (a ``str``), then the typed decode."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    decode = DECODER.decode
    clock = time.perf_counter_ns
    append = rec.append
    got = 0
    async with connect(url, compression=None, ping_interval=None, max_size=None) as ws:
        await ws.send(SUBSCRIBE)
        recv = ws.recv
        try:
            async with asyncio.timeout(timeout):
                while got < expected:
                    stamp = decode(await recv()).data.E
                    append(clock() - stamp)  # read the clock after the await and the decode
                    got += 1
        except (TimeoutError, ConnectionClosed):
            pass
    return got


async def _cryptofeed_style(url: str, expected: int, timeout: float, rec: array.array[int]) -> int:
    """
    What a cryptofeed-2.x feed handler does per message, without importing cryptofeed: websockets'
    ``await ws.recv()``, ``json.loads``, dict access, ``Decimal`` for every price and size, the L2 book
    in cryptofeed's ``order_book`` C extension (deletes on zero size), a per-message update object and
    an awaited (no-op) user callback.
    """
    import asyncio
    import json as stdjson
    from decimal import Decimal

    from order_book import OrderBook
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    loads = stdjson.loads
    clock = time.perf_counter_ns
    append = rec.append
    books: dict[str, Any] = {}

    async def callback(update: object, receipt: float) -> None:
        """The user's handler: cryptofeed awaits one per update."""

    def handle(data: dict[str, Any]) -> object:
        kind, symbol = data["e"], data["s"]
        if kind == "depth":
            book = books.get(symbol)
            if book is None:
                book = books[symbol] = OrderBook(max_depth=0)
            delta: dict[str, list[tuple[Decimal, Decimal]]] = {"bid": [], "ask": []}
            for key, side, name in (("b", book.bids, "bid"), ("a", book.asks, "ask")):
                for price_s, size_s in data[key]:
                    price, size = Decimal(price_s), Decimal(size_s)
                    if size == 0:
                        if price in side:
                            del side[price]
                    else:
                        side[price] = size
                    delta[name].append((price, size))
            return {"symbol": symbol, "book": book, "delta": delta, "timestamp": data["T"] / 1e6}
        if kind == "trade":
            return {"symbol": symbol, "side": "sell" if data["m"] else "buy", "amount": Decimal(data["q"]),
                    "price": Decimal(data["p"]), "id": str(data["t"]), "timestamp": data["T"] / 1e6}  # fmt: skip
        if kind == "bookTicker":
            return {"symbol": symbol, "bid": Decimal(data["b"]), "bid_size": Decimal(data["B"]),
                    "ask": Decimal(data["a"]), "ask_size": Decimal(data["A"]), "timestamp": data["T"] / 1e6}  # fmt: skip
        return {"symbol": symbol, "last": Decimal(data["c"]), "high": Decimal(data["h"]),
                "low": Decimal(data["l"]), "volume": Decimal(data["v"])}  # fmt: skip

    got = 0
    async with connect(url, compression=None, ping_interval=None, max_size=None) as ws:
        await ws.send(SUBSCRIBE)
        recv = ws.recv
        try:
            async with asyncio.timeout(timeout):
                while got < expected:
                    data = loads(await recv())["data"]
                    await callback(handle(data), time.time())
                    append(clock() - data["E"])
                    got += 1
        except (TimeoutError, ConnectionClosed):
            pass
    return got


# --------------------------------------------------------------------------- trio peer


async def _trio_websocket(url: str, expected: int, timeout: float, rec: array.array[int]) -> int:
    """trio-websocket with its defaults: ``await ws.get_message()`` per message, then the typed decode."""
    import trio
    from trio_websocket import ConnectionClosed, open_websocket_url

    decode = DECODER.decode
    clock = time.perf_counter_ns
    append = rec.append
    got = 0
    with trio.move_on_after(timeout):
        async with open_websocket_url(url) as ws:
            await ws.send_message(SUBSCRIBE)
            get = ws.get_message
            try:
                while got < expected:
                    stamp = decode(await get()).data.E
                    append(clock() - stamp)  # read the clock after the await and the decode
                    got += 1
            except ConnectionClosed:
                pass
    return got


# --------------------------------------------------------------------------- registry

#: label -> (run, loop: "anyio-asyncio" | "anyio-uvloop" | "anyio-trio" | "asyncio", sat divisor, module)
STACKS: dict[str, tuple[Any, str, int, str]] = {
    "native-anyio (asyncio)": (_native, "anyio-asyncio", 1, "anyio"),
    "native-anyio (asyncio+uvloop)": (_native, "anyio-uvloop", 1, "uvloop"),
    "native-anyio (trio)": (_native, "anyio-trio", 1, "trio"),
    "picows (asyncio)": (_picows, "asyncio", 1, "picows"),
    "aiohttp (asyncio)": (_aiohttp, "asyncio", 1, "aiohttp"),
    "websockets (asyncio)": (_websockets, "asyncio", 3, "websockets"),
    "cryptofeed-style (websockets + json + Decimal)": (_cryptofeed_style, "asyncio", 8, "order_book"),
    "trio-websocket (trio)": (_trio_websocket, "anyio-trio", 8, "trio_websocket"),
}


def available(label: str) -> bool:
    """Whether the stack's library is importable."""
    import importlib.util

    return importlib.util.find_spec(STACKS[label][3]) is not None


def _schedule_total(rate: float, period_us: int, duration: float) -> int:
    """Frames the server sends for these parameters (the same arithmetic as ``PacedServer._paced``)."""
    bursts = max(1, round(duration * 1e6 / period_us))
    return int(rate * period_us / 1e6 * bursts + 1e-9)


async def _drive(run: Any, port: int, cfg: dict[str, Any], label: str) -> dict[str, Any]:
    """Saturation runs, then every paced level; raw latencies are summarized after the last run."""
    base = f"ws://127.0.0.1:{port}"
    sat_runs: list[dict[str, float]] = []
    n = cfg["sat_n"]
    # A short discarded run first: imports, class creation and first-call costs stay out of the numbers.
    await run(f"{base}/sat?n=2000", 2000, cfg["timeout"], array.array("q"))
    for _ in range(cfg["sat_runs"]):
        rec: array.array[int] = array.array("q")
        t0, c0 = time.perf_counter(), time.process_time()
        got = await run(f"{base}/sat?n={n}", n, cfg["timeout"], rec)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        sat_runs.append({"count": got, "wall": wall, "cpu": cpu, "rate": got / wall})
    complete = [r["rate"] for r in sat_runs if r["count"] == n]
    if not complete:
        return {"error": f"saturation runs incomplete: {sat_runs}", "sat_runs": sat_runs}
    saturation = statistics.median(complete)
    print(f"  {label}: saturation {saturation:,.0f} msgs/s", file=sys.stderr, flush=True)
    raw: list[tuple[dict[str, Any], array.array[int]]] = []
    for period_us in cfg["periods_us"]:
        for fraction in cfg["fractions"]:
            rate = float(f"{fraction * saturation:.1f}")
            expected = _schedule_total(rate, period_us, cfg["duration"])
            tag = f"{label}|{cfg.get('attempt', 0)}|{period_us}|{fraction}"
            query = urlencode({"rate": rate, "period_us": period_us, "duration": cfg["duration"], "tag": tag})
            url = f"{base}/paced?{query}"
            rec = array.array("q")
            t0, c0, w0 = time.perf_counter(), time.process_time(), run_queue_wait_ns()
            got = await run(url, expected, cfg["duration"] + cfg["drain"], rec)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            waited = (run_queue_wait_ns() - w0) / 1e9
            level = {"tag": tag, "period_us": period_us, "fraction": fraction, "rate": rate,
                     "expected": expected, "received": got, "wall": wall, "cpu_util": cpu / wall,
                     "preempted": waited / wall}  # fmt: skip
            raw.append((level, rec))
            print(
                f"  {label}: {fraction:.0%} of saturation ({rate:,.0f} msgs/s, {period_us} µs bursts): "
                f"{got:,}/{expected:,} received, CPU/wall {cpu / wall:.2f}, waited for a CPU {waited / wall:.0%}",
                file=sys.stderr,
                flush=True,
            )
    return {"sat_runs": sat_runs, "saturation": saturation, "levels": [_summary(lv, r, cfg) for lv, r in raw]}


def _summary(level: dict[str, Any], rec: array.array[int], cfg: dict[str, Any]) -> dict[str, Any]:
    """Percentiles (µs) of one level, after dropping the warm-up share of the messages."""
    import numpy as np

    skip = int(level["expected"] * cfg["warmup"] / cfg["duration"])
    out = dict(level, measured=max(0, len(rec) - skip), dropped=level["expected"] - level["received"])
    if len(rec) <= skip:
        return out
    values = np.frombuffer(rec, dtype=np.int64)[skip:] + STAMP_BASE  # receipt - send, ns
    p50, p90, p99, p999 = np.percentile(values, [50, 90, 99, 99.9], method="inverted_cdf") / 1000
    out.update(
        p50_us=float(p50),
        p90_us=float(p90),
        p99_us=float(p99),
        p999_us=float(p999),
        max_us=float(values.max() / 1000),
        mean_us=float(values.mean() / 1000),
        min_us=float(values.min() / 1000),
        late=int((values > level["period_us"] * 1000).sum()),
    )
    return out


def _run_loop(loop: str, coro_fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    if loop == "asyncio":
        import asyncio

        with asyncio.Runner() as runner:
            return runner.run(coro_fn())  # type: ignore[arg-type]
    import anyio

    backend = "trio" if loop == "anyio-trio" else "asyncio"
    options = {"use_uvloop": True} if loop == "anyio-uvloop" else {}
    result: dict[str, Any] = anyio.run(coro_fn, backend=backend, backend_options=options)
    return result


def main() -> None:
    _pin(0)
    label, port, cfg = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    run, loop, divisor, _ = STACKS[label]
    cfg = dict(cfg, sat_n=max(2000, cfg["sat_n"] // divisor))
    result = _run_loop(loop, lambda: _drive(run, port, cfg, label))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
