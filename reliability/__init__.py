"""
Reliability figures for native-anyio (issue 7).

``python reliability/run.py --full --out RELIABILITY.md`` (or ``nox -s reliability``) runs every
scenario in :mod:`reliability.scenarios` on asyncio, asyncio+uvloop and trio and writes the table.
The contract between the runner and the scenarios lives in :mod:`reliability._figures`.
"""

from __future__ import annotations

from reliability._figures import BACKENDS, Context, Result, Scenario

__all__ = ["BACKENDS", "Context", "Result", "Scenario"]
