"""
The Backpack client: one websocket session, REST, the symbol service and order books, yielding
normalized events on asyncio or trio.

Processing is pull-based: each ``receive_events()`` (or step of ``async for``) takes everything
the session has queued in one await, decodes every frame once (a tagged union), keeps order books
in sync and returns the normalized events. REST snapshots are fetched by background tasks owned
by the client's task group (the websocket keeps flowing meanwhile) and handed back through the
session's ordered inbox (``WsSession.post``), so a snapshot is always applied in order with the
deltas around it.

Books are fail-closed (``native_anyio._book``): from a gap until the resync completes, no book
event is emitted for that symbol, only a :class:`BookStatus`. A depth frame that fails validation
is a gap of its book (its ids are lost), never skipped while the book stays live. A reconnect
always rebuilds every book from a fresh snapshot; a book that gave up on snapshots (``failed``)
is retried by a reconnect or by subscribing it again. With ``stale_after``, a book whose depth
stream goes quiet for that long while the connection stays up is flagged stale (A3): it stops
being valid (a :class:`BookStatus` ``resyncing`` with a ``stale`` reason), its stream is
resubscribed and it is rebuilt from a fresh snapshot. Trades are delivered once across reconnects (a bounded window of
recent trade ids per symbol).

Error frames (``{"id":null,"error":{...}}``) are tied to the oldest request sent on the current
connection (Backpack echoes no id): 4003 "Invalid signature" ends the session with
:class:`~native_anyio.AuthError`; other codes raise :class:`SubscriptionError` from the next
``receive_events()`` after the events already decoded were delivered.
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.abc
import msgspec

from .._backoff import Backoff
from .._book import BookSync, BookSyncStatistics, Level, OrderBook, SyncOutput
from .._book_verify import BookVerifier
from .._errors import ApiError, AuthError, DecodeError, LocalProtocolError, NativeError, RateLimited
from .._health import Health, HealthStatus
from .._session import Connected, Disconnected, Posted, SessionConfig, WsSession, open_session
from .._symbols import UnknownSymbolError
from .._transport import AnyioTransport
from ._config import BackpackConfig
from ._events import BookDelta, BookSnapshot, BookStatus, Event
from ._normalize import _trade as normalize_trade
from ._normalize import epoch_seconds, normalize
from ._rest import BackpackRest
from ._streams import exchange_symbol, normalize_symbol, parse_stream
from ._subscriptions import BackpackSubscriptions
from ._symbols import BackpackSymbols
from ._wire import WsDepth, WsTrade, decode_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

    from .._health import Instrumentation
    from ._wire_rest import RestDepth

__all__ = [
    "DEFAULT_CHANNELS",
    "PRIVATE_CHANNELS",
    "PUBLIC_CHANNELS",
    "BackpackClient",
    "BackpackStatistics",
    "SubscriptionError",
    "open_backpack",
]

EXCHANGE: Final = "BACKPACK"

#: Channel name -> stream type (``{interval}`` filled for candles).
PUBLIC_CHANNELS: Final = {
    "trades": "trade",
    "book": "depth",
    "bbo": "bookTicker",
    "ticker": "ticker",
    "candles": "kline.{interval}",
    "funding": "markPrice",
    "open_interest": "openInterest",
    "liquidations": "liquidation",
}
#: Private channel name -> stream (signed subscriptions; need credentials).
PRIVATE_CHANNELS: Final = {
    "orders": "account.orderUpdate",
    "positions": "account.positionUpdate",
    "balances": "account.balanceUpdate",
    "rfq": "account.rfqUpdate",
}
DEFAULT_CHANNELS: Final = ("trades", "book", "bbo", "ticker")

_TRADE_WINDOW: Final = 10_000
# The range epoch_seconds() reads as microseconds.
_US_LOW: Final = 100_000_000_000_000
_US_HIGH: Final = 100_000_000_000_000_000
_SNAPSHOT_ATTEMPTS: Final = 5


class SubscriptionError(ApiError):
    """
    Backpack answered a (un)subscribe request with an error frame.

    Attributes:
        streams: the streams of the request the error is attributed to (may be empty).
    """

    def __init__(self, message: str, *, code: int, streams: tuple[str, ...]) -> None:
        super().__init__(message, code=code, exchange=EXCHANGE, channel=",".join(streams) or None)
        self.streams = streams


@final
@dataclass(frozen=True, slots=True)
class BackpackStatistics:
    """Counters of a :class:`BackpackClient`."""

    frames: int
    decode_errors: int
    error_frames: int
    events: int
    duplicate_trades: int
    snapshots_requested: int
    snapshot_failures: int
    books: tuple[tuple[str, str], ...]
    book_statistics: tuple[tuple[str, BookSyncStatistics], ...] = ()
    verifications: int = 0
    verification_mismatches: int = 0
    stale_flags: int = 0


class _TradeWindow:
    """
    The last ``_TRADE_WINDOW`` trade ids of one symbol (C9: each trade delivered once).

    A set whose members keep being discarded fills with dummy slots and keeps growing its table
    long after it holds a constant number of ids (the soak benchmark saw +1 MiB per symbol
    four minutes in); rebuilding it once per window of evictions keeps its size constant from
    the first window on, at an amortized O(1).
    """

    __slots__ = ("evicted", "ids", "order")

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.order: deque[int] = deque()
        self.evicted = 0

    def add(self, trade_id: int) -> None:
        self.ids.add(trade_id)
        order = self.order
        order.append(trade_id)
        if len(order) > _TRADE_WINDOW:
            self.ids.discard(order.popleft())
            self.evicted += 1
            if self.evicted >= _TRADE_WINDOW:
                self.evicted = 0
                self.ids = set(order)


@dataclass(frozen=True, slots=True)
class _Resubscribed:
    symbol: str


@dataclass(frozen=True, slots=True)
class _StaleCheck:
    """Posted by the stale watchdog: judged in order, after every frame received before it."""

    posted_at: float


class _Envelope(msgspec.Struct):
    """Just the stream name of a frame that failed to decode (to tell which book it broke)."""

    stream: str | None = None


_decode_envelope: Final = msgspec.json.Decoder(_Envelope).decode


@dataclass(frozen=True, slots=True)
class _SnapshotResult:
    symbol: str
    generation: int
    depth: RestDepth | None
    error: str = ""
    verification: bool = False


@dataclass(frozen=True, slots=True)
class _BookSettings:
    max_buffer: int = 10_000
    max_wait: float = 10.0
    verify_interval: float | None = None
    verify_depth: int = 10
    #: seconds without a depth frame before a book is stale, per exchange symbol ("*": any)
    stale_after: Mapping[str, float] = field(default_factory=dict)
    stale_check_interval: float | None = None

    def stale_limit(self, symbol: str) -> float | None:
        limits = self.stale_after
        return limits.get(symbol, limits.get("*"))


class _BookState:
    __slots__ = (
        "connection_id", "fetching", "generation", "last_activity", "public_symbol", "stale_after", "symbol",
        "sync", "verifier",
    )  # fmt: skip

    def __init__(self, symbol: str, connection_id: int, settings: _BookSettings) -> None:
        self.symbol = symbol
        self.public_symbol = normalize_symbol(symbol)  # the events' spelling, computed once
        self.stale_after = settings.stale_limit(symbol)
        #: when the last depth frame was handled (or the timer was restarted), anyio time
        self.last_activity = anyio.current_time()
        self.sync = BookSync(max_buffer=settings.max_buffer, max_wait=settings.max_wait)
        self.verifier = BookVerifier(depth=settings.verify_depth) if settings.verify_interval else None
        self.generation = 0
        self.fetching = False
        #: the connection whose deltas this sync is collecting
        self.connection_id = connection_id


@final
class BackpackClient:
    """
    A Backpack market-data client. Create it with :func:`open_backpack`.

    Iterate it for normalized events (:mod:`native_anyio.backpack` event types), or call
    :meth:`receive_events` for everything available in one await.
    """

    def __init__(
        self,
        config: BackpackConfig,
        session: WsSession,
        protocol: BackpackSubscriptions,
        rest: BackpackRest,
        symbols: BackpackSymbols,
        task_group: anyio.abc.TaskGroup,
        *,
        candle_interval: str,
        snapshot_limit: int | None,
        clock: Any,
        book_settings: _BookSettings | None = None,
    ) -> None:
        self.config = config
        self.session = session
        self.rest = rest
        self.symbols = symbols
        self._protocol = protocol
        self._tg = task_group
        self._candle_interval = candle_interval
        self._snapshot_limit = snapshot_limit
        self._clock = clock
        self._books: dict[str, _BookState] = {}
        self._book_streams: dict[str, str] = {}  # depth stream -> exchange symbol
        self._trade_ids: dict[str, _TradeWindow] = {}
        self._snapshot_slots = anyio.CapacityLimiter(4)
        self._pending_error: NativeError | None = None
        self._iter_events: list[Event] = []
        self._iter_index = 0
        self._frames = 0
        self._decode_errors = 0
        self._error_frames = 0
        self._events = 0
        self._duplicates = 0
        self._snapshots_requested = 0
        self._snapshot_failures = 0
        self._book_settings = book_settings or _BookSettings()
        self._verifications = 0
        self._verify_mismatches = 0
        self._stale_flags = 0
        self._stale_queue: deque[str] = deque()  # books whose stream must be resubscribed
        self._stale_wakeup = anyio.Event()
        self._stale_check_pending = False
        if self._book_settings.verify_interval is not None:
            task_group.start_soon(self._verify_loop, self._book_settings.verify_interval)
        stale_limits = self._book_settings.stale_after
        if stale_limits:
            interval = self._book_settings.stale_check_interval
            if interval is None:
                interval = max(0.05, min(stale_limits.values()) / 4)
            task_group.start_soon(self._stale_loop, interval)

    def __repr__(self) -> str:
        return f"<BackpackClient {self.config.ws_url} streams={len(self.session.subscriptions)}>"

    # ------------------------------------------------------------------ subscriptions

    def streams_for(self, symbols: Iterable[str], channels: Iterable[str]) -> list[str]:
        """
        The stream names for ``channels`` of ``symbols`` (either spelling).

        Raises:
            LocalProtocolError: an unknown channel, or a private channel without credentials.
        """
        names: list[str] = []
        wanted = list(channels)
        for channel in wanted:
            if channel not in PUBLIC_CHANNELS and channel not in PRIVATE_CHANNELS:
                known = ", ".join([*PUBLIC_CHANNELS, *PRIVATE_CHANNELS])
                raise LocalProtocolError(f"unknown channel {channel!r} (known: {known})")
            if channel in PRIVATE_CHANNELS and not self.config.authenticated:
                raise LocalProtocolError(f"channel {channel!r} is private: configure api_key and api_secret")
        names.extend(PRIVATE_CHANNELS[channel] for channel in wanted if channel in PRIVATE_CHANNELS)
        for symbol in symbols:
            sym = exchange_symbol(symbol)
            for channel in wanted:
                if channel in PUBLIC_CHANNELS:
                    kind = PUBLIC_CHANNELS[channel].format(interval=self._candle_interval)
                    names.append(str(parse_stream(f"{kind}.{sym}")))
        return list(dict.fromkeys(names))

    async def subscribe(self, symbols: Iterable[str], channels: Iterable[str] = DEFAULT_CHANNELS) -> None:
        """
        Subscribe to ``channels`` of ``symbols``; the set is replayed on every reconnect.

        Symbols are checked against ``/api/v1/markets`` within ``unknown_symbol_timeout``: an
        unknown or closed market raises at once (Backpack would answer with silence). If the
        market list cannot be fetched in time, the subscription goes ahead unchecked.

        Raises:
            UnknownSymbolError: a symbol that is not an open Backpack market.
            LocalProtocolError: an unknown channel, or a private one without credentials.
        """
        symbols = list(symbols)
        channels = list(channels)
        streams = self.streams_for(symbols, channels)
        await self._check_symbols(symbols)
        if "book" in channels:
            for symbol in symbols:
                sym = exchange_symbol(symbol)
                if sym not in self._books:
                    stats = self.session.statistics()
                    connected = stats.state == "connected"
                    state = self._books[sym] = _BookState(
                        sym, stats.connection_id if connected else 0, self._book_settings
                    )
                    self._book_streams[f"depth.{sym}"] = sym
                    if connected:
                        # Already connected: this book syncs on this connection from now on.
                        self._request_snapshot(state)
                elif self._books[sym].sync.state == "failed":
                    # A resubscribe retries a book that gave up (C7), in order with the stream.
                    self.session.post(_Resubscribed(sym))
        await self.session.subscribe(*streams)

    async def unsubscribe(self, symbols: Iterable[str], channels: Iterable[str] = DEFAULT_CHANNELS) -> None:
        """Unsubscribe ``channels`` of ``symbols``; books of unsubscribed symbols are dropped."""
        symbols = list(symbols)
        channels = list(channels)
        streams = self.streams_for(symbols, channels)
        if "book" in channels:
            for symbol in symbols:
                sym = exchange_symbol(symbol)
                self._books.pop(sym, None)
                self._book_streams.pop(f"depth.{sym}", None)
        await self.session.unsubscribe(*streams)

    async def _check_symbols(self, symbols: Sequence[str]) -> None:
        if not symbols:
            return
        with anyio.move_on_after(self.config.unknown_symbol_timeout):
            try:
                markets = await self.symbols.markets()
            except NativeError:
                return  # the venue's list is unavailable: do not block subscribing on it
            known = {m.symbol for m in markets.values()}
            for symbol in symbols:
                if exchange_symbol(symbol) not in known:
                    raise UnknownSymbolError(symbol, exchange=EXCHANGE)

    # ------------------------------------------------------------------ books

    def book(self, symbol: str) -> OrderBook | None:
        """The live order book of ``symbol``, or ``None`` while it is not in sync (fail-closed)."""
        state = self._books.get(exchange_symbol(symbol))
        if state is None or not state.sync.is_live:
            return None
        return state.sync.book

    def book_state(self, symbol: str) -> str | None:
        """``syncing``, ``live``, ``resyncing`` or ``failed`` (``None``: no book subscribed)."""
        state = self._books.get(exchange_symbol(symbol))
        return None if state is None else state.sync.state

    def _request_snapshot(self, state: _BookState) -> None:
        if state.fetching:
            return
        state.fetching = True
        self._snapshots_requested += 1
        self._tg.start_soon(self._fetch_snapshot, state.symbol, state.generation)

    async def _fetch_snapshot(self, symbol: str, generation: int) -> None:
        backoff = Backoff(initial=0.25, max_delay=3.0, jitter=0.5).start()
        error = ""
        for _attempt in range(_SNAPSHOT_ATTEMPTS):
            try:
                async with self._snapshot_slots:
                    depth = await self.rest.depth(symbol, limit=self._snapshot_limit)
            except RateLimited as exc:
                error = str(exc)
                delay = (
                    exc.retry_after
                    if exc.retry_after is not None
                    else backoff.next_delay(anyio.current_time())
                )
                await anyio.sleep(min(delay or 0.0, 60.0))
                continue
            except NativeError as exc:
                error = str(exc)
                delay = backoff.next_delay(anyio.current_time())
                await anyio.sleep(delay or 0.0)
                continue
            self.session.post(_SnapshotResult(symbol, generation, depth))
            return
        self.session.post(_SnapshotResult(symbol, generation, None, error or "snapshot failed"))

    def _emit_sync(self, state: _BookState, out: SyncOutput, events: list[Event], exchange_ts: float) -> None:
        symbol = state.public_symbol
        receipt = self._clock()
        if out.status is not None and out.status[0] != "live":
            events.append(BookStatus(symbol=symbol, timestamp=exchange_ts, receipt_timestamp=receipt,
                                     state=out.status[0], reason=out.status[1]))  # fmt: skip
        if out.snapshot_loaded:
            book = state.sync.book
            events.append(BookStatus(symbol=symbol, timestamp=exchange_ts, receipt_timestamp=receipt, state="live",
                                     reason=out.status[1] if out.status else "synchronized"))  # fmt: skip
            events.append(BookSnapshot(symbol=symbol, timestamp=exchange_ts, receipt_timestamp=receipt,
                                       bids=tuple(book.bids()), asks=tuple(book.asks()),
                                       sequence=book.last_update_id))  # fmt: skip
        elif out.applied:
            verifier = state.verifier
            for first, last, bids, asks in out.applied:
                if verifier is not None:
                    verifier.record(first, last, bids, asks)
                events.append(BookDelta(symbol=symbol, timestamp=exchange_ts, receipt_timestamp=receipt,
                                        bids=tuple(bids), asks=tuple(asks), first_sequence=first,
                                        sequence=last))  # fmt: skip
        if out.snapshot_loaded and state.verifier is not None:
            state.verifier.reset()
        if out.need_snapshot:
            state.generation += 1
            state.fetching = False
            self._request_snapshot(state)

    def _on_depth(self, data: WsDepth, receipt: float, now: float, events: list[Event]) -> None:
        state = self._books.get(data.symbol)
        if state is None:
            return
        state.last_activity = now
        bids: Sequence[Level] = data.bids
        asks: Sequence[Level] = data.asks
        out = state.sync.on_delta(data.first_update_id, data.last_update_id, bids, asks, now)
        applied, snapshot_loaded, need_snapshot, status = out
        if applied and status is None and state.verifier is None and not (snapshot_loaded or need_snapshot):
            # The common case, a delta applied to a live book without a verifier: exactly what
            # _emit_sync would emit, without its generality (a measurable share of the per-delta cost).
            symbol = state.public_symbol
            micros = data.engine_time
            # epoch_seconds(micros), inlined for present-day µs values (its unit inference otherwise).
            timestamp = micros / 1_000_000 if _US_LOW <= micros < _US_HIGH else epoch_seconds(micros)
            for first, last, level_bids, level_asks in applied:
                events.append(BookDelta(symbol=symbol, timestamp=timestamp, receipt_timestamp=receipt,
                                        bids=tuple(level_bids), asks=tuple(level_asks), first_sequence=first,
                                        sequence=last))  # fmt: skip
            return
        if applied or status or need_snapshot:
            self._emit_sync(state, out, events, epoch_seconds(data.engine_time))
            if state.verifier is not None and out.applied:
                self._verdict(state, state.verifier.check_pending(state.sync.book), events)

    async def _verify_loop(self, interval: float) -> None:
        """Every ``interval`` seconds, fetch a snapshot of each live book to verify it (C8)."""
        while True:
            await anyio.sleep(interval)
            for state in list(self._books.values()):
                if state.sync.is_live and not state.fetching:
                    generation = state.generation
                    try:
                        async with self._snapshot_slots:
                            depth = await self.rest.depth(state.symbol, limit=1000)
                    except NativeError:
                        continue  # verification is best effort: try again next round
                    self.session.post(_SnapshotResult(state.symbol, generation, depth, verification=True))

    async def _stale_loop(self, interval: float) -> None:
        """
        The stale-stream watchdog (A3): every ``interval``, post a check into the ordered inbox;
        resubscribe the depth streams the consumer found stale.

        The check is judged by the consumer, after every frame that arrived before it, so a
        consumer that lags behind the socket never mistakes its own backlog for a quiet stream.
        """
        while True:
            with anyio.move_on_after(interval):
                await self._stale_wakeup.wait()
            if self._stale_wakeup.is_set():
                self._stale_wakeup = anyio.Event()
            while self._stale_queue:
                symbol = self._stale_queue.popleft()
                if symbol in self._books:
                    stream = f"depth.{symbol}"
                    await self.session.unsubscribe(stream)
                    if symbol in self._books:  # not unsubscribed by the user meanwhile
                        await self.session.subscribe(stream)
            if not self._stale_check_pending:
                self._stale_check_pending = True
                self.session.post(_StaleCheck(anyio.current_time()))

    def _on_stale_check(self, check: _StaleCheck, events: list[Event]) -> None:
        self._stale_check_pending = False
        if self.session.statistics().state != "connected":
            return  # a reconnect rebuilds every book anyway
        for state in self._books.values():
            limit = state.stale_after
            if limit is None or check.posted_at - state.last_activity <= limit:
                continue
            self._stale_flags += 1
            state.last_activity = check.posted_at  # the next flag is one full period later
            if state.sync.is_live:
                reason = f"stale: no depth update for {limit:g} s"
                self._emit_sync(state, state.sync.invalidate(reason), events, self._clock())
            if state.symbol not in self._stale_queue:
                self._stale_queue.append(state.symbol)
                self._stale_wakeup.set()

    def _on_verification(self, result: _SnapshotResult, events: list[Event]) -> None:
        state = self._books.get(result.symbol)
        depth = result.depth
        if state is None or state.verifier is None or depth is None or not state.sync.is_live:
            return
        if result.generation != state.generation:
            return  # the book was rebuilt meanwhile
        verdict = state.verifier.verify(state.sync.book, int(depth.last_update_id), depth.bids, depth.asks)
        self._verdict(state, verdict, events)

    def _verdict(self, state: _BookState, verdict: str | None, events: list[Event]) -> None:
        if verdict in ("ok", "mismatch"):
            self._verifications += 1
        if verdict == "mismatch":
            self._verify_mismatches += 1
            reason = (
                f"verification: top {self._book_settings.verify_depth} levels differ from a REST snapshot"
            )
            self._emit_sync(state, state.sync.invalidate(reason), events, self._clock())

    def _on_snapshot(self, result: _SnapshotResult, events: list[Event]) -> None:
        if result.verification:
            self._on_verification(result, events)
            return
        state = self._books.get(result.symbol)
        if state is None or result.generation != state.generation:
            return  # unsubscribed meanwhile, or an answer for a sync that was restarted
        state.fetching = False
        if result.depth is None:
            self._snapshot_failures += 1
            self._emit_sync(state, state.sync.fail(result.error), events, self._clock())
            return
        depth = result.depth
        out = state.sync.on_snapshot(int(depth.last_update_id), depth.bids, depth.asks, anyio.current_time())
        self._emit_sync(state, out, events, epoch_seconds(depth.timestamp))

    def _on_resubscribed(self, symbol: str, events: list[Event]) -> None:
        state = self._books.get(symbol)
        if state is None or state.sync.state != "failed":
            return
        out = state.sync.reset("resubscribed")
        state.generation += 1
        state.fetching = False
        if self.session.statistics().state == "connected":
            self._request_snapshot(state)  # else the next Connected fetches it
        self._emit_sync(state, SyncOutput(status=out.status), events, self._clock())

    def _on_invalid_frame(self, payload: bytes, events: list[Event]) -> None:
        """A frame that failed validation: when it belongs to a book, its ids are lost, a gap (E)."""
        if not self._books:
            return
        try:
            stream = _decode_envelope(payload).stream
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            return  # not even an envelope: the next delta of the book shows the gap, if any
        symbol = self._book_streams.get(stream) if stream else None
        state = self._books.get(symbol) if symbol else None
        if state is not None:
            out = state.sync.invalidate(f"invalid depth frame on {stream}")
            if out.status is not None:
                self._emit_sync(state, out, events, self._clock())

    def _on_connection_change(self, connection_id: int, connected: bool, events: list[Event]) -> None:
        for state in self._books.values():
            if connected and state.connection_id == connection_id:
                continue  # subscribed on this very connection: already syncing on it
            if connected:
                state.connection_id = connection_id
                state.last_activity = anyio.current_time()
            out = state.sync.reset("connected: fresh snapshot" if connected else "disconnected")
            state.generation += 1
            state.fetching = False
            if connected:
                self._request_snapshot(state)
            out = SyncOutput(status=out.status)
            self._emit_sync(state, out, events, self._clock())

    # ------------------------------------------------------------------ events

    def _is_duplicate_trade(self, data: WsTrade) -> bool:
        window = self._trade_ids.get(data.symbol)
        if window is None:
            window = self._trade_ids[data.symbol] = _TradeWindow()
        if data.trade_id in window.ids:
            self._duplicates += 1
            return True
        window.add(data.trade_id)
        return False

    def _on_error_frame(self, code: int, message: str) -> None:
        self._error_frames += 1
        streams = self._protocol.attribute_error(code)
        if code == 4003:
            self.session.fail(AuthError(f"Backpack rejected the subscription signature: {message}",
                                        exchange=EXCHANGE, channel=",".join(streams) or None))  # fmt: skip
            return
        if self._pending_error is None:
            self._pending_error = SubscriptionError(
                f"Backpack error {code}: {message}", code=code, streams=streams
            )

    async def receive_events(self) -> list[Event]:
        """
        Wait for the next events and return all that are available (at least one).

        A checkpoint once per socket batch, none per event.

        Raises:
            SubscriptionError: an error frame answered one of our requests (after the events
                decoded before it were returned).
            AuthError: the signature of a private subscription was rejected (fatal).
            ConnectionLost: the session gave up reconnecting.
            anyio.EndOfStream: the client was closed.
        """
        while True:
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                raise error
            batch = await self.session.receive_batch()
            events: list[Event] = []
            receipt = self._clock()
            now = anyio.current_time()  # once per batch, not per message
            for item in batch:
                if type(item) is bytes:
                    self._handle_frame(item, receipt, now, events)
                elif isinstance(item, Posted):
                    if isinstance(item.value, _SnapshotResult):
                        self._on_snapshot(item.value, events)
                    elif isinstance(item.value, _StaleCheck):
                        self._on_stale_check(item.value, events)
                    elif isinstance(item.value, _Resubscribed):
                        self._on_resubscribed(item.value.symbol, events)
                elif isinstance(item, Connected):
                    self._on_connection_change(item.connection_id, True, events)
                elif isinstance(item, Disconnected):
                    self._on_connection_change(item.connection_id, False, events)
            for state in self._books.values():
                out = state.sync.check_timeout(now)
                if out.status is not None:
                    self._emit_sync(state, out, events, self._clock())
            if events:
                self._events += len(events)
                return events

    def _handle_frame(self, payload: bytes, receipt: float, now: float, events: list[Event]) -> None:
        self._frames += 1
        try:
            frame = decode_frame(payload)
        except DecodeError:
            self._decode_errors += 1
            self._on_invalid_frame(payload, events)
            return
        data = frame.data
        if data is None:
            if frame.error is not None:
                self._on_error_frame(frame.error.code, frame.error.message)
            return
        if type(data) is WsDepth:
            self._on_depth(data, receipt, now, events)
            return
        stream = frame.stream
        if type(data) is WsTrade:
            if self._is_duplicate_trade(data) or stream is None:
                return
            try:
                # normalize() without its dispatch; parse_stream() still refuses an invalid stream name.
                events.append(normalize_trade(data, parse_stream(stream), receipt))
            except (DecodeError, ValueError):
                self._decode_errors += 1
            return
        if stream is None:
            return
        try:
            event = normalize(data, parse_stream(stream), receipt)
        except (DecodeError, ValueError):
            self._decode_errors += 1
            return
        if event is not None:
            events.append(event)

    def __aiter__(self) -> BackpackClient:
        return self

    async def __anext__(self) -> Event:
        index = self._iter_index
        if index < len(self._iter_events):
            self._iter_index = index + 1
            return self._iter_events[index]
        try:
            self._iter_events = await self.receive_events()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        self._iter_index = 1
        return self._iter_events[0]

    # ------------------------------------------------------------------ observability

    def statistics(self) -> BackpackStatistics:
        """A frozen snapshot of the client's counters."""
        return BackpackStatistics(
            frames=self._frames,
            decode_errors=self._decode_errors,
            error_frames=self._error_frames,
            events=self._events,
            duplicate_trades=self._duplicates,
            snapshots_requested=self._snapshots_requested,
            snapshot_failures=self._snapshot_failures,
            books=tuple(sorted((normalize_symbol(s), b.sync.state) for s, b in self._books.items())),
            book_statistics=tuple(
                sorted((normalize_symbol(s), b.sync.statistics()) for s, b in self._books.items())
            ),
            verifications=self._verifications,
            verification_mismatches=self._verify_mismatches,
            stale_flags=self._stale_flags,
        )

    def health(self) -> Health:
        """The session's health plus the books': degraded while a book is not live."""
        findings: list[tuple[HealthStatus, str]] = []
        session = self.session.health()
        findings.extend((session.status, reason) for reason in session.reasons)
        for symbol, state in self._books.items():
            if state.sync.state == "failed":
                findings.append(("degraded", f"book {symbol} failed to sync"))
            elif not state.sync.is_live and session.ok:
                findings.append(("degraded", f"book {symbol} is {state.sync.state}"))
        return Health.from_findings(findings)


