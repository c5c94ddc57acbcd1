"""The paper exchange: answers, rejection codes, prices, fees, partial and reduce-only fills."""

from __future__ import annotations

from decimal import Decimal

from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.machine import record_all, run
from aggregates.orders import OrderStatus, fold_orders
from aggregates.paper import PaperExchange

D = Decimal

PARAMETERS = {
    "INITIAL_EQUITY_USDT": "10000",
    "MAX_POSITION_PCT": "10",
    "MAX_EXPOSURE_PCT": "50",
    "MAX_DAILY_DRAWDOWN_PCT": "5",
    "STOP_LOSS_PCT": "2",
    "LOOKBACK_MINUTES": "5",
    "SIGNAL_THRESHOLD_PCT": "0.5",
    "SIGNAL_MIN_TRADES": "20",
    "SIGNAL_MIN_CONTRACTS": "100",
    "ABNORMAL_MOVE_PCT": "8",
    "ABNORMAL_WINDOW_SECONDS": "60",
    "ABNORMAL_PAUSE_SECONDS": "300",
    "DATA_SILENCE_SECONDS": "30",
    "EXIT_COOLDOWN_SECONDS": "120",
    "LOSS_STREAK_COUNT": "3",
    "LOSS_STREAK_WINDOW_MINUTES": "60",
    "LOSS_STREAK_PAUSE_MINUTES": "120",
    "MAX_ORDERS_PER_MINUTE": "20",
    "MAX_ORDER_NOTIONAL_USDT": "2000",
    "TAKER_FEE_RATE": "0.0006",
    "MAKER_FEE_RATE": "0.0002",
    "PAPER_SLIPPAGE_BPS": "2",
    "CONTRACT_SPECS": "BTC_USDT:0.0001:1:1000000:1:0.1,ETH_USDT:0.01:1:1000:1:0.01",
}


def config_event(at_ms: int = 0, **overrides: str) -> ev.ConfigActivated:
    return parse_config({**PARAMETERS, **overrides}).activated(at_ms)


def trade(price: str, contracts: str = "1000", symbol: str = "BTC_USDT", at_ms: int = 10):
    return ev.TradeTicked(
        at_ms=at_ms,
        symbol=symbol,
        price=D(price),
        contracts=D(contracts),
        taker_side="buy",
        position_effect="open",
    )


def order(
    order_id: str,
    side: ev.Side = "buy",
    contracts: str = "10",
    *,
    limit: str | None = None,
    reduce_only: bool = False,
    symbol: str = "BTC_USDT",
    at_ms: int = 5,
):
    return ev.OrderRequested(
        at_ms=at_ms,
        client_order_id=order_id,
        symbol=symbol,
        side=side,
        contracts=D(contracts),
        order_type="limit" if limit else "market",
        limit_price=D(limit) if limit else None,
        intent="exit" if reduce_only else "entry",
        reduce_only=reduce_only,
        reference_price=D("100"),
    )


def outputs(*events: ev.Event) -> list[ev.Event]:
    """Everything the paper exchange decides over ``events`` (config first unless given)."""
    if not any(isinstance(e, ev.ConfigActivated) for e in events):
        events = (config_event(), *events)
    _state, steps = run(PaperExchange(), record_all(events))
    return [out for _fact, outs in steps for out in outs]


def test_request_when_market_price_known_then_accepted_with_derived_exchange_id():
    [accepted] = outputs(trade("100"), order("o1"))
    assert accepted == ev.OrderAccepted(
        at_ms=5, client_order_id="o1", exchange_order_id="paper-o1", symbol="BTC_USDT"
    )


def test_market_buy_when_next_trade_arrives_then_filled_at_price_plus_slippage_with_taker_fee():
    out = outputs(trade("100"), order("o1", "buy", "10"), trade("200", at_ms=20))
    fill = out[-1]
    assert isinstance(fill, ev.OrderFilled)
    assert fill.price == D("200.04")  # 2 bps worse for the buyer
    assert fill.contracts == D(10)
    assert fill.liquidity == "taker"
    assert fill.fee == D(10) * D("0.0001") * D("200.04") * D("0.0006")
    assert fill.fee_currency == "USDT"
    assert fill.fill_id == "paper-o1-1"
    assert fill.at_ms == 20


