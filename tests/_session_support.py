"""
Shared helpers for the session tests: a timestamping hook, a consumer that records what it got
and when, a refusing port, and fd/task counters.

The session tests run against the real test server (``native_anyio.testing.open_ws_server``) over
loopback, in virtual time (``@pytest.mark.virtual_time``), so every time below is exact.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from native_anyio import (
    Backoff,
    Connected,
    Disconnected,
    InstrumentationEvent,
    LivenessConfig,
    SessionConfig,
    WsSession,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: The schedule most tests use: 1, 2, 4, 8, 8, ... seconds, no jitter.
BACKOFF = Backoff(initial=1.0, multiplier=2.0, max_delay=8.0, jitter=0.0)
NO_PINGS = LivenessConfig(ping_interval=None)

Item = bytes | Connected | Disconnected


def at(t: float) -> Any:
    """An exact virtual time (the tolerance only absorbs float rounding of the clocks)."""
    return pytest.approx(t, abs=1e-6)


def config(**overrides: Any) -> SessionConfig:
    """A session config for tests: no client pings, short timeouts, the 1-2-4-8 s schedule."""
    values: dict[str, Any] = {
        "backoff": BACKOFF,
        "liveness": NO_PINGS,
        "handshake_timeout": 5.0,
        "close_timeout": 2.0,
        "seed": 0,
    }
    values.update(overrides)
    return SessionConfig(**values)


class Recorder:
    """An instrumentation hook that stamps every event with the (virtual) time it was emitted."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, dict[str, object]]] = []

    def __call__(self, event: InstrumentationEvent) -> None:
        self.events.append((anyio.current_time(), event.name, dict(event.fields)))

    def times(self, name: str) -> list[float]:
        return [t for t, n, _ in self.events if n == name]

    def fields(self, name: str) -> list[dict[str, object]]:
        return [f for _, n, f in self.events if n == name]

    def names(self) -> list[str]:
        return [n for _, n, _ in self.events]


@dataclass
class Timeline:
    """Everything a consumer received, stamped with the time it got it."""

    items: list[tuple[float, Item]] = field(default_factory=list)
    batches: list[list[Item]] = field(default_factory=list)
    #: How many items of each type were received (kept up to date, so predicates are O(1)).
    counts: dict[type, int] = field(default_factory=lambda: {bytes: 0, Connected: 0, Disconnected: 0})

    def add(self, batch: list[Item]) -> None:
        now = anyio.current_time()
        self.batches.append(batch)
        self.items.extend((now, item) for item in batch)
        for item in batch:
            self.counts[type(item)] += 1

    @property
    def messages(self) -> list[bytes]:
        return [item for _, item in self.items if isinstance(item, bytes)]

    def events(self) -> list[Connected | Disconnected]:
        return [item for _, item in self.items if not isinstance(item, bytes)]

    def connected(self) -> list[Connected]:
        return [item for _, item in self.items if isinstance(item, Connected)]

    def disconnected(self) -> list[Disconnected]:
        return [item for _, item in self.items if isinstance(item, Disconnected)]

    def time_of(self, item: Item) -> float:
        return next(t for t, i in self.items if i == item)

    def plain(self) -> list[Item]:
        return [item for _, item in self.items]


async def consume(session: WsSession, timeline: Timeline, until: Callable[[Timeline], bool]) -> None:
    """Receive batches into ``timeline`` until ``until(timeline)`` holds (callers bound the time)."""
    while not until(timeline):
        timeline.add(await session.receive_batch())


def count(kind: type, n: int) -> Callable[[Timeline], bool]:
    """``until`` predicate: at least ``n`` events of ``kind`` (or messages, for ``bytes``) received."""
    return lambda timeline: timeline.counts[kind] >= n


@contextmanager
def refusing_port() -> Iterator[str]:
    """A ``ws://`` URL whose port refuses connections (bound, never listening: the kernel sends RST)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


async def settle() -> None:
    """Let the event loop finish deferred socket closes (asyncio closes them in a callback)."""
    for _ in range(5):
        await anyio.sleep(0.001)
        await anyio.lowlevel.checkpoint()


def subscription_log(received: list[str]) -> list[tuple[str, str]]:
    """The ``(method, stream)`` pairs a server connection received, in order."""
    log: list[tuple[str, str]] = []
    for text in received:
        frame = json.loads(text)
        log.extend((frame["method"], stream) for stream in frame["params"])
    return log


def replay_subscriptions(received: list[str]) -> dict[str, None]:
    """
    The server-side subscription set after the frames of one connection, asserting that no stream
    was subscribed twice or unsubscribed without being subscribed (exactly-once bookkeeping).
    """
    active: dict[str, None] = {}
    for method, stream in subscription_log(received):
        if method == "SUBSCRIBE":
            assert stream not in active, f"duplicate SUBSCRIBE {stream}"
            active[stream] = None
        else:
            assert method == "UNSUBSCRIBE", method
            assert stream in active, f"UNSUBSCRIBE of {stream}, which is not subscribed"
            del active[stream]
    return active
