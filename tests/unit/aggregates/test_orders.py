"""The order lifecycle state machine: legal paths, refused moves, and the order book fold."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aggregates import events as ev
from aggregates.orders import (
    IllegalTransition,
    OrderBook,
    OrderStatus,
    apply,
    fold_orders,
)

D = Decimal


def requested(order_id: str = "o1", contracts: str = "10", side: ev.Side = "buy"):
    return ev.OrderRequested(
        at_ms=1,
        client_order_id=order_id,
        symbol="BTC_USDT",
        side=side,
        contracts=D(contracts),
        order_type="market",
        intent="entry",
        reduce_only=False,
        reference_price=D("100"),
    )


def accepted(order_id: str = "o1"):
    return ev.OrderAccepted(
        at_ms=2, client_order_id=order_id, exchange_order_id=f"x-{order_id}", symbol="BTC_USDT"
    )


def fill(contracts: str, remaining: str | None, order_id: str = "o1", price: str = "100"):
    common = dict(
        at_ms=3,
        client_order_id=order_id,
        symbol="BTC_USDT",
        side="buy",
        price=D(price),
        contracts=D(contracts),
        fee=D("0.01"),
        fee_currency="USDT",
        liquidity="taker",
        fill_id=f"{order_id}-{contracts}-{remaining}",
    )
    if remaining is None:
        return ev.OrderFilled(**common)
    return ev.OrderPartiallyFilled(**common, remaining_contracts=D(remaining))


def test_fold_when_partial_fills_then_final_fill_then_filled_with_average_price():
    state = None
    for event in (
        requested(),
        accepted(),
        fill("4", "6", price="100"),
        fill("6", None, price="110"),
    ):
        state = apply(state, event)
    assert state.status is OrderStatus.FILLED
    assert state.filled_contracts == D(10)
    assert state.average_price == D(106)
    assert state.fees == D("0.02")
    assert state.fill_count == 2
    assert state.exchange_order_id == "x-o1"
    assert not state.is_working


def test_reject_when_requested_then_rejected_with_reason():
    state = apply(None, requested())
    state = apply(
        state,
        ev.OrderRejected(
            at_ms=2, client_order_id="o1", symbol="BTC_USDT", code="no_market_price", message="x"
        ),
    )
    assert state.status is OrderStatus.REJECTED
    assert state.reason == "no_market_price"


def test_cancel_when_partially_filled_then_cancelled_keeping_fills():
    state = None
    for event in (requested(), accepted(), fill("3", "7")):
        state = apply(state, event)
    state = apply(
        state,
        ev.OrderCancelled(
            at_ms=4,
            client_order_id="o1",
            symbol="BTC_USDT",
            reason="reduce_only_clipped",
            remaining_contracts=D(7),
        ),
    )
    assert state.status is OrderStatus.CANCELLED
    assert state.filled_contracts == D(3)


@pytest.mark.parametrize(
    ("history", "bad", "why"),
    [
        ([], accepted(), "no such order"),
        ([requested()], requested(), "already requested"),
        ([requested()], fill("1", "9"), "only an accepted order can fill"),
        ([requested(), accepted()], accepted(), "only a requested order"),
        ([requested(), accepted()], fill("11", None), "fills 11"),
        ([requested(), accepted()], fill("4", None), "final fill leaves 6"),
        ([requested(), accepted()], fill("10", "0.5"), "must leave something"),
        ([requested(), accepted()], fill("4", "5"), "says 5 remain"),
        ([requested(), accepted(), fill("10", None)], fill("1", None), "only an accepted"),
        ([requested(), accepted()], fill("1", "9", order_id="o2"), "another order"),
    ],
)
def test_apply_when_move_is_illegal_then_illegal_transition(history, bad, why):
    state = None
    for event in history:
        state = apply(state, event)
    with pytest.raises(IllegalTransition, match=why):
        apply(state, bad)


def test_apply_when_fill_side_differs_then_illegal_transition():
    state = apply(apply(None, requested(side="sell")), accepted())
    with pytest.raises(IllegalTransition, match="fill side buy differs"):
        apply(state, fill("1", "9"))


def test_apply_when_event_is_not_an_order_event_then_type_error():
    with pytest.raises(TypeError):
        apply(None, ev.ClockTicked(at_ms=1))


def test_book_when_folding_many_orders_then_tracks_each_and_lists_open_ones_oldest_first():
    book = fold_orders(
        [
            requested("a"),
            ev.ClockTicked(at_ms=1),
            requested("b"),
            accepted("a"),
            accepted("b"),
            fill("10", None, order_id="a"),
            requested("c"),
        ]
    )
    assert len(book) == 3
    assert book.get("a").status is OrderStatus.FILLED
    assert [o.client_order_id for o in book.open_orders()] == ["b", "c"]


def test_book_when_not_keeping_terminal_orders_then_finished_orders_are_dropped():
    book = OrderBook(keep_terminal=False).fold(
        [requested("a"), accepted("a"), fill("10", None, order_id="a"), requested("b")]
    )
    assert book.get("a") is None
    assert [o.client_order_id for o in book] == ["b"]
    with pytest.raises(IllegalTransition):
        book.apply(fill("1", None, order_id="a"))
