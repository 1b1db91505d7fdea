"""Adapters that run native_anyio sessions inside other frameworks (cryptofeed: coming)."""

from __future__ import annotations
