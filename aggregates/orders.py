"""The order lifecycle as a pure state machine, and a fold of many orders keyed by client id.

Legal moves (anything else is a broken invariant and raises :class:`IllegalTransition`)::

    (none)            --OrderRequested-------> REQUESTED
    REQUESTED         --OrderAccepted--------> ACCEPTED
    REQUESTED         --OrderRejected--------> REJECTED
    ACCEPTED          --OrderPartiallyFilled-> PARTIALLY_FILLED
    PARTIALLY_FILLED  --OrderPartiallyFilled-> PARTIALLY_FILLED
    ACCEPTED | PARTIALLY_FILLED --OrderFilled----> FILLED
    ACCEPTED | PARTIALLY_FILLED --OrderCancelled-> CANCELLED

Fills must keep ``filled <= requested``; a partial fill leaves something (and says how much), an
``OrderFilled`` completes the order exactly, a cancellation leaves what remains unfilled (its
``remaining_contracts`` is that amount, or 0 for "not stated"). Every
event must name the same order, symbol (and side, for fills) as the request. Why so strict: the
read model, reconciliation and replay all trust this fold, so an exchange answer that does not fit
the order it answers must stop the fold loudly rather than be folded into a wrong position.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from enum import StrEnum

import msgspec

from aggregates import events as ev
from aggregates.numeric import EXACT_DIGITS, exact_context

ORDER_EVENTS = (  # a tuple of the exact classes, so isinstance narrows to their union
    ev.OrderRequested,
    ev.OrderAccepted,
    ev.OrderPartiallyFilled,
    ev.OrderFilled,
    ev.OrderRejected,
    ev.OrderCancelled,
)

_ZERO = Decimal(0)


class OrderStatus(StrEnum):
    REQUESTED = "REQUESTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


#: Statuses from which no event is legal any more.
TERMINAL: frozenset[OrderStatus] = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
)
_FILLABLE = frozenset({OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


class IllegalTransition(Exception):
    """An order event that does not fit the order's state: a bug or a corrupt log, never routine."""


class OrderState(msgspec.Struct, frozen=True, kw_only=True):
    """One order as the log tells it. ``filled_notional`` is sum(price x contracts) of the fills."""

    client_order_id: str
    symbol: str
    side: ev.Side
    order_type: str
    intent: ev.OrderIntent
    reduce_only: bool
    contracts: Decimal
    limit_price: Decimal | None
    status: OrderStatus
    filled_contracts: Decimal = _ZERO
    filled_notional: Decimal = _ZERO
    fees: Decimal = _ZERO
    fill_count: int = 0
    exchange_order_id: str | None = None
    reason: str | None = None
    requested_at_ms: int = 0
    updated_at_ms: int = 0

    @property
    def remaining_contracts(self) -> Decimal:
        return self.contracts - self.filled_contracts

    @property
    def is_working(self) -> bool:
        """Still able to trade: neither filled, cancelled nor rejected."""
        return self.status not in TERMINAL

    @property
    def average_price(self) -> Decimal | None:
        """Volume-weighted fill price, or None before the first fill."""
        if not self.filled_contracts:
            return None
        return self.filled_notional / self.filled_contracts


#: Fill sums are exact (see :func:`aggregates.numeric.exact_context`): a check, not an estimate.
_EXACT = exact_context()


def is_order_event(event: ev.Event) -> bool:
    return isinstance(event, ORDER_EVENTS)


def _refuse(state: OrderState | None, event: ev.Event, why: str) -> IllegalTransition:
    status = state.status.value if state is not None else "(none)"
    name = type(event).__name__
    order = getattr(event, "client_order_id", "?")
    return IllegalTransition(f"order {order}: {name} in state {status}: {why}")


