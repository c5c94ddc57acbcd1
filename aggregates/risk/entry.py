"""Deciding an entry: the checks in binding order, then sizing, trimming and pre-trade checks.

Sizing rule: the target notional of an entry is ``MAX_POSITION_PCT`` of equity × the signal's
strength (0..1), converted to contracts at the last trade price and floored to the contract
step. The exposure limit, the position limit and the per-order limits may then only trim it;
a trim below the contract minimum is a refusal by the layer that trimmed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from aggregates.events import RiskLayer, Side, SignalGenerated, VerdictDecision
from aggregates.risk.state import ZERO, RiskState, floor_to_step, numbers

MINUTE_MS = 60_000


class EntryDecision(NamedTuple):
    """What to say about an entry: a verdict's fields and, if approved, the order's size."""

    decision: VerdictDecision  # approved | trimmed | rejected
    layer: RiskLayer
    reason: str
    side: Side
    requested: Decimal
    approved: Decimal
    price: Decimal
    numbers: dict[str, str]


def _refuse(
    layer: RiskLayer,
    reason: str,
    side: Side,
    price: Decimal,
    requested: Decimal = ZERO,
    **values: object,
) -> EntryDecision:
    return EntryDecision("rejected", layer, reason, side, requested, ZERO, price, numbers(**values))


def decide_entry(state: RiskState, signal: SignalGenerated) -> EntryDecision:
    """Run the entry checks in :data:`ENTRY_CHECK_ORDER`; the first refusal decides."""
    limits = state.limits
    assert limits is not None
    symbol = signal.symbol
    now = state.now_ms
    side: Side = "buy" if signal.direction == "long" else "sell"
    price = state.last_price.get(symbol, signal.reference_price)
    portfolio = state.portfolio

    # 1. daily drawdown, then the operator's trading state
    if state.drawdown_halted:
        return _refuse(
            "daily_drawdown",
            "halted_daily_drawdown",
            side,
            price,
            peak_equity=state.peak_equity,
            equity=portfolio.equity,
            max_daily_drawdown_pct=limits.max_drawdown_pct,
        )
    if state.operator_state != "ACTIVE":
        reason = "halted_by_operator" if state.operator_state == "HALTED" else "reducing_only"
        return _refuse("trading_state", reason, side, price, trading_state=state.operator_state)
    # 2. abnormal market (per symbol), 3. data silence (global)
    until = state.abnormal_until.get(symbol)
    if until is not None and now < until:
        return _refuse(
            "abnormal_market", "circuit_breaker_abnormal_market", side, price, paused_until_ms=until
        )
    if state.silence_tripped:
        return _refuse(
            "data_silence",
            "circuit_breaker_data_silence",
            side,
            price,
            last_market_ms=state.last_market_ms,
            now_ms=now,
        )
    # guards: loss streak, cooldown after an exit, order-rate throttle
    if state.streak_until > now:
        return _refuse(
            "loss_streak", "loss_streak_pause", side, price, paused_until_ms=state.streak_until
        )
    cooldown = state.cooldown_until.get(symbol)
    if cooldown is not None and now < cooldown:
        return _refuse("cooldown", "exit_cooldown", side, price, cooldown_until_ms=cooldown)
    times = state.order_times
    while times and times[0] <= now - MINUTE_MS:
        times.popleft()
    if len(times) >= limits.max_orders_per_minute:
        return _refuse(
            "order_rate",
            "order_rate_limit",
            side,
            price,
            orders_last_minute=len(times),
            max_orders_per_minute=limits.max_orders_per_minute,
        )

    spec = state.spec(symbol)
    if spec is None:
        return _refuse("pre_trade", "no_contract_spec", side, price)
    equity = min(portfolio.equity, limits.config.initial_equity)  # never size on more capital
    if equity <= 0:
        return _refuse("exposure_limit", "no_equity", side, price, equity=equity)
    unit = price * spec.contract_size  # notional of one contract, USDT
    step = spec.contracts_step
    target = equity * limits.max_position_fraction * signal.strength
    requested = floor_to_step(target / unit, step)
    qty = requested
    layer: RiskLayer = "none"
    reason = "approved"
    base = {"equity": equity, "mark_price": price, "contract_size": spec.contract_size}

    # 4. exposure limit: positions at mark plus pending entries, checked before adding this one
    gross = state.gross_exposure()
    exposure_cap = equity * limits.max_exposure_fraction
    room = floor_to_step((exposure_cap - gross) / unit, step)
    if room < qty:
        if room < spec.min_contracts:
            return _refuse(
                "exposure_limit",
                "exposure_limit_reached",
                side,
                price,
                requested,
                gross_exposure=gross,
                exposure_cap=exposure_cap,
                **base,
            )
        qty, layer, reason = room, "exposure_limit", "trimmed_to_exposure_limit"

    # 5. position size: the same-direction position plus pending entries on that side
    held = portfolio.contracts(symbol)
    same_side = max(held, ZERO) if side == "buy" else max(-held, ZERO)
    same_side += state.pending_entry_contracts(symbol, side)
    position_cap = equity * limits.max_position_fraction
    room = floor_to_step(position_cap / unit - same_side, step)
    if room < qty:
        if room < spec.min_contracts:
            reason = "position_limit_reached" if same_side > 0 else "position_cap_below_min"
            return _refuse(
                "position_size",
                reason,
                side,
                price,
                requested,
                target_notional=target,
                position_cap=position_cap,
                held_contracts=same_side,
                min_contracts=spec.min_contracts,
                **base,
            )
        qty, layer, reason = room, "position_size", "trimmed_to_position_limit"
    if qty < spec.min_contracts:
        return _refuse(
            "position_size",
            "below_min_contracts",
            side,
            price,
            requested,
            target_notional=target,
            min_contracts=spec.min_contracts,
            **base,
        )

    # pre-trade: per-order notional cap, contract maximum, then the minimum
    room = floor_to_step(limits.max_order_notional / unit, step)
    if room < qty:
        qty, layer, reason = room, "pre_trade", "trimmed_to_max_order_notional"
    if qty > spec.max_contracts:
        qty, layer, reason = (
            floor_to_step(spec.max_contracts, step),
            "pre_trade",
            "trimmed_to_max_contracts",
        )
    if qty < spec.min_contracts:
        return _refuse(
            "pre_trade",
            "max_order_below_min_contracts",
            side,
            price,
            requested,
            contracts=qty,
            min_contracts=spec.min_contracts,
            max_order_notional=limits.max_order_notional,
            **base,
        )
    decision: VerdictDecision = "approved" if layer == "none" else "trimmed"
    return EntryDecision(
        decision,
        layer,
        reason,
        side,
        requested,
        qty,
        price,
        numbers(
            target_notional=target,
            gross_exposure=gross,
            exposure_cap=exposure_cap,
            position_cap=position_cap,
            **base,
        ),
    )
