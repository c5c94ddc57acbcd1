"""Stateful proof of the order state machine against an independent model of the lifecycle.

The model below is written from the lifecycle table alone (not from ``aggregates.orders``): for any
event Hypothesis throws at any order, ``apply`` must accept exactly the moves the model calls legal,
refuse every other one with ``IllegalTransition``, and never let filled exceed requested.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aggregates import events as ev
from aggregates.orders import IllegalTransition, OrderBook, OrderStatus, apply

SYMBOL = "ETH_USDT"

# The lifecycle table: (status before, event kind) -> status after, for the kinds that need no
# quantity check. Fills are decided by quantity below.
_TABLE = {
    (None, "requested"): "REQUESTED",
    ("REQUESTED", "accepted"): "ACCEPTED",
    ("REQUESTED", "rejected"): "REJECTED",
    ("ACCEPTED", "cancelled"): "CANCELLED",
    ("PARTIALLY_FILLED", "cancelled"): "CANCELLED",
}
_FILLABLE = {"ACCEPTED", "PARTIALLY_FILLED"}


@dataclass
class Model:
    status: str | None = None
    contracts: Decimal = Decimal(0)
    filled: Decimal = Decimal(0)
    side: str = "buy"


contracts_st = st.decimals(min_value=Decimal("0.5"), max_value=Decimal(50), places=1)


class OrderLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, Model] = {}
        self.states: dict[str, object] = {}
        self.book = OrderBook()
        self.accepted_moves = 0

    # ------------------------------------------------------------------ helpers

    def _check(self, order_id: str, event: ev.Event, expected: str | None, filled: Decimal) -> None:
        """Apply ``event``; it must succeed iff ``expected`` (the model's next status) is set."""
        before = self.states.get(order_id)
        try:
            after = apply(before, event)  # type: ignore[arg-type]
        except IllegalTransition:
            assert expected is None, f"legal move refused: {event!r} on {before!r}"
            return
        assert expected is not None, f"illegal move accepted: {event!r} on {before!r}"
        assert after.status == OrderStatus(expected)
        assert after.filled_contracts == filled
        self.states[order_id] = after
        model = self.models.setdefault(order_id, Model())
        model.status = expected
        model.filled = filled
        assert self.book.apply(event) == after
        self.accepted_moves += 1

    # ------------------------------------------------------------------ rules

    @rule(
        order_id=st.sampled_from(["a", "b", "c", "d"]),
        contracts=contracts_st,
        side=st.sampled_from(["buy", "sell"]),
    )
    def request(self, order_id: str, contracts: Decimal, side: str) -> None:
        model = self.models.get(order_id)
        expected = _TABLE.get((model.status if model else None, "requested"))
        event = ev.OrderRequested(
            at_ms=1,
            client_order_id=order_id,
            symbol=SYMBOL,
            side=side,  # type: ignore[arg-type]
            contracts=contracts,
            order_type="market",
            intent="entry",
            reduce_only=False,
            reference_price=Decimal(100),
        )
        if expected is not None:
            self.models[order_id] = Model(contracts=contracts, side=side)
        self._check(order_id, event, expected, Decimal(0))

    @precondition(lambda self: self.models)
    @rule(data=st.data(), kind=st.sampled_from(["accepted", "rejected", "cancelled"]))
    def answer(self, data: st.DataObject, kind: str) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.models)))
        model = self.models[order_id]
        remaining = model.contracts - model.filled
        common = dict(at_ms=2, client_order_id=order_id, symbol=SYMBOL)
        expected = _TABLE.get((model.status, kind))
        if kind == "accepted":
            event: ev.Event = ev.OrderAccepted(**common, exchange_order_id="x")
        elif kind == "rejected":
            event = ev.OrderRejected(**common, code="test", message="")
        else:
            stated = data.draw(st.sampled_from([Decimal(0), remaining, remaining + 1]))
            event = ev.OrderCancelled(**common, reason="test", remaining_contracts=stated)
            if stated not in (Decimal(0), remaining):
                expected = None
        self._check(order_id, event, expected, model.filled)

    @precondition(lambda self: self.models)
    @rule(data=st.data(), final=st.booleans(), wrong_side=st.booleans())
    def fill(self, data: st.DataObject, final: bool, wrong_side: bool) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.models)))
        model = self.models[order_id]
        remaining = model.contracts - model.filled
        qty = data.draw(
            st.one_of(
                st.just(remaining),
                contracts_st,
                st.just(remaining + Decimal("0.1")),
            ).filter(lambda q: q > 0)
        )
        new_filled = model.filled + qty
        stated_remaining = model.contracts - new_filled
        if not final and data.draw(st.booleans()):
            stated_remaining += Decimal("0.1")  # a partial fill that lies about what is left
        side = model.side if not wrong_side else ("sell" if model.side == "buy" else "buy")
        common = dict(
            at_ms=3,
            client_order_id=order_id,
            symbol=SYMBOL,
            side=side,
            price=Decimal(100),
            contracts=qty,
            fee=Decimal(0),
            fee_currency="USDT",
            liquidity="taker",
            fill_id="f",
        )
        legal = model.status in _FILLABLE and not wrong_side and new_filled <= model.contracts
        if final:
            event: ev.Event = ev.OrderFilled(**common)
            legal = legal and new_filled == model.contracts
            expected = "FILLED" if legal else None
        else:
            if stated_remaining <= 0:
                return  # not even a valid event: the catalogue refuses it before any state
            event = ev.OrderPartiallyFilled(**common, remaining_contracts=stated_remaining)
            legal = (
                legal
                and new_filled < model.contracts
                and stated_remaining == model.contracts - new_filled
            )
            expected = "PARTIALLY_FILLED" if legal else None
        self._check(order_id, event, expected, new_filled)

    def _fillable(self) -> list[str]:
        return sorted(i for i, m in self.models.items() if m.status in _FILLABLE)

    @precondition(lambda self: self._fillable())
    @rule(data=st.data())
    def fill_within_remaining(self, data: st.DataObject) -> None:
        """Steer towards legal fills, which random quantities rarely hit."""
        order_id = data.draw(st.sampled_from(self._fillable()))
        model = self.models[order_id]
        remaining = model.contracts - model.filled
        tenths = int(remaining * 10)
        qty = Decimal(data.draw(st.integers(min_value=1, max_value=tenths))) / 10
        new_filled = model.filled + qty
        common = dict(
            at_ms=3,
            client_order_id=order_id,
            symbol=SYMBOL,
            side=model.side,
            price=Decimal(100),
            contracts=qty,
            fee=Decimal(0),
            fee_currency="USDT",
            liquidity="taker",
            fill_id="f",
        )
        if new_filled == model.contracts:
            self._check(order_id, ev.OrderFilled(**common), "FILLED", new_filled)
        else:
            event = ev.OrderPartiallyFilled(
                **common, remaining_contracts=model.contracts - new_filled
            )
            self._check(order_id, event, "PARTIALLY_FILLED", new_filled)

    @invariant()
    def filled_never_exceeds_requested(self) -> None:
        for state in self.states.values():
            assert Decimal(0) <= state.filled_contracts <= state.contracts  # type: ignore[attr-defined]

    @invariant()
    def book_agrees_with_each_order(self) -> None:
        for order_id, state in self.states.items():
            assert self.book.get(order_id) == state
        open_ids = {o.client_order_id for o in self.book.open_orders()}
        assert open_ids == {i for i, s in self.states.items() if s.is_working}  # type: ignore[attr-defined]


OrderLifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_order_lifecycle_when_any_event_sequence_then_only_legal_moves_accepted = (
    OrderLifecycle.TestCase
)
