"""The forensic walk: what happened in a window of the ledger, folded with the one portfolio fold.

:class:`Tally` consumes recorded events in log order. Before the window it only folds (so the
window starts from the real state as of ``--from``: equity, positions, the day's peak, the trading
state); inside the window it also counts signals, verdicts by layer, orders and fills, follows
PnL, peak equity and drawdown per UTC day, and collects halts with their causes. The same tally
measures the recorded session and a what-if's counterfactual, so the two are compared on equal
terms. Memory is bounded: per-day figures are emitted as days end, chart series are decimated.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from aggregates import events as ev
from aggregates.envelope import RecordedEvent
from aggregates.envelope import utc_from_ms as at  # re-exported: domain ms as a datetime
from aggregates.portfolio import DAY_MS, EMPTY, Portfolio, evolve

ZERO = Decimal(0)
HUNDRED = Decimal(100)
_CENT = Decimal("0.01")
_HALT_LIMIT = 1000


def stamp(ms: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2025-06-02T00:01:02.345Z``."""
    return at(ms).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def money(value: Decimal) -> str:
    return str(value.quantize(_CENT))


def pct(fraction: Decimal) -> str:
    return str((fraction * HUNDRED).quantize(_CENT))


@dataclass(slots=True)
class DayStats:
    """One UTC day of the window."""

    day: date
    start_equity: Decimal
    peak_equity: Decimal
    low_equity: Decimal
    close_equity: Decimal
    max_drawdown: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    signals: int = 0
    orders: int = 0
    fills: int = 0
    verdicts: int = 0
    halts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "day",
            "day": self.day.isoformat(),
            "start_equity": self.start_equity,
            "close_equity": self.close_equity,
            "peak_equity": self.peak_equity,
            "low_equity": self.low_equity,
            "max_drawdown_pct": pct(self.max_drawdown),
            "realised_pnl": self.realised_pnl,
            "fees": self.fees,
            "signals": self.signals,
            "verdicts": self.verdicts,
            "orders": self.orders,
            "fills": self.fills,
            "halts": self.halts,
        }

    def render(self) -> str:
        return (
            f"day {self.day.isoformat()}: equity {money(self.start_equity)} -> "
            f"{money(self.close_equity)} (peak {money(self.peak_equity)}, low "
            f"{money(self.low_equity)}), max drawdown {pct(self.max_drawdown)} %, realised PnL "
            f"{money(self.realised_pnl)}, fees {money(self.fees)}; signals {self.signals}, "
            f"verdicts {self.verdicts}, orders {self.orders}, fills {self.fills}, "
            f"halts {self.halts}"
        )


class Series:
    """A time series decimated to at most ``limit`` points: bounded memory for any log length.

    When full, every other point is dropped and the stride doubles, so the kept points stay
    evenly spread over the whole window.
    """

    __slots__ = ("_count", "_stride", "limit", "points")

    def __init__(self, limit: int = 1200) -> None:
        self.limit = limit
        self.points: list[tuple[int, Decimal]] = []
        self._stride = 1
        self._count = 0

    def add(self, at_ms: int, value: Decimal) -> None:
        if self.wants():
            self.put(at_ms, value)

    def wants(self) -> bool:
        """Count one more point; whether it is one to keep (so its value need not be computed)."""
        self._count += 1
        return not self._count % self._stride

    def put(self, at_ms: int, value: Decimal) -> None:
        """Keep a point :meth:`wants` asked for."""
        self.points.append((at_ms, value))
        if len(self.points) >= self.limit:
            self.points = self.points[::2]
            self._stride *= 2


