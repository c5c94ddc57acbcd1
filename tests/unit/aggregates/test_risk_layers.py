"""Each risk layer and each reason code, one behaviour per test (the properties cover mixes)."""

from __future__ import annotations

from decimal import Decimal

from aggregates.envelope import derive_event_id
from aggregates.events import (
    AlertRaised,
    CircuitBreakerCleared,
    CircuitBreakerTripped,
    ContractSpecified,
    Event,
    OrderRejected,
    RiskVerdictIssued,
    StopLossTriggered,
    TradeTicked,
    TradingStateChanged,
)
from aggregates.machine import record
from aggregates.portfolio import DAY_MS
from aggregates.risk import RiskMachine
from tests.unit.aggregates.risk_desk import Desk, T, orders, verdict

D = Decimal


def test_machine_when_no_config_has_arrived_then_nothing_is_decided() -> None:
    machine = RiskMachine()
    tick = TradeTicked(
        at_ms=T,
        symbol="BTC_USDT",
        price=D(1),
        contracts=D(1),
        taker_side="buy",
        position_effect="open",
    )
    assert machine.step(machine.initial(), record(tick, 1))[1] == ()


def test_entry_when_nothing_limits_it_then_sized_by_strength_and_approved() -> None:
    desk = Desk()
    out = desk.signal("BTC_USDT", "long", "0.5")
    v = verdict(out)
    # 10000 equity * 20 % * 0.5 = 1000 USDT; one contract = 50000 * 0.0001 = 5 USDT
    assert (v.decision, v.layer, v.reason) == ("approved", "none", "approved")
    assert v.requested_contracts == v.approved_contracts == D(200)
    [order] = orders(out)
    assert order.side == "buy" and order.contracts == D(200) and not order.reduce_only
    assert order.order_type == "market" and order.intent == "entry"
    index = out.index(order)
    assert order.client_order_id == derive_event_id("risk", desk.last_fact.event_id, index).hex
    assert desk.state.pending[order.client_order_id].remaining == D(200)


def test_entry_when_position_would_pass_its_limit_then_trimmed_to_it() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 300, 50000)  # 1500 of the 2000 USDT position limit
    v = verdict(desk.signal("BTC_USDT", "long"))
    assert (v.decision, v.layer, v.reason) == (
        "trimmed",
        "position_size",
        "trimmed_to_position_limit",
    )
    assert v.approved_contracts == D(100)


def test_entry_when_position_is_at_its_limit_then_rejected() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 400, 50000)
    v = verdict(desk.signal("BTC_USDT", "long"))
    assert (v.decision, v.layer, v.reason) == (
        "rejected",
        "position_size",
        "position_limit_reached",
    )
    assert orders([v]) == []


def test_entry_when_target_is_below_one_contract_then_rejected_below_minimum() -> None:
    v = verdict(Desk().signal("BTC_USDT", "long", "0.001"))
    assert (v.layer, v.reason) == ("position_size", "below_min_contracts")


def test_entry_when_gross_exposure_would_pass_its_limit_then_trimmed() -> None:
    desk = Desk()
    desk.fill("ETH_USDT", "buy", 83, 3000)  # 2490 USDT of the 3000 USDT exposure limit
    v = verdict(desk.signal("BTC_USDT", "long"))
    assert (v.decision, v.layer, v.reason) == (
        "trimmed",
        "exposure_limit",
        "trimmed_to_exposure_limit",
    )
    assert v.approved_contracts == D(102)
    assert v.requested_contracts == D(400) and str(v.requested_contracts) == "400"


def test_entry_when_exposure_is_used_up_then_rejected_even_counting_pending_orders() -> None:
    desk = Desk(MAX_EXPOSURE_PCT="20")
    assert verdict(desk.signal("BTC_USDT", "long")).decision == "approved"  # pending, 2000 USDT
    v = verdict(desk.signal("ETH_USDT", "short"))
    assert (v.decision, v.layer, v.reason) == (
        "rejected",
        "exposure_limit",
        "exposure_limit_reached",
    )


