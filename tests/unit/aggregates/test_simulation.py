"""The in-memory simulated log: positions, causation, global order, streaming, resume, what-if."""

from __future__ import annotations

import itertools
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates import events as ev
from aggregates.config import ConfigError
from aggregates.envelope import RecordedEvent, derive_event_id
from aggregates.machine import record, record_all
from aggregates.orders import OrderStatus, fold_orders
from aggregates.paper import PaperExchange
from aggregates.simulation import Simulation, simulate, with_parameters
from tests.unit.aggregates.test_paper import config_event

D = Decimal


class Alerter:
    """Raises an alert for every trade; remembers the positions it stepped over."""

    name = "alerter"

    def initial(self) -> list[int]:
        return []

    def owns(self, event: ev.Event) -> bool:
        return isinstance(event, ev.AlertRaised)

    def step(self, state: list[int], fact: RecordedEvent):
        seen = [*state, fact.position]
        if isinstance(fact.event, ev.TradeTicked):
            alert = ev.AlertRaised(at_ms=fact.event.at_ms, severity="INFO", code="t", message="")
            return seen, (alert,)
        return seen, ()


class Acknowledger:
    """Answers each alert with two operator notes; remembers the positions it stepped over."""

    name = "ack"

    def initial(self) -> list[int]:
        return []

    def owns(self, event: ev.Event) -> bool:
        return isinstance(event, ev.OperatorCommandIssued)

    def step(self, state: list[int], fact: RecordedEvent):
        seen = [*state, fact.position]
        if isinstance(fact.event, ev.AlertRaised):
            notes = tuple(
                ev.OperatorCommandIssued(at_ms=fact.event.at_ms, command="resume", operator=who)
                for who in ("a", "b")
            )
            return seen, notes
        return seen, ()


class Trader:
    """Sends a market order on every third trade, alternating sides, the sell reduce-only."""

    name = "trader"

    def initial(self) -> int:
        return 0

    def owns(self, event: ev.Event) -> bool:
        return isinstance(event, ev.OrderRequested)

    def step(self, state: int, fact: RecordedEvent):
        trade = fact.event
        if not isinstance(trade, ev.TradeTicked):
            return state, ()
        count = state + 1
        if count % 3:
            return count, ()
        side: ev.Side = "buy" if count % 6 else "sell"
        order = ev.OrderRequested(
            at_ms=trade.at_ms,
            client_order_id=f"t{count}",
            symbol=trade.symbol,
            side=side,
            contracts=D(2) if side == "buy" else D(3),
            order_type="market",
            intent="entry" if side == "buy" else "exit",
            reduce_only=side == "sell",
            reference_price=trade.price,
        )
        return count, (order,)


def trade(at_ms: int, price: str = "100", contracts: str = "5") -> ev.TradeTicked:
    return ev.TradeTicked(
        at_ms=at_ms,
        symbol="BTC_USDT",
        price=D(price),
        contracts=D(contracts),
        taker_side="buy",
        position_effect="open",
    )


def encoded(log) -> bytes:
    return msgspec.json.encode(list(log))


def test_simulate_when_machines_derive_then_outputs_follow_their_cause_with_dense_positions():
    log = list(simulate([Alerter(), Acknowledger()], record_all([trade(1), trade(2)])))
    kinds = [type(r.event).__name__ for r in log]
    assert (
        kinds
        == [
            "TradeTicked",
            "AlertRaised",
            "OperatorCommandIssued",
            "OperatorCommandIssued",
        ]
        * 2
    )
    assert [r.position for r in log] == list(range(1, 9))
    tick, alert, first_note, second_note = log[:4]
    assert alert.causation_position == tick.position and alert.causation_id == tick.event_id
    assert alert.event_id == derive_event_id("alerter", tick.event_id, 0)
    assert second_note.event_id == derive_event_id("ack", alert.event_id, 1)
    assert first_note.correlation_id == alert.correlation_id == tick.event_id
    assert first_note.recorded_at == tick.recorded_at
    assert all(r.hash == b"" for r in log)
    assert [(r.stream, r.stream_version) for r in log if r.stream == "operator"] == [
        ("operator", n) for n in range(1, 5)
    ]


def test_simulate_when_running_then_each_machine_steps_over_every_event_it_does_not_own_in_order():
    simulation = Simulation([Alerter(), Acknowledger()])
    log = list(simulation.feed(record_all([trade(1), ev.ClockTicked(at_ms=2), trade(3)])))
    alerter_seen, ack_seen = simulation.states
    assert alerter_seen == [r.position for r in log if not isinstance(r.event, ev.AlertRaised)]
    assert ack_seen == [
        r.position for r in log if not isinstance(r.event, ev.OperatorCommandIssued)
    ]


def test_simulate_when_inputs_hold_events_a_machine_owns_then_they_are_dropped_and_rederived():
    recorded = list(simulate([Alerter()], record_all([trade(1), trade(2)])))
    again = list(simulate([Alerter()], recorded))
    assert encoded(again) == encoded(recorded)


