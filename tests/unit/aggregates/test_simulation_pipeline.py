"""signal + risk + paper simulated together over a generated market: the what-if engine's core."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates import events as ev
from aggregates.machine import record_all
from aggregates.orders import fold_orders
from aggregates.paper import PaperExchange
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from aggregates.simulation import Simulation, simulate, with_parameters
from tests.unit.aggregates.test_paper import config_event

SYMBOLS = ("BTC_USDT", "ETH_USDT")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def generated_market(seed: int, minutes: int) -> list[ev.Event]:
    """A reproducible two-symbol market: trending regimes, a trade every ~0.5 s, clock each 5 s.

    Test data only (tests may use ``random``; the pure core may not).
    """
    rng = random.Random(seed)
    price = {"BTC_USDT": Decimal(60000), "ETH_USDT": Decimal(3000)}
    step = {"BTC_USDT": Decimal("0.1"), "ETH_USDT": Decimal("0.01")}
    drift = dict.fromkeys(SYMBOLS, 0)
    events: list[ev.Event] = [config_event(START_MS)]
    next_clock = START_MS
    at = START_MS
    while at < START_MS + minutes * 60_000:
        at += rng.randint(200, 800)
        while next_clock <= at:
            events.append(ev.ClockTicked(at_ms=next_clock))
            next_clock += 5_000
        symbol = rng.choice(SYMBOLS)
        if rng.random() < 0.01:
            drift[symbol] = rng.choice([-6, -3, 0, 0, 3, 6])  # basis points per trade, tenths
        move = (drift[symbol] + rng.randint(-10, 10)) * price[symbol] / 100_000
        new_price = max(step[symbol], (price[symbol] + move).quantize(step[symbol]))
        price[symbol] = new_price
        events.append(
            ev.TradeTicked(
                at_ms=at,
                symbol=symbol,
                price=new_price,
                contracts=Decimal(rng.randint(1, 400)),
                taker_side=rng.choice(["buy", "sell"]),
                position_effect="open",
            )
        )
    return events


def machines():
    return [SignalMachine(), RiskMachine(), PaperExchange()]


def encoded(log) -> bytes:
    return msgspec.json.encode(list(log))


def test_pipeline_when_market_trends_then_signals_orders_and_fills_with_legal_lifecycles():
    log = list(simulate(machines(), record_all(generated_market(seed=7, minutes=60))))
    kinds = Counter(type(r.event).__name__ for r in log)
    assert kinds["SignalGenerated"] > 0
    assert kinds["RiskVerdictIssued"] > 0
    assert kinds["OrderRequested"] > 0
    assert kinds["OrderFilled"] > 0
    book = fold_orders([r.event for r in log])  # raises on any illegal order move
    assert len(book) == kinds["OrderRequested"]
    assert [r.position for r in log] == list(range(1, len(log) + 1))
    by_position = {r.position: r for r in log}
    for r in log:
        if isinstance(r.event, ev.OrderRequested):
            verdict = by_position[r.causation_position]
            assert verdict.position < r.position
        if isinstance(r.event, ev.OrderFilled):  # causation chain ends at a trade
            assert isinstance(by_position[r.causation_position].event, ev.TradeTicked)


def test_pipeline_when_recorded_log_is_replayed_then_reproduced_exactly():
    recorded = list(simulate(machines(), record_all(generated_market(seed=11, minutes=40))))
    assert encoded(simulate(machines(), recorded)) == encoded(recorded)
    assert encoded(simulate(machines(), with_parameters(recorded, {}))) == encoded(recorded)


def test_pipeline_when_what_if_restates_recorded_values_then_same_decisions():
    inputs = record_all(generated_market(seed=3, minutes=30))
    actual = [r for r in simulate(machines(), inputs)]
    same = list(simulate(machines(), with_parameters(inputs, {"STOP_LOSS_PCT": "2"})))

    def decisions(log):
        return encoded(r for r in log if not isinstance(r.event, ev.ConfigActivated))

    assert decisions(same) == decisions(actual)


def test_pipeline_when_what_if_tightens_limits_then_orders_differ():
    inputs = record_all(generated_market(seed=7, minutes=60))
    actual = [r.event for r in simulate(machines(), inputs)]
    tight = with_parameters(inputs, {"MAX_POSITION_PCT": "1", "MAX_ORDER_NOTIONAL_USDT": "50"})
    what_if = [r.event for r in simulate(machines(), tight)]

    def contracts(events):
        return [e.contracts for e in events if isinstance(e, ev.OrderRequested)]

    assert contracts(what_if) != contracts(actual)
    assert sum(contracts(what_if)) < sum(contracts(actual))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), data=st.data())
def test_pipeline_when_run_twice_or_resumed_then_byte_identical(seed, data):
    inputs = record_all(generated_market(seed, minutes=25))
    one_go = encoded(simulate(machines(), inputs))
    assert encoded(simulate(machines(), inputs)) == one_go

    split = data.draw(st.integers(min_value=0, max_value=len(inputs)))
    head = list(Simulation(machines()).feed(inputs[:split]))
    restarted = Simulation(machines()).resume(head)
    assert encoded([*head, *restarted.feed(inputs[split:])]) == one_go
