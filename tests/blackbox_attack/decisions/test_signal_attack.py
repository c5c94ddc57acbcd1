"""The momentum rule (README.md "The signal rule", .env.example signal section) at its edges."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.machine import record
from aggregates.signal import SignalMachine
from tests.blackbox_attack.decisions.harness import BASE, SYM, T0

D = Decimal
LOOKBACK = 300_000


class Engine:
    def __init__(self, **overrides: str) -> None:
        self.m = SignalMachine()
        self.state = self.m.initial()
        self.pos = 0
        self.feed(parse_config({**BASE, **overrides}).activated(T0 - 60_000))

    def feed(self, event):
        self.pos += 1
        self.state, out = self.m.step(self.state, record(event, self.pos))
        return [e for e in out if isinstance(e, ev.SignalGenerated)]

    def trade(self, at, price, contracts="1"):
        return self.feed(
            ev.TradeTicked(
                at_ms=at,
                symbol=SYM,
                price=D(price),
                contracts=D(contracts),
                taker_side="buy",
                position_effect="open",
            )
        )


def _flat_history(e: Engine, seconds: int = 299):
    said = e.trade(T0, "100")
    said += e.trade(T0 + 1, "90")  # exactly LOOKBACK before the decision below: outside
    for k in range(1, seconds + 1):
        said += e.trade(T0 + k * 1000, "100")
    return said


@pytest.mark.parametrize(
    ("last", "direction", "strength"),
    [
        ("100.5", "long", "0.5"),
        ("100.49", None, None),
        ("99.5", "short", "0.5"),
        ("101", "long", "1"),
    ],
)
def test_momentum_when_exactly_at_threshold_then_signal_with_strength(last, direction, strength):
    e = Engine(SIGNAL_MIN_TRADES="20", SIGNAL_MIN_CONTRACTS="1")
    assert _flat_history(e) == []
    said = e.trade(T0 + 1 + LOOKBACK, last)
    if direction is None:
        assert said == []
        return
    (sig,) = said
    assert sig.direction == direction
    assert sig.strength == D(strength), "the trade LOOKBACK before is outside (t - LOOKBACK, t]"
    assert sig.reference_price == D(last)


@pytest.mark.parametrize(("trades", "says"), [(20, True), (19, False)])
def test_activity_when_trades_in_window_exactly_minimum_then_signal_else_flat(trades, says):
    e = Engine(SIGNAL_MIN_TRADES="20", SIGNAL_MIN_CONTRACTS="1")
    e.trade(T0, "100")
    # only the last ``trades`` trades fall inside the window of the decision at T1
    t1 = T0 + 10 * LOOKBACK
    e.trade(t1 - LOOKBACK - 5000, "100")
    for k in range(trades - 1, 0, -1):
        e.trade(t1 - k * 1000, "100")
    said = e.trade(t1, "101")
    assert bool(said) is says


@pytest.mark.parametrize(("contracts", "says"), [("100", True), ("99.9", False)])
def test_activity_when_contracts_exactly_minimum_then_signal_else_flat(contracts, says):
    e = Engine(SIGNAL_MIN_TRADES="2", SIGNAL_MIN_CONTRACTS="100")
    e.trade(T0, "100", "1")
    t1 = T0 + 10 * LOOKBACK
    e.trade(t1 - 1000, "100", str(D(contracts) - 10))
    said = e.trade(t1, "101", "10")
    assert bool(said) is says


def test_signal_when_direction_unchanged_then_not_repeated():
    e = Engine(SIGNAL_MIN_TRADES="2", SIGNAL_MIN_CONTRACTS="1")
    e.trade(T0, "100")
    t1 = T0 + 2 * LOOKBACK
    e.trade(t1 - 1000, "100")
    assert len(e.trade(t1, "101")) == 1
    assert e.trade(t1 + 1, "101.5") == []
    # one trade left in the window: fewer than SIGNAL_MIN_TRADES, so flat, said once
    (back,) = e.trade(t1 + LOOKBACK + 10, "101.5")
    assert back.direction == "flat"


def test_warm_up_when_history_shorter_than_lookback_then_nothing_decided():
    e = Engine(SIGNAL_MIN_TRADES="2", SIGNAL_MIN_CONTRACTS="1")
    e.trade(T0, "100")
    assert e.trade(T0 + 1000, "110") == []
    assert e.trade(T0 + LOOKBACK - 1, "120") == []
