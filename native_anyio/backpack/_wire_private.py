"""
Wire structs of the private (``account.*``) Backpack streams.

Where the documentation and recorded frames disagree (``backpack-protocol.md`` §4, §8), both
forms decode:

* order updates: ``t`` is ``null`` on non-fill events, ``Q`` appears on plain limit orders, ``r``
  and ``y`` are present booleans on the wire; every conditional field is optional here;
* position updates: decimals arrive as JSON numbers (DOCS) or strings (wire) and ``i`` as a string
  (DOCS) or a number (wire). ``position_id`` is always a ``str`` after decoding;
* the position snapshot sent on subscription has no ``e`` field, so the tagged union cannot
  decode it: :func:`~native_anyio.backpack._wire.decode_frame` decodes it on a fallback path and
  wraps it in :class:`WsPositionSnapshot` (a library-made container with the synthetic tag
  ``positionSnapshot``).
"""

from __future__ import annotations

from decimal import Decimal  # noqa: TC003 - msgspec resolves annotations at run time
from typing import Literal, TypeAlias

import msgspec
from msgspec import field

from ._wire_common import Id, Micros, Millis, WsEvent, check_optional

__all__ = [
    "ORDER_EVENTS",
    "POSITION_EVENTS",
    "RFQ_EVENTS",
    "Side",
    "WsBalanceUpdate",
    "WsOrderAccepted",
    "WsOrderCancelled",
    "WsOrderExpired",
    "WsOrderFill",
    "WsOrderModified",
    "WsOrderUpdate",
    "WsPosition",
    "WsPositionAdjusted",
    "WsPositionClosed",
    "WsPositionOpened",
    "WsPositionSnapshot",
    "WsPositionUpdate",
    "WsPositionUpdated",
    "WsQuoteAccepted",
    "WsQuoteCancelled",
    "WsRfqAccepted",
    "WsRfqActive",
    "WsRfqCancelled",
    "WsRfqCandidate",
    "WsRfqFilled",
    "WsRfqRefreshed",
    "WsRfqUpdate",
    "WsTriggerFailed",
    "WsTriggerPlaced",
]

#: Order side as spelled by Backpack.
Side: TypeAlias = Literal["Bid", "Ask"]


class WsOrderUpdate(WsEvent, frozen=True, kw_only=True):
    """
    Base of the ``account.orderUpdate`` events; the subclass says which event (``e``).

    Field names are descriptive; the wire letter is given for each in ``backpack-protocol.md``
    §4.2 (``o`` order type is ``LIMIT``/``MARKET`` on the socket, unlike REST).
    """

    symbol: str = field(name="s")
    order_id: str = field(name="i")
    side: Side = field(name="S")
    order_type: str = field(name="o")
    status: str = field(name="X")
    engine_time: Micros = field(name="T")
    client_order_id: Id | None = field(default=None, name="c")
    time_in_force: str | None = field(default=None, name="f")
    quantity: Decimal | None = field(default=None, name="q")
    quote_quantity: Decimal | None = field(default=None, name="Q")
    price: Decimal | None = field(default=None, name="p")
    trigger_price: Decimal | None = field(default=None, name="P")
    trigger_by: str | None = field(default=None, name="B")
    trigger_quantity: Decimal | None = field(default=None, name="Y")
    take_profit_trigger_price: Decimal | None = field(default=None, name="a")
    stop_loss_trigger_price: Decimal | None = field(default=None, name="b")
    take_profit_limit_price: Decimal | None = field(default=None, name="j")
    stop_loss_limit_price: Decimal | None = field(default=None, name="k")
    take_profit_trigger_by: str | None = field(default=None, name="d")
    stop_loss_trigger_by: str | None = field(default=None, name="g")
    expiry_reason: str | None = field(default=None, name="R")
    trade_id: Id | None = field(default=None, name="t")
    fill_quantity: Decimal | None = field(default=None, name="l")
    fill_price: Decimal | None = field(default=None, name="L")
    executed_quantity: Decimal | None = field(default=None, name="z")
    executed_quote_quantity: Decimal | None = field(default=None, name="Z")
    is_maker: bool | None = field(default=None, name="m")
    fee: Decimal | None = field(default=None, name="n")
    fee_symbol: str | None = field(default=None, name="N")
    self_trade_prevention: str | None = field(default=None, name="V")
    origin: str | None = field(default=None, name="O")
    related_order_id: str | None = field(default=None, name="I")
    strategy_id: Id | None = field(default=None, name="H")
    post_only: bool | None = field(default=None, name="y")
    reduce_only: bool | None = field(default=None, name="r")


