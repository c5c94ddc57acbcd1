"""Hypothesis properties of the paper exchange over arbitrary markets and order flows."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates import events as ev
from aggregates.machine import record_all, run
from aggregates.orders import fold_orders
from aggregates.paper import PaperExchange
from tests.unit.aggregates.test_paper import config_event

SYMBOLS = ("BTC_USDT", "ETH_USDT")
CONTRACT_SIZE = {"BTC_USDT": Decimal("0.0001"), "ETH_USDT": Decimal("0.01")}
TAKER, MAKER, SLIPPAGE_BPS = Decimal("0.0006"), Decimal("0.0002"), Decimal("2")

# A narrow band on the price tick of both symbols, so limits are crossed and orders do fill.
prices = st.integers(min_value=900, max_value=1100).map(lambda tenths: Decimal(tenths) / 10)
volumes = st.integers(min_value=1, max_value=60).map(Decimal)

trades = st.builds(
    lambda symbol, price, contracts: ("trade", symbol, price, contracts),
    st.sampled_from(SYMBOLS),
    prices,
    volumes,
)
orders = st.builds(
    lambda symbol, side, contracts, limit, reduce_only: (
        "order",
        symbol,
        side,
        contracts,
        limit,
        reduce_only,
    ),
    st.sampled_from(SYMBOLS),
    st.sampled_from(["buy", "sell"]),
    st.integers(min_value=1, max_value=40).map(Decimal),
    st.none() | st.none() | prices,
    st.sampled_from([False, False, True]),
)
# An episode opens a position, lets it trade, then tries to reduce it (possibly by too much).
episodes = st.builds(
    lambda symbol, side, size, cut, price: [
        ("order", symbol, side, size, None, False),
        ("trade", symbol, price, Decimal(60)),
        ("order", symbol, side, cut, None, True),
        ("trade", symbol, price, Decimal(60)),
    ],
    st.sampled_from(SYMBOLS),
    st.sampled_from(["buy", "sell"]),
    st.integers(min_value=1, max_value=20).map(Decimal),
    st.integers(min_value=1, max_value=30).map(Decimal),
    prices,
)
flows = st.lists(
    st.one_of(trades.map(lambda t: [t]), orders.map(lambda o: [o]), episodes),
    min_size=1,
    max_size=30,
).map(lambda chunks: [item for chunk in chunks for item in chunk])


def to_events(flow: list[tuple]) -> list[ev.Event]:
    events: list[ev.Event] = [config_event()]
    last_entry: dict[str, str] = {}
    opening = [("trade", symbol, Decimal(100), Decimal(1)) for symbol in SYMBOLS]
    for index, item in enumerate([*opening, *flow]):
        at_ms = 1000 + index
        if item[0] == "trade":
            _, symbol, price, contracts = item
            events.append(
                ev.TradeTicked(
                    at_ms=at_ms,
                    symbol=symbol,
                    price=price,
                    contracts=contracts,
                    taker_side="sell",
                    position_effect="open",
                )
            )
        else:
            _, symbol, side, contracts, limit, reduce_only = item
            reduce_only = reduce_only and symbol in last_entry
            if reduce_only:  # against the last entry, so reduce-only orders mostly do trade
                side = "sell" if last_entry[symbol] == "buy" else "buy"
            else:
                last_entry[symbol] = side
            events.append(
                ev.OrderRequested(
                    at_ms=at_ms,
                    client_order_id=f"o{index}",
                    symbol=symbol,
                    side=side,
                    contracts=contracts,
                    order_type="market" if limit is None else "limit",
                    limit_price=limit,
                    intent="exit" if reduce_only else "entry",
                    reduce_only=reduce_only,
                    reference_price=Decimal(100),
                )
            )
    return events


def paper_log(events: list[ev.Event]) -> list[ev.Event]:
    """The inputs interleaved with the paper exchange's answers, in log order."""
    _state, steps = run(PaperExchange(), record_all(events))
    return [e for fact, outs in steps for e in (fact.event, *outs)]


FILLS = (ev.OrderPartiallyFilled, ev.OrderFilled)


@settings(max_examples=200, deadline=None)
@given(flows)
def test_paper_when_any_flow_then_fills_never_exceed_the_order_and_lifecycle_is_legal(flow):
    log = paper_log(to_events(flow))
    book = fold_orders(log)  # raises IllegalTransition on any illegal answer or overfill
    filled: dict[str, Decimal] = {}
    for event in log:
        if isinstance(event, FILLS):
            filled[event.client_order_id] = filled.get(event.client_order_id, 0) + event.contracts
    for order in book:
        assert filled.get(order.client_order_id, 0) == order.filled_contracts <= order.contracts


@settings(max_examples=200, deadline=None)
@given(flows)
def test_paper_when_reduce_only_fills_then_position_magnitude_never_grows_or_flips(flow):
    position = dict.fromkeys(SYMBOLS, Decimal(0))
    for event in paper_log(to_events(flow)):
        if not isinstance(event, FILLS):
            continue
        before = position[event.symbol]
        delta = event.contracts if event.side == "buy" else -event.contracts
        after = before + delta
        if event.reduce_only:
            assert abs(after) < abs(before)
            assert after == 0 or (after > 0) == (before > 0)
        position[event.symbol] = after


@settings(max_examples=200, deadline=None)
@given(flows)
def test_paper_when_any_fill_then_fee_is_notional_times_rate_exactly(flow):
    log = paper_log(to_events(flow))
    limits = {e.client_order_id: e.limit_price for e in log if isinstance(e, ev.OrderRequested)}
    last_trade: dict[str, ev.TradeTicked] = {}
    for event in log:
        if isinstance(event, ev.TradeTicked):
            last_trade[event.symbol] = event
        if not isinstance(event, FILLS):
            continue
        limit = limits[event.client_order_id]
        if limit is None:
            trade_price = Fraction(last_trade[event.symbol].price)
            slip = Fraction(SLIPPAGE_BPS) / 10000
            expected_price = trade_price * (1 + slip if event.side == "buy" else 1 - slip)
            rate = Fraction(TAKER)
            assert event.liquidity == "taker"
        else:
            expected_price = Fraction(limit)
            rate = Fraction(MAKER)
            assert event.liquidity == "maker"
        assert Fraction(event.price) == expected_price
        notional = (
            Fraction(event.contracts) * Fraction(CONTRACT_SIZE[event.symbol]) * expected_price
        )
        assert Fraction(event.fee) == notional * rate
        assert event.fee_currency == "USDT"


@settings(max_examples=100, deadline=None)
@given(flows)
def test_paper_when_same_input_twice_then_byte_identical_outputs(flow):
    events = to_events(flow)
    first = msgspec.json.encode(paper_log(events))
    second = msgspec.json.encode(paper_log(list(events)))
    assert first == second
