"""Protective exits the venue cannot accept (docs/DECISIONS.md, first section)."""

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


def _long_then_spec(max_c: str, min_c: str = "1", step: str = "1", price: str = "100"):
    r = Risk()
    t = warm(r, T0)
    _, filled = open_long(r, t + 1, price)
    r.feed(spec(t + 2, max_c=max_c, min_c=min_c, step=step))
    return r, t + 3, filled


def _check_orders(out, max_c, min_c, step):
    exits = [o for o in orders(out) if o.intent != "entry"]
    for o in exits:
        assert o.reduce_only
        assert D(min_c) <= o.contracts <= D(max_c), o
        assert o.contracts % D(step) == 0, o
    assert len(exits) <= 20
    return exits


def test_stop_loss_exit_when_position_exceeds_max_then_orders_fit_and_fills_continue_to_flat():
    r, t, held = _long_then_spec("7", "3")
    out = r.trade(t, "97")
    first = _check_orders(out, "7", "3", "1")
    assert len(first) == 20 and sum(o.contracts for o in first) == 140
    (verdict,) = [v for v in verdicts(out) if v.intent == "stop_loss"]
    assert verdict.requested_contracts == held and verdict.approved_contracts == 140
    assert verdict.numbers["orders"] == "20"
    # The venue fills one at a time; each fill continues the exit until all 1000 left.
    pending = list(first)
    sent = sum(o.contracts for o in first)
    position = held
    while pending:
        t += 10
        o = pending.pop(0)
        position -= o.contracts
        more = _check_orders(r.fill(o, t, "97"), "7", "3", "1")
        sent += sum(m.contracts for m in more)
        pending.extend(more)
        outstanding = sum(p.contracts for p in pending)
        assert outstanding <= position, "an exit bigger than what is left would increase/flip"
    assert position == 0 and sent == held


def test_exit_when_remainder_below_minimum_then_last_order_borrows_from_previous():
    r = Risk()
    t = warm(r, T0)
    # 15 contracts: with max 7 and min 3, 7+7+1 is not acceptable; 7+5+3 is.
    out = r.signal(t + 1, "long", "100", strength="0.015")
    (entry,) = orders(out)
    r.fill(entry, t + 1, "100")
    held = entry.contracts
    r.feed(spec(t + 2, max_c="7", min_c="3"))
    out = r.trade(t + 3, "97")
    exits = _check_orders(out, "7", "3", "1")
    assert sum(o.contracts for o in exits) == held == 15


def test_exit_when_step_does_not_divide_max_then_orders_are_floored_to_step():
    r, t, _ = _long_then_spec("7", "2", "2")
    exits = _check_orders(r.trade(t, "97"), "7", "2", "2")
    assert {o.contracts for o in exits} == {D(6)}


def test_operator_flatten_when_position_exceeds_max_then_split_at_most_twenty():
    r, t, _ = _long_then_spec("9", "1")
    out = r.command(t, "flatten")
    exits = _check_orders(out, "9", "1", "1")
    assert len(exits) == 20 and all(o.contracts == 9 for o in exits)


def test_refused_exit_when_one_order_rejected_then_one_critical_alert_and_no_reissue():
    r, t, _ = _long_then_spec("7", "3")
    first = orders(r.trade(t, "97"))
    out = r.reject(first[0], t + 5, "order_quantity_error")
    assert orders(out) == []
    (alert,) = alerts(out, "exit_refused")
    assert alert.severity == "CRITICAL"


@pytest.mark.parametrize(
    "code", ["order_quantity_error", "price_limit", "reduce_only_rejected", "rate_limit"]
)
def test_refused_exits_when_all_sent_together_refused_then_one_alert_one_backoff(code):
    r, t, _ = _long_then_spec("7", "3")
    first = orders(r.trade(t, "97"))
    refusals = [r.reject(o, t + 5, code) for o in first]
    assert sum(len(alerts(o, "exit_refused")) for o in refusals) == 1
    assert all(orders(o) == [] for o in refusals)
    # back-off 1 s counted from the refusal's time: a trade inside it says nothing
    inside = r.trade(t + 5 + 999, "97")
    assert orders(inside) == [] and of(inside, ev.StopLossTriggered) == []
    after = r.trade(t + 5 + 1001, "97")
    assert orders(after), "the exit is retried by a later input past the wait"
    assert all(o.intent == "stop_loss" for o in orders(after)), "retried with its original intent"


