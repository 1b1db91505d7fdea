"""
The client variants of the end-to-end benchmark, one per process.

``python benchmarks/_clients.py VARIANT SPEC_JSON`` pins itself to CPU 0 (when the machine has two or
more CPUs), connects to the feed server, sends one SUBSCRIBE, receives N messages, processes each one as
the variant does, and prints one ``RESULT {json}`` line: the wall time and process CPU time of that work,
the message count, and the process's peak RSS (``ru_maxrss``). The clock starts *before* the connect
(our session connects and subscribes in one call, so the connect is inside the measurement for every
variant alike; it is ~1 ms of a ~0.4 s run).

``SPEC_JSON`` carries ``url`` (``ws://`` or ``wss://``), ``n``, ``timeout``, ``ca`` (the CA file that
``wss://`` clients trust), ``rest_url`` (the Backpack REST base, for the variants that fetch snapshots)
and ``meta`` (the feed's metadata from the server: streams, symbols, expected counts).

Every variant is bounded by ``timeout`` seconds (a cancel scope / ``wait_for``), and the runner adds a
process-level timeout on top.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.dirname(_HERE))  # the repository root, for native_anyio

Result = dict[str, Any]


@dataclass
class Spec:
    """One run: where to connect, how many messages, and what the feed holds."""

    url: str
    n: int
    timeout: float
    ca: str | None = None
    rest_url: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def streams(self) -> list[str]:
        return list(self.meta.get("streams") or ["feed.mix"])

    @property
    def subscribe(self) -> str:
        return json.dumps({"method": "SUBSCRIBE", "params": self.streams}, separators=(",", ":"))

    def ssl_context(self) -> Any:
        """The client TLS context for ``wss://`` (trusting only the benchmark's CA), else ``None``."""
        if not self.url.startswith("wss://"):
            return None
        from _tls import client_context

        assert self.ca is not None
        return client_context(self.ca)


def _pin(cpu: int) -> None:
    try:
        if len(os.sched_getaffinity(0)) >= 2:
            os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


class _Clock:
    """Wall and process-CPU time between ``start()`` and ``stop()``."""

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()

    def stop(self) -> None:
        self.t1 = time.perf_counter()
        self.c1 = time.process_time()

    def result(self, count: int, **extra: Any) -> Result:
        return {"wall": self.t1 - self.t0, "cpu": self.c1 - self.c0, "count": count, **extra}


# --------------------------------------------------------------------------- native-anyio: session


def _native_imports() -> tuple[Any, Any, Any, Any, Any]:
    from native_anyio import AnyioTransport, Disconnected, Router, SessionConfig, open_session

    return open_session, SessionConfig, Router, Disconnected, AnyioTransport


def _opener(spec: Spec) -> Callable[[], Any]:
    """``open_session`` for the spec, with its TLS context built now (before the clock, as for every client)."""
    open_session, SessionConfig, _, _, AnyioTransport = _native_imports()
    transport = AnyioTransport(ssl_context=spec.ssl_context())
    return functools.partial(
        open_session, spec.url, subscriptions=spec.streams, config=SessionConfig(seed=0), transport=transport
    )


async def _native_batch(spec: Spec, *, as_list: bool = False) -> Result:
    """
    The toolkit's documented fast path: ``receive_batch()`` + ``Router.iter_decode()`` (one decoded
    message alive at a time). ``as_list=True`` uses ``Router.decode_batch()`` instead, to show what
    holding a whole batch of structs alive costs in GC time.
    """
    import anyio
    from _feed import Envelope

    _, _, Router, Disconnected, _ = _native_imports()
    router = Router(Envelope)
    events: list[object] = []
    router.add_event_handler(events.append)
    open_ = _opener(spec)
    clock = _Clock()
    got = 0
    n = spec.n
    with anyio.fail_after(spec.timeout):
        clock.start()
        async with open_() as session:
            while got < n:
                batch = await session.receive_batch()
                if as_list:
                    got += len(router.decode_batch(batch))
                else:
                    for _message in router.iter_decode(batch):
                        got += 1
            clock.stop()
    stats = router.statistics()
    breaks = sum(isinstance(e, Disconnected) for e in events)
    return clock.result(got, parse_errors=stats.parse_errors, disconnects=breaks)