class WsOrderAccepted(WsOrderUpdate, frozen=True, tag="orderAccepted"):
    """An order was accepted by the matching engine."""


class WsOrderCancelled(WsOrderUpdate, frozen=True, tag="orderCancelled"):
    """An order was cancelled."""


class WsOrderExpired(WsOrderUpdate, frozen=True, tag="orderExpired"):
    """An order expired (``expiry_reason`` says why)."""


class WsOrderFill(WsOrderUpdate, frozen=True, tag="orderFill"):
    """An order was (partially) filled; the fill fields are set."""


class WsOrderModified(WsOrderUpdate, frozen=True, tag="orderModified"):
    """A resting reduce-only order's quantity was decreased."""


class WsTriggerPlaced(WsOrderUpdate, frozen=True, tag="triggerPlaced"):
    """A trigger order was placed."""


class WsTriggerFailed(WsOrderUpdate, frozen=True, tag="triggerFailed"):
    """A trigger order failed to place."""


class _PositionFields(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str = field(name="s")
    position_id: str | int = field(name="i")
    net_quantity: Decimal = field(name="q")
    net_exposure_quantity: Decimal | None = field(default=None, name="Q")
    net_exposure_notional: Decimal | None = field(default=None, name="n")
    entry_price: Decimal | None = field(default=None, name="B")
    break_even_price: Decimal | None = field(default=None, name="b")
    mark_price: Decimal | None = field(default=None, name="M")
    estimated_liquidation_price: Decimal | None = field(default=None, name="l")
    initial_margin_fraction: Decimal | None = field(default=None, name="f")
    maintenance_margin_fraction: Decimal | None = field(default=None, name="m")
    pnl_realized: Decimal | None = field(default=None, name="p")
    pnl_unrealized: Decimal | None = field(default=None, name="P")
    engine_time: Micros | None = field(default=None, name="T")

    def __post_init__(self) -> None:
        check_optional(self)
        if type(self.position_id) is int:
            msgspec.structs.force_setattr(self, "position_id", str(self.position_id))


class WsPosition(_PositionFields, frozen=True, kw_only=True):
    """
    One position of the untagged snapshot sent on subscription (no ``e`` field).

    ``position_id`` is always a ``str`` after decoding (the wire sends a string or a number).
    """

    event_time: Micros | None = field(default=None, name="E")


class WsPositionUpdate(_PositionFields, frozen=True, kw_only=True, tag_field="e"):
    """
    Base of the ``account.positionUpdate`` events. ``net_quantity`` is negative when short.

    ``position_id`` is always a ``str`` after decoding (the wire sends a string or a number).
    """

    event_time: Micros = field(name="E")


class WsPositionAdjusted(WsPositionUpdate, frozen=True, tag="positionAdjusted"):
    """A position changed size."""


class WsPositionOpened(WsPositionUpdate, frozen=True, tag="positionOpened"):
    """A position was opened."""


class WsPositionClosed(WsPositionUpdate, frozen=True, tag="positionClosed"):
    """A position was closed."""


class WsPositionUpdated(WsPositionUpdate, frozen=True, tag="positionUpdated"):
    """A position's marks changed (not in the docs; routed by ccxt)."""


class WsPositionSnapshot(msgspec.Struct, frozen=True, kw_only=True, tag_field="e", tag="positionSnapshot"):
    """
    The open positions sent on subscription, wrapped by the library.

    The server sends one untagged object (or, if it ever does, an array of them); the tag
    ``positionSnapshot`` is synthetic so that this struct can sit in the tagged union.
    """

    positions: tuple[WsPosition, ...]


class WsRfqUpdate(WsEvent, frozen=True, kw_only=True):
    """
    Base of the ``account.rfqUpdate`` events (fields are conditional per event).

    ``submission_time``/``expiry_time`` are milliseconds; ids can exceed 2**53.
    """

    rfq_id: Id = field(name="R")
    quote_id: Id | None = field(default=None, name="u")
    client_id: str | None = field(default=None, name="C")
    symbol: str | None = field(default=None, name="s")
    side: Side | None = field(default=None, name="S")
    quantity: Decimal | None = field(default=None, name="q")
    quote_quantity: Decimal | None = field(default=None, name="Q")
    price: Decimal | None = field(default=None, name="p")
    submission_time: Millis | None = field(default=None, name="w")
    expiry_time: Millis | None = field(default=None, name="W")
    status: str | None = field(default=None, name="X")
    order_type: str | None = field(default=None, name="o")
    engine_time: Micros | None = field(default=None, name="T")


class WsRfqActive(WsRfqUpdate, frozen=True, tag="rfqActive"):
    """An RFQ is open for quotes (broadcast)."""


class WsRfqAccepted(WsRfqUpdate, frozen=True, tag="rfqAccepted"):
    """Own RFQ accepted."""


class WsRfqRefreshed(WsRfqUpdate, frozen=True, tag="rfqRefreshed"):
    """Own RFQ refreshed."""


class WsRfqCancelled(WsRfqUpdate, frozen=True, tag="rfqCancelled"):
    """Own RFQ cancelled."""


class WsRfqCandidate(WsRfqUpdate, frozen=True, tag="rfqCandidate"):
    """A quote candidate for own RFQ."""


class WsRfqFilled(WsRfqUpdate, frozen=True, tag="rfqFilled"):
    """An RFQ was filled (sent to requester and quoter)."""


class WsQuoteAccepted(WsRfqUpdate, frozen=True, tag="quoteAccepted"):
    """Own quote accepted."""


class WsQuoteCancelled(WsRfqUpdate, frozen=True, tag="quoteCancelled"):
    """Own quote cancelled."""


class WsBalanceUpdate(WsEvent, frozen=True, kw_only=True, tag="balanceUpdate"):
    """
    ``account.balanceUpdate``: the new balances of one asset (captured by BBGO, not in DOCS).

    Attributes:
        asset: ``a``, e.g. ``"USDT"``.
        available: ``A``. locked: ``L``. staked: ``S``.
    """

    asset: str = field(name="a")
    available: Decimal = field(name="A")
    locked: Decimal = field(name="L")
    staked: Decimal | None = field(default=None, name="S")
    engine_time: Micros | None = field(default=None, name="T")


#: The tagged order-update structs, one per event name.
ORDER_EVENTS: tuple[type[WsOrderUpdate], ...] = (
    WsOrderAccepted, WsOrderCancelled, WsOrderExpired, WsOrderFill, WsOrderModified, WsTriggerPlaced,
    WsTriggerFailed,
)  # fmt: skip
#: The tagged position-update structs.
POSITION_EVENTS: tuple[type[WsPositionUpdate], ...] = (
    WsPositionAdjusted, WsPositionOpened, WsPositionClosed, WsPositionUpdated,
)  # fmt: skip
#: The tagged RFQ-update structs.
RFQ_EVENTS: tuple[type[WsRfqUpdate], ...] = (
    WsRfqActive, WsRfqAccepted, WsRfqRefreshed, WsRfqCancelled, WsRfqCandidate, WsRfqFilled,
    WsQuoteAccepted, WsQuoteCancelled,
)  # fmt: skip
