"""
Health evaluation and instrumentation hooks.

Every long-lived object exposes ``statistics()`` (a frozen snapshot, sync, cheap) and ``health()``
(an evaluation of that snapshot into ok / degraded / unhealthy with reasons). Health is computed
from the current snapshot only, so it recovers by itself when the cause clears.

Instrumentation is push-based: objects call the hooks they were given with frozen event records.
The core never imports a metrics or logging backend; :class:`LoggingHook` is the one adapter in
the core, built on the standard library.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, final

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Health", "HealthStatus", "Instrumentation", "InstrumentationEvent", "LoggingHook", "emit"]

HealthStatus = Literal["ok", "degraded", "unhealthy"]

_RANK: dict[str, int] = {"ok": 0, "degraded": 1, "unhealthy": 2}


@final
@dataclass(frozen=True, slots=True)
class Health:
    """
    A health verdict.

    Attributes:
        status: ``"ok"``, ``"degraded"`` or ``"unhealthy"``.
        reasons: why it is not ok (empty when ok).
    """

    status: HealthStatus
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the status is ``"ok"``."""
        return self.status == "ok"

    @classmethod
    def from_findings(cls, findings: Iterable[tuple[HealthStatus, str]]) -> Health:
        """Combine ``(status, reason)`` findings: the worst status wins, all reasons are kept."""
        worst: HealthStatus = "ok"
        reasons: list[str] = []
        for status, reason in findings:
            if _RANK[status] > _RANK[worst]:
                worst = status
            if status != "ok":
                reasons.append(reason)
        return cls(worst, tuple(reasons))


@final
@dataclass(frozen=True, slots=True)
class InstrumentationEvent:
    """
    One thing that happened to a long-lived object.

    Attributes:
        source: the emitting object's kind, e.g. ``"session"``, ``"rest"``, ``"symbols"``.
        name: the event, e.g. ``"connected"``, ``"disconnected"``, ``"reconnect_scheduled"``,
            ``"parse_error"``, ``"retry"``, ``"rate_limited"``, ``"refresh_failed"``.
        fields: event details as ``(key, value)`` pairs; never secrets.
    """

    source: str
    name: str
    fields: tuple[tuple[str, object], ...] = ()

    def get(self, key: str, default: object = None) -> object:
        """The value of field ``key``, or ``default``."""
        for k, v in self.fields:
            if k == key:
                return v
        return default


class Instrumentation(Protocol):
    """A hook receiving instrumentation events. It must not block and should not raise."""

    def __call__(self, event: InstrumentationEvent, /) -> None: ...


_log = logging.getLogger("native_anyio")


def emit(hooks: Iterable[Instrumentation], source: str, name: str, **fields: object) -> None:
    """Deliver an event to every hook; a hook that raises is logged and otherwise ignored."""
    event = InstrumentationEvent(source, name, tuple(fields.items()))
    for hook in hooks:
        try:
            hook(event)
        except Exception:  # a broken exporter must never take the feed down
            _log.exception("instrumentation hook %r failed on %s.%s", hook, source, name)


@final
class LoggingHook:
    """
    Instrumentation hook that writes events to a :mod:`logging` logger.

    Args:
        logger: the logger to use (default ``logging.getLogger("native_anyio.events")``).
        level: the level for ordinary events; events named ``*error*``/``*failed*`` use WARNING.
    """

    __slots__ = ("_level", "_logger")

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self._logger = logger if logger is not None else logging.getLogger("native_anyio.events")
        self._level = level

    def __call__(self, event: InstrumentationEvent) -> None:
        level = logging.WARNING if ("error" in event.name or "failed" in event.name) else self._level
        if self._logger.isEnabledFor(level):
            details = " ".join(f"{k}={v}" for k, v in event.fields)
            self._logger.log(level, "%s.%s %s", event.source, event.name, details)

    def __repr__(self) -> str:
        return f"LoggingHook(logger={self._logger.name!r})"
