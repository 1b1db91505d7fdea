"""
Orders and positions of the simulated account as data: request parsing, REST shapes and private
stream payloads (protocol doc §4, as on the wire: ``t`` is ``null`` except on fills, ``o`` is
upper case, ``r``/``y`` are always present, position decimals are strings and ``i`` a number).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ._numbers import decimal_text, to_decimal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._engine import Fill
    from ._market import Market

__all__ = [
    "ApiFailure",
    "Order",
    "Position",
    "bad_payload",
    "balance_update",
    "order_update",
    "parse_order",
    "position_update",
    "rest_order",
]


class ApiFailure(Exception):
    """A REST error answer: JSON ``{"code","message"}``, or plain text when ``plain``."""

    def __init__(self, status: int, code: str, message: str, *, plain: bool = False) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.plain = plain


def bad_payload(detail: str) -> ApiFailure:
    """The plain-text 400 of a body that does not parse (CCXT-quoted wording)."""
    return ApiFailure(400, "", f"Bad Request parse request payload error: {detail}", plain=True)


@dataclass(slots=True)
class Order:
    """One account order (integer units of its market)."""

    id: int
    symbol: str
    side: str
    order_type: str
    tif: str
    qty: int
    price: int | None
    client_id: int | None
    post_only: bool
    reduce_only: bool
    stp: str
    created_ms: int
    status: str = "New"
    executed: int = 0
    executed_quote: int = 0


@dataclass(slots=True)
class Position:
    """A perp position: signed quantity, average entry, realized PnL."""

    id: int
    qty: Decimal = Decimal(0)
    entry: Decimal = Decimal(0)
    realized: Decimal = Decimal(0)


def parse_order(body: Mapping[str, Any], market: Market, order_id: int, created_ms: int) -> Order:
    """
    Validate an ``orderExecute`` body into an :class:`Order`.

    Raises:
        ApiFailure: a plain-text 400 for a body that does not parse, ``INVALID_ORDER`` for a
            price or quantity off the tick/step.
    """
    side = _enum(body, "side", ("Bid", "Ask"), None)
    order_type = _enum(body, "orderType", ("Limit", "Market"), None)
    tif = _enum(body, "timeInForce", ("GTC", "IOC", "FOK"), "GTC")
    stp = _enum(body, "selfTradePrevention", ("RejectTaker", "RejectMaker", "RejectBoth"), "RejectTaker")
    engine = market.engine
    qty = _units(body.get("quantity"), engine.ds, engine.step, "quantity")
    price = None
    if order_type == "Limit":
        price = _units(body.get("price"), engine.dp, engine.tick, "price")
    client_id = body.get("clientId")
    if client_id is not None and (isinstance(client_id, bool) or not isinstance(client_id, int)):
        raise bad_payload(
            'failed to parse "u32": invalid type (occurred while parsing "OrderExecutePayload")'
        )
    return Order(
        order_id,
        market.symbol,
        side,
        order_type,
        tif,
        qty,
        price,
        client_id,
        body.get("postOnly") is True,
        body.get("reduceOnly") is True,
        stp,
        created_ms,
    )


def order_update(
    kind: str, order: Order, market: Market, now: int, fill: Fill | None = None
) -> dict[str, Any]:
    """An ``account.orderUpdate`` payload (fill fields only with ``fill``)."""
    engine = market.engine
    payload: dict[str, Any] = {
        "E": now,
        "O": "USER",
        "S": order.side,
        "T": now,
        "V": order.stp,
        "X": order.status,
        "Z": decimal_text(to_decimal(order.executed_quote, engine.dp + engine.ds)),
        "e": kind,
        "f": order.tif,
        "i": str(order.id),
        "o": order.order_type.upper(),
        "q": decimal_text(to_decimal(order.qty, engine.ds)),
        "r": order.reduce_only,
        "s": order.symbol,
        "t": None,
        "y": order.post_only,
        "z": decimal_text(to_decimal(order.executed, engine.ds)),
    }
    if order.price is not None:
        payload["p"] = decimal_text(to_decimal(order.price, engine.dp))
        quote = to_decimal(order.price, engine.dp) * to_decimal(order.qty, engine.ds)
        payload["Q"] = format(quote.quantize(market.spec.tick_size), "f")
    if order.client_id is not None:
        payload["c"] = order.client_id
    if fill is not None:
        payload.update(
            {
                "L": decimal_text(to_decimal(fill.price, engine.dp)),
                "N": market.spec.quote,
                "l": decimal_text(to_decimal(fill.qty, engine.ds)),
                "m": False,
                "n": "0",
                "t": fill.trade_id,
            }
        )
    return payload


def rest_order(order: Order, market: Market) -> dict[str, Any]:
    """An order as the REST API returns it."""
    engine = market.engine
    out: dict[str, Any] = {
        "createdAt": order.created_ms,
        "executedQuantity": decimal_text(to_decimal(order.executed, engine.ds)),
        "executedQuoteQuantity": decimal_text(to_decimal(order.executed_quote, engine.dp + engine.ds)),
        "id": str(order.id),
        "orderType": order.order_type,
        "postOnly": order.post_only,
        "quantity": decimal_text(to_decimal(order.qty, engine.ds)),
        "reduceOnly": order.reduce_only,
        "selfTradePrevention": order.stp,
        "side": order.side,
        "status": order.status,
        "symbol": order.symbol,
        "timeInForce": order.tif,
        "triggerPrice": None,
    }
    if order.price is not None:
        out["price"] = decimal_text(to_decimal(order.price, engine.dp))
    if order.client_id is not None:
        out["clientId"] = order.client_id
    return out


def position_update(market: Market, position: Position, now: int) -> dict[str, Any]:
    """A position as sent on ``account.positionUpdate`` (without ``e``)."""
    mark = to_decimal(market.engine.mid, market.engine.dp)
    return {
        "B": decimal_text(position.entry),
        "E": now,
        "M": decimal_text(mark),
        "P": decimal_text((mark - position.entry) * position.qty),
        "Q": decimal_text(abs(position.qty)),
        "T": now,
        "b": decimal_text(position.entry),
        "f": "0.02",
        "i": position.id,
        "l": "0",
        "m": "0.0125",
        "n": decimal_text(abs(position.qty) * mark),
        "p": decimal_text(position.realized),
        "q": decimal_text(position.qty),
        "s": market.symbol,
    }


def balance_update(asset: str, balance: list[Decimal], now: int) -> dict[str, Any]:
    """An ``account.balanceUpdate`` payload from ``[available, locked, staked]``."""
    return {
        "A": decimal_text(balance[0]),
        "E": now,
        "L": decimal_text(balance[1]),
        "S": decimal_text(balance[2]),
        "T": now,
        "a": asset,
        "e": "balanceUpdate",
    }


def _enum(body: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str | None) -> str:
    value = body.get(key, default)
    if value not in allowed:
        what = "a valid enumeration value" if value is not None else "an input value"
        raise bad_payload(
            f'failed to parse "{key}": Expect {what} (occurred while parsing "OrderExecutePayload")'
        )
    assert isinstance(value, str)
    return value


def _units(value: object, decimals: int, unit: int, key: str) -> int:
    """A positive decimal (string or JSON number) as units that are a multiple of ``unit``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise bad_payload(
            f'failed to parse "{key}": Expect an input value (occurred while parsing "OrderExecutePayload")'
        )
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise bad_payload(f'failed to parse "{key}": invalid decimal') from None
    scaled = number.scaleb(decimals) if number.is_finite() else Decimal(-1)
    if scaled <= 0 or scaled != scaled.to_integral_value() or int(scaled) % unit:
        raise ApiFailure(400, "INVALID_ORDER", f"Invalid {key}")
    return int(scaled)
