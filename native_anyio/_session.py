"""
The websocket session: one logical stream that survives reconnects.

``open_session()`` owns a task group. Inside it, one *supervisor* task runs the reconnect loop;
each connection it opens gets its own task group with the reader (the supervisor itself) and a
watchdog (client pings, server-ping watchdog, data-idle timer), all under cancel scopes:

* the handshake (TCP, TLS, HTTP upgrade) is bounded by ``handshake_timeout``;
* a failed connection is retried with capped, jittered exponential backoff (``Backoff``) that is
  reset only after the first *data* message of a new connection, never on a bare handshake;
* each new connection replays the subscription set exactly once (with fresh signatures, since
  the :class:`SubscriptionProtocol` builds the frames at send time);
* fatal errors (a 4xx handshake, an ``AuthError``, anything non-retryable) end the session at
  once instead of looping; so does exhausting the backoff policy;
* the session never dies silently: a fatal error is raised by ``receive_batch()``/``async for``
  in whichever task consumes, and by the exit of ``open_session()``, which also cancels its body;
* closing, on exit or cancellation, sends a close frame and waits for the answer under a
  shielded scope bounded by ``close_timeout``.

Hand-off to the consumer (the slow-consumer policy)
----------------------------------------------------
The reader appends whole batches (everything parsed from one socket read) to a bounded inbox,
without awaiting; the consumer takes the whole inbox in one ``receive_batch()`` (one checkpoint
per batch, none per message). The reader keeps reading, and so keeps answering server pings,
while the consumer is busy. When the inbox holds more than ``max_queue`` messages:

* ``slow_consumer="disconnect"`` (default): the connection is closed with reason
  ``slow_consumer`` and a new one is opened once the consumer has caught up (after the backoff
  delay); everything already received stays queued, and a :class:`Disconnected` event marks the
  break so order books resync. Nothing is lost silently, and the inbox never holds more than
  ``max_queue`` messages plus one batch.
* ``slow_consumer="block"``: the reader stops reading the socket until the consumer catches up
  (TCP back-pressure). Pings are not answered while blocked: use it only when the consumer can
  stall for less than the server's pong deadline.

The inbox interleaves :class:`Connected` and :class:`Disconnected` events with the messages, in
order, so consumers know exactly which messages belong to which connection.
"""

from __future__ import annotations

import math
import random
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, final

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec

from ._backoff import Backoff, BackoffRun
from ._errors import (
    CloseReason,
    ConnectionLost,
    HandshakeRejected,
    MessageTooBig,
    NativeError,
    NativeInternalError,
    RemoteProtocolError,
    TransportError,
)
from ._frames import FrameProtocolError
from ._health import Health, HealthStatus, Instrumentation, emit
from ._liveness import Fail, Liveness, LivenessConfig, SendPing
from ._transport import AnyioTransport, WsConnection, WsTransport

if sys.version_info < (3, 11):  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

__all__ = [
    "Connected",
    "Disconnected",
    "JsonSubscriptions",
    "Posted",
    "SessionConfig",
    "SessionEvent",
    "SessionStatistics",
    "SubscriptionProtocol",
    "WsSession",
    "open_session",
]

_encode = msgspec.json.encode


@final
@dataclass(frozen=True, slots=True)
class Connected:
    """Inbox event: connection ``connection_id`` is open and its subscriptions were sent."""

    connection_id: int
    url: str


@final
@dataclass(frozen=True, slots=True)
class Disconnected:
    """
    Inbox event: connection ``connection_id`` ended; messages after this belong to a new one.

    Exactly one follows each :class:`Connected` (a connection that failed before its
    subscriptions were sent was never announced, so it gets neither).
    """

    connection_id: int
    reason: CloseReason


@final
@dataclass(frozen=True, slots=True)
class Posted:
    """Inbox event: a local item handed in with :meth:`WsSession.post`."""

    value: object