@dataclass(slots=True)
class Summary:
    """The window's figures: what ``--what-if`` compares and ``--json`` reports."""

    first_position: int = 0
    last_position: int = 0
    events: int = 0
    signals: int = 0
    orders: int = 0
    fills: int = 0
    trades: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    start_equity: Decimal = ZERO
    end_equity: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    peak_equity: Decimal = ZERO
    max_drawdown: Decimal = ZERO
    halts: list[str] = field(default_factory=list)
    final_state: str = "ACTIVE"

    @property
    def pnl(self) -> Decimal:
        """Net PnL over the window: equity change (realised + unrealised − fees + funding)."""
        return self.end_equity - self.start_equity

    def figures(self) -> dict[str, Any]:
        """The comparable figures, as strings (what-if prints these side by side)."""
        return {
            "trades": self.trades,
            "fills": self.fills,
            "orders": self.orders,
            "signals": self.signals,
            "pnl": money(self.pnl),
            "realised_pnl": money(self.realised_pnl),
            "fees": money(self.fees),
            "end_equity": money(self.end_equity),
            "max_drawdown_pct": pct(self.max_drawdown),
            "halts": len(self.halts),
            **{f"verdicts {key}": count for key, count in sorted(self.verdicts.items())},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "first_position": self.first_position,
            "last_position": self.last_position,
            "events": self.events,
            "signals": self.signals,
            "orders": self.orders,
            "fills": self.fills,
            "trades": self.trades,
            "verdicts_by_layer": dict(sorted(self.verdicts.items())),
            "start_equity": self.start_equity,
            "end_equity": self.end_equity,
            "pnl": self.pnl,
            "realised_pnl": self.realised_pnl,
            "fees": self.fees,
            "peak_equity": self.peak_equity,
            "max_drawdown_pct": pct(self.max_drawdown),
            "halts": self.halts,
            "trading_state": self.final_state,
        }

    def render(self) -> str:
        layers = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items())) or "none"
        halts = "".join(f"\n    {line}" for line in self.halts) or " none"
        return (
            f"window: positions {self.first_position}..{self.last_position} "
            f"({self.events} events)\n"
            f"  signals {self.signals}, orders {self.orders}, fills {self.fills} "
            f"(trades {self.trades})\n"
            f"  verdicts by layer/decision: {layers}\n"
            f"  equity {money(self.start_equity)} -> {money(self.end_equity)}: PnL "
            f"{money(self.pnl)} (realised {money(self.realised_pnl)}, fees {money(self.fees)})\n"
            f"  peak equity {money(self.peak_equity)}, max daily drawdown "
            f"{pct(self.max_drawdown)} %, trading state {self.final_state}\n"
            f"  halts:{halts}"
        )