def test_market_sell_when_next_trade_arrives_then_seller_gets_less():
    out = outputs(trade("100"), order("o1", "sell", "10"), trade("200", at_ms=20))
    assert out[-1].price == D("199.96")


def test_limit_buy_when_market_stays_above_then_rests_and_fills_at_limit_when_traded_through():
    out = outputs(
        trade("100"),
        order("o1", "buy", "10", limit="95"),
        trade("96"),
        trade("94.5"),
    )
    assert [type(e) for e in out] == [ev.OrderAccepted, ev.OrderFilled]
    fill = out[-1]
    assert fill.price == D("95")
    assert fill.liquidity == "maker"
    assert fill.fee == D(10) * D("0.0001") * D(95) * D("0.0002")


def test_limit_sell_when_trade_touches_limit_then_filled():
    out = outputs(trade("100"), order("o1", "sell", "3", limit="101"), trade("101"))
    assert isinstance(out[-1], ev.OrderFilled)
    assert out[-1].price == D(101)


def test_market_order_when_trade_volume_is_short_then_partially_filled_over_later_trades():
    out = outputs(
        trade("100"),
        order("o1", "buy", "10"),
        trade("100", contracts="4"),
        trade("101", contracts="4"),
        trade("102", contracts="4"),
    )
    fills = out[1:]
    assert [type(e) for e in fills] == [
        ev.OrderPartiallyFilled,
        ev.OrderPartiallyFilled,
        ev.OrderFilled,
    ]
    assert [f.contracts for f in fills] == [D(4), D(4), D(2)]
    assert [f.remaining_contracts for f in fills[:2]] == [D(6), D(2)]
    assert [f.fill_id for f in fills] == ["paper-o1-1", "paper-o1-2", "paper-o1-3"]


def test_two_orders_when_one_trade_is_short_then_volume_goes_to_the_earlier_order_first():
    out = outputs(
        trade("100"),
        order("a", "buy", "5"),
        order("b", "buy", "5"),
        trade("100", contracts="7"),
    )
    fills = out[2:]
    assert [(f.client_order_id, f.contracts) for f in fills] == [("a", D(5)), ("b", D(2))]
    assert isinstance(fills[1], ev.OrderPartiallyFilled)


def rejection_code(*events: ev.Event) -> str:
    rejected = outputs(*events)[-1]
    assert isinstance(rejected, ev.OrderRejected)
    return rejected.code


def test_request_when_symbol_has_no_spec_then_rejected_unknown_symbol():
    assert rejection_code(trade("1", symbol="XRP_USDT"), order("o1", symbol="XRP_USDT")) == (
        "unknown_symbol"
    )


def test_request_when_no_trade_seen_yet_then_rejected_no_market_price():
    assert rejection_code(order("o1")) == "no_market_price"


def test_request_when_contracts_outside_spec_then_rejected_with_the_limit_broken():
    eth = dict(symbol="ETH_USDT")
    assert rejection_code(trade("1", **eth), order("o1", contracts="0.5", **eth)) == (
        "contracts_below_minimum"
    )
    assert rejection_code(trade("1", **eth), order("o1", contracts="1001", **eth)) == (
        "contracts_above_maximum"
    )
    assert rejection_code(trade("1", **eth), order("o1", contracts="2.5", **eth)) == (
        "contracts_off_step"
    )
    assert rejection_code(trade("1", **eth), order("o1", limit="1.005", **eth)) == (
        "price_off_step"
    )
    huge = "1" + "0" * 40 + ".005"  # a quotient beyond the default 28 digits must not crash
    assert rejection_code(trade("1", **eth), order("o1", limit=huge, **eth)) == "price_off_step"


