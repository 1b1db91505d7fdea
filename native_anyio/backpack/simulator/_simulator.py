"""
The embedded Backpack simulator: a real websocket server and a real HTTP server on loopback,
sharing one seeded ground-truth market per symbol, with faults on demand.

Lifetime: :func:`open_simulator` owns every task (the accept loops, one task group per
connection, and three clocks: the market tick, the 200 ms depth aggregation and the 1 s
periodic streams); leaving it cancels them and closes every socket. All timing goes through
``anyio.sleep_until`` on ``anyio.current_time()``, so virtual clocks drive it; message
timestamps come from ``config.clock() + config.clock_offset``.

Exceptions: the body's own exception propagates unchanged. Background tasks do not raise for
client misbehaviour; a simulator bug in a connection task is collected and raised as an
``ExceptionGroup`` on exit.
"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, final

import anyio
import anyio.lowlevel
from anyio.abc import SocketAttribute

from ..._auth import generate_keypair
from ...testing._http import open_http_server
from ._account import Account
from ._commands import CommandHandler, SubscriptionRecord
from ._config import SimulatorConfig, spec_for
from ._faults import FaultController, FaultRecord
from ._hub import Hub
from ._market import Market
from ._numbers import to_decimal
from ._rest import RestApi
from ._verify import verify_ws
from ._wsserver import WsServer

if sys.version_info < (3, 11):  # pragma: no cover - exercised by the 3.10 CI session
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from decimal import Decimal

    from anyio.abc import TaskStatus

    from ._book import TruthBook
    from ._conn import Connection, ConnectionInfo
    from ._streams import StreamRef

__all__ = ["Simulator", "TradeInfo", "open_simulator", "serve_simulator"]


@final
@dataclass(frozen=True, slots=True)
class TradeInfo:
    """One trade the simulator emitted (``time`` is the engine time, µs)."""

    id: int
    price: Decimal
    qty: Decimal
    buyer_is_maker: bool
    time: int


@final
class Simulator:
    """
    A running simulator; created by :func:`open_simulator`.

    Attributes:
        config: the configuration it runs with.
        faults: the fault controller (see :class:`FaultController`).
        ws_url: ``ws://127.0.0.1:<port>``.
        rest_url: ``http://127.0.0.1:<port>``.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._secret, self._key = generate_keypair()
        self.faults = FaultController(lambda: self._ws.connections, config.now)
        self._hub = hub = Hub(self.faults)
        self._markets = {s: Market(spec_for(s, config.markets), config, hub) for s in config.symbols}
        self._closed = {
            s: replace(spec_for(s, config.markets), state="Closed") for s in config.closed_symbols
        }
        self._account = Account(self._markets, hub, config.seed, self.now_us)
        self._commands = CommandHandler(
            hub, self._verify_ws, self._on_subscribed, self._notify, config.max_subscriptions
        )
        self._ws = WsServer(config, self.faults, hub, self._commands, self._notify)
        self._rest = RestApi(
            config, self._markets, self._closed, self.faults, self._account, (self._key,), self.now_us
        )
        self._changed = anyio.Event()
        self.ws_url = ""
        self.rest_url = ""

    def __repr__(self) -> str:
        return f"<Simulator ws={self.ws_url} rest={self.rest_url}>"

    # -- identity and clocks -------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The base64 public key the simulator accepts (``X-API-Key``)."""
        return self._key

    @property
    def api_secret(self) -> str:
        """The base64 32-byte seed matching :attr:`api_key`."""
        return self._secret

    @property
    def symbols(self) -> tuple[str, ...]:
        """The open (simulated) markets."""
        return tuple(self._markets)

    def now_us(self) -> int:
        """The simulated server's wall clock in microseconds (``clock() + clock_offset``)."""
        return round(self.config.now() * 1_000_000)

    # -- ground truth --------------------------------------------------------------------------

    def _market(self, symbol: str) -> Market:
        try:
            return self._markets[symbol]
        except KeyError:
            raise KeyError(f"{symbol!r} is not a simulated open market") from None

    def book(self, symbol: str) -> TruthBook:
        """The ground truth of ``symbol`` after the last update sent on the socket."""
        return self._market(symbol).book()

    def book_at(self, symbol: str, update_id: int) -> TruthBook:
        """
        The ground truth of ``symbol`` right after ``update_id``.

        Raises:
            KeyError: not an open simulated market.
            LookupError: ``update_id`` is outside the retained history (``config.history``).
        """
        return self._market(symbol).book_at(update_id)

    def trades(self, symbol: str) -> tuple[TradeInfo, ...]:
        """The trades emitted so far (the last ``config.trade_history``), oldest first."""
        market = self._market(symbol)
        dp, ds = market.engine.dp, market.engine.ds
        return tuple(
            TradeInfo(t, to_decimal(p, dp), to_decimal(q, ds), m, us) for t, p, q, m, us in market.trades
        )

    def subscriptions(self, conn_id: int | None = None) -> tuple[SubscriptionRecord, ...]:
        """The SUBSCRIBE/UNSUBSCRIBE requests handled (of one connection, when given)."""
        return tuple(r for r in self._commands.log if conn_id in (None, r.conn_id))

    @property
    def connections(self) -> tuple[ConnectionInfo, ...]:
        """Snapshots of the open and the recently closed connections, by id."""
        return self._ws.infos()

    def connection(self, conn_id: int) -> ConnectionInfo:
        """The snapshot of one connection (KeyError when unknown or forgotten)."""
        for info in self._ws.infos():
            if info.id == conn_id:
                return info
        raise KeyError(conn_id)

    @property
    def fault_log(self) -> tuple[FaultRecord, ...]:
        """Every fault that took effect, in order."""
        return tuple(self.faults.log)

    # -- driving ---------------------------------------------------------------------------------

    async def step(self, symbol: str, n: int = 1) -> None:
        """
        Advance ``symbol`` by ``n`` updates now (deterministic for a seed) and queue their frames.

        A checkpoint. Meant for ``SimulatorConfig(auto=False)``; with ``auto`` it adds updates.

        Raises:
            KeyError: not an open simulated market.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        self._market(symbol).advance(n, self.now_us())
        await anyio.lowlevel.checkpoint()

    async def wait_connections(self, count: int) -> ConnectionInfo:
        """Wait until ``count`` connections were accepted in total; return the last of them."""
        await self._wait(lambda: self._ws.accepted >= count)
        return self.connection(count)

    async def wait_subscribed(self, stream: str, *, conn_id: int | None = None) -> None:
        """Wait until a connection (or ``conn_id``) is subscribed to ``stream``."""

        def done() -> bool:
            return any(
                stream in c.subscriptions for c in self._ws.connections.values() if conn_id in (None, c.id)
            )

        await self._wait(done)

    async def wait_closed(self, conn_id: int) -> ConnectionInfo:
        """Wait until connection ``conn_id`` has ended; return its final snapshot."""
        await self._wait(lambda: any(i.id == conn_id and not i.open for i in self._ws.closed))
        return self.connection(conn_id)

    async def _wait(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()
        await anyio.lowlevel.checkpoint()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _verify_ws(self, signature: object) -> bool:
        return verify_ws(
            signature,
            api_keys=(self._key,),
            now_ms=self.now_us() // 1000,
            window_max=self.config.signature_window_max,
        )

    def _on_subscribed(self, conn: Connection, ref: StreamRef) -> None:
        if ref.kind == "account.positionUpdate":
            self._account.send_positions(conn, ref.name, ref.symbol)

    # -- clocks ----------------------------------------------------------------------------------

    async def _run_market(self, start: float) -> None:
        interval, markets = self.config.tick_interval, self._markets
        done = dict.fromkeys(markets, 0)
        tick = 0
        while True:
            tick += 1
            await anyio.sleep_until(start + tick * interval)
            now = self.now_us()
            for symbol, market in markets.items():
                target = int(self.config.rate_of(symbol) * interval * tick + 1e-9)
                if target > done[symbol]:
                    market.advance(target - done[symbol], now)
                    done[symbol] = target

    async def _run_aggregates(self, start: float) -> None:
        tick = 0
        while True:
            tick += 1
            await anyio.sleep_until(start + tick * 0.2)
            now = self.now_us()
            for market in self._markets.values():
                market.flush_aggregate("200ms", now)
                if tick % 3 == 0:
                    market.flush_aggregate("600ms", now)
                if tick % 5 == 0:
                    market.flush_aggregate("1000ms", now)

    async def _run_seconds(self, start: float) -> None:
        second = 0
        while True:
            second += 1
            await anyio.sleep_until(start + second)
            now = self.now_us()
            for market in self._markets.values():
                market.publish_second(second, now)
                market.publish_klines(now)


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@asynccontextmanager
async def open_simulator(config: SimulatorConfig | None = None) -> AsyncIterator[Simulator]:
    """
    Run a simulator for the duration of the ``async with``.

    Args:
        config: the configuration (default :class:`SimulatorConfig()`).

    Raises:
        OSError: a port could not be bound.
        ExceptionGroup: on exit, a REST handler or a connection task hit a simulator bug (each
            REST failure was answered with a 500).
    """
    sim = Simulator(config or SimulatorConfig())
    cfg = sim.config
    async with open_http_server(sim._rest.handle, host=cfg.host, port=cfg.rest_port, record=False) as http:
        listener = await anyio.create_tcp_listener(local_host=cfg.host, local_port=cfg.ws_port)
        async with listener:
            sim.ws_url = _url("ws", cfg.host, listener.extra(SocketAttribute.local_port))
            sim.rest_url = _url("http", cfg.host, http.port)
            try:
                async with anyio.create_task_group() as tg:
                    start = anyio.current_time()
                    tg.start_soon(listener.serve, sim._ws.serve, tg)
                    tg.start_soon(sim._run_aggregates, start)
                    tg.start_soon(sim._run_seconds, start)
                    if cfg.auto:
                        tg.start_soon(sim._run_market, start)
                    try:
                        yield sim
                    finally:
                        tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # Background tasks never raise for client behaviour, so a lone exception is the
                # body's own: re-raise it unchanged (the same contract as open_http_server).
                if len(group.exceptions) != 1:
                    raise
                exc = group.exceptions[0]
                try:
                    raise exc
                finally:
                    del exc
    if sim._ws.errors:
        raise ExceptionGroup("the simulator hit a bug", sim._ws.errors)


async def serve_simulator(
    config: SimulatorConfig | None = None, *, task_status: TaskStatus[Simulator] = anyio.TASK_STATUS_IGNORED
) -> None:
    """
    Run a simulator until cancelled; ``task_status.started(sim)`` once both ports listen.

    Use with ``sim = await tg.start(serve_simulator, config)``.

    Raises:
        OSError: a port could not be bound.
    """
    async with open_simulator(config) as sim:
        task_status.started(sim)
        await anyio.sleep_forever()
