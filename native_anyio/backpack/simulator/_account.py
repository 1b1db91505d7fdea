"""
The one trading account of the simulator (``sim.api_key``): balances, orders and positions, and
the private stream events they produce.

Rules (a deliberately small matching model; our choices where Backpack is silent):

* an order that crosses the book (a market order, or a limit at or through the touch) takes
  liquidity at once through the engine: the public book changes (a depth update, trades) and
  the account gets ``orderAccepted``, one ``orderFill`` per level, then ``balanceUpdate`` (spot)
  or ``positionUpdate`` (perps);
* the unfilled rest of a GTC limit order rests *on the account only* (it is not inserted into
  the public book and never fills later); spot orders lock their funds (``balanceUpdate``);
  the rest of a market/IOC/FOK order expires (``orderExpired``);
* a post-only order that would cross is refused (400 ``INVALID_ORDER``); spot orders need the
  funds (400 ``INSUFFICIENT_FUNDS``); perps are not margin-checked; fees are zero;
* cancelling an open order sends ``orderCancelled`` and releases its locked funds.

Payload shapes and request parsing live in :mod:`._private`.
"""

from __future__ import annotations

import random
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from ._numbers import decimal_text, to_decimal
from ._payloads import envelope
from ._private import (
    ApiFailure,
    Order,
    Position,
    balance_update,
    order_update,
    parse_order,
    position_update,
    rest_order,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._conn import Connection
    from ._engine import Fill
    from ._hub import Hub
    from ._market import Market

__all__ = ["Account"]

_MAX_OPEN_ORDERS = 1000


class Account:
    """Balances, open orders and positions of the simulated API key."""

    def __init__(self, markets: Mapping[str, Market], hub: Hub, seed: int, now_us: Callable[[], int]) -> None:
        self._markets = markets
        self._hub = hub
        self._now_us = now_us
        self._rng = random.Random(f"{seed}:account")
        self._next_id = self._rng.randrange(10_000_000_000, 60_000_000_000)
        self.balances: dict[str, list[Decimal]] = {"USDC": [Decimal(100_000), Decimal(0), Decimal(0)]}
        for market in markets.values():
            spec = market.spec
            if not spec.is_perp:
                amount = (Decimal(50_000) / spec.price).quantize(spec.step_size, ROUND_DOWN)
                self.balances.setdefault(spec.base, [amount, Decimal(0), Decimal(0)])
        self.orders: dict[int, Order] = {}
        self.positions: dict[str, Position] = {}

    def _new_id(self) -> int:
        self._next_id += self._rng.randint(1, 50)
        return self._next_id

    # -- REST operations -----------------------------------------------------------------------

    def execute(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /api/v1/order``: place one order; returns the REST order object."""
        market = self.market(body.get("symbol"))
        order = parse_order(body, market, self._new_id(), self._now_us() // 1000)
        bid = order.side == "Bid"
        best = market.asks.best() if bid else market.bids.best()
        crosses = order.price is None or (
            best is not None and (order.price >= best if bid else order.price <= best)
        )
        if order.post_only and crosses:
            raise ApiFailure(400, "INVALID_ORDER", "Order would immediately match and take")
        self._check_funds(order, market, best)
        if len(self.orders) >= _MAX_OPEN_ORDERS:
            raise ApiFailure(400, "ORDER_LIMIT", "Too many open orders")
        self._publish_order("orderAccepted", order, market)
        if crosses:
            fills, _ = market.take(order.side, order.qty, order.price, order.id, self._now_us())
            for fill in fills:
                order.executed += fill.qty
                order.executed_quote += fill.price * fill.qty
                order.status = "Filled" if order.executed == order.qty else "PartiallyFilled"
                self._publish_order("orderFill", order, market, fill)
                self._settle(order, market, fill)
        if order.executed < order.qty:
            if order.order_type == "Limit" and order.tif == "GTC":
                self.orders[order.id] = order
                self._lock(order, market, 1)
            else:
                order.status = "Expired"
                self._publish_order("orderExpired", order, market)
        return rest_order(order, market)

    def cancel(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``DELETE /api/v1/order``: cancel one open order by ``orderId`` or ``clientId``."""
        order = self.find(body)
        del self.orders[order.id]
        order.status = "Cancelled"
        market = self._markets[order.symbol]
        self._publish_order("orderCancelled", order, market)
        self._lock(order, market, -1)
        return rest_order(order, market)

    def cancel_all(self, symbol: object) -> list[dict[str, Any]]:
        """``DELETE /api/v1/orders``: cancel every open order of ``symbol``."""
        market = self.market(symbol)
        ids = [o.id for o in self.orders.values() if o.symbol == market.symbol]
        return [self.cancel({"symbol": market.symbol, "orderId": str(i)}) for i in ids]

    def find(self, params: Mapping[str, Any]) -> Order:
        """The open order named by ``orderId``/``clientId`` (and ``symbol``)."""
        market = self.market(params.get("symbol"))
        order_id, client_id = str(params.get("orderId", "")), str(params.get("clientId", ""))
        for order in self.orders.values():
            if order.symbol == market.symbol and (
                str(order.id) == order_id or str(order.client_id) == client_id
            ):
                return order
        raise ApiFailure(400, "INVALID_CLIENT_REQUEST", "Order not found")

    def open_orders(self, symbol: object = None) -> list[dict[str, Any]]:
        """``GET /api/v1/orders``: the open orders (of ``symbol``, when given)."""
        name = None if symbol is None else self.market(symbol).symbol
        return [
            rest_order(o, self._markets[o.symbol]) for o in self.orders.values() if name in (None, o.symbol)
        ]

    def capital(self) -> dict[str, dict[str, str]]:
        """``GET /api/v1/capital``: balances by asset."""
        return {
            asset: {"available": decimal_text(a), "locked": decimal_text(lk), "staked": decimal_text(st)}
            for asset, (a, lk, st) in sorted(self.balances.items())
        }

    def market(self, symbol: object) -> Market:
        """The open market ``symbol`` (400 ``Invalid market symbol`` otherwise)."""
        if not isinstance(symbol, str) or symbol not in self._markets:
            raise ApiFailure(400, "INVALID_CLIENT_REQUEST", "Invalid market symbol")
        return self._markets[symbol]

    # -- parsing -------------------------------------------------------------------------------

    def _check_funds(self, order: Order, market: Market, best: int | None) -> None:
        if market.spec.is_perp:
            return
        spec, engine = market.spec, market.engine
        if order.side == "Ask":
            asset, need = spec.base, to_decimal(order.qty, engine.ds)
        else:
            price = order.price if order.price is not None else (best or 0) * 11 // 10
            asset, need = spec.quote, to_decimal(price, engine.dp) * to_decimal(order.qty, engine.ds)
        if self.balances.get(asset, [Decimal(0)])[0] < need:
            raise ApiFailure(400, "INSUFFICIENT_FUNDS", "Insufficient funds")

    # -- effects -------------------------------------------------------------------------------

    def _change(self, asset: str, available: Decimal, locked: Decimal) -> None:
        balance = self.balances.setdefault(asset, [Decimal(0), Decimal(0), Decimal(0)])
        balance[0] += available
        balance[1] += locked
        self._publish("account.balanceUpdate", balance_update(asset, balance, self._now_us()))

    def _lock(self, order: Order, market: Market, sign: int) -> None:
        if market.spec.is_perp or order.price is None:
            return
        rest = to_decimal(order.qty - order.executed, market.engine.ds)
        if order.side == "Bid":
            amount, asset = rest * to_decimal(order.price, market.engine.dp), market.spec.quote
        else:
            amount, asset = rest, market.spec.base
        self._change(asset, -sign * amount, sign * amount)

    def _settle(self, order: Order, market: Market, fill: Fill) -> None:
        spec, engine = market.spec, market.engine
        qty, price = to_decimal(fill.qty, engine.ds), to_decimal(fill.price, engine.dp)
        sign = 1 if order.side == "Bid" else -1
        if spec.is_perp:
            self._position_fill(market, sign * qty, price)
            return
        self._change(spec.base, sign * qty, Decimal(0))
        self._change(spec.quote, -sign * qty * price, Decimal(0))

    def _position_fill(self, market: Market, qty: Decimal, price: Decimal) -> None:
        symbol = market.symbol
        position = self.positions.get(symbol) or Position(self._new_id())
        before, after = position.qty, position.qty + qty
        if before == 0 or (before > 0) == (qty > 0):
            position.entry = ((position.entry * abs(before) + price * abs(qty)) / abs(after)).quantize(
                Decimal("1E-8")
            )
        else:
            closed = min(abs(qty), abs(before))
            position.realized += (price - position.entry) * closed * (1 if before > 0 else -1)
            if abs(qty) > abs(before):
                position.entry = price
        position.qty = after
        event = "positionOpened" if before == 0 else "positionClosed" if after == 0 else "positionAdjusted"
        if after == 0:
            self.positions.pop(symbol, None)
        else:
            self.positions[symbol] = position
        payload = position_update(market, position, self._now_us())
        payload["e"] = event
        for stream in ("account.positionUpdate", f"account.positionUpdate.{symbol}"):
            self._publish(stream, payload)

    def send_positions(self, conn: Connection, stream: str, symbol: str | None) -> None:
        """The snapshot a new ``account.positionUpdate`` subscriber gets (no ``e``)."""
        for name, position in self.positions.items():
            if symbol in (None, name):
                payload = position_update(self._markets[name], position, self._now_us())
                conn.deliver(envelope(stream, payload), None, stream)

    def _publish(self, stream: str, payload: dict[str, Any]) -> None:
        if self._hub.has(stream):
            self._hub.publish(stream, envelope(stream, payload))

    def _publish_order(self, kind: str, order: Order, market: Market, fill: Fill | None = None) -> None:
        payload = order_update(kind, order, market, self._now_us(), fill)
        for stream in ("account.orderUpdate", f"account.orderUpdate.{order.symbol}"):
            self._publish(stream, payload)

    def order_rest(self, order: Order) -> dict[str, Any]:
        """An order as the REST API returns it."""
        return rest_order(order, self._markets[order.symbol])
