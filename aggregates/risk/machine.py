"""Machine ``risk``: the six protection layers as a deterministic fold over the log.

Inputs: configuration, contract specs, trade ticks, clock ticks, signals, order results,
funding and operator commands. Outputs: verdicts, orders, stop-losses, breakers, trading-state
changes and alerts. Every order is preceded by the verdict that approved it; every refusal is a
verdict naming the layer and a stable reason code — never an exception.

Protective behaviour (DESIGN.md binding order):

1. Daily drawdown from the UTC day's peak equity (reset at the first event of a new UTC day or
   by ``reset_drawdown``) ≥ ``MAX_DAILY_DRAWDOWN_PCT`` → one CRITICAL alert, HALTED, a reduce-only
   flatten order for every open position; any position that appears while halted is flattened too.
2. Abnormal market: price ≥ ``ABNORMAL_MOVE_PCT`` away from the window's low or high within
   ``ABNORMAL_WINDOW_SECONDS`` → breaker for the symbol for ``ABNORMAL_PAUSE_SECONDS``, WARNING.
3. Data silence: on a clock tick, no trade for more than ``DATA_SILENCE_SECONDS`` → breaker for
   all symbols, WARNING; cleared by the next trade.
4–5. Exposure and position size: see :mod:`aggregates.risk.entry`.
6. Stop-loss: on a tick or fill, a position whose loss reaches ``STOP_LOSS_PCT`` of its entry
   price gets ``StopLossTriggered`` and a reduce-only exit for the part not already leaving,
   unless an exit of it is in progress (so once per position episode: until flat or reversed).

Exits are reduce-only, sized from the filled position minus exits already pending, opposite to
the position, so they can never increase it; they are never throttled or paused.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from aggregates.config import ContractSpec, parse_config
from aggregates.envelope import RecordedEvent
from aggregates.events import (
    AlertRaised,
    CircuitBreakerCleared,
    CircuitBreakerTripped,
    ClockTicked,
    ConfigActivated,
    ContractSpecified,
    Event,
    FundingSettled,
    OperatorCommandIssued,
    OrderCancelled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderRequested,
    RiskVerdictIssued,
    SignalGenerated,
    StopLossTriggered,
    TradeTicked,
    TradingStateChanged,
)
from aggregates.portfolio import DAY_MS, evolve, evolve_tick
from aggregates.risk.entry import decide_entry
from aggregates.risk.protect import (
    Decision,
    abnormal,
    check_drawdown,
    check_stop,
    continue_exit,
    drawdown_reached,
    exit_position,
    exit_refused,
    expire_breakers,
    flatten_all,
    flatten_while_halted,
    halt_on_drawdown,
    move_past_bar,
    new_day,
    retry_exits,
    stop_out,
    stop_reached,
    trip_abnormal,
)
from aggregates.risk.state import Limits, RiskState, numbers

OWNED = (
    RiskVerdictIssued,
    OrderRequested,
    StopLossTriggered,
    CircuitBreakerTripped,
    CircuitBreakerCleared,
    TradingStateChanged,
    AlertRaised,
)


def _on_tick(state: RiskState, fact: RecordedEvent) -> tuple[RiskState, tuple[Event, ...]]:
    """``step`` for a ``TradeTicked``: the bulk of the log, so it is written for speed. The
    common tick decides nothing; a :class:`Decision` is made only once something may."""
    tick: TradeTicked = fact.event  # type: ignore[assignment]
    symbol = tick.symbol
    now = tick.at_ms
    if now > state.now_ms:
        state.now_ms = now
    now = state.now_ms
    limits = state.limits
    d = None
    if limits is not None and now // DAY_MS > state.day:
        d = Decision(state, fact)
        new_day(d)  # the new day's reference is the equity before its first input
    before = state.portfolio
    portfolio = state.portfolio = evolve_tick(before, tick)
    price = tick.price
    state.last_price[symbol] = price
    state.last_market_ms = tick.at_ms
    if limits is None:
        return state, ()
    if state.silence_tripped or state.abnormal_until:
        d = d or Decision(state, fact)
        if state.silence_tripped:
            state.silence_tripped = False
            d.emit(
                CircuitBreakerCleared(
                    at_ms=now, layer="data_silence", symbol=None, reason="market_data_resumed"
                )
            )
    if d is not None and state.abnormal_until:  # a pause (d was made for it): expire or enforce
        abnormal(d, symbol, price, limits)
    else:  # abnormal() without a pause to expire (the bulk of ticks): no Decision unless tripped
        moved = move_past_bar(state, symbol, price, limits)
        if moved is not None:
            d = d or Decision(state, fact)
            trip_abnormal(d, symbol, price, *moved, limits)
    if portfolio is not before:
        if drawdown_reached(state, limits):
            d = d or Decision(state, fact)
            halt_on_drawdown(d)
        if stop_reached(state, symbol, limits):
            d = d or Decision(state, fact)
            stop_out(d, symbol)
    if state.exit_backoff:
        d = d or Decision(state, fact)
        retry_exits(d)
    return state, (tuple(d.outputs) if d is not None and d.outputs else ())


class RiskMachine:
    """Machine ``risk``: owns verdicts, orders, stop-losses, breakers, state changes, alerts."""

    name = "risk"
    #: The only event types ``step`` reacts to (see ``SignalMachine.consumes``).
    consumes = frozenset(
        {
            TradeTicked,
            ClockTicked,
            SignalGenerated,
            OrderFilled,
            OrderPartiallyFilled,
            OrderRejected,
            OrderCancelled,
            FundingSettled,
            ContractSpecified,
            ConfigActivated,
            OperatorCommandIssued,
        }
    )
    #: ``step`` for its hot type without the dispatch (see :func:`aggregates.machine.step_for`).
    steps = MappingProxyType({TradeTicked: _on_tick})

    def initial(self) -> RiskState:
        return RiskState()

    def owns(self, event: Event) -> bool:
        return isinstance(event, OWNED)

    def step(self, state: RiskState, fact: RecordedEvent) -> tuple[RiskState, tuple[Event, ...]]:
        event = fact.event
        kind = type(event)
        if kind is TradeTicked:
            return _on_tick(state, fact)
        handler = _HANDLERS.get(kind)
        if handler is None:
            return state, ()
        if event.at_ms > state.now_ms:  # every input that carries a time moves the clock
            state.now_ms = event.at_ms
        match event:
            case ConfigActivated():
                return state, _on_config(state, event)
            case ContractSpecified():
                return state, _on_spec(state, event)
        if state.limits is None:
            handler(state, None, event)
            return state, ()
        d = Decision(state, fact)
        if state.now_ms // DAY_MS > state.day:
            new_day(d)  # before the input is applied: its effect belongs to the new day
        handler(state, d, event)
        return state, tuple(d.outputs)


# --------------------------------------------------------------------------- handlers
# Each runs with the clock already at the input's time and the UTC day already rolled over;
# ``d`` is None only before the first configuration (then only the portfolio is folded).


def _on_config(state: RiskState, event: ConfigActivated) -> tuple[Event, ...]:
    first = state.limits is None
    state.limits = Limits.of(parse_config(event.parameters))
    state.portfolio = evolve(state.portfolio, event)
    if first:
        state.day = state.now_ms // DAY_MS
        state.peak_equity = state.portfolio.equity
        if state.last_market_ms is None:
            state.last_market_ms = event.at_ms  # silence is measured from activation
    return ()


def _on_spec(state: RiskState, e: ContractSpecified) -> tuple[Event, ...]:
    state.portfolio = evolve(state.portfolio, e)
    state.exchange_specs[e.symbol] = ContractSpec(
        e.contract_size, e.min_contracts, e.max_contracts, e.contracts_step, e.price_step
    )
    return ()


def _on_clock(state: RiskState, d: Decision | None, event: Event) -> None:
    if d is None:
        return
    limits = state.limits
    assert limits is not None
    now = state.now_ms
    expire_breakers(d)
    last = state.last_market_ms
    if not state.silence_tripped and last is not None and now - last > limits.silence_ms:
        state.silence_tripped = True
        d.emit(
            CircuitBreakerTripped(
                at_ms=now,
                layer="data_silence",
                symbol=None,
                reason="no_market_data",
                numbers=numbers(
                    last_market_ms=last, silent_ms=now - last, limit_ms=limits.silence_ms
                ),
            )
        )
        d.emit(
            AlertRaised(
                at_ms=now,
                severity="WARNING",
                code="data_silence",
                message=f"no market data for {(now - last) // 1000}s; entries paused",
            )
        )
    check_drawdown(d)
    if state.exit_backoff:
        retry_exits(d)


def _on_signal(state: RiskState, d: Decision | None, signal: SignalGenerated) -> None:
    if d is None:
        return
    expire_breakers(d, signal.symbol)
    symbol = signal.symbol
    held = state.portfolio.contracts(symbol)
    if signal.direction == "flat":
        if held != 0:
            exit_position(d, symbol, "exit", "none", "signal_flat", "approved")
        return
    if held != 0 and (held > 0) != (signal.direction == "long"):
        exit_position(d, symbol, "exit", "none", "signal_reversal", "approved", cooldown=False)
    entry = decide_entry(state, signal)
    d.emit(
        RiskVerdictIssued(
            at_ms=state.now_ms,
            symbol=symbol,
            decision=entry.decision,
            layer=entry.layer,
            reason=entry.reason,
            intent="entry",
            side=entry.side,
            requested_contracts=entry.requested,
            approved_contracts=entry.approved,
            numbers=entry.numbers,
        )
    )
    if entry.decision != "rejected":
        d.order(symbol, entry.side, entry.approved, "entry", False, entry.price)


def _on_fill(
    state: RiskState, d: Decision | None, fill: OrderFilled | OrderPartiallyFilled
) -> None:
    held = state.portfolio.contracts(fill.symbol)
    state.portfolio = evolve(state.portfolio, fill)
    order = state.pending.get(fill.client_order_id)
    if order is not None:
        if isinstance(fill, OrderPartiallyFilled):
            order.remaining = fill.remaining_contracts
        else:
            del state.pending[fill.client_order_id]
    if d is None:
        return
    limits = state.limits
    assert limits is not None
    now_held = state.portfolio.contracts(fill.symbol)
    if order is not None and order.reduce_only:
        state.exit_backoff.pop(fill.symbol, None)  # the venue takes this exit again
    if held * now_held <= 0:  # flat or reversed: the position's episode and its exit are over
        state.exit_goal.pop(fill.symbol, None)
        state.exit_backoff.pop(fill.symbol, None)
        if held != 0 and now_held == 0:
            state.cooldown_until[fill.symbol] = state.now_ms + limits.cooldown_ms
    _after_equity_change(d, fill.symbol)
    if state.portfolio.contracts(fill.symbol) != 0:
        continue_exit(d, fill.symbol)


def _on_refused(
    state: RiskState, d: Decision | None, event: OrderRejected | OrderCancelled
) -> None:
    order = state.pending.pop(event.client_order_id, None)
    if d is None or order is None or not order.reduce_only:
        return
    # A refused exit leaves the position uncovered; it is retried after a back-off in the
    # cause's time, never re-issued at once on the refusal itself (that would loop forever).
    exit_refused(d, order, event)


def _on_funding(state: RiskState, d: Decision | None, event: FundingSettled) -> None:
    state.portfolio = evolve(state.portfolio, event)
    if d is not None:
        _after_equity_change(d, event.symbol)


def _after_equity_change(d: Decision, symbol: str | None = None) -> None:
    state = d.state
    check_drawdown(d)
    if state.drawdown_halted:
        flatten_while_halted(d)
    elif symbol is not None:
        check_stop(d, symbol)


def _on_command(state: RiskState, d: Decision | None, command: OperatorCommandIssued) -> None:
    if d is None:
        return
    before = state.trading_state
    who = f"operator:{command.operator}"[:2000]
    name = command.command
    if name == "halt":
        state.operator_state = "HALTED"
    elif name == "reduce":
        state.operator_state = "REDUCING"
    elif name == "resume":
        state.operator_state = "ACTIVE"
    elif name == "flatten":
        state.operator_state = "REDUCING"
    elif name == "reset_drawdown":
        state.drawdown_halted = False
        state.peak_equity = state.portfolio.equity
    d.set_state(who, f"operator_{name}", before)
    if name == "flatten":
        flatten_all(d, "trading_state", "operator_flatten")


def _nothing(state: RiskState, d: Decision | None, event: Event) -> None:
    """Inputs handled before dispatch (configuration, contract specs)."""


_HANDLERS: dict[type, Callable[[RiskState, Decision | None, Any], None]] = {
    ClockTicked: _on_clock,
    SignalGenerated: _on_signal,
    OrderFilled: _on_fill,
    OrderPartiallyFilled: _on_fill,
    OrderRejected: _on_refused,
    OrderCancelled: _on_refused,
    FundingSettled: _on_funding,
    ContractSpecified: _nothing,
    ConfigActivated: _nothing,
    OperatorCommandIssued: _on_command,
}


# --------------------------------------------------------------------------- protections


__all__ = ["OWNED", "RiskMachine"]