async def _native_iter(spec: Spec) -> Result:
    """The per-item API: ``async for item in session`` + ``Router.decode(item)``."""
    import anyio
    from _feed import Envelope

    _, _, Router, Disconnected, _ = _native_imports()
    router = Router(Envelope)
    decode = router.decode
    open_ = _opener(spec)
    clock = _Clock()
    got = 0
    breaks = 0
    with anyio.fail_after(spec.timeout):
        clock.start()
        async with open_() as session:
            async for item in session:
                if type(item) is bytes:
                    decode(item)
                    got += 1
                    if got >= spec.n:
                        break
                elif isinstance(item, Disconnected):
                    breaks += 1
            clock.stop()
    return clock.result(got, parse_errors=router.statistics().parse_errors, disconnects=breaks)


async def _native_each(spec: Spec) -> Result:
    """``receive_batch()``, then ``Router.decode(item)`` per payload in a plain loop (nothing retained)."""
    import anyio
    from _feed import Envelope

    _, _, Router, Disconnected, _ = _native_imports()
    router = Router(Envelope)
    decode = router.decode
    open_ = _opener(spec)
    clock = _Clock()
    got = 0
    breaks = 0
    with anyio.fail_after(spec.timeout):
        clock.start()
        async with open_() as session:
            while got < spec.n:
                for item in await session.receive_batch():
                    if type(item) is bytes:
                        decode(item)
                        got += 1
                    elif isinstance(item, Disconnected):
                        breaks += 1
            clock.stop()
    return clock.result(got, parse_errors=router.statistics().parse_errors, disconnects=breaks)


def _ignore(message: object) -> None:
    """The handler of the dispatch variant: takes the message and drops it."""


async def _native_dispatch(spec: Spec) -> Result:
    """Handler style: ``receive_batch()`` + ``Router.dispatch_batch()`` to a no-op handler."""
    import anyio
    from _feed import Envelope

    _, _, Router, Disconnected, _ = _native_imports()
    router = Router(Envelope)
    router.add_handler(Envelope, _ignore)
    events: list[object] = []
    router.add_event_handler(events.append)
    open_ = _opener(spec)
    clock = _Clock()
    got = 0
    with anyio.fail_after(spec.timeout):
        clock.start()
        async with open_() as session:
            while got < spec.n:
                got += router.dispatch_batch(await session.receive_batch())
            clock.stop()
    breaks = sum(isinstance(e, Disconnected) for e in events)
    return clock.result(got, parse_errors=router.statistics().parse_errors, disconnects=breaks)


# --------------------------------------------------------------------------- native-anyio: Backpack pipeline