SessionEvent = Connected | Disconnected | Posted


class SubscriptionProtocol(Protocol):
    """
    Builds a venue's subscribe/unsubscribe frames. Called at send time, on every connection, so
    signed subscriptions get a fresh signature each time.
    """

    def subscribe_messages(self, streams: Sequence[str]) -> list[str]: ...

    def unsubscribe_messages(self, streams: Sequence[str]) -> list[str]: ...


@final
@dataclass(frozen=True, slots=True)
class JsonSubscriptions:
    """``{"method": "SUBSCRIBE", "params": [...]}`` frames, at most ``batch`` streams each."""

    subscribe_method: str = "SUBSCRIBE"
    unsubscribe_method: str = "UNSUBSCRIBE"
    batch: int = 100

    def _frames(self, method: str, streams: Sequence[str]) -> list[str]:
        return [
            _encode({"method": method, "params": list(streams[i : i + self.batch])}).decode()
            for i in range(0, len(streams), self.batch)
        ]

    def subscribe_messages(self, streams: Sequence[str]) -> list[str]:
        return self._frames(self.subscribe_method, streams)

    def unsubscribe_messages(self, streams: Sequence[str]) -> list[str]:
        return self._frames(self.unsubscribe_method, streams)


@final
@dataclass(frozen=True, slots=True)
class SessionConfig:
    """
    Session settings. Times are seconds.

    Args:
        handshake_timeout: bound on TCP + TLS + HTTP upgrade of one attempt.
        close_timeout: bound on the close handshake (shielded) on exit and between connections.
        liveness: client ping cadence/deadline, server-ping watchdog, data-idle timeout.
        backoff: the reconnect schedule; ``max_attempts``/``max_elapsed`` bound a retry run.
        max_message_size: larger messages close the connection with 1009.
        max_queue: messages the inbox may hold before the slow-consumer policy applies.
        slow_consumer: ``"disconnect"`` or ``"block"`` (see the module docs).
        headers: extra HTTP headers for the handshake.
        seed: seed of the jitter RNG (``None``: random).
    """

    handshake_timeout: float = 10.0
    close_timeout: float = 5.0
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    backoff: Backoff = field(default_factory=Backoff)
    max_message_size: int = 1 << 20
    max_queue: int = 65_536
    slow_consumer: Literal["disconnect", "block"] = "disconnect"
    headers: Mapping[str, str] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        # "not > 0" also refuses NaN, which would make the timeouts never fire.
        if not (self.handshake_timeout > 0 and self.close_timeout > 0):
            raise ValueError("handshake_timeout and close_timeout must be > 0")
        if self.max_queue < 1 or self.max_message_size < 1:
            raise ValueError("max_queue and max_message_size must be >= 1")
        if self.slow_consumer not in ("disconnect", "block"):
            raise ValueError("slow_consumer must be 'disconnect' or 'block'")


@final
@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """A snapshot of a session (see :meth:`WsSession.statistics`)."""

    state: str
    url: str
    connection_id: int
    connects: int
    reconnects: int
    attempts: int
    messages: int
    bytes: int
    batches: int
    queue_depth: int
    max_queue: int
    slow_consumer_disconnects: int
    last_message_age: float | None
    last_close_reason: CloseReason | None
    pings_sent: int
    pongs_matched: int
    pongs_unmatched: int
    server_pings: int
    last_rtt: float | None
    subscriptions: int


_STATES: Final = ("connecting", "connected", "backoff", "closed", "failed")


#: Close reasons after which the peer is known to be unresponsive.
_DEAD_PEER_KINDS: Final = frozenset({"ping_timeout", "server_ping_lost"})