class Tally:
    """Folds the log; inside the window counts decisions and follows equity per UTC day."""

    def __init__(self, *, symbol: str | None = None, sample_limit: int = 1200) -> None:
        self.symbol = symbol
        self.portfolio: Portfolio = EMPTY
        self.trading_state = "ACTIVE"
        self.summary = Summary()
        self.day: DayStats | None = None
        self.equity = Series(sample_limit)
        self.drawdown = Series(sample_limit)
        self.exposure = Series(sample_limit)
        self._started = False
        self._day_index = -1
        self._last_realised = ZERO
        self._last_fees = ZERO
        self._last_exposure = ZERO
        self._filling: set[str] = set()

    # ------------------------------------------------------------------ folding

    def prime(self, fact: RecordedEvent, portfolio: Portfolio | None = None) -> None:
        """Fold an event before the window: state only.

        ``portfolio``: the portfolio after this event when the caller already folded it (the
        risk machine's, during ``--verify``), to save folding it twice.
        """
        event = fact.event
        self.portfolio = evolve(self.portfolio, event) if portfolio is None else portfolio
        if type(event) is ev.TradingStateChanged:
            self.trading_state = event.state

    def add(self, fact: RecordedEvent, portfolio: Portfolio | None = None) -> DayStats | None:
        """Fold an event of the window; returns the day that just ended, if this one began a new.

        ``portfolio`` as for :meth:`prime`.
        """
        event = fact.event
        kind = type(event)
        if (
            portfolio is self.portfolio
            and (kind is ev.TradeTicked or kind is ev.ClockTicked)
            and self._started
            and event.at_ms // DAY_MS <= self._day_index
        ):  # the bulk of a log: a tick that moved nothing on a day already begun
            summary = self.summary
            summary.last_position = fact.position
            summary.events += 1
            return None
        folded = portfolio
        portfolio = self.portfolio
        summary = self.summary
        if not self._started:
            self._started = True
            summary.first_position = fact.position
            summary.start_equity = summary.peak_equity = portfolio.equity
            self._last_realised = portfolio.realised_pnl
            self._last_fees = portfolio.fees
        after = self.portfolio = evolve(portfolio, event) if folded is None else folded
        summary.last_position = fact.position
        summary.events += 1
        ended = None
        day = self.day
        today = event.at_ms // DAY_MS
        if today > self._day_index:
            self._day_index = today
            ended = day
            equity = after.equity
            start = portfolio.equity  # the equity the day began with: before its first event
            day = self.day = DayStats(
                day=date(1970, 1, 1) + timedelta(days=today),
                start_equity=start,
                peak_equity=max(start, equity),
                low_equity=min(start, equity),
                close_equity=equity,
            )
        assert day is not None  # the window's first event began its first day
        if after is not portfolio:
            if not portfolio.configured and after.configured:
                # The first configuration funds the account: a deposit, not profit.
                deposit = after.equity - portfolio.equity
                summary.start_equity += deposit
                day.start_equity += deposit
                day.low_equity = day.start_equity
            self._moved(fact, after, day)
        if kind is ev.TradeTicked or kind is ev.ClockTicked:
            return ended
        if self.symbol is not None and not matches(fact, self.symbol):
            return ended
        match event:
            case ev.SignalGenerated():
                summary.signals += 1
                day.signals += 1
            case ev.RiskVerdictIssued():
                summary.verdicts[f"{event.layer}/{event.decision}"] += 1
                day.verdicts += 1
            case ev.OrderRequested():
                summary.orders += 1
                day.orders += 1
            case ev.OrderFilled() | ev.OrderPartiallyFilled():
                summary.fills += 1
                day.fills += 1
                order_id = event.client_order_id
                if order_id not in self._filling:
                    summary.trades += 1  # a trade: an order with at least one fill
                if isinstance(event, ev.OrderFilled):
                    self._filling.discard(order_id)
                else:
                    self._filling.add(order_id)
            case ev.OrderCancelled():
                self._filling.discard(event.client_order_id)
            case ev.TradingStateChanged():
                self.trading_state = event.state
                if event.state == "HALTED":
                    day.halts += 1
                    if len(summary.halts) < _HALT_LIMIT:
                        summary.halts.append(halt_line(fact))
        summary.final_state = self.trading_state
        return ended

    def _moved(self, fact: RecordedEvent, after: Portfolio, day: DayStats) -> None:
        summary = self.summary
        equity = after.equity
        peak = after.day_peak_equity
        # The drawdown from the day's peak (Portfolio.drawdown), divided only when below it.
        drawdown = (peak - equity) / peak if peak > equity and peak > 0 else ZERO
        realised = after.realised_pnl
        fees = after.fees
        summary.end_equity = equity
        if equity > summary.peak_equity:
            summary.peak_equity = equity
        if drawdown > summary.max_drawdown:
            summary.max_drawdown = drawdown
        day.close_equity = equity
        if equity > day.peak_equity:
            day.peak_equity = equity
        if equity < day.low_equity:
            day.low_equity = equity
        if drawdown > day.max_drawdown:
            day.max_drawdown = drawdown
        # The three series are sampled together, and always where exposure changes (a fill):
        # the report draws them as steps, so each change is drawn where it happened.
        exposure_changed = after.exposure != self._last_exposure
        if self.equity.wants() or exposure_changed:
            at_ms = fact.event.at_ms
            self.equity.put(at_ms, equity)
            self.drawdown.put(at_ms, drawdown)
            self.exposure.put(at_ms, after.exposure)
            self._last_exposure = after.exposure
        if realised is not self._last_realised or fees is not self._last_fees:
            # Window and day totals are differences from the state at the window's start.
            delta_realised = realised - self._last_realised
            delta_fees = fees - self._last_fees
            summary.realised_pnl += delta_realised
            summary.fees += delta_fees
            day.realised_pnl += delta_realised
            day.fees += delta_fees
            self._last_realised = realised
            self._last_fees = fees

    def finish(self) -> DayStats | None:
        """End the window; returns the last day's figures (None for an empty window)."""
        summary = self.summary
        summary.end_equity = self.portfolio.equity
        summary.final_state = self.trading_state
        return self.day


def halt_line(fact: RecordedEvent) -> str:
    event = fact.event
    assert isinstance(event, ev.TradingStateChanged)
    return (
        f"{stamp(event.at_ms)} {event.previous} -> {event.state} by {event.changed_by}: "
        f"{event.reason} (position {fact.position}, caused by position {fact.causation_position})"
    )