def test_entry_when_order_notional_passes_the_cap_then_trimmed_pre_trade() -> None:
    v = verdict(Desk(MAX_ORDER_NOTIONAL_USDT="400").signal("BTC_USDT", "long"))
    assert (v.layer, v.reason, v.approved_contracts) == (
        "pre_trade",
        "trimmed_to_max_order_notional",
        D(80),
    )


def test_entry_when_contract_maximum_is_smaller_then_trimmed_pre_trade() -> None:
    desk = Desk()
    desk.feed(
        ContractSpecified(
            at_ms=desk.at(0),
            symbol="BTC_USDT",
            contract_size=D("0.0001"),
            min_contracts=D(1),
            max_contracts=D(50),
            contracts_step=D(1),
            price_step=D("0.1"),
            taker_fee_rate=D(0),
            maker_fee_rate=D(0),
            api_allowed=True,
            source="exchange",
        )
    )
    v = verdict(desk.signal("BTC_USDT", "long"))
    assert (v.layer, v.reason, v.approved_contracts) == (
        "pre_trade",
        "trimmed_to_max_contracts",
        D(50),
    )


def test_entry_when_quantity_step_is_coarse_then_floored_to_the_step() -> None:
    desk = Desk(CONTRACT_SPECS="BTC_USDT:0.0001:10:100000:10:0.1,ETH_USDT:0.01:1:100000:1:0.01")
    v = verdict(desk.signal("BTC_USDT", "long", "0.33"))  # 660 USDT = 132 contracts -> 130
    assert v.approved_contracts == D(130)


def test_entry_when_per_order_cap_is_below_the_minimum_then_rejected_pre_trade() -> None:
    desk = Desk(MAX_ORDER_NOTIONAL_USDT="4")
    v = verdict(desk.signal("BTC_USDT", "long"))
    assert (v.layer, v.reason) == ("pre_trade", "max_order_below_min_contracts")


def test_entry_when_symbol_has_no_contract_spec_then_rejected_pre_trade() -> None:
    desk = Desk()
    desk.tick("SOL_USDT", 100)
    v = verdict(desk.signal("SOL_USDT", "long"))
    assert (v.layer, v.reason) == ("pre_trade", "no_contract_spec")


def test_entry_when_orders_per_minute_are_used_up_then_throttled() -> None:
    desk = Desk(MAX_ORDERS_PER_MINUTE="2", MAX_EXPOSURE_PCT="100")
    assert verdict(desk.signal("BTC_USDT", "long", "0.1")).decision == "approved"
    assert verdict(desk.signal("ETH_USDT", "long", "0.1")).decision == "approved"
    v = verdict(desk.signal("BTC_USDT", "short", "0.1"))
    assert (v.layer, v.reason) == ("order_rate", "order_rate_limit")
    desk.tick("BTC_USDT", 50000, advance_ms=61_000)
    assert verdict(desk.signal("BTC_USDT", "short", "0.1")).decision == "approved"


def test_entry_when_inside_the_cooldown_after_an_exit_then_rejected() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 10, 50000)
    desk.fill_all(desk.signal("BTC_USDT", "flat"))
    assert desk.state.portfolio.contracts("BTC_USDT") == 0
    v = verdict(desk.signal("BTC_USDT", "long"))
    assert (v.layer, v.reason) == ("cooldown", "exit_cooldown")
    desk.tick("BTC_USDT", 50000, advance_ms=11_000)
    assert verdict(desk.signal("BTC_USDT", "long")).decision == "approved"


def test_tick_when_price_jumps_beyond_the_abnormal_move_then_breaker_trips_and_clears() -> None:
    desk = Desk()
    out = desk.tick("BTC_USDT", 53500)  # +7 % within 30 s, limit 6 %
    tripped = [e for e in out if isinstance(e, CircuitBreakerTripped)]
    assert tripped and tripped[0].layer == "abnormal_market" and tripped[0].symbol == "BTC_USDT"
    assert [e.severity for e in out if isinstance(e, AlertRaised)] == ["WARNING"]
    v = verdict(desk.signal("BTC_USDT", "long"))
    assert (v.layer, v.reason) == ("abnormal_market", "circuit_breaker_abnormal_market")
    assert verdict(desk.signal("ETH_USDT", "long")).decision == "approved"  # per symbol
    cleared = desk.clock(60_000)
    assert any(isinstance(e, CircuitBreakerCleared) and e.symbol == "BTC_USDT" for e in cleared)


