"""Tests for the TTL-aware, single-flight symbol cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from native_anyio._errors import NativeError, RemoteProtocolError
from native_anyio._symbols import SymbolService, SymbolStatistics, UnknownSymbolError

if TYPE_CHECKING:
    from native_anyio._health import InstrumentationEvent

RECORDS: list[dict[str, object]] = [
    {"symbol": "BTC_USDC", "tickSize": "0.1"},
    {"symbol": "SOL_USDC_PERP", "tickSize": "0.01"},
    {"symbol": "HIDDEN_USDC", "tickSize": "1", "visible": False},
]


@dataclass(frozen=True)
class Market:
    symbol: str
    native: str
    tick_size: str


class VenueDown(Exception):
    pass


class FakeSymbols(SymbolService[dict[str, object], Market]):
    """A venue whose fetch counts calls, takes ``delay`` virtual seconds and fails on demand."""

    def __init__(self, *, delay: float = 0.0, **kwargs: object) -> None:
        self.events: list[InstrumentationEvent] = []
        super().__init__(hooks=[self._record], exchange="fake", **kwargs)  # type: ignore[arg-type]
        self.records: list[dict[str, object]] = list(RECORDS)
        self.delay = delay
        self.fail_with: Exception | None = None
        self.fetch_started: list[float] = []

    def _record(self, event: InstrumentationEvent) -> None:
        self.events.append(event)

    async def fetch_markets(self) -> list[dict[str, object]]:
        self.fetch_started.append(anyio.current_time())
        if self.delay:
            await anyio.sleep(self.delay)
        else:
            await anyio.lowlevel.checkpoint()
        if self.fail_with is not None:
            raise self.fail_with
        return list(self.records)

    def include_market(self, raw: dict[str, object]) -> bool:
        return raw.get("visible", True) is True

    def normalize_symbol(self, raw: dict[str, object]) -> str:
        return str(raw["symbol"]).replace("_", "-")

    def exchange_symbol(self, raw: dict[str, object]) -> str:
        return str(raw["symbol"])

    def build_market(self, raw: dict[str, object]) -> Market:
        return Market(self.normalize_symbol(raw), self.exchange_symbol(raw), str(raw["tickSize"]))

    @property
    def fetches(self) -> int:
        return len(self.fetch_started)

    def event_names(self) -> list[str]:
        return [event.name for event in self.events]


async def test_lookup_by_normalized_and_exchange_symbol():
    symbols = FakeSymbols()
    with anyio.fail_after(5):
        by_normalized = await symbols.market("SOL-USDC-PERP")
        by_exchange = await symbols.market("SOL_USDC_PERP")
        assert by_normalized is by_exchange
        assert by_normalized == Market("SOL-USDC-PERP", "SOL_USDC_PERP", "0.01")
        assert await symbols.exchange_symbol_of("BTC-USDC") == "BTC_USDC"
        assert await symbols.exchange_symbol_of("BTC_USDC") == "BTC_USDC"
        assert await symbols.normalized_symbol_of("BTC_USDC") == "BTC-USDC"
        assert await symbols.normalized_symbol_of("BTC-USDC") == "BTC-USDC"
        markets = await symbols.markets()
    assert sorted(markets) == ["BTC-USDC", "SOL-USDC-PERP"]  # include_market dropped HIDDEN
    with pytest.raises(TypeError):
        markets["X"] = Market("X", "X", "1")  # type: ignore[index]
    assert symbols.fetches == 1
    assert symbols.market_nowait("BTC_USDC") is markets["BTC-USDC"]


async def test_unknown_symbol():
    symbols = FakeSymbols()
    with anyio.fail_after(5):
        for unknown in ("ETH_USDC", "HIDDEN_USDC", "HIDDEN-USDC", "btc_usdc"):
            with pytest.raises(UnknownSymbolError) as info:
                await symbols.market(unknown)
            assert info.value.symbol == unknown
            assert isinstance(info.value, LookupError)
            assert isinstance(info.value, NativeError)
            assert str(info.value) == f"unknown symbol {unknown!r} (exchange=fake)"
        with pytest.raises(UnknownSymbolError):
            await symbols.exchange_symbol_of("ETH-USDC")
        with pytest.raises(UnknownSymbolError):
            await symbols.normalized_symbol_of("ETH_USDC")
    with pytest.raises(UnknownSymbolError):
        symbols.market_nowait("ETH_USDC")


async def test_market_nowait_never_fetches():
    symbols = FakeSymbols()
    with pytest.raises(anyio.WouldBlock):
        symbols.market_nowait("BTC_USDC")
    assert symbols.fetches == 0
    assert symbols.health().status == "unhealthy"
    assert symbols.health().reasons == ("symbols never loaded",)


@pytest.mark.virtual_time
async def test_ttl_expiry_is_exact():
    symbols = FakeSymbols(ttl=60.0, delay=2.0)
    with anyio.fail_after(1000):
        start = anyio.current_time()
        await symbols.market("BTC_USDC")
        loaded_at = start + 2.0
        assert anyio.current_time() == loaded_at
        assert symbols.statistics().age == 0.0

        await anyio.sleep_until(loaded_at + 59.5)
        stats = symbols.statistics()
        assert (stats.age, stats.expired) == (59.5, False)
        await symbols.market("BTC_USDC")
        assert symbols.fetches == 1

        await anyio.sleep_until(loaded_at + 60.0)
        assert symbols.statistics().expired
        await symbols.market("BTC_USDC")
        assert symbols.fetch_started == [start, loaded_at + 60.0]
        assert anyio.current_time() == loaded_at + 62.0
        stats = symbols.statistics()
        assert (stats.age, stats.expired, stats.refreshes) == (0.0, False, 2)


@pytest.mark.virtual_time
async def test_concurrent_callers_share_one_fetch():
    symbols = FakeSymbols(delay=1.0)
    results: list[Market] = []
    finished: list[float] = []

    async def caller(symbol: str) -> None:
        results.append(await symbols.market(symbol))
        finished.append(anyio.current_time())

    with anyio.fail_after(100):
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(caller, "BTC_USDC" if i % 2 else "BTC-USDC")
    assert symbols.fetches == 1
    assert len(results) == 20
    assert all(result is results[0] for result in results)
    assert finished == [start + 1.0] * 20
    assert symbols.event_names() == ["refresh"]


@pytest.mark.virtual_time
async def test_concurrent_callers_share_one_failure_when_nothing_was_loaded():
    symbols = FakeSymbols(delay=1.0)
    symbols.fail_with = VenueDown("venue down")
    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await symbols.market("BTC_USDC")
        except VenueDown as exc:
            errors.append(exc)

    with anyio.fail_after(100):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(caller)
    assert symbols.fetches == 1
    assert len(errors) == 10
    assert all(error is symbols.fail_with for error in errors)
    assert symbols.event_names() == ["refresh_failed"]


async def test_failure_without_data_raises_then_next_call_retries():
    symbols = FakeSymbols()
    symbols.fail_with = VenueDown("venue down")
    with anyio.fail_after(5):
        with pytest.raises(VenueDown):
            await symbols.market("BTC_USDC")
        with pytest.raises(VenueDown):
            await symbols.markets()
        assert symbols.fetches == 2  # no data: every caller retries (callers own the pacing)
        stats = symbols.statistics()
        assert (stats.loaded, stats.stale, stats.failures, stats.last_error) == (
            False,
            False,
            2,
            "VenueDown: venue down",
        )
        assert symbols.health().status == "unhealthy"
        assert symbols.health().reasons == ("symbols never loaded: VenueDown: venue down",)

        symbols.fail_with = None
        assert (await symbols.market("BTC_USDC")).native == "BTC_USDC"
    assert symbols.health().status == "ok"
    assert symbols.statistics().last_error is None


@pytest.mark.virtual_time
async def test_failed_refresh_serves_stale_data_then_recovers():
    symbols = FakeSymbols(ttl=60.0, retry_interval=10.0)
    with anyio.fail_after(1000):
        start = anyio.current_time()
        good = await symbols.market("BTC_USDC")

        symbols.fail_with = VenueDown("venue down")
        await anyio.sleep_until(start + 60.0)
        assert await symbols.market("BTC_USDC") is good  # stale, served
        assert symbols.fetches == 2
        stats = symbols.statistics()
        assert stats == SymbolStatistics(
            loaded=True,
            markets=2,
            age=60.0,
            expired=True,
            stale=True,
            refreshes=1,
            failures=1,
            consecutive_failures=1,
            rejected=0,
            last_error="VenueDown: venue down",
        )
        health = symbols.health()
        assert health.status == "degraded"
        assert health.reasons == ("serving stale symbols after a failed refresh: VenueDown: venue down",)

        # Within retry_interval the stale catalogue is served without hammering the venue.
        await anyio.sleep_until(start + 69.999)
        assert await symbols.market("BTC-USDC") is good
        assert symbols.fetches == 2
        # An explicit refresh is attempted anyway and reports its failure; the data is kept.
        with pytest.raises(VenueDown):
            await symbols.refresh()
        assert symbols.fetches == 3
        assert symbols.statistics().consecutive_failures == 2

        symbols.fail_with = None
        symbols.records = [{"symbol": "BTC_USDC", "tickSize": "0.5"}]
        await anyio.sleep_until(start + 69.999 + 10.0)
        fresh = await symbols.market("BTC_USDC")
    assert fresh.tick_size == "0.5"
    assert symbols.fetch_started == [start, start + 60.0, start + 69.999, start + 79.999]
    assert symbols.health().status == "ok"
    stats = symbols.statistics()
    assert (stats.stale, stats.consecutive_failures, stats.failures, stats.refreshes) == (False, 0, 2, 2)
    assert stats.markets == 1
    assert symbols.event_names() == ["refresh", "refresh_failed", "refresh_failed", "refresh"]
    failed = symbols.events[1]
    assert (failed.source, failed.get("stale"), failed.get("error")) == (
        "symbols",
        True,
        "VenueDown: venue down",
    )


@pytest.mark.virtual_time
async def test_refresh_forces_a_fetch_and_queued_refreshes_share_it():
    symbols = FakeSymbols(delay=1.0)
    with anyio.fail_after(100):
        await symbols.market("BTC_USDC")
        symbols.records = [{"symbol": "ETH_USDC", "tickSize": "0.1"}]
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(symbols.refresh)
        assert symbols.fetches == 2
        assert (await symbols.market("ETH-USDC")).native == "ETH_USDC"
        with pytest.raises(UnknownSymbolError):
            await symbols.market("BTC_USDC")


@pytest.mark.virtual_time
async def test_cancelled_fetcher_hands_over_to_a_waiter():
    symbols = FakeSymbols(delay=10.0)
    got: list[Market] = []

    async def waiter() -> None:
        got.append(await symbols.market("BTC_USDC"))

    with anyio.fail_after(100):
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            with anyio.move_on_after(1.0) as scope:
                tg.start_soon(waiter)  # queues behind the fetch below
                await symbols.market("BTC_USDC")
            assert scope.cancelled_caught
        assert anyio.current_time() == start + 11.0
    assert len(got) == 1
    assert symbols.fetch_started == [start, start + 1.0]
    assert symbols.statistics().failures == 0  # a cancelled fetch is not a venue failure


async def test_bad_records_are_skipped_and_duplicates_fail_the_refresh():
    symbols = FakeSymbols()
    symbols.records = [*RECORDS, {"symbol": "BROKEN_USDC"}]  # no tickSize: build_market raises
    with anyio.fail_after(5):
        assert sorted(await symbols.markets()) == ["BTC-USDC", "SOL-USDC-PERP"]
        assert symbols.statistics().rejected == 1
        assert symbols.events[0].get("rejected") == 1

        symbols.records = [*RECORDS, {"symbol": "BTC_USDC", "tickSize": "9"}]
        with pytest.raises(RemoteProtocolError, match="listed twice"):
            await symbols.refresh()
    assert symbols.health().status == "degraded"
    assert symbols.market_nowait("BTC_USDC").tick_size == "0.1"


def test_invalid_configuration():
    with pytest.raises(ValueError):
        FakeSymbols(ttl=0)
    with pytest.raises(ValueError):
        FakeSymbols(retry_interval=-1)