def describe(fact: RecordedEvent) -> dict[str, Any] | None:
    """A line for a decision-relevant event (signals, verdicts, orders, fills, halts...)."""
    event = fact.event
    kind = type(event)
    if kind is ev.TradeTicked or kind is ev.ClockTicked or kind is ev.TickersSnapshotted:
        return None
    line: dict[str, Any] = {
        "type": "event",
        "position": fact.position,
        "at": stamp(event.at_ms),
        "event_type": fact.event_type,
        "symbol": getattr(event, "symbol", None),
        "causation_position": fact.causation_position,
    }
    line["text"] = _text(event)
    return line


def _text(event: ev.Event) -> str:
    if isinstance(event, ev.SignalGenerated):
        return (
            f"signal {event.symbol} {event.direction} strength {event.strength} momentum "
            f"{event.momentum} % at {event.reference_price}"
        )
    if isinstance(event, ev.RiskVerdictIssued):
        side = f" {event.side}" if event.side else ""
        return (
            f"verdict {event.symbol or '-'} {event.intent}{side} {event.decision} by layer "
            f"{event.layer} ({event.reason}) {event.approved_contracts}/"
            f"{event.requested_contracts} contracts"
        )
    if isinstance(event, ev.OrderRequested):
        return (
            f"order {event.symbol} {event.side} {event.contracts} {event.order_type} "
            f"{event.intent}{' reduce-only' if event.reduce_only else ''} "
            f"ref {event.reference_price} [{event.client_order_id[:8]}]"
        )
    if isinstance(event, ev.OrderFilled | ev.OrderPartiallyFilled):
        part = " (partial)" if isinstance(event, ev.OrderPartiallyFilled) else ""
        return (
            f"fill {event.symbol} {event.side} {event.contracts} @ {event.price} fee "
            f"{event.fee} {event.liquidity}{part} [{event.client_order_id[:8]}]"
        )
    if isinstance(event, ev.TradingStateChanged):
        return f"state {event.previous} -> {event.state} by {event.changed_by}: {event.reason}"
    if isinstance(event, ev.CircuitBreakerTripped):
        return f"breaker tripped {event.layer} {event.symbol or 'all'}: {event.reason}"
    if isinstance(event, ev.CircuitBreakerCleared):
        return f"breaker cleared {event.layer} {event.symbol or 'all'}: {event.reason}"
    if isinstance(event, ev.StopLossTriggered):
        return (
            f"stop-loss {event.symbol} loss {event.loss_pct} % entry {event.entry_price} "
            f"mark {event.mark_price}"
        )
    if isinstance(event, ev.AlertRaised):
        return f"alert {event.severity} {event.code}: {event.message}"
    if isinstance(event, ev.OrderRejected):
        order = event.client_order_id[:8]
        return f"rejected {event.symbol} [{order}] {event.code}: {event.message}"
    if isinstance(event, ev.OrderCancelled):
        return f"cancelled {event.symbol} [{event.client_order_id[:8]}] {event.reason}"
    if isinstance(event, ev.OrderAccepted):
        return f"accepted {event.symbol} [{event.client_order_id[:8]}]"
    if isinstance(event, ev.ConfigActivated):
        return f"config activated {event.config_hash[:12]} from {event.source}"
    if isinstance(event, ev.ContractSpecified):
        return (
            f"contract {event.symbol} size {event.contract_size} contracts "
            f"{event.min_contracts}..{event.max_contracts} step {event.contracts_step} "
            f"({event.source})"
        )
    if isinstance(event, ev.MoversSelected):
        return f"movers selected: {', '.join(event.symbols) or 'none'}"
    if isinstance(event, ev.ExecutionReconciled):
        return (
            f"execution reconciled ({event.venue}): {len(event.open_orders)} open orders, "
            f"{len(event.corrections)} corrections"
        )
    if isinstance(event, ev.OperatorCommandIssued):
        return f"operator {event.operator}: {event.command} {event.note}".rstrip()
    return ev.event_type(event)


def matches(fact: RecordedEvent, symbol: str | None) -> bool:
    """Whether the ``--symbol`` filter shows this event (events without a symbol always show)."""
    if symbol is None:
        return True
    other = getattr(fact.event, "symbol", None)
    return other is None or other == symbol
