"""Backpack's symbol service: ``/api/v1/markets``, hiding non-``Open`` markets unless asked."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from .._symbols import SymbolService
from ._streams import normalize_symbol
from ._wire_rest import Market

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._health import Instrumentation
    from ._rest import BackpackRest

__all__ = ["BackpackSymbols"]


@final
class BackpackSymbols(SymbolService[Market, Market]):
    """
    Backpack markets by normalized (``SOL-USDC-PERP``) or exchange (``SOL_USDC_PERP``) symbol.

    Args:
        rest: the REST client to fetch ``/api/v1/markets`` with.
        include_closed: also list markets whose ``orderBookState`` is not ``Open``.
        ttl: seconds a catalogue stays fresh (markets are CDN-cached for 300 s upstream).
    """

    def __init__(
        self,
        rest: BackpackRest,
        *,
        include_closed: bool = False,
        ttl: float = 300.0,
        retry_interval: float = 30.0,
        hooks: Iterable[Instrumentation] = (),
    ) -> None:
        super().__init__(ttl=ttl, retry_interval=retry_interval, exchange="BACKPACK", hooks=hooks)
        self._rest = rest
        self.include_closed = include_closed

    def __repr__(self) -> str:
        return f"BackpackSymbols(include_closed={self.include_closed})"

    async def fetch_markets(self) -> list[Market]:
        return await self._rest.markets()

    def include_market(self, raw: Market) -> bool:
        return self.include_closed or raw.order_book_state == "Open"

    def normalize_symbol(self, raw: Market) -> str:
        return normalize_symbol(raw.symbol)

    def exchange_symbol(self, raw: Market) -> str:
        return raw.symbol

    def build_market(self, raw: Market) -> Market:
        return raw