def test_reduce_only_when_flat_or_same_side_then_rejected_would_increase():
    assert rejection_code(trade("100"), order("r", "sell", reduce_only=True)) == (
        "reduce_only_would_increase"
    )
    long_then_more = (
        trade("100"),
        order("o1", "buy", "5"),
        trade("100"),
        order("r", "buy", "1", reduce_only=True),
    )
    assert rejection_code(*long_then_more) == "reduce_only_would_increase"


def test_reduce_only_when_larger_than_position_then_clipped_and_rest_cancelled():
    out = outputs(
        trade("100"),
        order("o1", "buy", "5"),
        trade("100"),
        order("r", "sell", "8", reduce_only=True),
        trade("100"),
    )
    assert [type(e) for e in out[-2:]] == [ev.OrderPartiallyFilled, ev.OrderCancelled]
    fill, cancel = out[-2:]
    assert fill.contracts == D(5)
    assert fill.reduce_only
    assert cancel.reason == "reduce_only_clipped"
    assert cancel.remaining_contracts == D(3)


def test_reduce_only_when_position_closed_before_it_trades_then_cancelled_whole():
    out = outputs(
        trade("100"),
        order("o1", "buy", "5"),
        trade("100"),
        order("r1", "sell", "5", reduce_only=True),
        order("r2", "sell", "5", reduce_only=True),
        trade("100"),
    )
    assert isinstance(out[-2], ev.OrderFilled) and out[-2].client_order_id == "r1"
    assert out[-1] == ev.OrderCancelled(
        at_ms=10,
        client_order_id="r2",
        symbol="BTC_USDT",
        reason="reduce_only_position_closed",
        remaining_contracts=D(5),
    )


def test_request_when_no_config_yet_then_nothing_is_decided():
    _state, steps = run(PaperExchange(), record_all([trade("100"), order("o1"), trade("100")]))
    assert all(outs == () for _fact, outs in steps)


def test_contract_spec_event_when_present_then_overrides_config_contract_size():
    spec = ev.ContractSpecified(
        at_ms=1,
        symbol="BTC_USDT",
        contract_size=D("0.001"),
        min_contracts=D(1),
        max_contracts=D(100),
        contracts_step=D(1),
        price_step=D("0.5"),
        taker_fee_rate=D("0.0004"),
        maker_fee_rate=D(0),
        api_allowed=True,
        source="exchange",
    )
    out = outputs(spec, trade("100"), order("o1", "buy", "2"), trade("100"))
    assert out[-1].fee == D(2) * D("0.001") * D("100.02") * D("0.0006")


def test_config_when_fee_rates_change_then_later_fills_use_new_rates():
    out = outputs(
        config_event(),
        trade("100"),
        config_event(1, TAKER_FEE_RATE="0.001", PAPER_SLIPPAGE_BPS="0"),
        order("o1", "buy", "1"),
        trade("100"),
    )
    assert out[-1].price == D(100)
    assert out[-1].fee == D(1) * D("0.0001") * D(100) * D("0.001")


def test_paper_outputs_when_folded_with_requests_then_a_legal_order_lifecycle():
    events = [
        config_event(),
        trade("100"),
        order("a", "buy", "10"),
        trade("100", contracts="3"),
        trade("100", contracts="30"),
        order("b", "sell", "20", reduce_only=True),
        trade("100"),
    ]
    _state, steps = run(PaperExchange(), record_all(events))
    log = [e for fact, outs in steps for e in (fact.event, *outs)]
    book = fold_orders(log)
    assert book.get("a").status is OrderStatus.FILLED
    assert book.get("b").status is OrderStatus.CANCELLED
    assert book.get("b").filled_contracts == D(10)


def test_state_when_orders_rest_and_fill_then_reports_positions_and_open_orders():
    events = [config_event(), trade("100"), order("a", "buy", "4"), trade("100")]
    events += [order("b", "buy", "1", limit="50")]
    state, _ = run(PaperExchange(), record_all(events))
    assert state.position("BTC_USDT") == D(4)
    assert [o.client_order_id for o in state.open_orders()] == ["b"]