@asynccontextmanager
async def open_backpack(
    config: BackpackConfig | None = None,
    *,
    symbols: Iterable[str] = (),
    channels: Iterable[str] = DEFAULT_CHANNELS,
    session_config: SessionConfig | None = None,
    candle_interval: str = "1m",
    snapshot_limit: int | None = 1000,
    book_buffer: int = 10_000,
    snapshot_wait: float = 10.0,
    verify_interval: float | None = None,
    verify_depth: int = 10,
    stale_after: float | Mapping[str, float] | None = None,
    stale_check_interval: float | None = None,
    hooks: Sequence[Instrumentation] = (),
) -> AsyncIterator[BackpackClient]:
    """
    Open a Backpack client (websocket session, REST client, symbol service) on asyncio or trio.

    Args:
        config: endpoints and credentials (default: the real Backpack endpoints, no keys).
        symbols: symbols to subscribe right away (either spelling).
        channels: channels for ``symbols``: ``trades``, ``book``, ``bbo``, ``ticker``, ``candles``,
            ``funding``, ``open_interest``, ``liquidations``, and with credentials ``orders``,
            ``positions``, ``balances``, ``rfq``.
        session_config: websocket session settings (default: Backpack's cadence, 60 s server
            pings watched, client pings every 20 s).
        candle_interval: the kline interval of the ``candles`` channel.
        snapshot_limit: levels per side of REST book snapshots (``None``: the venue default).
        book_buffer: deltas buffered per book while its snapshot is pending; overflow restarts
            the sync (counted) instead of applying a truncated history.
        snapshot_wait: seconds a snapshot ahead of the socket may wait for the straddling delta.
        verify_interval: when set, every live book is compared with a REST snapshot at a
            matching update id this often, and resynced on a mismatch (Backpack's depth stream
            has no checksum). ``None`` (default): off.
        verify_depth: levels per side compared by the verification.
        stale_after: seconds without a depth frame after which a book is stale while the
            connection is up (A3): it is invalidated, its stream resubscribed and the book
            rebuilt from a fresh snapshot. A number applies to every book, a mapping to the
            symbols it names (either spelling; ``"*"`` for the rest). Backpack sends a depth
            frame only when the book changes, so pick a limit above the quietest market's gaps.
            ``None`` (default): off. Pings never reset this timer.
        stale_check_interval: how often the stale check runs (default: a quarter of the
            smallest limit); a stale book is flagged within ``stale_after`` plus this.
        hooks: instrumentation hooks for the session and REST client.

    Raises:
        UnknownSymbolError: a symbol of ``symbols`` is not an open market.
        ConnectionLost, AuthError, HandshakeRejected: as ``open_session``.
    """
    config = config or BackpackConfig()
    clock = config.clock or time.time
    limits = _stale_limits(stale_after)
    if stale_check_interval is not None and not stale_check_interval > 0:
        raise ValueError(f"stale_check_interval must be > 0, got {stale_check_interval!r}")
    protocol = BackpackSubscriptions(config.signer, window_ms=config.window_ms)
    if session_config is None:
        from .._liveness import LivenessConfig

        session_config = SessionConfig(
            handshake_timeout=config.handshake_timeout,
            liveness=LivenessConfig(ping_interval=20.0, ping_timeout=20.0, server_ping_interval=60.0),
        )
    async with BackpackRest(config, hooks=hooks) as rest:
        symbol_service = BackpackSymbols(rest, hooks=hooks)
        # The task group (snapshot fetches) lives inside the session, so open_session's exit
        # turns the body's exceptions and the session's fatal error into one plain exception.
        async with (
            open_session(
                config.ws_url,
                config=session_config,
                protocol=protocol,
                hooks=hooks,
                transport=AnyioTransport(proxy=config.proxy),
            ) as session,
            anyio.create_task_group() as tg,
        ):
            client = BackpackClient(config, session, protocol, rest, symbol_service, tg,
                                    candle_interval=candle_interval, snapshot_limit=snapshot_limit,
                                    book_settings=_BookSettings(book_buffer, snapshot_wait, verify_interval, verify_depth,
                                                                limits, stale_check_interval),
                                    clock=clock)  # fmt: skip
            symbols = list(symbols)
            if symbols:
                await client.subscribe(symbols, channels)
            try:
                yield client
            finally:
                tg.cancel_scope.cancel()


def _stale_limits(stale_after: float | Mapping[str, float] | None) -> dict[str, float]:
    """``stale_after`` as {exchange symbol or "*": seconds}, validated."""
    if stale_after is None:
        return {}
    items = [("*", stale_after)] if isinstance(stale_after, (int, float)) else list(stale_after.items())
    limits: dict[str, float] = {}
    for symbol, seconds in items:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError(f"stale_after must be a number of seconds > 0, got {seconds!r} for {symbol!r}")
        limits[symbol if symbol == "*" else exchange_symbol(symbol)] = float(seconds)
    return limits
