"""Issue 16's two classes of safety defects, each as a rule of the public behaviour.

1. A protective exit is split into orders the venue accepts; a refusal is never answered by an
   identical order without new input; every input causes a bounded number of events.
2. Every input that carries a time moves the risk manager's clock; a decision's time is its
   cause's, and the UTC day of every judgement is its cause's day.

The closed-loop tests run the risk manager against the real paper venue (``PaperExchange``) in
the in-memory log, as the pipeline does, so a refusal comes from the venue's own rules.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from aggregates.config import ContractSpec
from aggregates.events import (
    AlertRaised,
    ClockTicked,
    ContractSpecified,
    Event,
    FundingSettled,
    OperatorCommandIssued,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRequested,
    RiskVerdictIssued,
    SignalGenerated,
    StopLossTriggered,
    TradeTicked,
    TradingStateChanged,
)
from aggregates.machine import record
from aggregates.paper import PaperExchange
from aggregates.portfolio import DAY_MS
from aggregates.risk import RiskMachine
from aggregates.risk.protect import split_exit
from aggregates.simulation import Simulation
from tests.unit.aggregates.risk_desk import Desk, orders, verdict
from tests.unit.strategies import START_MS, trading_config

D = Decimal
#: No single input may cause more events than this (a loop shows up as a blown bound).
MAX_EVENTS_PER_INPUT = 200


def _spec(at_ms: int, symbol: str = "BTC_USDT", **sizes: str) -> ContractSpecified:
    values = {"min_contracts": "1", "max_contracts": "50", "contracts_step": "1", **sizes}
    return ContractSpecified(
        at_ms=at_ms,
        symbol=symbol,
        contract_size=D("0.0001"),
        min_contracts=D(values["min_contracts"]),
        max_contracts=D(values["max_contracts"]),
        contracts_step=D(values["contracts_step"]),
        price_step=D("0.1"),
        taker_fee_rate=D(0),
        maker_fee_rate=D(0),
        api_allowed=True,
        source="exchange",
    )


# --------------------------------------------------------------------------- 1. exits


def test_stop_loss_exit_larger_than_the_contract_maximum_is_split_into_accepted_sizes() -> None:
    desk = Desk()
    desk.feed(_spec(desk.at(0), max_contracts="50"))
    desk.fill("BTC_USDT", "buy", 120, 50000)
    out = desk.tick("BTC_USDT", 49000)
    exits = orders(out)
    assert [o.contracts for o in exits] == [D(40), D(40), D(40)]  # 3 orders, spread evenly
    assert all(o.reduce_only and o.side == "sell" and o.intent == "stop_loss" for o in exits)
    [v] = [e for e in out if isinstance(e, RiskVerdictIssued)]
    assert (v.requested_contracts, v.approved_contracts, v.numbers["orders"]) == (
        D(120),
        D(120),
        "3",
    )


def test_exit_remainder_below_the_minimum_is_spread_so_every_order_fits() -> None:
    desk = Desk()
    desk.feed(_spec(desk.at(0), min_contracts="10", max_contracts="50"))
    desk.fill("BTC_USDT", "buy", 104, 50000)
    exits = orders(desk.signal("BTC_USDT", "flat"))
    sizes = [o.contracts for o in exits]
    assert sum(sizes) == D(104)
    assert all(D(10) <= size <= D(50) for size in sizes), sizes


def test_exit_needing_more_than_twenty_orders_sends_twenty_and_the_rest_as_fills_return() -> None:
    desk = Desk(STOP_LOSS_PCT="50", ABNORMAL_MOVE_PCT="50")
    desk.feed(_spec(desk.at(0), max_contracts="10"))
    desk.fill("BTC_USDT", "buy", 400, 50000)
    desk.fill("ETH_USDT", "sell", 10, 3000)
    out = desk.tick("BTC_USDT", 42000)  # drawdown breach: flatten everything
    btc = [o for o in orders(out) if o.symbol == "BTC_USDT"]
    assert len(btc) == 20 and all(o.contracts == D(10) for o in btc)
    following = desk.fill_all(btc)
    more = [o for o in orders(following) if o.symbol == "BTC_USDT"]
    assert sum(o.contracts for o in more) == D(200)
    assert all(o.reduce_only and o.contracts <= D(10) for o in more)


def _closed_loop(*inputs: Event) -> list[list[Event]]:
    """Risk manager and paper venue over the inputs; per input, the events it caused (capped)."""
    simulation = Simulation([RiskMachine(), PaperExchange()])
    caused: list[list[Event]] = []
    for position, event in enumerate(inputs, 1):
        produced = simulation.feed([record(event, position)])
        facts = list(itertools.islice(produced, MAX_EVENTS_PER_INPUT + 2))
        caused.append([fact.event for fact in facts[1:]])
    return caused


def _trade(at_ms: int, price: str, contracts: str = "1000") -> TradeTicked:
    return TradeTicked(
        at_ms=at_ms,
        symbol="BTC_USDT",
        price=D(price),
        contracts=D(contracts),
        taker_side="sell",
        position_effect="close",
    )


def _long_signal(at_ms: int) -> SignalGenerated:
    return SignalGenerated(
        at_ms=at_ms,
        symbol="BTC_USDT",
        direction="long",
        strength=D(1),
        momentum=D(1),
        reference_price=D(50000),
        window_start_ms=at_ms - 60_000,
        trades_in_window=10,
        contracts_in_window=D(50),
    )


def _position_then_smaller_maximum(t: int) -> list[Event]:
    """A 400-contract long filled on the paper venue, then the venue lowers the maximum to 50."""
    config = trading_config(
        STOP_LOSS_PCT="2", ABNORMAL_MOVE_PCT="50", MAX_ORDER_NOTIONAL_USDT="5000"
    )
    return [
        config.activated(t),
        _trade(t + 1_000, "50000"),
        _long_signal(t + 2_000),
        _trade(t + 3_000, "50000"),  # the entry fills here
        _spec(t + 4_000, max_contracts="50"),
    ]


def test_stop_loss_on_the_paper_venue_with_a_small_maximum_closes_the_position_boundedly() -> None:
    t = START_MS + 3_600_000
    setup = _position_then_smaller_maximum(t)
    crash = [_trade(t + 5_000 + i * 1_000, "48000") for i in range(5)]
    caused = _closed_loop(*setup, *crash)
    assert all(len(events) <= MAX_EVENTS_PER_INPUT for events in caused)
    fills = [e for events in caused for e in events if isinstance(e, OrderFilled)]
    entry_fill = fills[0]
    assert entry_fill.contracts == D(400)
    exits = [f for f in fills[1:] if f.side == "sell"]
    assert sum(f.contracts for f in exits) == D(400)
    refusals = [e for events in caused for e in events if isinstance(e, OrderRejected)]
    assert refusals == []


def test_exit_refused_by_the_venue_is_never_reissued_without_new_input() -> None:
    t = START_MS + 3_600_000
    setup = _position_then_smaller_maximum(t)
    # the venue's minimum rises above the position: every exit order is refused
    raise_min = _spec(t + 4_500, min_contracts="1000", max_contracts="5000")
    crash = [_trade(t + 5_000 + i * 250, "48000") for i in range(40)]
    caused = _closed_loop(*setup, raise_min, *crash)
    assert all(len(events) <= MAX_EVENTS_PER_INPUT for events in caused)
    for events in caused:
        requested = [e for e in events if isinstance(e, OrderRequested)]
        refused = [e for e in events if isinstance(e, OrderRejected)]
        assert len(requested) <= 1 and len(refused) <= 1, events
    alerts = [
        e
        for events in caused
        for e in events
        if isinstance(e, AlertRaised) and e.severity == "CRITICAL"
    ]
    assert alerts and all(a.code == "exit_refused" for a in alerts)
    tries = [
        e.at_ms
        for events in caused
        for e in events
        if isinstance(e, OrderRequested) and e.reduce_only
    ]
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
    assert gaps[:3] == [1_000, 2_000, 4_000]  # back-off: 1 s, then doubling


def test_exit_cancelled_by_the_venue_backs_off_like_a_refusal() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 100, 50000)
    [order] = orders(desk.tick("BTC_USDT", 49000))
    out = desk.feed(
        OrderCancelled(
            at_ms=desk.at(0),
            client_order_id=order.client_order_id,
            symbol="BTC_USDT",
            reason="expired",
            remaining_contracts=D(100),
        )
    )
    assert orders(out) == [] and [e.code for e in out if isinstance(e, AlertRaised)] == [
        "exit_refused"
    ]
    assert orders(desk.clock(999)) == []
    [again] = orders(desk.clock(1))
    assert (again.contracts, again.reduce_only) == (D(100), True)


def test_refusal_back_off_doubles_and_is_capped_at_five_minutes() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 100, 50000)
    [order] = orders(desk.tick("BTC_USDT", 49000))
    waits = []
    for _ in range(12):
        desk.feed(
            OrderRejected(
                at_ms=desk.at(0),
                client_order_id=order.client_order_id,
                symbol="BTC_USDT",
                code="rate_limited",
                message="too many requests",
            )
        )
        refused_at = desk.now
        found = []
        for _ in range(400):  # a bounded wait: past 5 min the back-off is broken
            if found := orders(desk.clock(1_000)):
                break
        [order] = found
        waits.append(desk.now - refused_at)
    assert waits[:4] == [1_000, 2_000, 4_000, 8_000]
    assert max(waits) == 300_000


def test_position_closed_elsewhere_ends_the_exit_without_alert() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 100, 50000)
    [order] = orders(desk.tick("BTC_USDT", 49000))
    desk.fill("BTC_USDT", "sell", 100, 49000)  # closed by another order
    out = desk.feed(
        OrderRejected(
            at_ms=desk.at(0),
            client_order_id=order.client_order_id,
            symbol="BTC_USDT",
            code="reduce_only_would_increase",
            message="no position",
        )
    )
    assert out == []
    assert orders(desk.clock(10_000)) == []


# --------------------------------------------------------------------------- 2. time


def _midnight_after(ms: int) -> int:
    return (ms // DAY_MS + 1) * DAY_MS


def test_funding_at_midnight_is_judged_on_the_new_day_and_its_halt_holds_that_day() -> None:
    desk = Desk(STOP_LOSS_PCT="50", ABNORMAL_MOVE_PCT="50", EXIT_COOLDOWN_SECONDS="0")
    desk.fill("BTC_USDT", "buy", 100, 50000)
    midnight = _midnight_after(desk.now)
    out = desk.feed(
        FundingSettled(at_ms=midnight, symbol="BTC_USDT", rate=D("0.01"), amount=D(-400))
    )
    halt = [e for e in out if isinstance(e, RiskVerdictIssued) and e.decision == "halt"]
    assert len(halt) == 1 and halt[0].at_ms == midnight
    assert all(e.at_ms == midnight for e in out)
    desk.now = midnight
    later = desk.tick("BTC_USDT", 50000)  # the same UTC day: the halt is not lifted
    assert not any(isinstance(e, TradingStateChanged) and e.state == "ACTIVE" for e in later)
    assert verdict(desk.signal("ETH_USDT", "long")).layer == "daily_drawdown"


def test_operator_command_decisions_carry_the_command_time() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 10, 50000)
    out = desk.feed(OperatorCommandIssued(at_ms=desk.at(5_000), command="flatten", operator="ops"))
    assert out and all(e.at_ms == desk.now for e in out)


def test_operator_command_on_a_new_utc_day_lifts_the_drawdown_halt_at_that_time() -> None:
    desk = Desk(STOP_LOSS_PCT="50", ABNORMAL_MOVE_PCT="50")
    desk.fill("BTC_USDT", "buy", 400, 50000)
    desk.tick("BTC_USDT", 42000)
    assert desk.state.trading_state == "HALTED"
    midnight = _midnight_after(desk.now)
    desk.now = midnight
    out = desk.command("reduce")
    assert [(e.state, e.reason, e.at_ms) for e in out if isinstance(e, TradingStateChanged)] == [
        ("ACTIVE", "new_utc_day", midnight),
        ("REDUCING", "operator_reduce", midnight),
    ]


def test_refusal_decisions_carry_the_refusal_time() -> None:
    desk = Desk()
    desk.fill("BTC_USDT", "buy", 100, 50000)
    [order] = orders(desk.tick("BTC_USDT", 49000))
    when = desk.at(3_000)
    out = desk.feed(
        OrderRejected(
            at_ms=when,
            client_order_id=order.client_order_id,
            symbol="BTC_USDT",
            code="x",
            message="no",
        )
    )
    assert out and all(e.at_ms == when for e in out)
    assert orders(desk.feed(ClockTicked(at_ms=when + 999))) == []


def test_drawdown_halt_is_not_lifted_by_an_operator_resume_the_same_day() -> None:
    desk = Desk(STOP_LOSS_PCT="50", ABNORMAL_MOVE_PCT="50", EXIT_COOLDOWN_SECONDS="0")
    desk.fill("BTC_USDT", "buy", 400, 50000)
    desk.tick("BTC_USDT", 42000)  # -3.2 %: halted
    desk.command("halt")
    out = desk.command("resume")
    assert not any(isinstance(e, TradingStateChanged) and e.state == "ACTIVE" for e in out)
    assert desk.state.trading_state == "HALTED"
    assert verdict(desk.signal("ETH_USDT", "long", "0.1")).layer == "daily_drawdown"


# --------------------------------------------------------------------------- exit sizes, episodes


@pytest.mark.parametrize(
    ("contracts", "low", "high", "step", "sizes"),
    [
        ("16", "5", "7", "1", ["6", "5", "5"]),  # 7+7+2 would leave one under the minimum
        ("15", "3", "7", "1", ["5", "5", "5"]),
        ("8", "5", "7", "1", ["7", "1"]),  # no split fits: as much as can leave, then the rest
        ("15", "1", "7", "2", ["6", "4", "4", "1"]),  # off the new step: alone, last
        ("1", "1", "7", "2", ["1"]),
        ("5", "1", "7", "1", ["5"]),
        ("148", "5", "7", "1", ["7"] * 16 + ["6"] * 4),  # the first 20 of 16x7 + 6x6
    ],
)
def test_split_exit_when_a_fitting_split_exists_then_fewest_even_orders_on_the_step(
    contracts: str, low: str, high: str, step: str, sizes: list[str]
) -> None:
    spec = ContractSpec(D("0.0001"), D(low), D(high), D(step), D("0.1"))
    assert split_exit(D(contracts), spec) == [D(s) for s in sizes]


def test_exit_when_position_reversed_under_it_then_the_stale_exit_is_not_continued() -> None:
    desk = Desk()
    desk.feed(_spec(desk.at(0), max_contracts="50"))
    desk.fill("BTC_USDT", "buy", 10, 50000)
    [stale] = [o for o in orders(desk.signal("BTC_USDT", "short")) if o.reduce_only]
    desk.fill("BTC_USDT", "sell", 20, 50000)  # the position is now short: a new episode
    desk.feed(
        OrderRejected(
            at_ms=desk.at(0),
            client_order_id=stale.client_order_id,
            symbol="BTC_USDT",
            code="reduce_only_rejected",
            message="would increase the position",
        )
    )
    assert orders(desk.tick("BTC_USDT", 50000, advance_ms=5_000)) == []


def test_drawdown_halt_when_a_split_exit_fill_breaches_then_one_verdict_of_twenty_orders() -> None:
    desk = Desk(STOP_LOSS_PCT="50", ABNORMAL_MOVE_PCT="50")
    desk.feed(_spec(desk.at(0), max_contracts="10"))
    desk.fill("BTC_USDT", "buy", 1000, 50000)
    first = orders(desk.signal("BTC_USDT", "flat"))
    assert len(first) == 20
    out = desk.fill("BTC_USDT", "sell", 10, 40000, first[0].client_order_id)
    assert any(isinstance(e, TradingStateChanged) and e.state == "HALTED" for e in out)
    exits = [e for e in out if isinstance(e, RiskVerdictIssued) and e.symbol == "BTC_USDT"]
    assert [(v.reason, v.numbers["orders"]) for v in exits] == [("daily_drawdown_breached", "20")]
    assert len(orders(out)) == 20
    # the next fill continues that flatten with the same verdict fields
    out = desk.fill("BTC_USDT", "sell", 10, 40000, orders(out)[0].client_order_id)
    exits = [e for e in out if isinstance(e, RiskVerdictIssued) and e.symbol == "BTC_USDT"]
    assert [(v.reason, v.numbers["orders"]) for v in exits] == [("daily_drawdown_breached", "20")]


def test_split_stop_loss_when_its_orders_fill_then_it_is_triggered_once() -> None:
    desk = Desk(STOP_LOSS_PCT="1", MAX_DAILY_DRAWDOWN_PCT="20", ABNORMAL_MOVE_PCT="50")
    desk.feed(_spec(desk.at(0), max_contracts="10"))
    desk.fill("BTC_USDT", "buy", 400, 50000)
    out = desk.tick("BTC_USDT", 49000)
    assert len([e for e in out if isinstance(e, StopLossTriggered)]) == 1
    said: list[Event] = []
    for order in orders(out)[:3]:
        said += desk.fill_all([order]) + desk.tick("BTC_USDT", 48900)
    assert [e for e in said if isinstance(e, StopLossTriggered)] == []
    # the first fill continues the same exit (the next 20 orders); no new decision after that
    assert [v.reason for v in said if isinstance(v, RiskVerdictIssued)] == ["stop_loss_reached"]


def test_refusals_of_one_batch_when_the_second_comes_after_the_wait_then_one_alert() -> None:
    desk = Desk()
    desk.feed(_spec(desk.at(0), max_contracts="10"))
    desk.fill("BTC_USDT", "buy", 200, 50000)
    first = orders(desk.signal("BTC_USDT", "flat"))  # 20 orders of 10

    def refuse(order: OrderRequested, after_ms: int) -> list[Event]:
        return desk.feed(
            OrderRejected(
                at_ms=desk.at(after_ms),
                client_order_id=order.client_order_id,
                symbol="BTC_USDT",
                code="price_limit",
                message="outside the price limits",
            )
        )

    def said(out: list[Event]) -> list[str]:
        return [e.code for e in out if isinstance(e, AlertRaised)]

    assert said(refuse(first[0], 0)) == ["exit_refused"]
    assert said(refuse(first[1], 5_000)) == []  # the wait ran out; no input in between
    assert [o.contracts for o in orders(desk.tick("BTC_USDT", 50000))] == [D(10), D(10)]