def test_simulate_when_input_is_endless_then_it_streams_lazily():
    endless = (record(trade(n), n) for n in itertools.count(1))
    first = list(itertools.islice(simulate([Alerter()], endless), 1000))
    assert first[-1].position == 1000


def test_simulate_when_two_machines_share_a_name_then_refused():
    with pytest.raises(ValueError, match="unique"):
        Simulation([Alerter(), Alerter()])


def test_simulate_when_trader_and_paper_run_together_then_a_legal_order_history():
    inputs = record_all([config_event(), *(trade(n, str(100 + n % 7)) for n in range(1, 40))])
    log = list(simulate([Trader(), PaperExchange()], inputs))
    book = fold_orders([r.event for r in log])
    assert len(book) == 13
    *done, last = book
    # buys of 2 fill; reduce-only sells of 3 fill 2 and cancel the rest; the last awaits a trade
    assert [o.status for o in done] == [OrderStatus.FILLED, OrderStatus.CANCELLED] * 6
    assert last.status is OrderStatus.ACCEPTED
    fills = [r for r in log if isinstance(r.event, ev.OrderFilled)]
    assert fills and all(r.causation_position < r.position for r in fills)


# --------------------------------------------------------------------------- properties

markets = st.lists(
    st.tuples(
        st.integers(min_value=950, max_value=1050),
        st.integers(min_value=1, max_value=6),
        st.booleans(),
    ),
    min_size=1,
    max_size=80,
)


def market_inputs(rows) -> list[RecordedEvent]:
    events: list[ev.Event] = [config_event()]
    for n, (tenths, contracts, clock) in enumerate(rows, start=1):
        events.append(trade(n * 1000, str(D(tenths) / 10), str(contracts)))
        if clock:
            events.append(ev.ClockTicked(at_ms=n * 1000 + 500))
    return record_all(events)


def machines():
    return [Trader(), PaperExchange(), Alerter()]


@settings(max_examples=60, deadline=None)
@given(markets)
def test_simulate_when_same_inputs_twice_then_byte_identical_logs(rows):
    assert encoded(simulate(machines(), market_inputs(rows))) == encoded(
        simulate(machines(), market_inputs(rows))
    )


@settings(max_examples=60, deadline=None)
@given(markets, st.data())
def test_simulate_when_fed_in_two_parts_or_resumed_from_its_log_then_same_as_one_go(rows, data):
    inputs = market_inputs(rows)
    split = data.draw(st.integers(min_value=0, max_value=len(inputs)))
    one_go = encoded(simulate(machines(), inputs))

    simulation = Simulation(machines())
    head = list(simulation.feed(inputs[:split]))
    tail = list(simulation.feed(inputs[split:]))
    assert encoded([*head, *tail]) == one_go

    restarted = Simulation(machines()).resume(head)
    assert encoded([*head, *restarted.feed(inputs[split:])]) == one_go


# --------------------------------------------------------------------------- what-if


def test_with_parameters_when_overriding_then_every_config_event_is_rewritten_and_rehashed():
    inputs = record_all([config_event(), trade(1), config_event(5)])
    rewritten = list(with_parameters(inputs, {"PAPER_SLIPPAGE_BPS": "10"}))
    configs = [r.event for r in rewritten if isinstance(r.event, ev.ConfigActivated)]
    assert len(configs) == 2
    for config in configs:
        assert config.parameters["PAPER_SLIPPAGE_BPS"] == "10"
        assert config.config_hash != inputs[0].event.config_hash
        assert config.source.startswith("what-if (PAPER_SLIPPAGE_BPS)")
    assert rewritten[1] is inputs[1]


def test_with_parameters_when_no_overrides_then_inputs_pass_through_unchanged():
    inputs = record_all([config_event(), trade(1)])
    assert list(with_parameters(inputs, {})) == inputs


def test_with_parameters_when_variable_is_unknown_then_config_error_at_once():
    with pytest.raises(ConfigError) as caught:
        with_parameters([], {"NOT_A_PARAMETER": "1"})
    assert caught.value.problems[0][0] == "NOT_A_PARAMETER"


def test_with_parameters_when_value_is_bad_then_config_error_naming_it():
    rewritten = with_parameters(record_all([config_event()]), {"STOP_LOSS_PCT": "-1"})
    with pytest.raises(ConfigError) as caught:
        list(rewritten)
    assert caught.value.problems[0][0] == "STOP_LOSS_PCT"


def test_what_if_when_slippage_changes_then_paper_fill_prices_change():
    inputs = record_all([config_event(), *(trade(n) for n in range(1, 8))])
    actual = list(simulate([Trader(), PaperExchange()], inputs))
    what_if = list(
        simulate([Trader(), PaperExchange()], with_parameters(inputs, {"PAPER_SLIPPAGE_BPS": "0"}))
    )
    price = next(r.event.price for r in actual if isinstance(r.event, ev.OrderFilled))
    price_if = next(r.event.price for r in what_if if isinstance(r.event, ev.OrderFilled))
    assert (price, price_if) == (D("100.02"), D(100))
