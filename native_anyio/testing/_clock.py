"""
A virtual-time asyncio event loop: the asyncio counterpart of trio's ``MockClock(autojump_threshold=0)``.

When every task is blocked and no socket is ready, the loop jumps its clock straight to the next
timer instead of sleeping, so timing behaviour (heartbeats, backoff, idle detection) runs in
virtual time with exact timestamps and no real sleeps. Real sockets keep working: the selector is
always polled first (without blocking), and the clock only jumps when nothing is ready. While a
worker thread is running (``run_in_executor``, e.g. ``getaddrinfo``) the loop waits in real time
instead, so a thread's result is never overtaken by a jump.

Use it with anyio: ``anyio.run(main, backend_options={"loop_factory": VirtualClockEventLoop})``.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["VirtualClockEventLoop"]

# While a worker thread runs, poll in real time in slices this long.
_THREAD_POLL = 0.005


class _AutojumpSelector(selectors.BaseSelector):
    """Wraps a real selector; on an idle poll with a timeout, advances the loop's virtual clock."""

    def __init__(self, loop: VirtualClockEventLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if self._loop._threads_in_flight:
            wait = _THREAD_POLL if timeout is None else min(timeout, _THREAD_POLL)
            return self._real.select(wait)
        if timeout is None:
            return self._real.select(None)
        self._loop._advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


@final
class VirtualClockEventLoop(asyncio.SelectorEventLoop):
    """
    An asyncio event loop whose ``time()`` is virtual and jumps when the loop is idle.

    The clock starts at 0.0. :meth:`advance` moves it forward by hand.
    """

    def __init__(self) -> None:
        self._virtual_time = 0.0
        self._threads_in_flight = 0
        super().__init__(selector=_AutojumpSelector(self))

    def time(self) -> float:
        return self._virtual_time

    def _advance(self, seconds: float) -> None:
        if seconds > 0:
            self._virtual_time += seconds

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._advance(seconds)

    def run_in_executor(  # type: ignore[override]  # the variadic generic signature adds nothing here
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        self._threads_in_flight += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: asyncio.Future[Any]) -> None:
        self._threads_in_flight -= 1

    async def shutdown_default_executor(self, *args: Any) -> None:
        # Python 3.12+ joins the executor from a plain thread under a timeout: wait in real time
        # (as for any worker thread) instead of jumping straight past that timeout.
        self._threads_in_flight += 1
        try:
            await super().shutdown_default_executor(*args)
        finally:
            self._threads_in_flight -= 1
