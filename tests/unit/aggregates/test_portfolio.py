"""The portfolio fold: netting accounting, day boundaries, and fold laws as properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.events import (
    ClockTicked,
    ContractSpecified,
    Event,
    FundingSettled,
    OrderFilled,
    OrderPartiallyFilled,
    TradeTicked,
)
from aggregates.portfolio import DAY_MS, EMPTY, UnknownContractSize, evolve, fold
from tests.unit.strategies import START_MS, trading_config

D = Decimal
T = START_MS
CONFIG = trading_config()  # BTC_USDT contract size 0.0001, equity 10000


def fill(
    side: str,
    contracts: int | str,
    price: int | str,
    *,
    fee: str = "0",
    at: int = T,
    symbol: str = "BTC_USDT",
    partial_left: int | None = None,
) -> Event:
    fields = {
        "at_ms": at,
        "client_order_id": "c1",
        "symbol": symbol,
        "side": side,
        "price": D(price),
        "contracts": D(contracts),
        "fee": D(fee),
        "fee_currency": "USDT",
        "liquidity": "taker",
        "fill_id": "f",
    }
    if partial_left is not None:
        return OrderPartiallyFilled(**fields, remaining_contracts=D(partial_left))
    return OrderFilled(**fields)


def tick(price: int | str, *, at: int = T, symbol: str = "BTC_USDT") -> TradeTicked:
    return TradeTicked(
        at_ms=at,
        symbol=symbol,
        price=D(price),
        contracts=D(1),
        taker_side="buy",
        position_effect="open",
    )


def start() -> list[Event]:
    return [CONFIG.activated(T)]


def test_fold_when_config_activates_then_cash_and_equity_are_the_initial_equity() -> None:
    p = fold(start())
    assert p.cash == p.equity == D(10000)
    assert p.day_start_equity == p.day_peak_equity == D(10000)
    again = evolve(p, CONFIG.activated(T + 1))
    assert again.cash == D(10000), "a second activation must not fund the account again"


def test_fill_when_buying_then_long_position_with_contract_size_and_fee() -> None:
    p = fold([*start(), fill("buy", 100, 50000, fee="0.3")])
    position = p.positions["BTC_USDT"]
    assert position.contracts == D(100)
    assert position.contract_size == D("0.0001")
    assert position.notional == D(500)
    assert p.cash == D("9999.7") and p.fees == D("0.3")
    assert p.exposure == D(500) / D("9999.7")


def test_tick_when_price_moves_then_unrealised_pnl_and_equity_follow() -> None:
    p = fold([*start(), fill("buy", 100, 50000), tick(51000)])
    assert p.unrealised == D(10)  # 100 contracts * 0.0001 BTC * 1000
    assert p.equity == D(10010)
    assert p.day_peak_equity == D(10010)
    p = evolve(p, tick(49000))
    assert p.equity == D(9990)
    assert p.drawdown == D(20) / D(10010)


def test_fills_when_adding_to_a_position_then_average_entry_is_volume_weighted() -> None:
    p = fold([*start(), fill("buy", 100, 50000), fill("buy", 300, 54000)])
    assert p.positions["BTC_USDT"].average_entry == D(53000)


def test_fill_when_short_is_covered_at_a_lower_price_then_profit_is_realised() -> None:
    p = fold([*start(), fill("sell", 100, 50000), fill("buy", 40, 48000)])
    position = p.positions["BTC_USDT"]
    assert position.contracts == D(-60)
    assert position.average_entry == D(50000)
    assert p.realised_pnl == D(8)  # 40 * 0.0001 * 2000
    assert p.cash == D(10008)


def test_fill_when_it_crosses_zero_then_position_reverses_at_the_fill_price() -> None:
    p = fold([*start(), fill("buy", 100, 50000), fill("sell", 150, 51000)])
    position = p.positions["BTC_USDT"]
    assert position.contracts == D(-50)
    assert position.average_entry == D(51000)
    assert p.realised_pnl == D(10)
    assert p.gross_notional == D("255")


def test_partial_fills_when_they_complete_then_equal_one_fill() -> None:
    partial = fold([*start(), fill("buy", 30, 50000, partial_left=70), fill("buy", 70, 50000)])
    whole = fold([*start(), fill("buy", 100, 50000)])
    assert partial.positions["BTC_USDT"].contracts == whole.positions["BTC_USDT"].contracts
    assert partial.equity == whole.equity


def test_funding_when_settled_then_cash_and_position_funding_change() -> None:
    p = fold(
        [
            *start(),
            fill("buy", 100, 50000),
            FundingSettled(at_ms=T, symbol="BTC_USDT", rate=D("0.0001"), amount=D("-0.5")),
        ]
    )
    assert p.cash == D("9999.5") and p.funding == D("-0.5")
    assert p.positions["BTC_USDT"].funding == D("-0.5")


def test_day_when_a_new_utc_day_starts_then_start_and_peak_restart_from_equity() -> None:
    p = fold([*start(), fill("buy", 100, 50000), tick(52000), tick(49000)])
    assert p.drawdown > 0
    p = evolve(p, ClockTicked(at_ms=(T // DAY_MS + 1) * DAY_MS))
    assert p.day_start_equity == p.day_peak_equity == p.equity
    assert p.drawdown == 0


def test_contract_size_when_exchange_specifies_it_then_it_beats_the_config_fallback() -> None:
    spec = ContractSpecified(
        at_ms=T,
        symbol="SOL_USDT",
        contract_size=D(1),
        min_contracts=D(1),
        max_contracts=D(10),
        contracts_step=D(1),
        price_step=D("0.01"),
        taker_fee_rate=D(0),
        maker_fee_rate=D(0),
        api_allowed=True,
        source="exchange",
    )
    p = fold([*start(), spec, fill("buy", 2, 100, symbol="SOL_USDT")])
    assert p.positions["SOL_USDT"].notional == D(200)


def test_fill_when_no_contract_size_is_known_then_it_is_a_broken_invariant() -> None:
    with pytest.raises(UnknownContractSize):
        fold([*start(), fill("buy", 1, 1, symbol="XRP_USDT")])


@st.composite
def portfolio_events(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = list(start())
    now = T
    for _ in range(draw(st.integers(0, 60))):
        now += draw(st.integers(0, 4 * 3_600_000))
        symbol = draw(st.sampled_from(["BTC_USDT", "ETH_USDT"]))
        kind = draw(st.sampled_from(["tick", "tick", "fill", "fill", "partial", "funding"]))
        price = draw(st.integers(1000, 60000))
        if kind == "tick":
            events.append(tick(price, at=now, symbol=symbol))
        elif kind == "funding":
            amount = D(draw(st.integers(-100, 100))) / 10
            events.append(FundingSettled(at_ms=now, symbol=symbol, rate=D(0), amount=amount))
        else:
            events.append(
                fill(
                    draw(st.sampled_from(["buy", "sell"])),
                    draw(st.integers(1, 500)),
                    price,
                    fee=str(D(draw(st.integers(0, 100))) / 100),
                    at=now,
                    symbol=symbol,
                    partial_left=draw(st.integers(1, 9)) if kind == "partial" else None,
                )
            )
    return events


@settings(max_examples=200, deadline=None)
@given(portfolio_events(), st.data())
def test_fold_when_split_at_any_point_then_equals_folding_in_one_go(events: list, data) -> None:
    cut = data.draw(st.integers(0, len(events)))
    assert fold(events[cut:], fold(events[:cut])) == fold(events)


@settings(max_examples=200, deadline=None)
@given(portfolio_events())
def test_fold_when_any_sequence_then_cash_and_equity_identities_hold(events: list) -> None:
    p = fold(events)
    # Decimal keeps 28 significant digits: sums regrouped differently agree to far below a cent.
    tiny = D("1e-9")
    assert abs(p.cash - (CONFIG.initial_equity + p.realised_pnl - p.fees + p.funding)) < tiny
    positions = p.positions.values()
    unrealised = sum((x.unrealised_pnl for x in positions), D(0))
    gross = sum((x.notional for x in positions), D(0))
    assert abs(p.equity - (p.cash + unrealised)) < tiny
    assert abs(p.gross_notional - gross) < tiny
    assert p.day_peak_equity >= p.equity - tiny
    assert abs(p.realised_pnl - sum((x.realised_pnl for x in positions), D(0))) < tiny


@settings(max_examples=200, deadline=None)
@given(portfolio_events())
def test_fold_when_any_fills_then_position_is_the_signed_sum_of_fill_contracts(
    events: list,
) -> None:
    p = fold(events)
    for symbol, position in p.positions.items():
        expected = sum(
            (
                e.contracts if e.side == "buy" else -e.contracts
                for e in events
                if isinstance(e, OrderFilled | OrderPartiallyFilled) and e.symbol == symbol
            ),
            D(0),
        )
        assert position.contracts == expected


def test_evolve_when_event_is_unrelated_then_returns_the_same_state() -> None:
    p = fold(start())
    assert evolve(p, tick(1, symbol="ETH_USDT")) is p
    assert EMPTY.equity == 0
