"""
Connection liveness policy, sans-IO: client pings, server-ping watchdog and data-idle detection.

Time is passed in (``now``, seconds on the event loop clock); nothing here sleeps or does I/O.
The session asks :meth:`Liveness.poll` what to do and :meth:`Liveness.next_deadline` when to ask
again, and reports what it observed (``on_data``, ``on_pong``, ``on_server_ping``).

Rules, checked in this order by ``poll``:

1. a client ping is outstanding for ``ping_timeout`` seconds -> fail ``ping_timeout`` (transport
   liveness: a half-open connection);
2. no server ping for ``server_ping_interval * server_ping_grace`` seconds (when a cadence is
   configured) -> fail ``server_ping_lost``;
3. no data message for ``idle_timeout`` seconds -> fail ``idle`` (data liveness: pings and pongs
   do not reset this timer, so a stream that is alive but silent is caught);
4. no ping outstanding and ``ping_interval`` elapsed since the last ping was sent -> send a ping.

Only a pong whose payload matches the outstanding ping clears it; unsolicited or duplicate pongs
are counted and otherwise ignored (reliability property E3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import final

__all__ = ["Fail", "Liveness", "LivenessConfig", "SendPing"]


@final
@dataclass(frozen=True, slots=True)
class LivenessConfig:
    """
    Liveness settings (seconds; ``None`` disables a check).

    Args:
        ping_interval: send a client ping this long after the previous one was sent.
        ping_timeout: fail when a ping gets no matching pong within this time.
        server_ping_interval: the server's ping cadence, if it pings (Backpack: 60 s).
        server_ping_grace: fail after ``server_ping_interval * server_ping_grace`` without a
            server ping.
        idle_timeout: fail after this long without a data message.
    """

    ping_interval: float | None = 20.0
    ping_timeout: float = 20.0
    server_ping_interval: float | None = None
    server_ping_grace: float = 1.5
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        # Written as "not (x > 0)" so that NaN, which compares false both ways, is refused too.
        for name in ("ping_interval", "server_ping_interval", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None")
        if not self.ping_timeout > 0:
            raise ValueError("ping_timeout must be > 0")
        if not self.server_ping_grace >= 1:
            raise ValueError("server_ping_grace must be >= 1")


@dataclass(frozen=True, slots=True)
class SendPing:
    """Action: send a ping with this payload."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Fail:
    """Action: the connection is not alive; close it with this reason kind."""

    kind: str
    detail: str


class Liveness:
    """The liveness state of one connection, created when it opens."""

    __slots__ = ("_config", "_counter", "_next_ping_at", "_outstanding", "_ping_sent_at",
                 "last_data", "last_rtt", "last_server_ping", "pings_sent", "pongs_matched",
                 "pongs_unmatched", "server_pings")  # fmt: skip

    def __init__(self, config: LivenessConfig, now: float) -> None:
        self._config = config
        self._counter = 0
        self._outstanding: bytes | None = None
        self._ping_sent_at = 0.0
        self._next_ping_at = now + config.ping_interval if config.ping_interval is not None else math.inf
        self.last_data = now
        self.last_server_ping = now
        self.last_rtt: float | None = None
        self.pings_sent = 0
        self.pongs_matched = 0
        self.pongs_unmatched = 0
        self.server_pings = 0

    def on_data(self, now: float) -> None:
        """A data message arrived."""
        self.last_data = now

    def on_server_ping(self, now: float) -> None:
        """The server pinged us (the transport answers it)."""
        self.server_pings += 1
        self.last_server_ping = now

    def on_pong(self, payload: bytes, now: float) -> None:
        """A pong arrived; it clears the outstanding ping only when the payload matches."""
        if self._outstanding is not None and payload == self._outstanding:
            self._outstanding = None
            self.pongs_matched += 1
            self.last_rtt = now - self._ping_sent_at
        else:
            self.pongs_unmatched += 1

    def poll(self, now: float) -> SendPing | Fail | None:
        """What to do at time ``now``; call again until it returns ``None``."""
        config = self._config
        if self._outstanding is not None and now >= self._ping_sent_at + config.ping_timeout:
            return Fail("ping_timeout", f"no pong within {config.ping_timeout:g} s")
        if config.server_ping_interval is not None:
            limit = config.server_ping_interval * config.server_ping_grace
            if now >= self.last_server_ping + limit:
                return Fail("server_ping_lost", f"no server ping for {limit:g} s")
        if config.idle_timeout is not None and now >= self.last_data + config.idle_timeout:
            return Fail("idle", f"no data for {config.idle_timeout:g} s")
        if self._outstanding is None and now >= self._next_ping_at:
            self._counter += 1
            payload = self._counter.to_bytes(8, "big")
            self._outstanding = payload
            self._ping_sent_at = now
            self.pings_sent += 1
            assert config.ping_interval is not None
            self._next_ping_at = now + config.ping_interval
            return SendPing(payload)
        return None

    def next_deadline(self) -> float:
        """When ``poll`` may next have something to do (``math.inf``: never)."""
        config = self._config
        deadline = math.inf
        if self._outstanding is not None:
            deadline = self._ping_sent_at + config.ping_timeout
        else:
            deadline = self._next_ping_at
        if config.server_ping_interval is not None:
            deadline = min(
                deadline, self.last_server_ping + config.server_ping_interval * config.server_ping_grace
            )
        if config.idle_timeout is not None:
            deadline = min(deadline, self.last_data + config.idle_timeout)
        return deadline