async def _backpack(spec: Spec, *, batched: bool = False) -> Result:
    """
    The full Backpack pipeline: ``open_backpack(symbols, channels=("trades", "book"))`` and
    ``async for event in client`` (session, router, typed decode with Decimal prices, trade
    de-duplication, book sync from a REST snapshot, normalized events).

    It counts every event delivered. The run ends at the feed's last trade (the last frame, so every
    frame was processed); ``count`` is the frames the client processed (its statistics), and the
    event, book and sync counters are checked by the runner. ``batched=True`` iterates
    ``await client.receive_events()`` (a list per socket batch) instead of ``async for``, to show
    what the per-event ``__anext__`` costs.
    """
    import anyio
    import httpx

    from native_anyio.backpack import BackpackConfig, Trade, open_backpack

    # Imports before the clock, as for every client: httpx's first client imports httpcore, h11,
    # certifi (and trio, when installed) lazily, ~70 ms that would otherwise fall into the startup.
    # A transport without verification loads no certificates; the client's own SSL context is still
    # built inside the measurement.
    httpx.AsyncHTTPTransport(verify=False)

    meta = spec.meta
    expected_trades = meta["trades"]
    # The server holds the deltas until our snapshots were served (see _server.py).
    token = os.urandom(6).hex()
    ws_url = f"{spec.url}&token={token}&wait={len(meta['symbols'])}"
    config = BackpackConfig(ws_url=ws_url, rest_url=f"{spec.rest_url}/r/{token}")
    clock = _Clock()
    events = trades = 0
    with anyio.fail_after(spec.timeout):
        clock.start()
        async with open_backpack(config, symbols=meta["symbols"], channels=("trades", "book")) as client:
            if batched:
                receive = client.receive_events
                batch = await receive()
                first_event = time.perf_counter()
                while True:
                    for event in batch:
                        events += 1
                        if type(event) is Trade:
                            trades += 1
                    if trades >= expected_trades:
                        break
                    batch = await receive()
            else:
                iterator = client.__aiter__()
                first = await iterator.__anext__()
                first_event = time.perf_counter()
                events = 1
                trades = int(type(first) is Trade)
                async for event in iterator:
                    events += 1
                    if type(event) is Trade:
                        trades += 1
                        if trades == expected_trades:
                            break
            clock.stop()
            stats = client.statistics()
    books = dict(stats.book_statistics)
    return clock.result(
        stats.frames,
        events=events,
        trades=trades,
        book_events=events - trades,
        decode_errors=stats.decode_errors,
        duplicate_trades=stats.duplicate_trades,
        snapshots=stats.snapshots_requested,
        books_live=all(b.state == "live" for b in books.values()) and len(books) == len(meta["symbols"]),
        deltas_applied=sum(b.applied for b in books.values()),
        gaps=sum(b.gaps + b.resyncs + b.buffer_overflows for b in books.values()),
        startup_ms=1e3 * (first_event - clock.t0),
    )


# --------------------------------------------------------------------------- native-anyio: runner


def _run_native(fn: Callable[..., Any], backend: str, options: dict[str, Any]) -> Callable[[Spec], Result]:
    def run(spec: Spec) -> Result:
        import anyio

        return anyio.run(fn, spec, backend=backend, backend_options=options)  # type: ignore[no-any-return]

    return run


# --------------------------------------------------------------------------- asyncio peers


def _asyncio_run(coro_fn: Callable[..., Any], uvloop: bool) -> Callable[[Spec], Result]:
    def run(spec: Spec) -> Result:
        import asyncio

        factory = None
        if uvloop:
            import uvloop as _uvloop

            factory = _uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro_fn(spec), spec.timeout))  # type: ignore[no-any-return]

    return run


async def _picows(spec: Spec) -> Result:
    """The reference: picows' callback API, ``frame.get_payload_as_bytes()``, then the typed decode."""
    import asyncio

    from _feed import DECODER
    from picows import WSListener, WSMsgType, ws_connect

    decode = DECODER.decode
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    clock = _Clock()
    n = spec.n
    subscribe = spec.subscribe.encode()

    class Listener(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.count = 0

        def on_ws_connected(self, transport: Any) -> None:
            transport.send(WSMsgType.TEXT, subscribe)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                decode(frame.get_payload_as_bytes())
                self.count += 1
                if self.count == n:
                    clock.stop()
                    done.set_result(None)
            elif frame.msg_type == WSMsgType.CLOSE and not done.done():
                done.set_exception(RuntimeError(f"closed after {self.count} messages"))

        def on_ws_disconnected(self, transport: Any) -> None:
            if not done.done():
                done.set_exception(RuntimeError(f"disconnected after {self.count} messages"))

    context = spec.ssl_context()
    clock.start()
    transport, listener = await ws_connect(Listener, spec.url, ssl_context=context)
    try:
        await done
    finally:
        transport.disconnect()
        await transport.wait_disconnected()
    return clock.result(listener.count)


def _fetch_snapshots(spec: Spec, token: str) -> dict[str, Any]:
    """
    The REST depth snapshot of every feed symbol (``RestDepth``, decoded as the pipeline does), fetched
    over one keep-alive ``http.client`` connection under the server's token prefix (``/r/<token>``).
    """
    import http.client
    from urllib.parse import urlsplit

    from native_anyio.backpack._wire_rest import decode_depth

    parts = urlsplit(spec.rest_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=spec.timeout)
    snapshots: dict[str, Any] = {}
    try:
        for symbol in spec.meta["symbols"]:
            conn.request("GET", f"/r/{token}/api/v1/depth?symbol={symbol}&limit=1000")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"depth snapshot of {symbol}: HTTP {response.status}")
            snapshots[symbol] = decode_depth(body)
    finally:
        conn.close()
    return snapshots


