"""
A TTL-aware, single-flight cache of a venue's markets, subclassed by each exchange.

Rules:

* the catalogue is loaded on first use and reloaded on use once it is ``ttl`` seconds old
  (``anyio.current_time()``; the age counts from the end of the fetch that produced it);
* concurrent callers share one fetch (single-flight): whoever finds the catalogue expired takes a
  lock and fetches in its own task; callers queued on the lock then take the outcome of the attempt
  that completed while they waited (the same data, or the same exception) instead of fetching again.
  If the fetching task is cancelled, no attempt completed, so the next queued caller fetches;
* a failed refresh keeps serving the last good catalogue (``stale``; health ``degraded``) and is
  retried on use after ``retry_interval`` seconds; the next success clears the failure (health
  ``ok``). With no good catalogue at all, the error propagates to the caller;
* a raw record that a subclass hook rejects by raising is skipped and counted (``rejected``), so one
  odd market cannot block the rest; a normalized symbol listed twice fails the refresh.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Generic, TypeVar, final

import anyio
import anyio.lowlevel

from ._errors import NativeError, RemoteProtocolError
from ._health import Health, HealthStatus, emit

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from ._health import Instrumentation

__all__ = ["SymbolService", "SymbolStatistics", "UnknownSymbolError"]

RawT = TypeVar("RawT")
MarketT = TypeVar("MarketT")


class UnknownSymbolError(NativeError, LookupError):
    """
    The symbol is neither a normalized nor an exchange symbol of a listed market.

    Attributes:
        symbol: the symbol that was looked up.
    """

    def __init__(self, symbol: str, *, exchange: str | None = None) -> None:
        super().__init__(f"unknown symbol {symbol!r}", exchange=exchange)
        self.symbol = symbol


@final
@dataclass(frozen=True, slots=True)
class SymbolStatistics:
    """
    A snapshot of a :class:`SymbolService`.

    Attributes:
        loaded: a catalogue has been loaded at least once.
        markets: number of markets in the current catalogue.
        age: seconds since the current catalogue was loaded (``None`` if never loaded).
        expired: the catalogue is older than the TTL (it is reloaded on next use).
        stale: the last refresh failed and the previous catalogue is being served.
        refreshes: successful refreshes.
        failures: failed refreshes.
        consecutive_failures: failed refreshes since the last success.
        rejected: raw records skipped by the last successful refresh.
        last_error: ``"Type: message"`` of the last failure since the last success, else ``None``.
    """

    loaded: bool
    markets: int
    age: float | None
    expired: bool
    stale: bool
    refreshes: int
    failures: int
    consecutive_failures: int
    rejected: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class _Catalogue(Generic[MarketT]):
    markets: Mapping[str, MarketT]  # normalized symbol -> market
    aliases: Mapping[str, str]  # exchange symbol -> normalized symbol
    exchange_symbols: Mapping[str, str]  # normalized symbol -> exchange symbol
    loaded_at: float
    rejected: int


class SymbolService(abc.ABC, Generic[RawT, MarketT]):
    """
    Cache of a venue's markets with lookups by normalized or exchange symbol.

    Subclasses implement :meth:`fetch_markets`, :meth:`normalize_symbol`, :meth:`exchange_symbol`
    and :meth:`build_market`, and may override :meth:`include_market`. Not ``@final``: it exists to
    be subclassed.

    Args:
        ttl: seconds a catalogue stays fresh.
        retry_interval: after a failed refresh, seconds to keep serving the stale catalogue before
            trying again.
        exchange: venue name, attached to errors.
        hooks: instrumentation hooks; they receive ``refresh`` and ``refresh_failed`` events.
    """

    source = "symbols"

    def __init__(
        self,
        *,
        ttl: float = 3600.0,
        retry_interval: float = 30.0,
        exchange: str | None = None,
        hooks: Iterable[Instrumentation] = (),
    ) -> None:
        if ttl <= 0 or retry_interval < 0:
            raise ValueError("ttl must be > 0 and retry_interval >= 0")
        self.ttl = ttl
        self.retry_interval = retry_interval
        self.exchange = exchange
        self._hooks = tuple(hooks)
        self._lock = anyio.Lock()
        self._catalogue: _Catalogue[MarketT] | None = None
        self._attempts = 0  # completed refresh attempts, successful or not
        self._refreshes = 0
        self._failures = 0
        self._consecutive_failures = 0
        self._failed_at: float | None = None
        self._error: BaseException | None = None
        self._error_tb: TracebackType | None = None

    # -- subclass hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    async def fetch_markets(self) -> Iterable[RawT]:
        """Fetch the venue's raw market records (one REST call, typically)."""

    def include_market(self, raw: RawT) -> bool:
        """Whether to list this record (default: all)."""
        return True

    @abc.abstractmethod
    def normalize_symbol(self, raw: RawT) -> str:
        """The normalized symbol of a record, e.g. ``"BTC-USDC-PERP"``."""

    @abc.abstractmethod
    def exchange_symbol(self, raw: RawT) -> str:
        """The venue's own symbol of a record, e.g. ``"BTC_USDC_PERP"``."""

    @abc.abstractmethod
    def build_market(self, raw: RawT) -> MarketT:
        """Build the market record for a raw record."""

    # -- public API -----------------------------------------------------------------------------

    async def market(self, symbol: str) -> MarketT:
        """
        The market for a normalized or exchange symbol, loading or refreshing the catalogue first
        when it has expired. Always a checkpoint.

        Raises:
            UnknownSymbolError: no listed market has this symbol.
            Exception: whatever :meth:`fetch_markets` raised, when no catalogue was ever loaded.
        """
        return self._lookup(await self._current(), symbol)

    def market_nowait(self, symbol: str) -> MarketT:
        """
        The market for a symbol from the catalogue as it is, even if expired; never fetches.

        Raises:
            anyio.WouldBlock: no catalogue has been loaded yet.
            UnknownSymbolError: no listed market has this symbol.
        """
        if self._catalogue is None:
            raise anyio.WouldBlock
        return self._lookup(self._catalogue, symbol)

    async def markets(self) -> Mapping[str, MarketT]:
        """
        All markets by normalized symbol (a read-only view), loading or refreshing first if needed.

        Raises:
            Exception: whatever :meth:`fetch_markets` raised, when no catalogue was ever loaded.
        """
        return (await self._current()).markets

    async def exchange_symbol_of(self, symbol: str) -> str:
        """
        The exchange symbol for a normalized or exchange symbol.

        Raises:
            UnknownSymbolError: no listed market has this symbol.
            Exception: whatever :meth:`fetch_markets` raised, when no catalogue was ever loaded.
        """
        catalogue = await self._current()
        return catalogue.exchange_symbols[self._normalized(catalogue, symbol)]

    async def normalized_symbol_of(self, symbol: str) -> str:
        """
        The normalized symbol for a normalized or exchange symbol.

        Raises:
            UnknownSymbolError: no listed market has this symbol.
            Exception: whatever :meth:`fetch_markets` raised, when no catalogue was ever loaded.
        """
        return self._normalized(await self._current(), symbol)

    async def refresh(self) -> None:
        """
        Reload the catalogue now. A caller queued behind a refresh in progress shares its outcome.

        Raises:
            Exception: whatever :meth:`fetch_markets` raised (also when a stale catalogue is kept).
        """
        seen = self._attempts
        async with self._lock:
            if self._attempts != seen:
                self._raise_if_failed()
                return
            await self._load()
            self._raise_if_failed()

    def statistics(self) -> SymbolStatistics:
        """A snapshot of the cache state. Must be called inside the event loop (it reads its clock)."""
        catalogue = self._catalogue
        age = None if catalogue is None else anyio.current_time() - catalogue.loaded_at
        return SymbolStatistics(
            loaded=catalogue is not None,
            markets=0 if catalogue is None else len(catalogue.markets),
            age=age,
            expired=age is not None and age >= self.ttl,
            stale=catalogue is not None and self._error is not None,
            refreshes=self._refreshes,
            failures=self._failures,
            consecutive_failures=self._consecutive_failures,
            rejected=0 if catalogue is None else catalogue.rejected,
            last_error=None if self._error is None else _describe(self._error),
        )

    def health(self) -> Health:
        """``ok``; ``degraded`` while serving a stale catalogue after a failed refresh; ``unhealthy`` if
        never loaded."""
        stats = self.statistics()
        findings: list[tuple[HealthStatus, str]] = []
        if not stats.loaded:
            detail = f": {stats.last_error}" if stats.last_error else ""
            findings.append(("unhealthy", f"symbols never loaded{detail}"))
        elif stats.stale:
            findings.append(("degraded", f"serving stale symbols after a failed refresh: {stats.last_error}"))
        return Health.from_findings(findings)

    # -- internals ------------------------------------------------------------------------------

    def _usable(self, catalogue: _Catalogue[MarketT] | None) -> bool:
        if catalogue is None:
            return False
        now = anyio.current_time()
        if now - catalogue.loaded_at < self.ttl:
            return True
        return self._failed_at is not None and now - self._failed_at < self.retry_interval

    async def _current(self) -> _Catalogue[MarketT]:
        seen = self._attempts
        if self._usable(self._catalogue):
            await anyio.lowlevel.checkpoint()
        else:
            async with self._lock:
                # An attempt completed while we queued: share its outcome rather than fetch again.
                if self._attempts == seen and not self._usable(self._catalogue):
                    await self._load()
        if self._catalogue is None:
            self._raise_if_failed()
        assert self._catalogue is not None  # a completed attempt either loaded or recorded an error
        return self._catalogue

    async def _load(self) -> None:
        """One refresh attempt; the caller holds the lock. Records the outcome, never raises it."""
        try:
            catalogue = self._build(await self.fetch_markets())
        except Exception as exc:
            self._record_failure(exc)
        else:
            self._catalogue = catalogue
            self._attempts += 1
            self._refreshes += 1
            self._consecutive_failures = 0
            self._failed_at = self._error = self._error_tb = None
            emit(
                self._hooks,
                self.source,
                "refresh",
                markets=len(catalogue.markets),
                rejected=catalogue.rejected,
            )

    def _record_failure(self, exc: Exception) -> None:
        self._attempts += 1
        self._failures += 1
        self._consecutive_failures += 1
        self._failed_at = anyio.current_time()
        self._error, self._error_tb = exc, exc.__traceback__
        emit(
            self._hooks,
            self.source,
            "refresh_failed",
            error=_describe(exc),
            stale=self._catalogue is not None,
            consecutive_failures=self._consecutive_failures,
        )

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            # The same exception for every caller, each time with the original fetch traceback.
            raise self._error.with_traceback(self._error_tb)

    def _build(self, records: Iterable[RawT]) -> _Catalogue[MarketT]:
        markets: dict[str, MarketT] = {}
        aliases: dict[str, str] = {}
        rejected = 0
        for raw in records:
            try:
                if not self.include_market(raw):
                    continue
                symbol, native, market = (
                    self.normalize_symbol(raw),
                    self.exchange_symbol(raw),
                    self.build_market(raw),
                )
            except Exception:  # one odd record must not hide every other market
                rejected += 1
                continue
            if symbol in markets or native in aliases:
                raise RemoteProtocolError(
                    f"symbol {symbol!r} ({native!r}) is listed twice", exchange=self.exchange
                )
            markets[symbol] = market
            aliases[native] = symbol
        exchange_symbols = {symbol: native for native, symbol in aliases.items()}
        return _Catalogue(
            MappingProxyType(markets),
            MappingProxyType(aliases),
            MappingProxyType(exchange_symbols),
            anyio.current_time(),
            rejected,
        )

    def _normalized(self, catalogue: _Catalogue[MarketT], symbol: str) -> str:
        if symbol in catalogue.markets:
            return symbol
        normalized = catalogue.aliases.get(symbol)
        if normalized is None:
            raise UnknownSymbolError(symbol, exchange=self.exchange)
        return normalized

    def _lookup(self, catalogue: _Catalogue[MarketT], symbol: str) -> MarketT:
        return catalogue.markets[self._normalized(catalogue, symbol)]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