def test_clock_when_market_data_is_silent_too_long_then_entries_pause_until_data_returns() -> None:
    desk = Desk()
    assert desk.clock(20_000) == []  # exactly the limit is still fine
    out = desk.clock(1)
    assert [type(e) for e in out] == [CircuitBreakerTripped, AlertRaised]
    assert desk.clock(5_000) == []  # one trip, one alert
    v = verdict(desk.signal("BTC_USDT", "long"))
    assert (v.layer, v.reason) == ("data_silence", "circuit_breaker_data_silence")
    cleared = desk.tick("BTC_USDT", 50000)
    assert any(isinstance(e, CircuitBreakerCleared) and e.layer == "data_silence" for e in cleared)
    assert verdict(desk.signal("BTC_USDT", "long")).decision == "approved"


def _breach(desk: Desk) -> list[Event]:
    desk.fill("BTC_USDT", "buy", 400, 50000)
    desk.fill("ETH_USDT", "sell", 10, 3000)
    return desk.tick("BTC_USDT", 42000)  # -320 USDT on 10000: 3.2 % >= 3 %


def test_drawdown_when_limit_is_reached_then_alert_halt_and_every_position_closed() -> None:
    desk = Desk(STOP_LOSS_PCT="50", ABNORMAL_MOVE_PCT="50")
    out = _breach(desk)
    kinds = [type(e) for e in out]
    assert kinds[:3] == [AlertRaised, TradingStateChanged, RiskVerdictIssued]
    assert [e.severity for e in out if isinstance(e, AlertRaised)] == ["CRITICAL"]
    change = out[1]
    assert isinstance(change, TradingStateChanged) and change.state == "HALTED"
    closing = orders(out)
    assert {(o.symbol, o.side, o.contracts, o.reduce_only, o.intent) for o in closing} == {
        ("BTC_USDT", "sell", D(400), True, "flatten"),
        ("ETH_USDT", "buy", D(10), True, "flatten"),
    }
    assert not any(isinstance(e, AlertRaised) for e in desk.tick("BTC_USDT", 41000))
    v = verdict(desk.signal("ETH_USDT", "long"))
    assert (v.layer, v.reason) == ("daily_drawdown", "halted_daily_drawdown")


