"""Read models of trades, orders, risk decisions and alerts: pure folds and their rows.

Each is a :class:`projections.core.Projection`. Rows carry the fact's global position (and, where
an auditor cites them, the event id and hash), so every row points at the ledger row it came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from aggregates import events as ev
from aggregates.envelope import RecordedEvent
from aggregates.orders import ORDER_EVENTS, OrderBook
from projections.core import Row, Table, at, day_of

_json = msgspec.json.Encoder(decimal_format="string")


def _jsonb(value: dict[str, str]) -> str:
    return _json.encode(value).decode()


# --------------------------------------------------------------------------- trades (fills)

FILLS = Table(
    name="fills",
    columns=(
        "position",
        "event_id",
        "client_order_id",
        "fill_id",
        "symbol",
        "side",
        "price",
        "contracts",
        "notional",
        "fee",
        "fee_currency",
        "liquidity",
        "reduce_only",
        "final",
        "at",
        "day",
        "causation_position",
        "correlation_id",
        "hash",
    ),
    key=("position",),
    append_only=True,
)


class TradesProjection:
    """Every fill with its fee: the trade history. Stateless: each fill is one row."""

    name = "trades"
    tables = (FILLS,)
    handles: frozenset[type[ev.Event]] = frozenset({ev.OrderPartiallyFilled, ev.OrderFilled})

    def initial(self) -> None:
        return None

    def evolve(self, state: None, fact: RecordedEvent) -> None:
        return None

    def rows(self, state: None, fact: RecordedEvent) -> Iterable[tuple[str, Row]]:
        fill = fact.event
        assert isinstance(fill, ev.OrderPartiallyFilled | ev.OrderFilled)
        yield (
            "fills",
            (
                fact.position,
                fact.event_id,
                fill.client_order_id,
                fill.fill_id,
                fill.symbol,
                fill.side,
                fill.price,
                fill.contracts,
                fill.price * fill.contracts,
                fill.fee,
                fill.fee_currency,
                fill.liquidity,
                fill.reduce_only,
                isinstance(fill, ev.OrderFilled),
                at(fill.at_ms),
                day_of(fill.at_ms),
                fact.causation_position,
                fact.correlation_id,
                fact.hash,
            ),
        )


# --------------------------------------------------------------------------- orders

ORDERS = Table(
    name="orders",
    columns=(
        "client_order_id",
        "symbol",
        "side",
        "order_type",
        "intent",
        "reduce_only",
        "contracts",
        "limit_price",
        "status",
        "filled_contracts",
        "average_price",
        "fees",
        "fill_count",
        "exchange_order_id",
        "reason",
        "requested_position",
        "cause_position",
        "requested_at",
        "updated_position",
        "updated_at",
    ),
    key=("client_order_id",),
    append_only=False,
)

ORDER_EVENTS_TABLE = Table(
    name="order_events",
    columns=(
        "position",
        "client_order_id",
        "event_type",
        "status",
        "filled_contracts",
        "remaining_contracts",
        "at",
    ),
    key=("position",),
    append_only=True,
)


class OrdersState:
    """The shared order fold (:class:`aggregates.orders.OrderBook`) plus where each order began."""

    __slots__ = ("book", "origin")

    def __init__(self) -> None:
        self.book = OrderBook(keep_terminal=True)
        #: client order id -> (position of OrderRequested, its causation position)
        self.origin: dict[str, tuple[int, int | None]] = {}


class OrdersProjection:
    """Orders with their lifecycle: current state per order and one row per transition.

    The state is mutable (the order book is, on purpose: see :class:`OrderBook`); ``evolve``
    still returns it, so callers fold it like any other projection.
    """

    name = "orders"
    tables = (ORDERS, ORDER_EVENTS_TABLE)
    handles: frozenset[type[ev.Event]] = frozenset(ORDER_EVENTS)

    def initial(self) -> OrdersState:
        return OrdersState()

    def evolve(self, state: OrdersState, fact: RecordedEvent) -> OrdersState:
        event = fact.event
        state.book.apply(event)
        if isinstance(event, ev.OrderRequested):
            state.origin[event.client_order_id] = (fact.position, fact.causation_position)
        return state

    def rows(self, state: OrdersState, fact: RecordedEvent) -> Iterable[tuple[str, Row]]:
        order_id: str = fact.event.client_order_id  # type: ignore[attr-defined]
        order = state.book.get(order_id)
        assert order is not None
        requested_position, cause_position = state.origin[order_id]
        yield (
            "orders",
            (
                order.client_order_id,
                order.symbol,
                order.side,
                order.order_type,
                order.intent,
                order.reduce_only,
                order.contracts,
                order.limit_price,
                order.status.value,
                order.filled_contracts,
                order.average_price,
                order.fees,
                order.fill_count,
                order.exchange_order_id,
                order.reason,
                requested_position,
                cause_position,
                at(order.requested_at_ms),
                fact.position,
                at(order.updated_at_ms),
            ),
        )
        yield (
            "order_events",
            (
                fact.position,
                order_id,
                fact.event_type,
                order.status.value,
                order.filled_contracts,
                order.remaining_contracts,
                at(fact.event.at_ms),
            ),
        )


# --------------------------------------------------------------------------- risk

RISK_VERDICTS = Table(
    name="risk_verdicts",
    columns=(
        "position",
        "event_id",
        "symbol",
        "decision",
        "layer",
        "reason",
        "intent",
        "side",
        "requested_contracts",
        "approved_contracts",
        "numbers",
        "detail",
        "at",
        "day",
        "causation_position",
        "correlation_id",
        "hash",
    ),
    key=("position",),
    append_only=True,
)

TRADING_STATE_HISTORY = Table(
    name="trading_state_history",
    columns=(
        "position",
        "previous",
        "state",
        "changed_by",
        "reason",
        "at",
        "causation_position",
        "correlation_id",
        "hash",
    ),
    key=("position",),
    append_only=True,
)

CIRCUIT_BREAKERS = Table(
    name="circuit_breakers",
    columns=(
        "position",
        "action",
        "layer",
        "symbol",
        "reason",
        "numbers",
        "at",
        "causation_position",
    ),
    key=("position",),
    append_only=True,
)

STOP_LOSSES = Table(
    name="stop_losses",
    columns=(
        "position",
        "symbol",
        "entry_price",
        "mark_price",
        "loss_pct",
        "contracts",
        "at",
        "causation_position",
    ),
    key=("position",),
    append_only=True,
)


class RiskProjection:
    """Risk verdicts by layer, trading-state history, circuit breakers and stop-losses."""

    name = "risk"
    tables = (RISK_VERDICTS, TRADING_STATE_HISTORY, CIRCUIT_BREAKERS, STOP_LOSSES)
    handles: frozenset[type[ev.Event]] = frozenset(
        {
            ev.RiskVerdictIssued,
            ev.TradingStateChanged,
            ev.CircuitBreakerTripped,
            ev.CircuitBreakerCleared,
            ev.StopLossTriggered,
        }
    )

    def initial(self) -> None:
        return None

    def evolve(self, state: None, fact: RecordedEvent) -> None:
        return None

    def rows(self, state: None, fact: RecordedEvent) -> Iterable[tuple[str, Row]]:
        event: Any = fact.event
        when = at(event.at_ms)
        if isinstance(event, ev.RiskVerdictIssued):
            yield (
                "risk_verdicts",
                (
                    fact.position,
                    fact.event_id,
                    event.symbol,
                    event.decision,
                    event.layer,
                    event.reason,
                    event.intent,
                    event.side,
                    event.requested_contracts,
                    event.approved_contracts,
                    _jsonb(event.numbers),
                    event.detail,
                    when,
                    day_of(event.at_ms),
                    fact.causation_position,
                    fact.correlation_id,
                    fact.hash,
                ),
            )
        elif isinstance(event, ev.TradingStateChanged):
            yield (
                "trading_state_history",
                (
                    fact.position,
                    event.previous,
                    event.state,
                    event.changed_by,
                    event.reason,
                    when,
                    fact.causation_position,
                    fact.correlation_id,
                    fact.hash,
                ),
            )
        elif isinstance(event, ev.CircuitBreakerTripped | ev.CircuitBreakerCleared):
            tripped = isinstance(event, ev.CircuitBreakerTripped)
            numbers = event.numbers if isinstance(event, ev.CircuitBreakerTripped) else {}
            yield (
                "circuit_breakers",
                (
                    fact.position,
                    "tripped" if tripped else "cleared",
                    event.layer,
                    event.symbol,
                    event.reason,
                    _jsonb(numbers),
                    when,
                    fact.causation_position,
                ),
            )
        elif isinstance(event, ev.StopLossTriggered):
            yield (
                "stop_losses",
                (
                    fact.position,
                    event.symbol,
                    event.entry_price,
                    event.mark_price,
                    event.loss_pct,
                    event.contracts,
                    when,
                    fact.causation_position,
                ),
            )


# --------------------------------------------------------------------------- alerts

ALERTS = Table(
    name="alerts",
    columns=(
        "position",
        "severity",
        "code",
        "message",
        "symbol",
        "at",
        "causation_position",
        "correlation_id",
    ),
    key=("position",),
    append_only=True,
)


class AlertsProjection:
    """Every alert, newest last."""

    name = "alerts"
    tables = (ALERTS,)
    handles: frozenset[type[ev.Event]] = frozenset({ev.AlertRaised})

    def initial(self) -> None:
        return None

    def evolve(self, state: None, fact: RecordedEvent) -> None:
        return None

    def rows(self, state: None, fact: RecordedEvent) -> Iterable[tuple[str, Row]]:
        event = fact.event
        assert isinstance(event, ev.AlertRaised)
        yield (
            "alerts",
            (
                fact.position,
                event.severity,
                event.code,
                event.message,
                event.symbol,
                at(event.at_ms),
                fact.causation_position,
                fact.correlation_id,
            ),
        )