async def _picows_backpack(spec: Spec, *, books: bool = False) -> Result:
    """
    The like-for-like peer of the full pipeline: picows' callback API, then the very decode the pipeline
    uses (``native_anyio.backpack._wire.decode_frame``: one pass into the Backpack wire structs, Decimal
    prices, validation). ``books=True`` also keeps a ``BookSync`` per symbol from its REST snapshot
    (fetched inside the clock, as the pipeline does) and applies every depth delta to it; no events,
    no trade de-duplication, no session machinery (reconnects, liveness, stale checks).
    """
    import asyncio

    from picows import WSListener, WSMsgType, ws_connect

    from native_anyio import BookSync
    from native_anyio.backpack._wire import WsDepth, decode_frame

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    clock = _Clock()
    n = spec.n
    subscribe = spec.subscribe.encode()
    url = spec.url
    syncs: dict[str, BookSync] = {}
    if books:
        token = os.urandom(6).hex()
        url = f"{spec.url}&token={token}&wait={len(spec.meta['symbols'])}"
    applied = [0]

    class Listener(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.count = 0

        def on_ws_connected(self, transport: Any) -> None:
            transport.send(WSMsgType.TEXT, subscribe)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                data = decode_frame(frame.get_payload_as_bytes()).data
                if books and type(data) is WsDepth:
                    out = syncs[data.symbol].on_delta(
                        data.first_update_id, data.last_update_id, data.bids, data.asks, 0.0
                    )
                    applied[0] += len(out.applied)
                self.count += 1
                if self.count == n:
                    clock.stop()
                    done.set_result(None)
            elif frame.msg_type == WSMsgType.CLOSE and not done.done():
                done.set_exception(RuntimeError(f"closed after {self.count} messages"))

        def on_ws_disconnected(self, transport: Any) -> None:
            if not done.done():
                done.set_exception(RuntimeError(f"disconnected after {self.count} messages"))

    context = spec.ssl_context()
    clock.start()
    if books:
        for symbol, depth in _fetch_snapshots(spec, token).items():
            sync = syncs[symbol] = BookSync()
            sync.on_snapshot(int(depth.last_update_id), depth.bids, depth.asks, 0.0)
    transport, listener = await ws_connect(Listener, url, ssl_context=context)
    try:
        await done
    finally:
        transport.disconnect()
        await transport.wait_disconnected()
    if not books:
        return clock.result(listener.count)
    stats = [s.statistics() for s in syncs.values()]
    return clock.result(
        listener.count,
        books_live=all(s.state == "live" for s in stats) and len(stats) == len(spec.meta["symbols"]),
        deltas_applied=sum(s.applied for s in stats),
        gaps=sum(s.gaps + s.resyncs + s.buffer_overflows for s in stats),
        book_applies=applied[0],
    )


async def _aiohttp(spec: Spec) -> Result:
    """aiohttp: ``await ws.receive()`` per message (a ``str``), then the typed decode."""
    import aiohttp
    from _feed import DECODER

    decode = DECODER.decode
    text = aiohttp.WSMsgType.TEXT
    context = spec.ssl_context()
    clock = _Clock()
    got = 0
    clock.start()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(spec.url, compress=0, max_msg_size=0, ssl=context if context else True) as ws,
    ):
        await ws.send_str(spec.subscribe)
        receive = ws.receive
        while got < spec.n:
            msg = await receive()
            if msg.type is not text:
                raise RuntimeError(f"unexpected {msg.type} after {got} messages")
            decode(msg.data)
            got += 1
        clock.stop()
    return clock.result(got)


