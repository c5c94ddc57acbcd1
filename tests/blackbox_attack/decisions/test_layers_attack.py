"""The six layers, pre-trade checks, throttle, cooldown, loss streak: at the limit and one past.

Rules from README.md ("The risk layers") and .env.example.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from aggregates import events as ev
from tests.blackbox_attack.decisions.harness import (
    T0,
    Risk,
    alerts,
    of,
    open_long,
    orders,
    spec,
    verdicts,
    warm,
)

D = Decimal


def _entries(out):
    return [o for o in orders(out) if o.intent == "entry"]


@pytest.mark.parametrize(("price", "triggers"), [("98", True), ("98.01", False), ("97.99", True)])
def test_stop_loss_when_loss_at_limit_or_just_under_then_triggers_only_at_or_past(price, triggers):
    r = Risk()
    t = warm(r, T0)
    open_long(r, t + 1)
    out = r.trade(t + 2, price)
    assert bool(of(out, ev.StopLossTriggered)) is triggers
    assert bool([o for o in orders(out) if o.intent == "stop_loss"]) is triggers


@pytest.mark.parametrize(("amount", "halts"), [("-500", True), ("-499.99", False)])
def test_daily_drawdown_when_loss_exactly_at_limit_then_halts(amount, halts):
    r = Risk()
    t = warm(r, T0)
    out = r.funding(t + 1, amount)
    assert bool(of(out, ev.TradingStateChanged)) is halts
    assert bool(alerts(out)) is halts


@pytest.mark.parametrize(("gap", "trips"), [(30_000, False), (30_001, True)])
def test_data_silence_when_gap_at_limit_or_one_ms_past_then_trips_only_past(gap, trips):
    r = Risk()
    t = warm(r, T0)
    out = r.clock(t + gap)
    tripped = [b for b in of(out, ev.CircuitBreakerTripped) if b.layer == "data_silence"]
    assert bool(tripped) is trips
    if trips:
        assert [a.severity for a in alerts(out)] == ["WARNING"]
        out = r.signal(t + gap + 1, "long", "100")
        assert _entries(out) == [] and verdicts(out)[0].layer == "data_silence"
        cleared = of(r.trade(t + gap + 2, "100"), ev.CircuitBreakerCleared)
        assert [c.layer for c in cleared] == ["data_silence"]


@pytest.mark.parametrize(("price", "trips"), [("108", True), ("107.99", False), ("92", True)])
def test_abnormal_move_when_at_limit_within_window_then_breaker_pauses_entries(price, trips):
    r = Risk()
    t = warm(r, T0)
    out = r.trade(t + 59_000, price)
    tripped = [b for b in of(out, ev.CircuitBreakerTripped) if b.layer == "abnormal_market"]
    assert bool(tripped) is trips
    out = r.signal(t + 59_001, "long", price)
    layer = verdicts(out)[0].layer
    assert (layer == "abnormal_market") is trips


def test_abnormal_pause_when_over_then_entries_allowed_again():
    r = Risk()
    t = warm(r, T0)
    r.trade(t + 1000, "108")
    t2 = t + 1000
    for k in range(1, 31):
        r.trade(t2 + k * 10_000, "108")
    out = r.signal(t2 + 300_001, "long", "108")
    assert verdicts(out)[0].layer != "abnormal_market"


def test_binding_order_when_abnormal_and_silence_both_apply_then_abnormal_decides():
    r = Risk()
    t = warm(r, T0)
    r.trade(t + 1000, "108")
    r.clock(t + 1000 + 30_001)
    out = r.signal(t + 1000 + 30_002, "long", "108")
    assert verdicts(out)[0].layer == "abnormal_market"


def test_binding_order_when_halted_and_abnormal_then_drawdown_layer_or_state_decides():
    r = Risk()
    t = warm(r, T0)
    r.trade(t + 1000, "108")
    r.funding(t + 1001, "-600")
    out = r.signal(t + 1002, "long", "108")
    assert verdicts(out)[0].layer in ("daily_drawdown", "trading_state")
    assert _entries(out) == []


def _many_symbols(r, n, t):
    names = [f"S{i}_USDT" for i in range(n)]
    for s in names:
        r.feed(spec(t, max_c="1000000", min_c="1", symbol=s))
        r.trade(t, "100", s)
    return names


@pytest.mark.parametrize("limit", [1, 5, 20])
def test_order_rate_when_limit_reached_then_next_entry_refused_and_exits_still_sent(limit):
    r = Risk({"MAX_ORDERS_PER_MINUTE": str(limit), "MAX_EXPOSURE_PCT": "10000"})
    t = warm(r, T0)
    names = _many_symbols(r, limit + 2, t)
    sent = []
    for i, s in enumerate(names[:limit]):
        out = r.signal(t + 1 + i, "long", "100", s, strength="0.01")
        sent += _entries(out)
        for o in _entries(out):
            r.fill(o, t + 1 + i, "100")
    assert len(sent) == limit
    out = r.signal(t + 100, "long", "100", names[limit], strength="0.01")
    assert _entries(out) == [] and verdicts(out)[0].layer == "order_rate"
    # protective exits are never throttled
    out = r.trade(t + 200, "97", names[0])
    assert [o for o in orders(out) if o.intent == "stop_loss"]
    # exits count in the window too; a minute after the last order the window is empty
    for k in range(1, 7):
        r.trade(t + 200 + k * 10_000, "100", names[limit + 1])
    out = r.signal(t + 200 + 60_001, "long", "100", names[limit + 1], strength="0.01")
    assert verdicts(out)[0].layer != "order_rate"


@pytest.mark.parametrize(("after", "allowed"), [(119_999, False), (120_001, True)])
def test_cooldown_when_entry_just_inside_or_past_cooldown_then_refused_or_allowed(after, allowed):
    r = Risk()
    t = warm(r, T0)
    open_long(r, t + 1)
    out = r.signal(t + 2, "flat", "100")
    exits = [o for o in orders(out) if o.intent == "exit"]
    assert exits
    for o in exits:
        r.fill(o, t + 3, "100")
    for k in range(1, 12):
        r.trade(t + 3 + k * 10_000, "100")
    r.trade(t + 3 + after - 1, "100")
    out = r.signal(t + 3 + after, "long", "100")
    assert bool(_entries(out)) is allowed, verdicts(out)
    if not allowed:
        assert verdicts(out)[0].layer == "cooldown"


@pytest.mark.parametrize(("count", "paused"), [(2, False), (3, True)])
def test_loss_streak_when_count_reached_within_window_then_entries_paused(count, paused):
    r = Risk({"EXIT_COOLDOWN_SECONDS": "0"})
    t = warm(r, T0)
    at = t
    for _ in range(count):
        at += 10_000
        r.trade(at, "100")
        open_long(r, at + 1)
        out = r.trade(at + 2, "97")
        assert of(out, ev.StopLossTriggered)
        for o in orders(out):
            r.fill(o, at + 3, "97")
        r.trade(at + 4, "100")
    out = r.signal(at + 10_000, "long", "100")
    assert (verdicts(out)[0].layer == "loss_streak") is paused, verdicts(out)


def test_max_order_notional_when_target_above_then_entry_trimmed_to_it():
    r = Risk({"MAX_POSITION_PCT": "30", "MAX_ORDER_NOTIONAL_USDT": "2000"})
    t = warm(r, T0)
    out = r.signal(t + 1, "long", "100")
    assert sum(o.contracts for o in _entries(out)) * D("0.01") * 100 <= 2000
    for o in _entries(out):
        assert o.contracts * D("0.01") * 100 <= 2000


def test_exposure_when_cap_reached_then_new_entry_refused_but_exit_allowed():
    r = Risk({"MAX_EXPOSURE_PCT": "10", "MAX_POSITION_PCT": "10"})
    t = warm(r, T0)
    warm(r, T0, symbol="OTH_USDT")
    open_long(r, t + 1)
    out = r.signal(t + 2, "long", "100", "OTH_USDT")
    assert _entries(out) == [] and verdicts(out)[0].layer == "exposure_limit"
    out = r.signal(t + 3, "flat", "100")
    assert [o for o in orders(out) if o.intent == "exit"]


def test_position_size_when_trimmed_below_contract_minimum_then_refused():
    r = Risk()
    t = warm(r, T0)
    r.feed(spec(t, max_c="1000000", min_c="2000"))
    out = r.signal(t + 1, "long", "100")
    assert _entries(out) == []
    assert verdicts(out)[0].layer in ("position_size", "pre_trade")


@pytest.mark.parametrize(("price", "triggers"), [("102", True), ("101.99", False)])
def test_stop_loss_when_short_loses_exactly_the_limit_then_buy_back_reduce_only(price, triggers):
    r = Risk()
    t = warm(r, T0)
    out = r.signal(t + 1, "short", "100")
    for o in orders(out):
        r.fill(o, t + 1, "100")
    out = r.trade(t + 2, price)
    exits = [o for o in orders(out) if o.intent == "stop_loss"]
    assert bool(exits) is triggers
    assert all(o.side == "buy" and o.reduce_only for o in exits)


def _stop_out(r, at):
    r.trade(at, "100")
    open_long(r, at + 1)
    out = r.trade(at + 2, "97")
    assert of(out, ev.StopLossTriggered)
    for o in orders(out):
        r.fill(o, at + 3, "97")
    r.trade(at + 4, "100")


@pytest.mark.parametrize(("third_after_ms", "paused"), [(3_599_000, True), (3_601_000, False)])
def test_loss_streak_when_third_stop_inside_or_outside_window_then_paused_or_not(
    third_after_ms, paused
):
    r = Risk({"EXIT_COOLDOWN_SECONDS": "0", "DATA_SILENCE_SECONDS": "86400"})
    t = warm(r, T0)
    first = t + 10_000
    _stop_out(r, first - 2)  # the stop-loss is at first
    _stop_out(r, first + 60_000 - 2)
    _stop_out(r, first + third_after_ms - 2)
    out = r.signal(first + third_after_ms + 1000, "long", "100")
    assert (verdicts(out)[0].layer == "loss_streak") is paused, verdicts(out)


@pytest.mark.parametrize(("after_ms", "paused"), [(7_199_000, True), (7_201_000, False)])
def test_loss_streak_pause_when_just_inside_or_past_its_length_then_refused_or_allowed(
    after_ms, paused
):
    r = Risk({"EXIT_COOLDOWN_SECONDS": "0", "DATA_SILENCE_SECONDS": "86400"})
    t = warm(r, T0)
    at = t + 10_000
    for k in range(3):
        _stop_out(r, at + k * 10_000 - 2)
    third = at + 20_000
    r.trade(third + after_ms - 1, "100")
    out = r.signal(third + after_ms, "long", "100")
    assert (verdicts(out)[0].layer == "loss_streak") is paused, verdicts(out)


def test_exposure_when_entry_reaches_cap_exactly_then_allowed_and_next_refused():
    r = Risk({"MAX_EXPOSURE_PCT": "50", "MAX_POSITION_PCT": "10"})
    t = warm(r, T0)
    names = _many_symbols(r, 6, t)
    for i, s in enumerate(names[:5]):
        out = r.signal(t + 1 + i, "long", "100", s)
        assert sum(o.contracts for o in _entries(out)) == 1000, verdicts(out)
    # 5 x 1000 USDT pending = 50 % of 10000 exactly: nothing is left for a sixth
    out = r.signal(t + 10, "long", "100", names[5])
    assert _entries(out) == [] and verdicts(out)[0].layer == "exposure_limit", verdicts(out)


@pytest.mark.parametrize(("price", "triggers"), [("98.98", True), ("98.99", False)])
def test_stop_loss_when_entry_filled_at_two_prices_then_judged_on_average_entry(price, triggers):
    r = Risk()
    t = warm(r, T0)
    (entry,) = orders(r.signal(t + 1, "long", "100"))
    r.fill(entry, t + 1, "100", contracts=str(entry.contracts / 2))
    r.fill(entry, t + 1, "102", contracts=str(entry.contracts / 2))  # average 101
    out = r.trade(t + 2, price)
    assert bool(of(out, ev.StopLossTriggered)) is triggers


@pytest.mark.parametrize(("after", "paused"), [(299_999, True), (300_001, False)])
def test_abnormal_pause_when_just_inside_or_past_its_length_then_refused_or_allowed(after, paused):
    r = Risk()
    t = warm(r, T0)
    trip = t + 1000
    out = r.trade(trip, "108")
    assert [b.layer for b in of(out, ev.CircuitBreakerTripped)] == ["abnormal_market"]
    k = 1
    while trip + k * 20_000 < trip + after:
        r.trade(trip + k * 20_000, "108")
        k += 1
    out = r.signal(trip + after, "long", "108")
    assert (verdicts(out)[0].layer == "abnormal_market") is paused, verdicts(out)