def test_drawdown_when_the_next_utc_day_starts_then_trading_resumes() -> None:
    desk = Desk(STOP_LOSS_PCT="50", ABNORMAL_MOVE_PCT="50")
    _breach(desk)
    out = desk.clock((desk.now // DAY_MS + 1) * DAY_MS - desk.now)
    assert any(isinstance(e, TradingStateChanged) and e.state == "ACTIVE" for e in out)


def test_drawdown_when_operator_resets_then_entries_allowed_again() -> None:
    desk = Desk(STOP_LOSS_PCT="50", ABNORMAL_MOVE_PCT="50", EXIT_COOLDOWN_SECONDS="0")
    desk.fill_all(_breach(desk))
    out = desk.command("reset_drawdown")
    assert isinstance(out[0], TradingStateChanged) and out[0].reason == "operator_reset_drawdown"
    assert verdict(desk.signal("ETH_USDT", "long", "0.1")).decision == "approved"


def test_stop_loss_when_loss_reaches_the_limit_then_one_exit_order() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 100, 50000)
    assert desk.tick("BTC_USDT", 49100) == []  # -1.8 %
    out = desk.tick("BTC_USDT", 49000)  # -2 %
    assert isinstance(out[0], StopLossTriggered) and out[0].loss_pct == D(2)
    [order] = orders(out)
    assert (order.side, order.contracts, order.reduce_only, order.intent) == (
        "sell",
        D(100),
        True,
        "stop_loss",
    )
    assert orders(desk.tick("BTC_USDT", 48000)) == []  # already leaving


def test_stop_loss_when_the_exit_is_rejected_then_alert_and_a_new_exit_only_after_a_back_off() -> (
    None
):
    desk = Desk()
    desk.fill("BTC_USDT", "sell", 100, 50000)
    [order] = orders(desk.tick("BTC_USDT", 51000))
    out = desk.feed(
        OrderRejected(
            at_ms=desk.at(0),
            client_order_id=order.client_order_id,
            symbol="BTC_USDT",
            code="x",
            message="no",
        )
    )
    assert orders(out) == []
    assert [(e.severity, e.code) for e in out if isinstance(e, AlertRaised)] == [
        ("CRITICAL", "exit_refused")
    ]
    assert orders(desk.tick("BTC_USDT", 51000, advance_ms=500)) == []  # still backing off
    [again] = orders(desk.tick("BTC_USDT", 51000, advance_ms=500))
    assert (again.side, again.contracts, again.reduce_only) == ("buy", D(100), True)


def test_loss_streak_when_enough_stop_losses_then_entries_pause() -> None:
    desk = Desk(LOSS_STREAK_COUNT="1")
    desk.fill("BTC_USDT", "buy", 100, 50000)
    out = desk.tick("BTC_USDT", 49000)
    assert any(isinstance(e, AlertRaised) and e.code == "loss_streak_pause" for e in out)
    v = verdict(desk.signal("ETH_USDT", "long"))
    assert (v.layer, v.reason) == ("loss_streak", "loss_streak_pause")


def test_operator_when_halting_reducing_and_resuming_then_entries_follow_the_state() -> None:
    desk = Desk()
    out = desk.command("halt")
    assert isinstance(out[0], TradingStateChanged) and out[0].state == "HALTED"
    assert verdict(desk.signal("BTC_USDT", "long")).reason == "halted_by_operator"
    desk.command("reduce")
    assert verdict(desk.signal("BTC_USDT", "long")).reason == "reducing_only"
    desk.command("resume")
    assert verdict(desk.signal("BTC_USDT", "long")).decision == "approved"


def test_operator_when_flattening_then_every_position_gets_a_reduce_only_order() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 10, 50000)
    desk.fill("ETH_USDT", "sell", 5, 3000)
    closing = orders(desk.command("flatten"))
    assert {(o.symbol, o.side, o.reduce_only) for o in closing} == {
        ("BTC_USDT", "sell", True),
        ("ETH_USDT", "buy", True),
    }
    assert desk.state.trading_state == "REDUCING"


def test_signal_when_flat_then_the_position_is_closed_reduce_only() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 10, 50000)
    out = desk.signal("BTC_USDT", "flat")
    [order] = orders(out)
    assert (order.side, order.contracts, order.reduce_only, order.intent) == (
        "sell",
        D(10),
        True,
        "exit",
    )


def test_signal_when_direction_reverses_then_exit_then_entry() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 10, 50000)
    exit_order, entry = orders(desk.signal("BTC_USDT", "short", "0.5"))
    assert (exit_order.side, exit_order.reduce_only) == ("sell", True)
    assert (entry.side, entry.reduce_only, entry.intent) == ("sell", False, "entry")


def test_layers_when_all_apply_then_each_is_decided_in_binding_order() -> None:
    desk = Desk(STOP_LOSS_PCT="50", ABNORMAL_MOVE_PCT="50", LOSS_STREAK_COUNT="1")
    _breach(desk)
    desk.command("halt")
    desk.tick("ETH_USDT", 1000)  # abnormal move on ETH (-67 %)
    desk.clock(25_000)  # data silence
    expected = ["daily_drawdown", "trading_state", "abnormal_market", "data_silence"]
    seen = [verdict(desk.signal("ETH_USDT", "long")).layer]
    desk.command("reset_drawdown")
    seen.append(verdict(desk.signal("ETH_USDT", "long")).layer)
    desk.command("resume")
    seen.append(verdict(desk.signal("ETH_USDT", "long")).layer)
    desk.clock(60_000)  # the abnormal pause lapses; still no market data
    seen.append(verdict(desk.signal("ETH_USDT", "long")).layer)
    assert seen == expected
