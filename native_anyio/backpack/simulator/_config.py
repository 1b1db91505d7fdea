"""
Configuration of the embedded Backpack simulator: the markets it lists and its knobs.

Every duration is in seconds of ``anyio.current_time()`` (so virtual clocks apply); wall-clock
values that end up in messages (``E``/``T``, REST timestamps, signature windows) come from
``clock() + clock_offset``, which tests can replace (:func:`virtual_wall_clock`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, final

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "DEFAULT_CLOSED_SYMBOLS",
    "DEFAULT_SYMBOLS",
    "MarketSpec",
    "SimulatorConfig",
    "spec_for",
    "virtual_wall_clock",
]


@final
@dataclass(frozen=True, slots=True)
class MarketSpec:
    """
    One simulated market.

    Attributes:
        symbol: the market id, e.g. ``"SOL_USDC"`` or ``"AAPL.US_USDC_PERP"``.
        base: base asset, e.g. ``"SOL"``.
        quote: quote asset.
        market_type: ``"SPOT"`` or ``"PERP"`` (perps also publish markPrice, openInterest and
            liquidations).
        tick_size: price increment; prices on the socket are padded to it.
        step_size: quantity increment; sizes on the socket are padded to it.
        price: the initial mid price.
        state: ``orderBookState`` (``"Open"`` markets trade; others are listed but silent).
    """

    symbol: str
    base: str
    quote: str = "USDC"
    market_type: Literal["SPOT", "PERP"] = "SPOT"
    tick_size: Decimal = Decimal("0.01")
    step_size: Decimal = Decimal("0.01")
    price: Decimal = Decimal("100")
    state: str = "Open"

    @property
    def is_perp(self) -> bool:
        """Whether the market is a perpetual future."""
        return self.market_type == "PERP"


def _spec(symbol: str, kind: Literal["SPOT", "PERP"], tick: str, step: str, price: str) -> MarketSpec:
    base, quote = symbol.split("_")[:2]
    return MarketSpec(symbol, base, quote, kind, Decimal(tick), Decimal(step), Decimal(price))


_KNOWN: dict[str, MarketSpec] = {
    spec.symbol: spec
    for spec in (
        _spec("SOL_USDC", "SPOT", "0.01", "0.01", "100"),
        _spec("BTC_USDC", "SPOT", "0.1", "0.00001", "86000"),
        _spec("ETH_USDC", "SPOT", "0.01", "0.0001", "2760"),
        _spec("SOL_USDC_PERP", "PERP", "0.01", "0.01", "100"),
        _spec("BTC_USDC_PERP", "PERP", "0.1", "0.00001", "86000"),
        _spec("ETH_USDC_PERP", "PERP", "0.01", "0.0001", "2760"),
        _spec("AAPL.US_USDC_PERP", "PERP", "0.01", "0.001", "230"),
        _spec("kPEPE_USDC_PERP", "PERP", "0.000001", "1", "0.012"),
        _spec("TON_USDC_PERP", "PERP", "0.0001", "0.1", "3.1"),
    )
}

#: Symbols simulated by default: a spot, perps, a dotted equity perp and a lowercase prefix.
DEFAULT_SYMBOLS: tuple[str, ...] = (
    "SOL_USDC",
    "BTC_USDC_PERP",
    "SOL_USDC_PERP",
    "AAPL.US_USDC_PERP",
    "kPEPE_USDC_PERP",
)
#: Markets listed by ``/api/v1/markets`` as ``Closed``: subscriptions are accepted, nothing is sent.
DEFAULT_CLOSED_SYMBOLS: tuple[str, ...] = ("TON_USDC_PERP",)


def spec_for(symbol: str, overrides: tuple[MarketSpec, ...] = ()) -> MarketSpec:
    """
    The spec of ``symbol``: an override, a built-in one, or one derived from the name.

    A derived spec is a perp when the symbol ends in ``_PERP``, priced around 100 with 0.01
    ticks and steps.
    """
    for spec in overrides:
        if spec.symbol == symbol:
            return spec
    if symbol in _KNOWN:
        return _KNOWN[symbol]
    parts = symbol.split("_")
    quote = parts[1] if len(parts) > 1 and parts[1] else "USDC"
    kind: Literal["SPOT", "PERP"] = "PERP" if symbol.endswith("_PERP") else "SPOT"
    return MarketSpec(symbol, parts[0] or symbol, quote, kind)


def virtual_wall_clock(epoch: float = 1_788_000_000.0) -> Callable[[], float]:
    """
    A wall clock that follows ``anyio.current_time()``, for runs under a virtual clock.

    Returns ``epoch + anyio.current_time()``: candles close and signature windows expire as
    virtual time passes. Call it only inside the event loop.
    """

    def clock() -> float:
        return epoch + anyio.current_time()

    return clock


@final
@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """
    Everything the simulator can be told at start.

    Attributes:
        symbols: the open markets to simulate.
        closed_symbols: markets listed with ``orderBookState: "Closed"`` (silent on the socket).
        markets: :class:`MarketSpec` overrides (tick, step, price...) by symbol.
        seed: seeds every random choice; the same seed gives the same market.
        auto: advance the markets with time (every ``tick_interval``); with ``False`` only
            :meth:`Simulator.step` changes a book.
        tick_interval: seconds between two market ticks when ``auto``.
        update_rate: book updates per second per symbol when ``auto``.
        update_rates: per-symbol overrides of ``update_rate``.
        realtime_merge_chance: probability that a realtime depth frame also carries the next
            update (``U < u``), as Backpack does under load.
        open_interest_interval: seconds between openInterest frames (Backpack: 60; whole seconds).
        ping_interval: seconds between server pings (``None``: never ping).
        pong_timeout: close a connection (1011) when a ping is unanswered this long.
        close_grace: after a server close frame, seconds to wait for the client's before dropping.
        signature_window_max: largest accepted receive window, milliseconds.
        clock: wall clock (seconds since the epoch) for message timestamps and signature checks.
        clock_offset: seconds added to ``clock()``: the simulated server's skew.
        rest_rate_limit: requests per minute before REST answers 429 (``None``: unlimited).
        host: interface to listen on.
        ws_port: websocket port (0: ephemeral).
        rest_port: REST port (0: ephemeral).
        history: update ids per symbol kept for :meth:`Simulator.book_at`.
        trade_history: trades per symbol kept for :meth:`Simulator.trades` and REST.
        max_connections: open websocket connections; more get HTTP 503.
        max_subscriptions: streams one connection may subscribe to; more are ignored.
        max_outbox: frames queued for one connection before it is dropped as a slow consumer.
        max_message_size: largest client message, bytes (larger: close 1009).
    """

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    closed_symbols: tuple[str, ...] = DEFAULT_CLOSED_SYMBOLS
    markets: tuple[MarketSpec, ...] = ()
    seed: int = 0
    auto: bool = True
    tick_interval: float = 0.05
    update_rate: float = 100.0
    update_rates: Mapping[str, float] = field(default_factory=dict, hash=False)
    realtime_merge_chance: float = 0.02
    open_interest_interval: float = 60.0
    ping_interval: float | None = 60.0
    pong_timeout: float | None = 120.0
    close_grace: float = 30.0
    signature_window_max: int = 60000
    clock: Callable[[], float] = time.time
    clock_offset: float = 0.0
    rest_rate_limit: int | None = None
    host: str = "127.0.0.1"
    ws_port: int = 0
    rest_port: int = 0
    history: int = 100_000
    trade_history: int = 10_000
    max_connections: int = 256
    max_subscriptions: int = 10_000
    max_outbox: int = 65536
    max_message_size: int = 1 << 20

    def __post_init__(self) -> None:
        names = (*self.symbols, *self.closed_symbols)
        if not self.symbols or len(set(names)) != len(names) or not all(names):
            raise ValueError("symbols must be non-empty, unique and disjoint from closed_symbols")
        for name in ("tick_interval", "update_rate", "close_grace"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("ping_interval", "pong_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None")
        if not 0.0 <= self.realtime_merge_chance <= 1.0:
            raise ValueError("realtime_merge_chance must be within 0..1")
        for name in (
            "signature_window_max",
            "history",
            "trade_history",
            "max_connections",
            "max_subscriptions",
            "max_outbox",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    def rate_of(self, symbol: str) -> float:
        """Book updates per second for ``symbol`` when ``auto``."""
        return float(self.update_rates.get(symbol, self.update_rate))

    def now(self) -> float:
        """The simulated server's wall clock, seconds since the epoch."""
        return self.clock() + self.clock_offset