def test_refusal_backoff_when_refused_repeatedly_then_doubles_to_five_minutes():
    r, t, _ = _long_then_spec("7", "3")
    out = r.trade(t, "97")
    for i in range(11):
        wait = min(1000 * 2**i, 300_000)
        batch = orders(out)
        assert batch
        refused_at = t + 1
        said = [r.reject(o, refused_at, "price_limit") for o in batch]
        assert sum(len(alerts(x, "exit_refused")) for x in said) == 1
        inside = r.trade(refused_at + wait - 1, "97")
        assert orders(inside) == [], f"refusal {i + 1}: retried before {wait} ms"
        t = refused_at + wait + 1
        out = r.trade(t, "97")
        assert orders(out), f"refusal {i + 1}: not retried after {wait} ms"


def test_refused_exit_when_position_already_flat_then_nothing_said_nothing_resent():
    r, t, _ = _long_then_spec("2000", "1")
    (exit_order,) = orders(r.trade(t, "97"))
    # a manual close at the venue leaves nothing: the exit's fill for all of it, then a refusal of
    # a second copy would be odd; instead: fill part, the venue closes the rest and refuses.
    r.fill(exit_order, t + 1, "97")
    # position is flat now; a stale refusal arrives for the same order
    out = r.reject(exit_order, t + 2, "reduce_only_rejected")
    assert out == ()
    assert orders(r.trade(t + 5000, "97")) == []


def test_backoff_when_exit_fill_arrives_then_backoff_ends():
    r, t, _ = _long_then_spec("7", "3")
    first = orders(r.trade(t, "97"))
    r.reject(first[0], t + 1, "price_limit")
    # another order of the same exit fills while backing off: the back-off ends, the exit goes on
    out = r.fill(first[1], t + 2, "97")
    assert orders(out), "a fill of an exit ends the back-off and continues the exit"


def test_backoff_when_stop_loss_still_reached_then_no_repeated_trigger_and_no_streak_count():
    r, t, _ = _long_then_spec("7", "3")
    out = r.trade(t, "97")
    assert len(of(out, ev.StopLossTriggered)) == 1
    for o in orders(out):
        r.reject(o, t + 1, "price_limit")
    for k in range(1, 4):
        out = r.trade(t + 1 + k * 100, "96")
        assert of(out, ev.StopLossTriggered) == [] and orders(out) == []


def test_one_split_stop_loss_when_three_of_its_orders_fill_then_no_loss_streak_pause():
    r = Risk()
    t = warm(r, T0)
    warm(r, T0, symbol="OTH_USDT")
    open_long(r, t + 1)
    r.feed(spec(t + 2, max_c="7", min_c="3"))
    out = r.trade(t + 3, "97")
    triggers = len(of(out, ev.StopLossTriggered))
    pending = orders(out)
    at = t + 10
    for _ in range(3):
        at += 10
        step = r.fill(pending.pop(0), at, "97")
        triggers += len(of(step, ev.StopLossTriggered))
        pending += orders(step)
    r.trade(at + 10, "100", "OTH_USDT")
    out = r.signal(at + 11, "long", "100", "OTH_USDT")
    (verdict,) = verdicts(out)
    assert triggers == 1, f"{triggers} StopLossTriggered for one position"
    assert verdict.layer != "loss_streak", verdict


@pytest.mark.parametrize("gap", [500, 999])
def test_refusals_of_one_batch_when_spread_within_backoff_then_one_alert(gap):
    r, t, _ = _long_then_spec("7", "3")
    first = orders(r.trade(t, "97"))
    assert len(alerts(r.reject(first[0], t + 5, "price_limit"), "exit_refused")) == 1
    out = r.reject(first[1], t + 5 + gap, "price_limit")
    assert alerts(out, "exit_refused") == [] and orders(out) == []