@final
class WsSession:
    """
    A websocket session that reconnects and resubscribes by itself. Create with :func:`open_session`.

    Iterate it (``async for item in session``) to get each message as ``bytes`` and each
    :class:`Connected`/:class:`Disconnected` event in order, or call :meth:`receive_batch` to get
    everything available at once (the fast path).
    """

    def __init__(
        self,
        url: str,
        *,
        config: SessionConfig,
        transport: WsTransport,
        protocol: SubscriptionProtocol,
        hooks: Sequence[Instrumentation],
    ) -> None:
        self.url = url
        self._config = config
        self._transport = transport
        self._protocol = protocol
        self._hooks = tuple(hooks)
        self._rng = random.Random(config.seed)
        self._desired: dict[str, None] = {}
        self._sent: dict[str, None] = {}
        self._sub_lock = anyio.Lock()
        self._conn: WsConnection | None = None
        self._liveness: Liveness | None = None
        self._inbox: list[bytes | SessionEvent] = []
        self._inbox_count = 0
        self._data_ready: anyio.Event | None = None
        self._space_ready: anyio.Event | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._scope: anyio.CancelScope | None = None
        self._watchdog_reason: CloseReason | None = None
        self._state = "connecting"
        self._connection_id = 0
        self._connects = 0
        self._attempts = 0
        self._messages = 0
        self._bytes_closed = 0
        self._batches = 0
        self._slow_disconnects = 0
        self._last_data: float | None = None
        self._last_reason: CloseReason | None = None
        self._connected_event = anyio.Event()
        self._stats_sink: tuple[int, int, int, int, float | None] = (0, 0, 0, 0, None)

    def __repr__(self) -> str:
        return f"<WsSession {self.url} state={self._state} connection={self._connection_id}>"

    # ------------------------------------------------------------------ consumer side

    async def receive_batch(self) -> list[bytes | SessionEvent]:
        """
        Wait until something is available, then return everything queued (messages and events).

        Checkpoints once per call. Several tasks may call it at once; each batch goes to one.

        Raises:
            ConnectionLost: retries were exhausted.
            NativeError: a fatal error ended the session (e.g. ``HandshakeRejected``, ``AuthError``).
            anyio.EndOfStream: the session was closed normally and everything was consumed.
        """
        await anyio.lowlevel.checkpoint()
        while not self._inbox:
            if self._error is not None:
                raise self._error
            if self._finished:
                raise anyio.EndOfStream
            # Consumers waiting together share one event: all wake, and whoever finds the inbox
            # already taken waits again (a fresh event per caller would strand the earlier ones).
            event = self._data_ready
            if event is None:
                self._data_ready = event = anyio.Event()
            await event.wait()
        batch = self._inbox
        self._inbox = []
        self._inbox_count = 0
        if self._space_ready is not None:
            self._space_ready.set()
            self._space_ready = None
        return batch

    def __aiter__(self) -> _SessionIterator:
        return _SessionIterator(self)

    def _push(self, items: list[bytes]) -> None:
        self._inbox.extend(items)
        self._inbox_count += len(items)
        event = self._data_ready
        if event is not None:
            self._data_ready = None
            event.set()

    def _push_event(self, event: SessionEvent) -> None:
        self._inbox.append(event)
        ready = self._data_ready
        if ready is not None:
            self._data_ready = None
            ready.set()

    # ------------------------------------------------------------------ subscriptions

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The desired subscription set, in subscription order."""
        return tuple(self._desired)

    async def subscribe(self, *streams: str) -> None:
        """
        Add streams to the subscription set and send them now if connected.

        The set is replayed on every new connection. A send that fails because the connection is
        breaking is not an error: the replay on the next connection covers it.
        """
        for stream in streams:
            self._desired.setdefault(stream, None)
        await self._sync_subscriptions()

    async def unsubscribe(self, *streams: str) -> None:
        """Remove streams from the subscription set, unsubscribing now if connected."""
        for stream in streams:
            self._desired.pop(stream, None)
        await self._sync_subscriptions()

    async def _sync_subscriptions(self) -> None:
        async with self._sub_lock:
            conn = self._conn
            if conn is None:
                return
            gone = [s for s in self._sent if s not in self._desired]
            new = [s for s in self._desired if s not in self._sent]
            try:
                if gone:
                    for s in gone:
                        del self._sent[s]
                    for frame in self._protocol.unsubscribe_messages(gone):
                        await conn.send_text(frame)
                if new:
                    for s in new:
                        self._sent[s] = None
                    for frame in self._protocol.subscribe_messages(new):
                        await conn.send_text(frame)
            except ConnectionLost:
                pass  # the reader sees the broken connection; the next connection replays

    async def send(self, text: str) -> None:
        """
        Send a text frame on the current connection.

        Raises:
            ConnectionLost: not connected, or the connection broke.
        """
        conn = self._conn
        if conn is None:
            raise ConnectionLost("not connected", reason=self._last_reason or CloseReason("closed"))
        await conn.send_text(text)

    async def wait_connected(self) -> None:
        """
        Wait until a connection is open (returns at once if one is).

        Raises:
            NativeError: the session failed before connecting.
        """
        while self._conn is None:
            if self._error is not None:
                raise self._error
            if self._finished:
                raise anyio.EndOfStream
            await self._connected_event.wait()
        await anyio.lowlevel.checkpoint()

    def post(self, item: object) -> None:
        """
        Append ``Posted(item)`` to the inbox, in order with the messages (never blocks).

        Venue code uses it to hand results of its own background work (a REST snapshot, say)
        to the consumer through the same ordered stream, waking it if it waits.
        """
        self._inbox.append(Posted(item))
        ready = self._data_ready
        if ready is not None:
            self._data_ready = None
            ready.set()

    def fail(self, exc: NativeError) -> None:
        """
        End the session with a fatal error (for venue code that detects, e.g., a rejected
        signature). The error is raised to consumers and by the exit of ``open_session()``.
        """
        self._fail(exc)

    def reconnect(self, detail: str = "requested") -> None:
        """Close the current connection (if any) and reconnect with a fresh subscription replay."""
        if self._conn is not None:
            self._abort_connection(CloseReason("requested", 1000, detail))

    # ------------------------------------------------------------------ observability

    def statistics(self) -> SessionStatistics:
        """A frozen snapshot of the session's counters and state (sync, cheap)."""
        live = self._liveness
        conn = self._conn
        now = anyio.current_time()
        return SessionStatistics(
            state=self._state,
            url=self.url,
            connection_id=self._connection_id,
            connects=self._connects,
            reconnects=max(0, self._connects - 1),
            attempts=self._attempts,
            messages=self._messages,
            bytes=self._bytes_closed + (conn.bytes_received if conn is not None else 0),
            batches=self._batches,
            queue_depth=self._inbox_count,
            max_queue=self._config.max_queue,
            slow_consumer_disconnects=self._slow_disconnects,
            last_message_age=None if self._last_data is None else now - self._last_data,
            last_close_reason=self._last_reason,
            pings_sent=(live.pings_sent if live else 0) + self._stats_sink[0],
            pongs_matched=(live.pongs_matched if live else 0) + self._stats_sink[1],
            pongs_unmatched=(live.pongs_unmatched if live else 0) + self._stats_sink[2],
            server_pings=(live.server_pings if live else 0) + self._stats_sink[3],
            last_rtt=live.last_rtt if live and live.last_rtt is not None else self._stats_sink[4],
            subscriptions=len(self._desired),
        )

    def health(self, *, max_message_age: float | None = None) -> Health:
        """
        Evaluate :meth:`statistics`: unhealthy when failed or closed, degraded while not
        connected or when the last message is older than ``max_message_age``, else ok.
        """
        stats = self.statistics()
        findings: list[tuple[HealthStatus, str]] = []
        if stats.state == "failed":
            findings.append(("unhealthy", f"session failed: {self._error}"))
        elif stats.state == "closed":
            findings.append(("unhealthy", "session closed"))
        elif stats.state != "connected":
            findings.append(("degraded", f"{stats.state} (last close: {stats.last_close_reason})"))
        if stats.queue_depth > stats.max_queue // 2:
            findings.append(("degraded", f"consumer lagging: {stats.queue_depth} messages queued"))
        age = stats.last_message_age
        if (
            max_message_age is not None
            and stats.state == "connected"
            and (age is None or age > max_message_age)
        ):
            findings.append(("degraded", f"no message for {'ever' if age is None else f'{age:.1f} s'}"))
        return Health.from_findings(findings)

    # ------------------------------------------------------------------ lifecycle

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            self._state = "failed"
            emit(self._hooks, "session", "failed", url=self.url, error=repr(exc))
        self._wake_all()
        if self._scope is not None:
            self._scope.cancel()

    def _wake_all(self) -> None:
        for event in (self._data_ready, self._space_ready):
            if event is not None:
                event.set()
        self._data_ready = self._space_ready = None
        self._connected_event.set()

    def _abort_connection(self, reason: CloseReason) -> None:
        if self._watchdog_reason is None:
            self._watchdog_reason = reason
        if self._conn_scope is not None:
            self._conn_scope.cancel()

    _conn_scope: anyio.CancelScope | None = None

    async def _supervise(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        run = self._config.backoff.start(self._rng)
        try:
            while True:
                # After a slow-consumer disconnect the inbox is still over max_queue: a new
                # connection now would only add another batch to it (the depth bound is
                # max_queue + one batch), so wait for the consumer first.
                await self._wait_for_room()
                reason = await self._connect_and_serve(run)
                self._last_reason = reason
                delay = run.next_delay(anyio.current_time())
                if delay is None:
                    self._fail(
                        ConnectionLost(
                            f"giving up after {run.attempts} attempts; last close: {reason}",
                            reason=reason,
                            attempts=run.attempts,
                            channel=self.url,
                        )
                    )
                    return
                self._state = "backoff"
                emit(
                    self._hooks,
                    "session",
                    "reconnect_scheduled",
                    delay=delay,
                    attempt=run.attempts,
                    reason=str(reason),
                )
                await anyio.sleep(delay)
        except NativeError as exc:
            self._fail(exc)
        except Exception as exc:
            internal = NativeInternalError(f"session supervisor crashed: {exc!r}", channel=self.url)
            internal.__cause__ = exc
            self._fail(internal)

    async def _connect_and_serve(self, run: BackoffRun) -> CloseReason:
        """Open one connection and serve it until it ends; return why it ended."""
        self._state = "connecting"
        self._attempts += 1
        config = self._config
        now = anyio.current_time()
        liveness = Liveness(config.liveness, now)
        listener = _Listener(liveness)
        try:
            with anyio.fail_after(config.handshake_timeout):
                conn = await self._transport.connect(
                    self.url,
                    headers=config.headers,
                    max_message_size=config.max_message_size,
                    listener=listener,
                )
        except TimeoutError:
            return CloseReason("handshake", None, f"handshake timed out after {config.handshake_timeout:g} s")
        except HandshakeRejected as exc:
            if exc.fatal:
                raise
            return CloseReason("handshake", exc.status_code, str(exc))
        except (TransportError, RemoteProtocolError) as exc:
            return CloseReason("handshake", None, str(exc))
        self._connection_id += 1
        self._connects += 1
        connection_id = self._connection_id
        self._watchdog_reason = None
        reason: CloseReason | None = None
        announced = False
        try:
            with anyio.CancelScope() as scope:
                self._conn_scope = scope
                async with anyio.create_task_group() as tg:
                    self._conn = conn
                    self._liveness = liveness
                    self._sent = {}
                    self._state = "connected"
                    self._connected_event.set()
                    # Liveness runs before the replay: a peer that goes silent right after the
                    # handshake can block the replay on a full socket buffer.
                    tg.start_soon(self._watchdog, conn, liveness)
                    await self._sync_subscriptions()
                    self._push_event(Connected(connection_id, self.url))
                    announced = True
                    emit(self._hooks, "session", "connected", url=self.url, connection_id=connection_id)
                    reason = await self._read_loop(conn, liveness, run)
                    tg.cancel_scope.cancel()
        finally:
            self._conn_scope = None
            self._conn = None
            self._liveness = None
            self._connected_event = anyio.Event()
            self._stats_sink = (
                self._stats_sink[0] + liveness.pings_sent,
                self._stats_sink[1] + liveness.pongs_matched,
                self._stats_sink[2] + liveness.pongs_unmatched,
                self._stats_sink[3] + liveness.server_pings,
                liveness.last_rtt if liveness.last_rtt is not None else self._stats_sink[4],
            )
            final = reason or self._watchdog_reason or CloseReason("closed", 1000, "session closing")
            close_code = final.code if final.kind in ("protocol_error", "too_big") and final.code else 1000
            # A peer that stopped answering pings will not answer a close frame either: release the
            # socket at once instead of waiting close_timeout for nothing (websockets does the same).
            dead_peer = final.kind in _DEAD_PEER_KINDS
            with anyio.move_on_after(config.close_timeout, shield=True):
                await conn.aclose(1011 if dead_peer else close_code, final.kind, wait_for_peer=not dead_peer)
            self._bytes_closed += conn.bytes_received
            if announced:  # consumers see Connected/Disconnected in pairs
                self._push_event(Disconnected(connection_id, final))
            emit(
                self._hooks,
                "session",
                "disconnected",
                url=self.url,
                connection_id=connection_id,
                reason=str(final),
            )
        return final

    async def _read_loop(self, conn: WsConnection, liveness: Liveness, run: BackoffRun) -> CloseReason:
        max_queue = self._config.max_queue
        block = self._config.slow_consumer == "block"
        receive = conn.receive_batch
        got_data = False
        while True:
            try:
                batch = await receive()
            except ConnectionLost as exc:
                return exc.reason
            except MessageTooBig as exc:
                return CloseReason("too_big", 1009, str(exc))
            except FrameProtocolError as exc:
                return CloseReason("protocol_error", exc.close_code, str(exc))
            except RemoteProtocolError as exc:
                return CloseReason("protocol_error", 1002, str(exc))
            now = anyio.current_time()
            liveness.last_data = now
            self._last_data = now
            if not got_data:
                got_data = True
                run.reset()  # healthy: the first data message of this connection
            self._messages += len(batch)
            self._batches += 1
            self._push(batch)
            if self._inbox_count > max_queue:
                if not block:
                    self._slow_disconnects += 1
                    return CloseReason(
                        "slow_consumer", 1000, f"{self._inbox_count} messages queued (max {max_queue})"
                    )
                await self._wait_for_room()

    async def _wait_for_room(self) -> None:
        """Wait until the consumer has taken the inbox down to ``max_queue`` (or the session failed)."""
        max_queue = self._config.max_queue
        while self._inbox_count > max_queue and self._error is None:
            self._space_ready = event = anyio.Event()
            await event.wait()

    async def _watchdog(self, conn: WsConnection, liveness: Liveness) -> None:
        # Pings go out from child tasks: a send blocked by TCP backpressure (a half-open peer, a
        # large send() in progress) must not keep the deadlines from being checked. The tasks end
        # with the connection's cancel scope; at most one ping is outstanding at a time.
        async with anyio.create_task_group() as pings:
            while True:
                now = anyio.current_time()
                action = liveness.poll(now)
                while action is not None:
                    if isinstance(action, Fail):
                        kind, detail = action.kind, action.detail
                        emit(self._hooks, "session", "liveness_failed", kind=kind, detail=detail)
                        self._abort_connection(CloseReason(kind, None, detail))
                        return
                    assert isinstance(action, SendPing)
                    pings.start_soon(_send_ping, conn, action.payload)
                    action = liveness.poll(now)
                deadline = liveness.next_deadline()
                if deadline == math.inf:
                    await anyio.sleep_forever()
                await anyio.sleep_until(deadline)


async def _send_ping(conn: WsConnection, payload: bytes) -> None:
    try:
        await conn.send_ping(payload)
    except ConnectionLost:
        pass  # the reader sees the broken connection


class _Listener:
    __slots__ = ("_liveness",)

    def __init__(self, liveness: Liveness) -> None:
        self._liveness = liveness

    def on_ping(self, payload: bytes) -> None:
        self._liveness.on_server_ping(anyio.current_time())

    def on_pong(self, payload: bytes) -> None:
        self._liveness.on_pong(payload, anyio.current_time())


class _SessionIterator:
    __slots__ = ("_batch", "_index", "_session")

    def __init__(self, session: WsSession) -> None:
        self._session = session
        self._batch: list[bytes | SessionEvent] = []
        self._index = 0

    def __aiter__(self) -> _SessionIterator:
        return self

    async def __anext__(self) -> bytes | SessionEvent:
        index = self._index
        batch = self._batch
        if index < len(batch):
            self._index = index + 1
            return batch[index]
        try:
            self._batch = batch = await self._session.receive_batch()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        self._index = 1
        return batch[0]


@asynccontextmanager
async def open_session(
    url: str,
    *,
    subscriptions: Sequence[str] = (),
    config: SessionConfig | None = None,
    transport: WsTransport | None = None,
    protocol: SubscriptionProtocol | None = None,
    hooks: Sequence[Instrumentation] = (),
) -> AsyncIterator[WsSession]:
    """
    Open a self-healing websocket session to ``url``.

    The session connects in the background (``await session.wait_connected()`` to wait) and
    keeps reconnecting per ``config.backoff``. Exceptions: background tasks never raise into the
    body's task group; a fatal error or retry exhaustion cancels the body and is raised, as a
    single exception (not a group), when the ``async with`` exits. An exception raised by the
    body itself propagates unchanged.

    Raises:
        ConnectionLost: the backoff policy gave up.
        HandshakeRejected: the server refused the upgrade with a 4xx (fatal).
        NativeError: another fatal error (``session.fail()``).
        NativeInternalError: an unexpected failure inside the session (a bug).
    """
    config = config or SessionConfig()
    session = WsSession(
        url,
        config=config,
        transport=transport or AnyioTransport(),
        protocol=protocol or JsonSubscriptions(),
        hooks=hooks,
    )
    for stream in subscriptions:
        session._desired.setdefault(stream, None)
    try:
        async with anyio.create_task_group() as tg:
            session._scope = tg.cancel_scope
            await tg.start(session._supervise)
            try:
                yield session
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        exc = _unwrap(group)
        # Re-raise the body's own exception with its original cause/context intact.
        cause, context, suppress = exc.__cause__, exc.__context__, exc.__suppress_context__
        try:
            raise exc
        finally:
            exc.__cause__, exc.__context__, exc.__suppress_context__ = cause, context, suppress
    finally:
        session._finished = True
        if session._error is None:
            session._state = "closed"
        session._wake_all()
    if session._error is not None:
        raise session._error


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """
    The one exception inside ``group``. Only the body can raise into the group (background
    tasks record their errors), so more than one is a bug.
    """
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    if len(leaves) == 1:
        return leaves[0]
    cancelled = anyio.get_cancelled_exc_class()
    if all(isinstance(leaf, cancelled) for leaf in leaves):
        return leaves[0]
    internal = NativeInternalError(f"unexpected concurrent errors in a session: {leaves!r}")
    internal.__cause__ = group
    return internal
