"""Which stream an event belongs to: the one place that knows the table in docs/ARCHITECTURE.md."""

from __future__ import annotations

from typing import Literal

from aggregates import events as ev

_FIXED: dict[type[ev.Event], str] = {
    ev.TickersSnapshotted: "screener",
    ev.MoversSelected: "screener",
    ev.ClockTicked: "clock",
    ev.ConfigActivated: "config",
    ev.OperatorCommandIssued: "operator",
    ev.RiskVerdictIssued: "risk",
    ev.StopLossTriggered: "risk",
    ev.CircuitBreakerTripped: "risk",
    ev.CircuitBreakerCleared: "risk",
    ev.TradingStateChanged: "risk",
    ev.AlertRaised: "risk",
    ev.ExecutionReconciled: "execution",
    ev.PreflightPassed: "preflight",
    ev.ExecutionVenueInputRejected: "execution",
    ev.ExecutionVenueEquity: "execution",
    ev.ExecutionStopRequested: "execution",
    ev.ExecutionStopPlaced: "execution",
    ev.ExecutionStopEnded: "execution",
    ev.ServiceAlertRaised: "alerts",
}

_BY_SYMBOL: dict[type[ev.Event], str] = {
    ev.TradeTicked: "market",
    ev.CandleClosed: "market",
    ev.FundingSettled: "market",
    ev.ContractSpecified: "market",
    ev.SignalGenerated: "signal",
}

_ORDER_EVENTS = (
    ev.OrderRequested,
    ev.OrderAccepted,
    ev.OrderPartiallyFilled,
    ev.OrderFilled,
    ev.OrderRejected,
    ev.OrderCancelled,
)


def stream_for(event: ev.Event) -> str:
    """The stream an event is appended to."""
    kind = type(event)
    if kind in _FIXED:
        return _FIXED[kind]
    if kind in _BY_SYMBOL:
        return f"{_BY_SYMBOL[kind]}-{event.symbol}"  # type: ignore[attr-defined]
    if isinstance(event, _ORDER_EVENTS):
        return f"order-{event.client_order_id}"
    raise ValueError(f"no stream is defined for event type {kind.__name__}")


#: The bus's topics (the design's six): committed events on five, heartbeats on ``health``.
Topic = Literal["market_data", "signals", "orders", "order_results", "alerts", "health"]

TOPIC_BY_STREAM_PREFIX: dict[str, Topic] = {
    "market": "market_data",
    "screener": "market_data",
    "clock": "market_data",
    "signal": "signals",
    "risk": "signals",
    "config": "signals",
    "operator": "signals",
    "order": "orders",
    "execution": "order_results",
    "preflight": "signals",
    "alerts": "alerts",
}


def topic_for(event: ev.Event) -> Topic:
    """The Redis topic an event is fanned out on after commit."""
    if isinstance(event, ev.AlertRaised):
        return "alerts"
    if isinstance(event, ev.OrderRequested):
        return "orders"
    if isinstance(event, _ORDER_EVENTS):
        return "order_results"
    return TOPIC_BY_STREAM_PREFIX[stream_for(event).split("-", 1)[0]]