def test_refusals_of_one_batch_when_second_arrives_after_backoff_then_still_one_alert():
    r, t, _ = _long_then_spec("7", "3")
    first = orders(r.trade(t, "97"))
    r.reject(first[0], t + 5, "price_limit")
    out = r.reject(first[1], t + 2005, "price_limit")  # no input in between
    assert alerts(out, "exit_refused") == []


def test_refusals_of_one_batch_when_retry_went_out_between_then_still_one_alert():
    r, t, _ = _long_then_spec("7", "3")
    first = orders(r.trade(t, "97"))
    r.reject(first[0], t + 5, "price_limit")
    assert orders(r.trade(t + 1006, "97")), "retried past the wait"
    out = r.reject(first[1], t + 1010, "price_limit")
    assert alerts(out, "exit_refused") == []


def test_exit_when_partly_filled_then_rest_cancelled_then_alert_and_rest_retried_after_wait():
    r = Risk()
    t = warm(r, T0)
    open_long(r, t + 1)
    (ex,) = orders(r.trade(t + 3, "97"))
    r.fill(ex, t + 4, "97", contracts="400")
    out = r.cancel(ex, t + 5, remaining="600")
    assert [(a.severity, a.code) for a in alerts(out)] == [("CRITICAL", "exit_refused")]
    assert orders(out) == []
    assert orders(r.trade(t + 1004, "97")) == []
    again = orders(r.trade(t + 1006, "97"))
    assert [(o.contracts, o.intent, o.reduce_only) for o in again] == [(D(600), "stop_loss", True)]


def _held(strength: str, max_c: str, min_c: str, step: str):
    r = Risk()
    t = warm(r, T0)
    (entry,) = orders(r.signal(t + 1, "long", "100", strength=strength))
    r.fill(entry, t + 1, "100")
    r.feed(spec(t + 2, max_c=max_c, min_c=min_c, step=step))
    return r, t + 3, entry.contracts


def test_exit_when_borrowing_from_previous_order_impossible_then_still_orders_venue_accepts():
    r, t, held = _held("0.016", "7", "5", "1")
    assert held == 16
    exits = orders(r.trade(t, "97"))
    assert sum(o.contracts for o in exits) == 16
    assert all(D(5) <= o.contracts <= D(7) for o in exits), [o.contracts for o in exits]


def test_exit_when_step_changed_and_position_not_multiple_then_only_the_last_order_off_step():
    # docs/DECISIONS.md: the part off the new step goes alone as the very last order (15 cannot
    # leave in multiples of 2 at all), so that only it can be refused.
    r, t, held = _held("0.015", "7", "1", "2")
    assert held == 15
    exits = orders(r.trade(t, "97"))
    sizes = [o.contracts for o in exits]
    assert sum(sizes) == 15 and all(c % 2 == 0 and c <= 7 for c in sizes[:-1]), sizes
    assert sizes[-1] == 1, sizes


def test_drawdown_flatten_when_position_exceeds_max_then_split_within_limits():
    r, t, _ = _long_then_spec("9", "1")
    out = r.funding(t, "-600")
    assert [s.state for s in of(out, ev.TradingStateChanged)] == ["HALTED"]
    exits = _check_orders(out, "9", "1", "1")
    assert len(exits) == 20 and all(o.intent == "flatten" for o in exits)


def test_split_stop_loss_when_order_rate_limit_already_used_then_exit_not_throttled():
    r = Risk({"MAX_ORDERS_PER_MINUTE": "1"})
    t = warm(r, T0)
    open_long(r, t + 1)  # uses the one order of this minute
    r.feed(spec(t + 2, max_c="7", min_c="3"))
    exits = _check_orders(r.trade(t + 3, "97"), "7", "3", "1")
    assert len(exits) == 20
