"""The event catalogue is permanent: tags are pinned, every event round-trips, no floats."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import msgspec.inspect as mi
import pytest

from aggregates import events as ev
from aggregates.events import EVENT_TYPES, AnyEvent, Event, decode, encode, event_type
from tests.unit.strategies import trading_config

D = Decimal
T = 1_767_225_600_000

PINNED_TAGS = [
    "market.trade",
    "market.candle_closed",
    "market.tickers",
    "market.movers_selected",
    "market.contract_spec",
    "market.funding_settled",
    "clock.tick",
    "config.activated",
    "operator.command",
    "signal.generated",
    "risk.verdict",
    "risk.stop_loss_triggered",
    "risk.circuit_breaker_tripped",
    "risk.circuit_breaker_cleared",
    "risk.trading_state_changed",
    "alert.raised",
    "order.requested",
    "order.accepted",
    "order.partially_filled",
    "order.filled",
    "order.rejected",
    "order.cancelled",
    "execution.reconciled",
    "preflight.passed",
    "execution.venue_input_rejected",
    "execution.venue_equity",
    "execution.stop_requested",
    "execution.stop_placed",
    "execution.stop_ended",
    "service.alert_raised",
]

_FILL = {
    "at_ms": T,
    "client_order_id": "a" * 32,
    "symbol": "BTC_USDT",
    "side": "buy",
    "price": D("50000.5"),
    "contracts": D(3),
    "fee": D("0.009"),
    "fee_currency": "USDT",
    "liquidity": "taker",
    "fill_id": "f1",
}

SAMPLES: dict[str, Event] = {
    "market.trade": ev.TradeTicked(
        at_ms=T,
        symbol="BTC_USDT",
        price=D("50000.5"),
        contracts=D(2),
        taker_side="sell",
        position_effect="open",
        trade_id="t1",
    ),
    "market.candle_closed": ev.CandleClosed(
        at_ms=T,
        symbol="BTC_USDT",
        interval="Min1",
        open=D(1),
        high=D(3),
        low=D("0.5"),
        close=D(2),
        contracts=D(10),
        quote_amount=D(20),
    ),
    "market.tickers": ev.TickersSnapshotted(
        at_ms=T,
        quotes=(
            ev.TickerQuote(
                symbol="ETH_USDT", last_price=D(3000), rise_fall_rate=D("0.05"), volume_24h=D(9)
            ),
        ),
    ),
    "market.movers_selected": ev.MoversSelected(
        at_ms=T, symbols=("ETH_USDT",), scores=(D("0.05"),), previous=("BTC_USDT",)
    ),
    "market.contract_spec": ev.ContractSpecified(
        at_ms=T,
        symbol="BTC_USDT",
        contract_size=D("0.0001"),
        min_contracts=D(1),
        max_contracts=D(1000),
        contracts_step=D(1),
        price_step=D("0.1"),
        taker_fee_rate=D("0.0006"),
        maker_fee_rate=D("0.0002"),
        api_allowed=True,
        source="exchange",
    ),
    "market.funding_settled": ev.FundingSettled(
        at_ms=T, symbol="BTC_USDT", rate=D("0.0001"), amount=D("-1.5")
    ),
    "clock.tick": ev.ClockTicked(at_ms=T),
    "config.activated": trading_config().activated(T),
    "operator.command": ev.OperatorCommandIssued(at_ms=T, command="halt", operator="ops"),
    "signal.generated": ev.SignalGenerated(
        at_ms=T,
        symbol="BTC_USDT",
        direction="long",
        strength=D("0.5"),
        momentum=D("0.7"),
        reference_price=D(50000),
        window_start_ms=T - 60_000,
        trades_in_window=12,
        contracts_in_window=D(40),
    ),
    "risk.verdict": ev.RiskVerdictIssued(
        at_ms=T,
        symbol="BTC_USDT",
        decision="trimmed",
        layer="position_size",
        reason="trimmed_to_position_limit",
        intent="entry",
        side="buy",
        requested_contracts=D(10),
        approved_contracts=D(5),
        numbers={"equity": "10000"},
    ),
    "risk.stop_loss_triggered": ev.StopLossTriggered(
        at_ms=T,
        symbol="BTC_USDT",
        entry_price=D(100),
        mark_price=D(98),
        loss_pct=D(2),
        contracts=D(4),
    ),
    "risk.circuit_breaker_tripped": ev.CircuitBreakerTripped(
        at_ms=T,
        layer="abnormal_market",
        symbol="BTC_USDT",
        reason="abnormal_price_move",
        numbers={"move_pct": "9"},
    ),
    "risk.circuit_breaker_cleared": ev.CircuitBreakerCleared(
        at_ms=T, layer="data_silence", symbol=None, reason="market_data_resumed"
    ),
    "risk.trading_state_changed": ev.TradingStateChanged(
        at_ms=T, previous="ACTIVE", state="HALTED", changed_by="risk", reason="daily_drawdown"
    ),
    "alert.raised": ev.AlertRaised(at_ms=T, severity="CRITICAL", code="x", message="m"),
    "order.requested": ev.OrderRequested(
        at_ms=T,
        client_order_id="a" * 32,
        symbol="BTC_USDT",
        side="sell",
        contracts=D(3),
        order_type="market",
        intent="stop_loss",
        reduce_only=True,
        reference_price=D(99),
    ),
    "order.accepted": ev.OrderAccepted(
        at_ms=T, client_order_id="a" * 32, exchange_order_id="123", symbol="BTC_USDT"
    ),
    "order.partially_filled": ev.OrderPartiallyFilled(**_FILL, remaining_contracts=D(1)),
    "order.filled": ev.OrderFilled(**_FILL),
    "order.rejected": ev.OrderRejected(
        at_ms=T, client_order_id="a" * 32, symbol="BTC_USDT", code="no", message="m"
    ),
    "order.cancelled": ev.OrderCancelled(
        at_ms=T, client_order_id="a" * 32, symbol="BTC_USDT", reason="ioc", remaining_contracts=D(1)
    ),
    "execution.reconciled": ev.ExecutionReconciled(
        at_ms=T, venue="paper", open_orders=("a" * 32,), corrections=("none",)
    ),
    "preflight.passed": ev.PreflightPassed(
        at_ms=T, code_version="a" * 64, tape="demo", tape_sha256="b" * 64, events=9, checks=("x",)
    ),
    "execution.venue_input_rejected": ev.ExecutionVenueInputRejected(
        at_ms=T,
        venue="mexc",
        kind="unknown_order_state",
        severity="WARNING",
        detail="state 9",
        client_order_id="a" * 32,
        symbol="BTC_USDT",
    ),
    "execution.venue_equity": ev.ExecutionVenueEquity(
        at_ms=T,
        venue="mexc",
        currency="USDT",
        equity=D("10500.25"),
        available=D("9000"),
        configured_capital=D(10000),
        difference_pct=D("5.0025"),
        within_tolerance=True,
    ),
    "execution.stop_requested": ev.ExecutionStopRequested(
        at_ms=T,
        stop_id="s" * 32,
        symbol="BTC_USDT",
        direction="long",
        contracts=D(3),
        trigger_price=D("61109.4"),
    ),
    "execution.stop_placed": ev.ExecutionStopPlaced(
        at_ms=T, stop_id="s" * 32, symbol="BTC_USDT", exchange_stop_id="7391"
    ),
    "execution.stop_ended": ev.ExecutionStopEnded(
        at_ms=T, stop_id="s" * 32, symbol="BTC_USDT", reason="position_flat"
    ),
    "service.alert_raised": ev.ServiceAlertRaised(
        at_ms=T, severity="WARNING", service="risk", message="risk: no heartbeat"
    ),
}


def test_catalogue_when_listed_then_tags_are_exactly_the_pinned_ones() -> None:
    assert list(EVENT_TYPES) == PINNED_TAGS


def test_catalogue_when_inspected_then_every_event_subclasses_event_and_is_in_the_union() -> None:
    union = set(AnyEvent.__args__)  # type: ignore[attr-defined]
    for tag, cls in EVENT_TYPES.items():
        assert issubclass(cls, Event), tag
        assert cls in union, tag
        assert cls.__struct_config__.frozen, tag
        assert cls.__struct_config__.tag == tag


@pytest.mark.parametrize("tag", PINNED_TAGS)
def test_event_when_encoded_and_decoded_then_round_trips(tag: str) -> None:
    event = SAMPLES[tag]
    assert event_type(event) == tag
    data = encode(event)
    assert decode(data) == event
    assert encode(decode(data)) == data
    assert msgspec.json.decode(data)["type"] == tag


def _has_float(t: mi.Type) -> bool:
    if isinstance(t, mi.FloatType):
        return True
    if isinstance(t, mi.UnionType):
        return any(_has_float(x) for x in t.types)
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return _has_float(t.item_type)
    if isinstance(t, mi.TupleType):
        return any(_has_float(x) for x in t.item_types)
    if isinstance(t, mi.DictType):
        return _has_float(t.key_type) or _has_float(t.value_type)
    if isinstance(t, mi.StructType):
        return any(_has_float(f.type) for f in t.fields)
    return False


@pytest.mark.parametrize("tag", PINNED_TAGS)
def test_event_when_its_schema_is_inspected_then_it_has_no_float_field(tag: str) -> None:
    assert not _has_float(mi.type_info(EVENT_TYPES[tag]))


def test_event_when_a_money_value_is_encoded_then_it_is_a_string() -> None:
    payload = msgspec.json.decode(encode(SAMPLES["order.filled"]))
    assert payload["price"] == "50000.5"
    assert payload["fee"] == "0.009"