def apply(state: OrderState | None, event: ev.Event) -> OrderState:
    """The order's state after ``event``; raises :class:`IllegalTransition` for an illegal move."""
    if isinstance(event, ev.OrderRequested):
        if state is not None:
            raise _refuse(state, event, "the order was already requested")
        return OrderState(
            client_order_id=event.client_order_id,
            symbol=event.symbol,
            side=event.side,
            order_type=event.order_type,
            intent=event.intent,
            reduce_only=event.reduce_only,
            contracts=event.contracts,
            limit_price=event.limit_price,
            status=OrderStatus.REQUESTED,
            requested_at_ms=event.at_ms,
            updated_at_ms=event.at_ms,
        )
    if not isinstance(event, ORDER_EVENTS):
        raise TypeError(f"{type(event).__name__} is not an order event")
    if state is None:
        raise _refuse(state, event, "no such order was requested")
    if event.client_order_id != state.client_order_id or event.symbol != state.symbol:
        raise _refuse(state, event, "it names another order or symbol")

    if isinstance(event, ev.OrderAccepted):
        if state.status is not OrderStatus.REQUESTED:
            raise _refuse(state, event, "only a requested order can be accepted")
        return msgspec.structs.replace(
            state,
            status=OrderStatus.ACCEPTED,
            exchange_order_id=event.exchange_order_id,
            updated_at_ms=event.at_ms,
        )
    if isinstance(event, ev.OrderRejected):
        if state.status is not OrderStatus.REQUESTED:
            raise _refuse(state, event, "only a requested order can be rejected")
        return msgspec.structs.replace(
            state, status=OrderStatus.REJECTED, reason=event.code, updated_at_ms=event.at_ms
        )
    if isinstance(event, ev.OrderCancelled):
        if state.status not in _FILLABLE:
            raise _refuse(state, event, "only an accepted, unfilled remainder can be cancelled")
        if event.remaining_contracts not in (_ZERO, state.remaining_contracts):
            raise _refuse(
                state,
                event,
                f"cancels {event.remaining_contracts} but {state.remaining_contracts} remain",
            )
        return msgspec.structs.replace(
            state, status=OrderStatus.CANCELLED, reason=event.reason, updated_at_ms=event.at_ms
        )
    # A fill, partial or final.
    assert isinstance(event, ev.OrderPartiallyFilled | ev.OrderFilled)
    if state.status not in _FILLABLE:
        raise _refuse(state, event, "only an accepted order can fill")
    if event.side != state.side:
        raise _refuse(state, event, f"fill side {event.side} differs from order {state.side}")
    try:
        filled = _EXACT.add(state.filled_contracts, event.contracts)
        remaining = _EXACT.subtract(state.contracts, filled)
        notional = _EXACT.add(state.filled_notional, _EXACT.multiply(event.price, event.contracts))
        fees = _EXACT.add(state.fees, event.fee)
    except ArithmeticError as error:
        raise _refuse(state, event, f"its sums need over {EXACT_DIGITS} digits") from error
    if filled > state.contracts:
        raise _refuse(state, event, f"fills {filled} of an order for {state.contracts}")
    if isinstance(event, ev.OrderPartiallyFilled):
        if filled == state.contracts:
            raise _refuse(state, event, "a partial fill must leave something unfilled")
        if event.remaining_contracts != remaining:
            raise _refuse(
                state, event, f"says {event.remaining_contracts} remain, but {remaining} do"
            )
        status = OrderStatus.PARTIALLY_FILLED
    else:
        if filled != state.contracts:
            raise _refuse(state, event, f"final fill leaves {remaining} unfilled")
        status = OrderStatus.FILLED
    return msgspec.structs.replace(
        state,
        status=status,
        filled_contracts=filled,
        filled_notional=notional,
        fees=fees,
        fill_count=state.fill_count + 1,
        updated_at_ms=event.at_ms,
    )


class OrderBook(msgspec.Struct, kw_only=True):
    """Every order keyed by client order id: the fold behind the orders read model.

    Mutable on purpose: a session holds many orders and copying the mapping on every event would
    make a long replay quadratic. Each order's own state is the frozen :class:`OrderState` that
    :func:`apply` returns; non-order events are ignored. With ``keep_terminal=False`` finished
    orders are dropped, so a book that only needs open orders stays small on endless logs.

    A Struct so that it has canonical bytes (live execution's snapshots hold it,
    ``aggregates.live_book``): ``orders`` and ``open_ids`` keep their insertion order through
    MessagePack, and ``open_orders`` walks ``open_ids`` in that order. Treat both as private.
    """

    keep_terminal: bool = True
    orders: dict[str, OrderState] = {}
    #: insertion-ordered set of the open orders' ids
    open_ids: dict[str, None] = {}

    def apply(self, event: ev.Event) -> OrderState | None:
        """Fold one event; returns the order it touched (None for non-order events)."""
        if not isinstance(event, ORDER_EVENTS):
            return None
        order_id = event.client_order_id
        state = apply(self.orders.get(order_id), event)
        if state.is_working:
            self.orders[order_id] = state
            self.open_ids[order_id] = None
        else:
            self.open_ids.pop(order_id, None)
            if self.keep_terminal:
                self.orders[order_id] = state
            else:
                self.orders.pop(order_id, None)
        return state

    def fold(self, events: Iterable[ev.Event]) -> OrderBook:
        for event in events:
            self.apply(event)
        return self

    def get(self, client_order_id: str) -> OrderState | None:
        return self.orders.get(client_order_id)

    def __len__(self) -> int:
        return len(self.orders)

    def __iter__(self) -> Iterator[OrderState]:
        return iter(self.orders.values())

    def open_orders(self) -> list[OrderState]:
        """Orders still able to trade (REQUESTED, ACCEPTED, PARTIALLY_FILLED), oldest first."""
        return [self.orders[order_id] for order_id in self.open_ids]


def fold_orders(events: Iterable[ev.Event], *, keep_terminal: bool = True) -> OrderBook:
    """A fresh :class:`OrderBook` folded over ``events``."""
    return OrderBook(keep_terminal=keep_terminal).fold(events)
