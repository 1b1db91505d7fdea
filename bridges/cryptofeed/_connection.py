"""
``BackpackConnection``: the ``cryptofeed.connection.AsyncConnection`` that hosts our anyio
Backpack client.

Tasks (all on cryptofeed's asyncio loop):

* cryptofeed's connection-handler task calls ``_open()``, iterates ``read()`` and awaits the
  callbacks; it never touches a socket.
* ``_open()`` creates one asyncio Task, the *runner*, that owns the anyio side: it enters
  ``open_backpack()`` (the websocket session with its reader, pinger, watchdog and REST snapshot
  tasks, all in anyio task groups that live and die inside the runner) and forwards each batch
  of events into a bounded memory object stream. No task group or cancel scope is ever held
  across a ``yield`` or entered in one task and left in another (cryptofeed closes connections
  from other tasks and abandons ``read()`` without ``aclose()``).
* ``close()`` (idempotent, callable from any task: the handler, ``Feed.shutdown()``, 3.x's
  stop-watch) cancels the runner, which cancels the whole anyio task group (the session's close
  handshake runs shielded and bounded by ``SessionConfig.close_timeout``), and waits for it,
  bounded too.

One owner of reconnect: the session reconnects and resyncs books by itself, so ``read()`` keeps
going across drops. ``read()`` only ends (by raising, never by returning, which would make
cryptofeed reconnect in a hot loop) when the session ended for good or on ``close()``.

Slow callbacks: the stream holds at most ``max_buffer`` batches. While it is full the runner stops
taking events from the session; the session's reader keeps reading (and answering pings) into its
bounded inbox, and when that exceeds ``max_queue`` the session applies its ``disconnect`` policy:
it drops the connection (reason ``slow_consumer``), reconnects once the consumer caught up and
books resync from fresh snapshots. Memory is bounded, pongs are never starved, and no gap is
silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
from cryptofeed.connection import AsyncConnection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from native_anyio.backpack import BackpackClient, Event

__all__ = ["BackpackConnection"]

LOG = logging.getLogger("bridges.cryptofeed")

_Batch = list["Event"]


class BackpackConnection(AsyncConnection):  # type: ignore[misc]
    """One cryptofeed connection = one anyio Backpack client (which reconnects by itself)."""

    def __init__(self, conn_id: str, subscription: dict[str, list[str]], *,
                 client_factory: Callable[[], Any], max_buffer: int, close_bound: float) -> None:  # fmt: skip
        super().__init__(conn_id, subscription=subscription)
        self._client_factory = client_factory
        self._max_buffer = max_buffer
        self._close_bound = close_bound
        self._is_open = False
        self._runner: asyncio.Task[None] | None = None
        self._send: MemoryObjectSendStream[_Batch] | None = None
        self._receive: MemoryObjectReceiveStream[_Batch] | None = None
        #: the client of the current attempt (``None`` between attempts); for statistics
        self.client: BackpackClient | None = None
        self.opens = 0

    @property
    def is_open(self) -> bool:
        # A plain flag: cryptofeed reads it from atexit (2.4.1) and from stats (3.x); never raises.
        return self._is_open

    def buffered(self) -> int:
        """Batches waiting for the cryptofeed callbacks."""
        receive = self._receive
        return 0 if receive is None else receive.statistics().current_buffer_used

    async def _open(self) -> None:
        """
        Start the runner and wait until the session is connected and subscribed.

        Raises:
            Exception: whatever ended the runner first (e.g. ``UnknownSymbolError``,
                ``HandshakeRejected``, ``ConnectionLost``), or ``ConnectionResetError`` when
                ``close()`` ran meanwhile.
        """
        self.sent = self.received = 0
        self.last_message: float | None = None
        send, receive = anyio.create_memory_object_stream[_Batch](self._max_buffer)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        runner = loop.create_task(self._run(send, ready), name=f"{self.id}.runner")
        self._runner, self._send, self._receive = runner, send, receive
        self._is_open = True
        self.opens += 1
        try:
            await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await asyncio.shield(self.close())
            raise
        if not ready.done():
            ready.cancel()
            await self.close()
            raise _ended(runner, "closed while opening")

    async def _run(self, send: MemoryObjectSendStream[_Batch], ready: asyncio.Future[None]) -> None:
        async with send, self._client_factory() as client:
            self.client = client
            try:
                await client.session.wait_connected()
                if not ready.done():
                    ready.set_result(None)
                while True:
                    batch = await client.receive_events()
                    await send.send(batch)
            finally:
                self.client = None

    async def read(self) -> AsyncIterator[_Batch]:
        """
        Yield batches of events until the session ends; then raise, never return.

        Raises:
            Exception: the session's fatal error (``ConnectionLost``, ``AuthError``, ...).
            ConnectionResetError: the connection was closed.
        """
        receive, runner = self._receive, self._runner
        if receive is None or runner is None:
            raise ConnectionResetError(f"{self.id}: not open")
        while True:
            try:
                batch = await receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                break
            self.received += len(batch)
            self.last_message = time.time()
            yield batch
        # The runner closes its send stream while unwinding: wait until it is really done.
        await asyncio.wait({runner}, timeout=self._close_bound)
        raise _ended(runner, "closed")

    async def write(self, msg: str) -> None:
        """Not supported: the session sends its own subscriptions."""
        raise NotImplementedError("BackpackConnection sends nothing on cryptofeed's behalf")

    async def close(self) -> None:
        """Stop the runner (cancels the anyio task group) and wait for it, bounded; idempotent."""
        # Capture this attempt's objects before any await: a close() that resumes after the
        # handler already re-opened must not touch the next attempt (a verified race).
        runner, send, receive = self._runner, self._send, self._receive
        if runner is None:
            return
        self._is_open = False
        self._runner = self._send = self._receive = None
        receive.close()  # type: ignore[union-attr]
        runner.cancel()
        done, _ = await asyncio.wait({runner}, timeout=self._close_bound)
        send.close()  # type: ignore[union-attr]  # also when the runner never started
        if done and not runner.cancelled():
            runner.exception()  # retrieved: a failure here is reported by read() or _open()
        if not done:
            LOG.error("%s: the Backpack session did not stop within %.1f s", self.id, self._close_bound)


def _ended(runner: asyncio.Task[None], detail: str) -> BaseException:
    """The exception that explains why ``runner`` ended."""
    if runner.done() and not runner.cancelled():
        error = runner.exception()
        if error is not None and not isinstance(error, anyio.EndOfStream):
            return error
    return ConnectionResetError(detail)
