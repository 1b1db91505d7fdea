"""
The client variants of the end-to-end benchmark, one per process.

``python benchmarks/_clients.py VARIANT URL N TIMEOUT`` pins itself to CPU 0 (when the machine has two
or more CPUs), connects to the feed server, sends one SUBSCRIBE, receives N messages, decodes each one
into the :mod:`_feed` structs, and prints one ``RESULT {json}`` line with the wall time and the process
CPU time of that work. The clock starts *before* the connect (our session connects and subscribes in one
call, so the connect is inside the measurement for every variant alike; it is ~1 ms of a ~0.4 s run).

Every variant is bounded by ``TIMEOUT`` seconds (a cancel scope / ``wait_for``), and the runner adds a
process-level timeout on top.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.dirname(_HERE))  # the repository root, for native_anyio

SUBSCRIBE = '{"method":"SUBSCRIBE","params":["feed.mix"]}'

Result = dict[str, Any]


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


# --------------------------------------------------------------------------- native-anyio


def _native_imports() -> tuple[Any, Any, Any, Any]:
    try:  # the public names, once native_anyio/__init__.py re-exports them
        from native_anyio import Disconnected, Router, SessionConfig, open_session
    except ImportError:
        from native_anyio._router import Router
        from native_anyio._session import Disconnected, SessionConfig, open_session
    return open_session, SessionConfig, Router, Disconnected


async def _native_batch(url: str, n: int, timeout: float, *, as_list: bool = False) -> Result:
    """
    The documented fast path: ``receive_batch()`` + ``Router.iter_decode()`` (one decoded message
    alive at a time). ``as_list=True`` uses ``Router.decode_batch()`` instead, to show what holding
    a whole batch of structs alive costs in GC time.
    """
    import anyio
    from _feed import Envelope

    open_session, SessionConfig, Router, Disconnected = _native_imports()
    router = Router(Envelope)
    events: list[object] = []
    router.add_event_handler(events.append)
    clock = _Clock()
    got = 0
    with anyio.fail_after(timeout):
        clock.start()
        async with open_session(url, subscriptions=["feed.mix"], config=SessionConfig(seed=0)) as session:
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


async def _native_iter(url: str, n: int, timeout: float) -> Result:
    """The per-item API: ``async for item in session`` + ``Router.decode(item)``."""
    import anyio
    from _feed import Envelope

    open_session, SessionConfig, Router, Disconnected = _native_imports()
    router = Router(Envelope)
    decode = router.decode
    clock = _Clock()
    got = 0
    breaks = 0
    with anyio.fail_after(timeout):
        clock.start()
        async with open_session(url, subscriptions=["feed.mix"], config=SessionConfig(seed=0)) as session:
            async for item in session:
                if type(item) is bytes:
                    decode(item)
                    got += 1
                    if got >= n:
                        break
                elif isinstance(item, Disconnected):
                    breaks += 1
            clock.stop()
    return clock.result(got, parse_errors=router.statistics().parse_errors, disconnects=breaks)


async def _native_each(url: str, n: int, timeout: float) -> Result:
    """``receive_batch()``, then ``Router.decode(item)`` per payload in a plain loop (nothing retained)."""
    import anyio
    from _feed import Envelope

    open_session, SessionConfig, Router, Disconnected = _native_imports()
    router = Router(Envelope)
    decode = router.decode
    clock = _Clock()
    got = 0
    breaks = 0
    with anyio.fail_after(timeout):
        clock.start()
        async with open_session(url, subscriptions=["feed.mix"], config=SessionConfig(seed=0)) as session:
            while got < n:
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


async def _native_dispatch(url: str, n: int, timeout: float) -> Result:
    """Handler style: ``receive_batch()`` + ``Router.dispatch_batch()`` to a no-op handler."""
    import anyio
    from _feed import Envelope

    open_session, SessionConfig, Router, Disconnected = _native_imports()
    router = Router(Envelope)
    router.add_handler(Envelope, _ignore)
    events: list[object] = []
    router.add_event_handler(events.append)
    clock = _Clock()
    got = 0
    with anyio.fail_after(timeout):
        clock.start()
        async with open_session(url, subscriptions=["feed.mix"], config=SessionConfig(seed=0)) as session:
            while got < n:
                got += router.dispatch_batch(await session.receive_batch())
            clock.stop()
    breaks = sum(isinstance(e, Disconnected) for e in events)
    return clock.result(got, parse_errors=router.statistics().parse_errors, disconnects=breaks)


def _run_native(fn: Callable[..., Any], backend: str, options: dict[str, Any]) -> Callable[..., Result]:
    def run(url: str, n: int, timeout: float) -> Result:
        import anyio

        return anyio.run(fn, url, n, timeout, backend=backend, backend_options=options)

    return run


# --------------------------------------------------------------------------- asyncio peers


def _asyncio_run(coro_fn: Callable[..., Any], uvloop: bool) -> Callable[..., Result]:
    def run(url: str, n: int, timeout: float) -> Result:
        import asyncio

        factory = None
        if uvloop:
            import uvloop as _uvloop

            factory = _uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro_fn(url, n), timeout))  # type: ignore[no-any-return]

    return run


async def _picows(url: str, n: int) -> Result:
    """The reference: picows' callback API, ``frame.get_payload_as_bytes()``, then the typed decode."""
    import asyncio

    from _feed import DECODER
    from picows import WSListener, WSMsgType, ws_connect

    decode = DECODER.decode
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    clock = _Clock()

    class Listener(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.count = 0

        def on_ws_connected(self, transport: Any) -> None:
            transport.send(WSMsgType.TEXT, SUBSCRIBE.encode())

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

    clock.start()
    transport, listener = await ws_connect(Listener, url)
    try:
        await done
    finally:
        transport.disconnect()
        await transport.wait_disconnected()
    return clock.result(listener.count)


async def _aiohttp(url: str, n: int) -> Result:
    """aiohttp: ``await ws.receive()`` per message (a ``str``), then the typed decode."""
    import aiohttp
    from _feed import DECODER

    decode = DECODER.decode
    text = aiohttp.WSMsgType.TEXT
    clock = _Clock()
    got = 0
    clock.start()
    async with aiohttp.ClientSession() as http, http.ws_connect(url, compress=0, max_msg_size=0) as ws:
        await ws.send_str(SUBSCRIBE)
        receive = ws.receive
        while got < n:
            msg = await receive()
            if msg.type is not text:
                raise RuntimeError(f"unexpected {msg.type} after {got} messages")
            decode(msg.data)
            got += 1
        clock.stop()
    return clock.result(got)


async def _websockets(url: str, n: int) -> Result:
    """websockets (new asyncio API): ``await ws.recv()`` per message (a ``str``), then the typed decode."""
    from _feed import DECODER
    from websockets.asyncio.client import connect

    decode = DECODER.decode
    clock = _Clock()
    got = 0
    clock.start()
    async with connect(url, compression=None, ping_interval=None, max_size=None) as ws:
        await ws.send(SUBSCRIBE)
        recv = ws.recv
        while got < n:
            decode(await recv())
            got += 1
        clock.stop()
    return clock.result(got)


# --------------------------------------------------------------------------- trio peer


def _trio_websocket(url: str, n: int, timeout: float) -> Result:
    """trio-websocket with its defaults: ``await ws.get_message()`` per message, then the typed decode."""
    import trio
    from _feed import DECODER
    from trio_websocket import open_websocket_url

    decode = DECODER.decode

    async def main() -> Result:
        clock = _Clock()
        got = 0
        with trio.fail_after(timeout):
            clock.start()
            async with open_websocket_url(url) as ws:
                await ws.send_message(SUBSCRIBE)
                get = ws.get_message
                while got < n:
                    decode(await get())
                    got += 1
                clock.stop()
        return clock.result(got)

    return trio.run(main)


# --------------------------------------------------------------------------- registry


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


#: label -> (runner, message-count divisor, importable?)
VARIANTS: dict[str, tuple[Callable[[str, int, float], Result], int, bool]] = {
    "native-anyio (asyncio)": (_run_native(_native_batch, "asyncio", {}), 1, True),
    "native-anyio (trio)": (_run_native(_native_batch, "trio", {}), 1, _have("trio")),
    "native-anyio (asyncio+uvloop)": (
        _run_native(_native_batch, "asyncio", {"use_uvloop": True}),
        1,
        _have("uvloop"),
    ),
    "native-anyio decode_batch list (asyncio)": (
        _run_native(functools.partial(_native_batch, as_list=True), "asyncio", {}),
        1,
        True,
    ),
    "native-anyio decode_batch list (trio)": (
        _run_native(functools.partial(_native_batch, as_list=True), "trio", {}),
        1,
        _have("trio"),
    ),
    "native-anyio batch+decode (asyncio)": (_run_native(_native_each, "asyncio", {}), 1, True),
    "native-anyio batch+decode (trio)": (_run_native(_native_each, "trio", {}), 1, _have("trio")),
    "native-anyio dispatch_batch (asyncio)": (_run_native(_native_dispatch, "asyncio", {}), 1, True),
    "native-anyio dispatch_batch (trio)": (_run_native(_native_dispatch, "trio", {}), 1, _have("trio")),
    "native-anyio async-for (asyncio)": (_run_native(_native_iter, "asyncio", {}), 1, True),
    "native-anyio async-for (trio)": (_run_native(_native_iter, "trio", {}), 1, _have("trio")),
    "picows (asyncio)": (_asyncio_run(_picows, uvloop=False), 1, _have("picows")),
    "picows (uvloop)": (_asyncio_run(_picows, uvloop=True), 1, _have("picows") and _have("uvloop")),
    "aiohttp (asyncio)": (_asyncio_run(_aiohttp, uvloop=False), 1, _have("aiohttp")),
    "websockets (asyncio)": (_asyncio_run(_websockets, uvloop=False), 2, _have("websockets")),
    "trio-websocket (trio)": (_trio_websocket, 8, _have("trio_websocket")),
}


def main() -> None:
    _pin(0)
    label, url, n, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    run = VARIANTS[label][0]
    result = run(url, n, timeout)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
