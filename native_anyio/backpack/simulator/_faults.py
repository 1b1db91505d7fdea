"""
Fault injection: what the simulator does wrong on purpose, and the log of what it did.

Rules:

* a fault never changes the ground truth: a dropped delta is still applied to the truth, a
  corrupted level is only corrupted on the wire;
* ``conn`` selects connections: an id, ``"all"`` (every connection open *now*; depth faults are
  armed on each of them independently) or ``"next"`` (the next connection accepted);
* depth faults (drop, duplicate, reorder, jump, corrupt) take effect on the next depth frame of
  the symbol (realtime or aggregated) each selected connection receives;
* every fault is recorded in the log **when it takes effect** (a dropped frame, a 429 served, a
  connection closed), not when it is armed, so a test can assert exactly what was injected;
* REST faults live in :mod:`._rest_faults` (the controller inherits them).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol, final

from ._payloads import envelope
from ._rest_faults import FaultRecord, RestFaults

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["ConnFaults", "DepthFrame", "FaultController", "FaultRecord", "Target"]

Target = int | Literal["all", "next"]

_MALFORMED = b'{"data":{"E":1,"e":"depth","s":'


@dataclass(slots=True)
class DepthFrame:
    """A depth frame about to be sent: enough to drop, repeat, hold or rewrite it."""

    symbol: str
    stream: str
    first: int
    last: int
    data: dict[str, Any]
    body: bytes
    step: Decimal


@dataclass(slots=True)
class _DepthRule:
    kind: str
    symbol: str
    remaining: int
    stream: str | None = None
    held: DepthFrame | None = None
    started: bool = False


@dataclass(slots=True)
class ConnFaults:
    """The fault state of one connection (read on every frame it is sent)."""

    stop_data: bool = False
    stop_pings: bool = False
    blackhole: bool = False
    tag: bool = False
    cut_at: int | None = None
    depth_rules: list[_DepthRule] = field(default_factory=list)
    #: streams whose data is withheld (a stale stream on a live connection, A3)
    muted: set[str] = field(default_factory=set)

    @property
    def active(self) -> bool:
        """Whether data frames need the slow path."""
        return self.stop_data or self.blackhole or self.tag or self.cut_at is not None or bool(self.muted)


class FaultTarget(Protocol):
    """What the controller needs from a connection."""

    id: int
    faults: ConnFaults

    def request_close(self, code: int, reason: str) -> None: ...
    def hard_drop(self, reason: str) -> None: ...
    def send_text(self, body: bytes) -> None: ...


@dataclass(slots=True)
class _AcceptRule:
    kind: str
    remaining: int
    status: int


@final
class FaultController(RestFaults):
    """
    Arms faults; reached as ``sim.faults``. Every method is synchronous and takes effect on
    the next matching frame, connection or request (see the module rules).
    """

    def __init__(
        self, connections: Callable[[], Mapping[int, FaultTarget]], wall_clock: Callable[[], float]
    ) -> None:
        super().__init__(wall_clock)
        self._connections = connections
        self._next: list[Callable[[FaultTarget], None]] = []
        self._accept: deque[_AcceptRule] = deque()

    # -- bookkeeping ---------------------------------------------------------------------------

    def clear(self) -> None:
        """Disarm every pending fault and reset every connection's fault state (the log stays)."""
        self._next.clear()
        self._accept.clear()
        self._clear_rest()
        for conn in self._connections().values():
            conn.faults.stop_data = conn.faults.stop_pings = conn.faults.tag = False
            conn.faults.cut_at = None
            conn.faults.depth_rules.clear()
            conn.faults.muted.clear()

    def _each(self, conn: Target, action: Callable[[FaultTarget], None]) -> None:
        if conn == "next":
            self._next.append(action)
            return
        connections = self._connections()
        if conn == "all":
            targets = list(connections.values())
        elif conn in connections:
            targets = [connections[conn]]
        else:
            raise KeyError(f"no open connection {conn!r}")
        for target in targets:
            action(target)

    def on_accept(self, conn: FaultTarget) -> bool:
        """Apply the ``"next"`` faults to a new connection; False when it must be dropped at once."""
        actions, self._next = self._next, []
        for action in actions:
            action(conn)
        if self._take_accept("drop_after_accept") is not None:
            self.record("drop_after_accept", conn.id)
            return False
        return True

    def handshake_status(self) -> int | None:
        """An HTTP status to refuse the next handshake with (``reject_handshake``), if armed."""
        status = self._take_accept("reject_handshake")
        if status is not None:
            self.record("reject_handshake", status=status)
        return status

    def _take_accept(self, kind: str) -> int | None:
        if not self._accept or self._accept[0].kind != kind:
            return None
        rule = self._accept[0]
        rule.remaining -= 1
        if rule.remaining <= 0:
            self._accept.popleft()
        return rule.status

    # -- depth faults --------------------------------------------------------------------------

    def _arm_depth(self, kind: str, symbol: str, conn: Target, remaining: int) -> None:
        if remaining < 1:
            raise ValueError("the count must be >= 1")
        self._each(conn, lambda c: c.faults.depth_rules.append(_DepthRule(kind, symbol, remaining)))

    def drop_delta(self, symbol: str, *, conn: Target = "all", count: int = 1) -> None:
        """Do not send the next ``count`` depth frames of ``symbol`` (a gap on the socket)."""
        self._arm_depth("drop_delta", symbol, conn, count)

    def duplicate_delta(self, symbol: str, *, conn: Target = "all", count: int = 1) -> None:
        """Send each of the next ``count`` depth frames of ``symbol`` twice."""
        self._arm_depth("duplicate_delta", symbol, conn, count)

    def reorder_deltas(self, symbol: str, *, conn: Target = "all") -> None:
        """Swap the next two depth frames of ``symbol`` (same stream)."""
        self._arm_depth("reorder_deltas", symbol, conn, 1)

    def jump_sequence(self, symbol: str, k: int, *, conn: Target = "all") -> None:
        """Skip ``k`` update ids of ``symbol`` on the socket: the next ``U`` is ``prev u + 1 + k``."""
        self._arm_depth("jump_sequence", symbol, conn, k)

    def corrupt_level(self, symbol: str, *, conn: Target = "all") -> None:
        """Send a wrong size for one level of the next depth frame, keeping ``U``/``u`` intact."""
        self._arm_depth("corrupt_level", symbol, conn, 1)

    def apply_depth(self, conn: FaultTarget, frame: DepthFrame) -> list[bytes]:
        """The bodies to send ``conn`` instead of ``frame`` (none, one, or two)."""
        rules = conn.faults.depth_rules
        for rule in rules:
            if rule.symbol == frame.symbol and rule.stream in (None, frame.stream):
                return self._apply_rule(conn, rules, rule, frame)
        return [frame.body]

    def _apply_rule(
        self, conn: FaultTarget, rules: list[_DepthRule], rule: _DepthRule, frame: DepthFrame
    ) -> list[bytes]:
        kind, ids = rule.kind, {"U": frame.first, "u": frame.last, "stream": frame.stream}
        if kind == "reorder_deltas":
            if rule.held is None:
                rule.held, rule.stream = frame, frame.stream
                return []
            rules.remove(rule)
            self.record(
                kind, conn.id, frame.symbol, first=rule.held.first, second=frame.first, stream=frame.stream
            )
            return [frame.body, rule.held.body]
        if kind == "jump_sequence":
            if not rule.started:
                rule.started = True
                self.record(kind, conn.id, frame.symbol, k=rule.remaining, **ids)
            rule.remaining -= frame.last - frame.first + 1
            if rule.remaining <= 0:
                rules.remove(rule)
            return []
        rule.remaining -= 1
        if rule.remaining <= 0:
            rules.remove(rule)
        if kind == "drop_delta":
            self.record(kind, conn.id, frame.symbol, **ids)
            return []
        if kind == "duplicate_delta":
            self.record(kind, conn.id, frame.symbol, **ids)
            return [frame.body, frame.body]
        body, price, size = _corrupt(frame)
        self.record(kind, conn.id, frame.symbol, price=price, size=size, **ids)
        return [body]

    # -- connection faults ---------------------------------------------------------------------

    def _flag(self, kind: str, conn: Target, name: str, value: bool) -> None:
        def action(c: FaultTarget) -> None:
            setattr(c.faults, name, value)
            self.record(kind, c.id)

        self._each(conn, action)

    def stop_data(self, conn: Target = "all") -> None:
        """Stop sending stream data (pings, pongs and error frames continue)."""
        self._flag("stop_data", conn, "stop_data", True)

    def resume_data(self, conn: Target = "all") -> None:
        """Undo :meth:`stop_data` (frames published meanwhile are lost)."""
        self._flag("resume_data", conn, "stop_data", False)

    def stop_stream(self, stream: str, conn: Target = "all") -> None:
        """
        Stop sending one stream's data (say ``depth.SOL_USDC``); everything else keeps flowing.

        This models a stuck server-side subscription: it lasts until :meth:`resume_stream` or
        until the client unsubscribes that stream on that connection.
        """

        def action(c: FaultTarget) -> None:
            c.faults.muted.add(stream)
            self.record("stop_stream", c.id, None, stream=stream)

        self._each(conn, action)

    def resume_stream(self, stream: str, conn: Target = "all") -> None:
        """Undo :meth:`stop_stream` (frames published meanwhile are lost)."""

        def action(c: FaultTarget) -> None:
            c.faults.muted.discard(stream)
            self.record("resume_stream", c.id, None, stream=stream)

        self._each(conn, action)

    def stop_pinging(self, conn: Target = "all") -> None:
        """Stop sending server pings (client pings are still answered)."""
        self._flag("stop_pinging", conn, "stop_pings", True)

    def resume_pinging(self, conn: Target = "all") -> None:
        """Undo :meth:`stop_pinging`."""
        self._flag("resume_pinging", conn, "stop_pings", False)

    def blackhole(self, conn: Target = "all") -> None:
        """Stop answering entirely: no data, pings, pongs or close, but keep the socket open."""
        self._flag("blackhole", conn, "blackhole", True)

    def tag_frames(self, conn: Target = "all", *, enabled: bool = True) -> None:
        """Add ``"conn": <id>`` to every data frame's envelope (B6 zombie tests)."""
        self._flag("tag_frames", conn, "tag", enabled)

    def close(self, conn: Target = "all", *, code: int = 1001, reason: str = "server shutting down") -> None:
        """Send a close frame, then drop after the client's close or ``close_grace``."""

        def action(c: FaultTarget) -> None:
            self.record("close", c.id, code=code)
            c.request_close(code, reason)

        self._each(conn, action)

    def drop(self, conn: Target = "all") -> None:
        """Close the TCP connection without a close frame."""

        def action(c: FaultTarget) -> None:
            self.record("drop", c.id)
            c.hard_drop("dropped by fault")

        self._each(conn, action)

    def send_malformed(self, conn: Target = "all", *, payload: bytes = _MALFORMED) -> None:
        """Send one text frame that is not valid JSON."""

        def action(c: FaultTarget) -> None:
            self.record("send_malformed", c.id, size=len(payload))
            c.send_text(payload)

        self._each(conn, action)

    def send_oversize(self, size: int, *, conn: Target = "all") -> None:
        """Send one valid JSON text frame of ``size`` bytes."""
        head, tail = b'{"data":{"e":"oversize","p":"', b'"},"stream":"oversize"}'
        body = head + b"x" * max(0, size - len(head) - len(tail)) + tail

        def action(c: FaultTarget) -> None:
            self.record("send_oversize", c.id, size=len(body))
            c.send_text(body)

        self._each(conn, action)

    def cut_frame(self, conn: Target = "all", *, at: int | None = None) -> None:
        """Send only the first ``at`` bytes (default: half) of the next data frame, then drop."""
        if at is not None and at < 1:
            raise ValueError("at must be >= 1")

        def action(c: FaultTarget) -> None:
            c.faults.cut_at = 0 if at is None else at

        self._each(conn, action)

    def drop_after_accept(self, n: int = 1) -> None:
        """Complete the next ``n`` handshakes, then drop each connection at once."""
        self._accept.append(_AcceptRule("drop_after_accept", n, 0))

    def reject_handshake(self, n: int = 1, *, status: int = 503) -> None:
        """Answer the next ``n`` websocket handshakes with HTTP ``status``."""
        self._accept.append(_AcceptRule("reject_handshake", n, status))


def _corrupt(frame: DepthFrame) -> tuple[bytes, str, str]:
    """Rewrite the size of the first level of ``frame``: +7 steps (a zero becomes a ghost level)."""
    data = dict(frame.data)
    key = "b" if data["b"] else "a"
    levels = [list(level) for level in data[key]]
    price, size = levels[0]
    wrong = (Decimal(size) + 7 * frame.step).quantize(frame.step)
    levels[0][1] = format(wrong, "f")
    data[key] = levels
    return envelope(frame.stream, data), price, levels[0][1]
