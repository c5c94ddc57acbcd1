"""Time and the UTC day (docs/DECISIONS.md, "Time and the UTC day")."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aggregates import events as ev
from tests.blackbox_attack.decisions.harness import (
    DAY_MS,
    T0,
    Risk,
    alerts,
    of,
    open_long,
    orders,
    verdicts,
)

D = Decimal
DAY = T0 - 3_600_000  # 00:00 UTC of day D
NEXT = DAY + DAY_MS  # 00:00 UTC of day D+1
H = 3_600_000


def _states(out):
    return [s.state for s in of(out, ev.TradingStateChanged)]


def _session():
    """Long 1000 contracts at 100 (notional 1000) on day D; equity 10000.

    Funding at 08:00 +500 (peak 10500), at 16:00 -400 (10100: 3.8 % below the peak, no halt).
    """
    r = Risk()
    for i in range(10):
        r.trade(T0 + i * 1000, "100")
    open_long(r, T0 + 10_000)
    r.trade(DAY + 8 * H - 1000, "100")
    assert _states(r.funding(DAY + 8 * H, "500")) == []
    r.trade(DAY + 16 * H - 1000, "100")
    assert _states(r.funding(DAY + 16 * H, "-400")) == []
    r.trade(NEXT - 2000, "100")
    return r


def test_funding_at_midnight_when_loss_small_against_new_day_peak_then_no_halt():
    r = _session()
    # 9900 is 5.7 % below day D's peak (10500) but 1.98 % below the new day's (10100).
    out = r.funding(NEXT, "-200")
    assert _states(out) == [] and alerts(out) == [] and orders(out) == []


def test_funding_at_midnight_when_it_breaches_new_day_peak_then_halt_holds_all_day():
    r = _session()
    out = r.funding(NEXT, "-600")  # 9500: 5.94 % below 10100
    assert _states(out) == ["HALTED"]
    assert [a.severity for a in alerts(out)] == ["CRITICAL"]
    assert all(o.reduce_only and o.intent == "flatten" for o in orders(out)) and orders(out)
    for o in orders(out):
        r.fill(o, NEXT + 10, "100")
    # the next trade, clock ticks and signals of the same day do not lift it
    assert _states(r.trade(NEXT + 1000, "100")) == []
    assert _states(r.clock(NEXT + 2000)) == []
    for k in range(1, 4):
        out = r.signal(NEXT + k * H, "long", "100")
        assert [o for o in orders(out) if o.intent == "entry"] == [], "entry while halted"
    assert _states(r.trade(NEXT + DAY_MS - 1, "100")) == []
    # the next UTC day ends it
    assert _states(r.clock(NEXT + DAY_MS)) == ["ACTIVE"]


def test_funding_one_ms_before_midnight_when_it_breaches_then_old_day_halt_ends_at_midnight():
    r = _session()
    out = r.funding(NEXT - 1, "-200")  # 9900: 5.7 % below day D's peak 10500
    assert _states(out) == ["HALTED"]
    for o in orders(out):
        r.fill(o, NEXT - 1, "100")
    assert _states(r.clock(NEXT)) == ["ACTIVE"]


def test_drawdown_halt_when_operator_resumes_same_day_then_still_halted():
    r = _session()
    out = r.funding(NEXT - 1000, "-200")
    assert _states(out) == ["HALTED"]
    out = r.command(NEXT - 500, "resume")
    assert "ACTIVE" not in _states(out)
    out = r.signal(NEXT - 400, "long", "100")
    assert [o for o in orders(out) if o.intent == "entry"] == []


def test_operator_command_at_midnight_when_halted_yesterday_then_day_rolls_before_command():
    r = _session()
    assert _states(r.funding(NEXT - 1000, "-200")) == ["HALTED"]
    out = r.command(NEXT, "reduce")
    # the day rolls first (the halt of the day before ends), then the command applies
    assert _states(out)[-1:] == ["REDUCING"], _states(out)


def test_late_input_when_stamped_yesterday_then_clock_and_day_do_not_go_back():
    r = _session()
    out = r.funding(NEXT, "-600")
    assert _states(out) == ["HALTED"]
    for o in orders(out):
        r.fill(o, NEXT + 10, "100")
    # a late trade stamped before midnight, then one after it: the day must not roll again
    r.trade(NEXT - 5, "100")
    assert _states(r.trade(NEXT + 20, "100")) == []
    out = r.signal(NEXT + 30, "long", "100")
    assert [o for o in orders(out) if o.intent == "entry"] == []


def test_reset_drawdown_when_commanded_after_breach_then_entries_resume_against_current_equity():
    r = _session()
    out = r.funding(NEXT, "-600")
    for o in orders(out):
        r.fill(o, NEXT + 10, "100")
    r.command(NEXT + 1000, "reset_drawdown")
    for i in range(5):
        r.trade(NEXT + 2000 + i * 1000, "100")
    out = r.signal(NEXT + 200_000, "long", "100")  # past the exit cooldown
    entries = [o for o in orders(out) if o.intent == "entry"]
    # equity is now 9500: 10 % of it at price 100 and 0.01 contract size is 950 contracts at most
    assert sum(o.contracts for o in entries) <= 950, verdicts(out)


def _halted_with_flatten():
    r = _session()
    out = r.funding(NEXT - 1000, "-200")  # halt on day D; flatten orders left open
    assert _states(out) == ["HALTED"]
    (flatten,) = orders(out)
    return r, flatten


def _fill(r, o, at):
    return r.fill(o, at, "100", contracts="1")


def _reject(r, o, at):
    return r.reject(o, at, "price_limit")


def _cancel(r, o, at):
    return r.cancel(o, at, remaining=o.contracts)


@pytest.mark.parametrize(
    "first_input_of_the_day",
    [
        lambda r, o, at: r.trade(at, "100"),
        lambda r, o, at: r.clock(at),
        lambda r, o, at: r.signal(at, "flat", "100"),
        _fill,
        _reject,
        _cancel,
        lambda r, o, at: r.funding(at, "-1"),
        lambda r, o, at: r.command(at, "reduce"),
    ],
    ids=["trade", "clock", "signal", "fill", "refusal", "cancellation", "funding", "command"],
)
def test_new_day_when_first_input_is_any_timed_kind_then_yesterdays_halt_ends(
    first_input_of_the_day,
):
    r, flatten = _halted_with_flatten()
    out = first_input_of_the_day(r, flatten, NEXT)
    states = _states(out)
    assert states and states[0] == "ACTIVE", states


def test_new_day_when_halt_ended_then_entry_sized_from_current_equity():
    r = _session()
    out = r.funding(NEXT, "-600")  # equity 9500
    for o in orders(out):
        r.fill(o, NEXT + 10, "100")
    assert _states(r.clock(NEXT + DAY_MS)) == ["ACTIVE"]
    for i in range(5):
        r.trade(NEXT + DAY_MS + i * 1000, "100")
    out = r.signal(NEXT + DAY_MS + 6000, "long", "100")
    entries = [o for o in orders(out) if o.intent == "entry"]
    assert entries and sum(o.contracts for o in entries) <= 950, verdicts(out)