async def _websockets(spec: Spec) -> Result:
    """websockets (new asyncio API): ``await ws.recv()`` per message (a ``str``), then the typed decode."""
    from _feed import DECODER
    from websockets.asyncio.client import connect

    decode = DECODER.decode
    context = spec.ssl_context()
    clock = _Clock()
    got = 0
    clock.start()
    async with connect(spec.url, compression=None, ping_interval=None, max_size=None, ssl=context) as ws:
        await ws.send(spec.subscribe)
        recv = ws.recv
        while got < spec.n:
            decode(await recv())
            got += 1
        clock.stop()
    return clock.result(got)


# --------------------------------------------------------------------------- cryptofeed-style peer


class _CfTrade:
    """Stands in for ``cryptofeed.types.Trade`` (a Cython class there; same fields, same arguments)."""

    __slots__ = ("amount", "exchange", "id", "price", "raw", "side", "symbol", "timestamp", "type")

    def __init__(
        self,
        exchange: str,
        symbol: str,
        side: str,
        amount: Any,
        price: Any,
        timestamp: float,
        id: str | None = None,
        type: str | None = None,
        raw: Any = None,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.side = side
        self.amount = amount
        self.price = price
        self.timestamp = timestamp
        self.id = id
        self.type = type
        self.raw = raw


class _CfBook:
    """Stands in for ``cryptofeed.types.OrderBook``: ``.book`` is cryptofeed's C ``order_book.OrderBook``."""

    __slots__ = ("book", "checksum", "delta", "exchange", "raw", "sequence_number", "symbol", "timestamp")

    def __init__(self, exchange: str, symbol: str, bids: dict[Any, Any], asks: dict[Any, Any]) -> None:
        from order_book import OrderBook

        self.exchange = exchange
        self.symbol = symbol
        self.book = OrderBook(max_depth=0)
        self.book.bids = bids
        self.book.asks = asks
        self.delta: dict[str, list[tuple[Any, Any]]] | None = None
        self.timestamp: float | None = None
        self.sequence_number: int | None = None
        self.checksum = None
        self.raw: Any = None


class _CryptofeedStyle:
    """
    What a cryptofeed feed does per message, written the way its exchange modules are (its Binance
    module is the template: ``message_handler``, ``_trade``, ``_book``, ``_check_update_id``,
    ``_snapshot``): ``json.loads(msg, parse_float=Decimal)``, dispatch on the stream's ``e``, ``Decimal()``
    of every price and size, a ``Trade`` object or a ``delta`` dict built per message, the C order book
    mutated in place, and ``await`` of the feed callback, then of the user's callback. On the first
    depth message of a symbol it fetches the REST snapshot inline (aiohttp, like cryptofeed's
    ``HTTPAsyncConn``), as cryptofeed does without ``concurrent_http``.
    """

    def __init__(self, rest_url: str, symbols: list[str], http: Any, on_trade: Any, on_book: Any) -> None:
        self.id = "BACKPACK"
        self.rest_url = rest_url
        self.http = http
        self.exchange_symbol_mapping = {s: s.replace("_", "-") for s in symbols}
        self.callbacks = {"trades": [on_trade], "l2_book": [on_book]}
        self._l2_book: dict[str, _CfBook] = {}
        self.last_update_id: dict[str, int] = {}
        self.resets = 0

    def exchange_symbol_to_std_symbol(self, symbol: str) -> str:
        return self.exchange_symbol_mapping[symbol]

    @staticmethod
    def timestamp_normalize(ts: int) -> float:
        return ts / 1_000_000.0

    async def callback(self, data_type: str, obj: Any, receipt_timestamp: float) -> None:
        for cb in self.callbacks[data_type]:
            await cb(obj, receipt_timestamp)

    async def message_handler(self, msg: str, conn: Any, timestamp: float) -> None:
        import json
        from decimal import Decimal

        msg = json.loads(msg, parse_float=Decimal)
        data = msg["data"]
        if data["e"] == "depth":
            await self._book(data, timestamp)
        elif data["e"] == "trade":
            await self._trade(data, timestamp)

    async def _trade(self, msg: dict[str, Any], timestamp: float) -> None:
        from decimal import Decimal

        t = _CfTrade(
            self.id,
            self.exchange_symbol_to_std_symbol(msg["s"]),
            "sell" if msg["m"] else "buy",
            Decimal(msg["q"]),
            Decimal(msg["p"]),
            self.timestamp_normalize(msg["T"]),
            id=str(msg["t"]),
            raw=msg,
        )
        await self.callback("trades", t, timestamp)

    async def _snapshot(self, pair: str) -> None:
        import json
        from decimal import Decimal

        url = f"{self.rest_url}/api/v1/depth?symbol={pair}&limit=1000"
        async with self.http.get(url) as response:
            resp = json.loads(await response.text(), parse_float=Decimal)
        std_pair = self.exchange_symbol_to_std_symbol(pair)
        self.last_update_id[std_pair] = int(resp["lastUpdateId"])
        self._l2_book[std_pair] = _CfBook(
            self.id,
            std_pair,
            bids={Decimal(u[0]): Decimal(u[1]) for u in resp["bids"]},
            asks={Decimal(u[0]): Decimal(u[1]) for u in resp["asks"]},
        )
        await self.book_callback(
            self._l2_book[std_pair], time.time(), sequence_number=int(resp["lastUpdateId"])
        )

    def _check_update_id(self, std_pair: str, msg: dict[str, Any]) -> bool:
        last = self.last_update_id[std_pair]
        if self._l2_book[std_pair].delta is None and msg["u"] <= last:
            return True
        if msg["U"] <= last + 1 <= msg["u"] or last + 1 == msg["U"]:
            self.last_update_id[std_pair] = msg["u"]
            return False
        self.resets += 1
        del self._l2_book[std_pair]
        return True

    async def _book(self, msg: dict[str, Any], timestamp: float) -> None:
        from decimal import Decimal

        pair = msg["s"]
        std_pair = self.exchange_symbol_to_std_symbol(pair)
        if std_pair not in self._l2_book:
            await self._snapshot(pair)
        if self._check_update_id(std_pair, msg):
            return
        book = self._l2_book[std_pair]
        delta: dict[str, list[tuple[Any, Any]]] = {"bid": [], "ask": []}
        for s, side in (("b", "bid"), ("a", "ask")):
            levels = book.book[side]
            for update in msg[s]:
                price = Decimal(update[0])
                amount = Decimal(update[1])
                if amount == 0:
                    if price in levels:
                        del levels[price]
                        delta[side].append((price, amount))
                else:
                    levels[price] = amount
                    delta[side].append((price, amount))
        await self.book_callback(
            book,
            timestamp,
            timestamp=self.timestamp_normalize(msg["T"]),
            raw=msg,
            delta=delta,
            sequence_number=self.last_update_id[std_pair],
        )

    async def book_callback(
        self,
        book: _CfBook,
        receipt_timestamp: float,
        timestamp: float | None = None,
        raw: Any = None,
        sequence_number: int | None = None,
        delta: Any = None,
    ) -> None:
        book.timestamp = timestamp
        book.raw = raw
        book.sequence_number = sequence_number
        book.delta = delta
        await self.callback("l2_book", book, receipt_timestamp)


async def _cryptofeed_style(spec: Spec) -> Result:
    """
    A cryptofeed-style client: websockets' ``async for`` (as ``WSAsyncConn.read``: count, stamp
    ``time.time()``), then :class:`_CryptofeedStyle`'s per-message handling into user callbacks.
    """
    import aiohttp
    from websockets.asyncio.client import connect

    counts = {"trades": 0, "books": 0}

    async def on_trade(trade: Any, receipt: float) -> None:
        counts["trades"] += 1

    async def on_book(book: Any, receipt: float) -> None:
        counts["books"] += 1

    context = spec.ssl_context()
    clock = _Clock()
    got = 0
    clock.start()
    async with aiohttp.ClientSession() as http:
        feed = _CryptofeedStyle(spec.rest_url, spec.meta["symbols"], http, on_trade, on_book)
        handler = feed.message_handler
        async with connect(spec.url, ping_interval=None, max_size=2**23, max_queue=None, ssl=context) as ws:
            await ws.send(spec.subscribe)
            async for data in ws:
                got += 1
                await handler(data, ws, time.time())
                if got == spec.n:
                    break
            clock.stop()
    return clock.result(
        got,
        trades=counts["trades"],
        book_events=counts["books"],
        gaps=feed.resets,
        snapshots=len(feed.last_update_id),
    )


# --------------------------------------------------------------------------- trio peer


def _trio_websocket(spec: Spec) -> Result:
    """trio-websocket with its defaults: ``await ws.get_message()`` per message, then the typed decode."""
    import trio
    from _feed import DECODER
    from trio_websocket import open_websocket_url

    decode = DECODER.decode

    context = spec.ssl_context()

    async def main() -> Result:
        clock = _Clock()
        got = 0
        with trio.fail_after(spec.timeout):
            clock.start()
            async with open_websocket_url(spec.url, ssl_context=context) as ws:
                await ws.send_message(spec.subscribe)
                get = ws.get_message
                while got < spec.n:
                    decode(await get())
                    got += 1
                clock.stop()
        return clock.result(got)

    return trio.run(main)


# --------------------------------------------------------------------------- registry


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@dataclass(frozen=True)
class Variant:
    """
    A client row.

    Attributes:
        run: the runner.
        divisor: the row receives ``N // divisor`` messages (slow peers get fewer).
        available: its libraries are importable.
        kind: ``session`` (our toolkit path), ``pipeline`` (our full Backpack client), ``peer``, or
            ``like`` (picows decoding into the pipeline's own Backpack structs: the like-for-like peer).
        default: run by default (the others need ``--all`` or ``--only``).
        backpack_only: needs the ``backpack`` feed (books and REST).
    """

    run: Callable[[Spec], Result]
    divisor: int
    available: bool
    kind: str
    default: bool = True
    backpack_only: bool = False


_HAVE_TRIO = _have("trio")
_HAVE_UVLOOP = _have("uvloop")

#: label -> variant. Labels name the path and the event loop.
VARIANTS: dict[str, Variant] = {
    "native-anyio backpack (asyncio)": Variant(
        _run_native(_backpack, "asyncio", {}), 1, True, "pipeline", backpack_only=True
    ),
    "native-anyio backpack (trio)": Variant(
        _run_native(_backpack, "trio", {}), 1, _HAVE_TRIO, "pipeline", backpack_only=True
    ),
    "native-anyio backpack (asyncio+uvloop)": Variant(
        _run_native(_backpack, "asyncio", {"use_uvloop": True}),
        1,
        _HAVE_UVLOOP,
        "pipeline",
        backpack_only=True,
    ),
    "native-anyio backpack receive_events (asyncio)": Variant(
        _run_native(functools.partial(_backpack, batched=True), "asyncio", {}),
        1,
        True,
        "pipeline",
        default=False,
        backpack_only=True,
    ),
    "native-anyio backpack receive_events (trio)": Variant(
        _run_native(functools.partial(_backpack, batched=True), "trio", {}),
        1,
        _HAVE_TRIO,
        "pipeline",
        default=False,
        backpack_only=True,
    ),
    "native-anyio session (asyncio)": Variant(_run_native(_native_batch, "asyncio", {}), 1, True, "session"),
    "native-anyio session (trio)": Variant(_run_native(_native_batch, "trio", {}), 1, _HAVE_TRIO, "session"),
    "native-anyio session (asyncio+uvloop)": Variant(
        _run_native(_native_batch, "asyncio", {"use_uvloop": True}), 1, _HAVE_UVLOOP, "session"
    ),
    "native-anyio decode_batch list (asyncio)": Variant(
        _run_native(functools.partial(_native_batch, as_list=True), "asyncio", {}), 1, True, "session", False
    ),
    "native-anyio decode_batch list (trio)": Variant(
        _run_native(functools.partial(_native_batch, as_list=True), "trio", {}),
        1,
        _HAVE_TRIO,
        "session",
        False,
    ),
    "native-anyio batch+decode (asyncio)": Variant(
        _run_native(_native_each, "asyncio", {}), 1, True, "session", False
    ),
    "native-anyio batch+decode (trio)": Variant(
        _run_native(_native_each, "trio", {}), 1, _HAVE_TRIO, "session", False
    ),
    "native-anyio dispatch_batch (asyncio)": Variant(
        _run_native(_native_dispatch, "asyncio", {}), 1, True, "session", False
    ),
    "native-anyio dispatch_batch (trio)": Variant(
        _run_native(_native_dispatch, "trio", {}), 1, _HAVE_TRIO, "session", False
    ),
    "native-anyio async-for (asyncio)": Variant(
        _run_native(_native_iter, "asyncio", {}), 1, True, "session", False
    ),
    "native-anyio async-for (trio)": Variant(
        _run_native(_native_iter, "trio", {}), 1, _HAVE_TRIO, "session", False
    ),
    "picows (asyncio)": Variant(_asyncio_run(_picows, uvloop=False), 1, _have("picows"), "peer"),
    "picows + Backpack structs (asyncio)": Variant(
        _asyncio_run(_picows_backpack, uvloop=False), 1, _have("picows"), "like", backpack_only=True
    ),
    "picows + Backpack structs + books (asyncio)": Variant(
        _asyncio_run(functools.partial(_picows_backpack, books=True), uvloop=False),
        1,
        _have("picows"),
        "like",
        backpack_only=True,
    ),
    "picows (uvloop)": Variant(
        _asyncio_run(_picows, uvloop=True), 1, _have("picows") and _HAVE_UVLOOP, "peer", False
    ),
    "aiohttp (asyncio)": Variant(_asyncio_run(_aiohttp, uvloop=False), 1, _have("aiohttp"), "peer"),
    "websockets (asyncio)": Variant(_asyncio_run(_websockets, uvloop=False), 2, _have("websockets"), "peer"),
    "trio-websocket (trio)": Variant(_trio_websocket, 8, _have("trio_websocket"), "peer"),
    "cryptofeed-style (websockets)": Variant(
        _asyncio_run(_cryptofeed_style, uvloop=False),
        4,
        _have("websockets") and _have("aiohttp") and _have("order_book"),
        "peer",
        backpack_only=True,
    ),
}


def main() -> None:
    _pin(0)
    label, raw = sys.argv[1], sys.argv[2]
    spec = Spec(**json.loads(raw))
    result = VARIANTS[label].run(spec)
    # ru_maxrss is KiB on Linux (bytes on macOS): the peak of the whole client process.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["rss_mib"] = peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
