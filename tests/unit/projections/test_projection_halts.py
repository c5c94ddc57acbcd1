"""A fact a projection's fold refuses halts that projection just before it; the others go on."""

from __future__ import annotations

from decimal import Decimal

from aggregates.events import Event, OrderFilled, OrderRequested, TradeTicked
from projections.core import Fanout, Runner
from projections.readmodels import OrdersProjection, TradesProjection
from tests.conftest import recorded_event


def _log() -> list[Event]:
    requested = OrderRequested(
        at_ms=1,
        client_order_id="o1",
        symbol="BTC_USDT",
        side="buy",
        contracts=Decimal(1),
        order_type="market",
        intent="entry",
        reduce_only=False,
        reference_price=Decimal(100),
    )
    # Filled before any acceptance: the order state machine refuses it.
    filled = OrderFilled(
        at_ms=2,
        client_order_id="o1",
        symbol="BTC_USDT",
        side="buy",
        price=Decimal(100),
        contracts=Decimal(1),
        fee=Decimal(0),
        fee_currency="USDT",
        liquidity="taker",
        fill_id="f1",
    )
    tick = TradeTicked(
        at_ms=3,
        symbol="BTC_USDT",
        price=Decimal(101),
        contracts=Decimal(1),
        taker_side="buy",
        position_effect="open",
    )
    return [requested, filled, tick, filled]


def test_fanout_when_a_fold_refuses_a_fact_then_that_runner_halts_before_it_and_others_go_on() -> (
    None
):
    orders, trades = Runner(OrdersProjection()), Runner(TradesProjection())
    fanout = Fanout([orders, trades])
    facts = [recorded_event(event, position) for position, event in enumerate(_log(), start=1)]
    fanout.apply_all(facts)
    fanout.sync()

    assert orders.halted is not None
    assert (orders.halted.projection, orders.halted.position) == ("orders", 2)
    assert orders.halted.event == "OrderFilled"
    assert "IllegalTransition" in orders.halted.reason
    assert orders.position == 1  # its rows and checkpoint stop before the refused fact
    pending = {table.name: list(rows) for table, rows in orders.pending.batches()}
    assert [row[0] for row in pending["orders"]] == ["o1"]
    assert len(pending["order_events"]) == 1  # the request's row only, none of the fill's
    assert fanout.halts() == [orders.halted]
    assert trades.halted is None and trades.position == 4  # the fills projection went on
    assert sum(len(rows) for _, rows in trades.pending.batches()) >= 2


def test_runner_when_halted_then_later_facts_are_ignored_and_the_state_is_kept() -> None:
    orders = Runner(OrdersProjection())
    facts = [recorded_event(event, position) for position, event in enumerate(_log(), start=1)]
    for fact in facts:
        orders.apply(fact)
    assert orders.halted is not None and orders.halted.position == 2
    assert orders.position == 1
    assert orders.state.book.get("o1") is not None
