"""
The reliability scenarios: every module here defines ``SCENARIOS: list[Scenario]``.

:func:`discover` imports each module (with :mod:`pkgutil`, so adding a scenario never edits a
shared list) and returns all scenarios in module order. Keys must be unique.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reliability._figures import Scenario

__all__ = ["discover"]


def discover() -> list[Scenario]:
    """Every scenario of every module in this package, sorted by module name."""
    found: list[Scenario] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "SCENARIOS", []))
    keys = [scenario.key for scenario in found]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate scenario keys: {', '.join(duplicates)}")
    return found
