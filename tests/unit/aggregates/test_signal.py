"""The momentum signal engine: the documented rule, the activity filter, no look-ahead."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.events import ClockTicked, Event, SignalGenerated, TradeTicked, encode
from aggregates.machine import record_all, run
from aggregates.signal import SignalMachine
from tests.unit.strategies import START_MS, trading_config

D = Decimal
T = START_MS
# 1-minute look-back, threshold 0.5 %, at least 3 trades and 5 contracts in the window
CONFIG = trading_config()


def tick(
    at: int, price: str | int, contracts: int | str = 2, symbol: str = "BTC_USDT"
) -> TradeTicked:
    return TradeTicked(
        at_ms=at,
        symbol=symbol,
        price=D(price),
        contracts=D(contracts),
        taker_side="buy",
        position_effect="open",
    )


def signals(events: list[Event]) -> list[SignalGenerated]:
    _, steps = run(SignalMachine(), record_all(events))
    return [e for _, out in steps for e in out]  # type: ignore[misc]


def warmed(*later: Event) -> list[Event]:
    """Config, then a flat minute of trades, so the history covers a whole look-back."""
    flat = [tick(T + i * 10_000, 100) for i in range(7)]
    return [CONFIG.activated(T), *flat, *later]


def test_signal_when_price_rises_past_threshold_then_long_with_strength() -> None:
    out = signals(warmed(tick(T + 70_000, "100.6")))
    assert len(out) == 1
    s = out[0]
    assert s.direction == "long"
    assert s.momentum == D("0.6")
    assert s.strength == D("0.6")  # 0.6 / (2 * 0.5)
    assert s.reference_price == D("100.6")
    assert s.window_start_ms == T + 20_000  # trades at or before t - 60 s have left
    assert s.trades_in_window == 6


def test_signal_when_price_falls_far_then_short_with_full_strength() -> None:
    out = signals(warmed(tick(T + 70_000, 97)))
    assert [(s.direction, s.strength) for s in out] == [("short", D(1))]


def test_signal_when_move_is_below_threshold_then_no_signal() -> None:
    assert signals(warmed(tick(T + 70_000, "100.4"))) == []


def test_signal_when_direction_is_unchanged_then_nothing_more_is_emitted() -> None:
    out = signals(warmed(tick(T + 70_000, 101), tick(T + 71_000, 102)))
    assert [s.direction for s in out] == ["long"]


def test_signal_when_momentum_fades_then_flat_is_emitted_once() -> None:
    out = signals(
        warmed(
            tick(T + 70_000, 101),
            tick(T + 200_000, 101),
            tick(T + 201_000, 101),
            tick(T + 202_000, 101),
        )
    )
    assert [s.direction for s in out] == ["long", "flat"]
    assert out[1].strength == 0


def test_signal_when_market_is_thin_then_no_signal() -> None:
    thin = [CONFIG.activated(T), tick(T, 100), tick(T + 61_000, 100), tick(T + 62_000, 110)]
    assert signals(thin) == []  # two trades in the window < SIGNAL_MIN_TRADES


def test_signal_when_too_few_contracts_then_no_signal() -> None:
    small = [tick(T + i * 10_000, 100, contracts="0.5") for i in range(8)]  # type: ignore[arg-type]
    events = [CONFIG.activated(T), *small, tick(T + 80_000, 105, contracts="0.5")]  # type: ignore[arg-type]
    assert signals(events) == []  # 6 trades but 3 contracts < SIGNAL_MIN_CONTRACTS
    events[-1] = tick(T + 80_000, 105, contracts=3)
    assert [s.direction for s in signals(events)] == ["long"]


def test_signal_when_history_is_shorter_than_the_look_back_then_no_signal() -> None:
    young = [CONFIG.activated(T), *(tick(T + i * 1_000, 100 + i) for i in range(30))]
    assert signals(young) == []


def test_signal_when_no_config_has_arrived_then_nothing_is_decided() -> None:
    assert signals(warmed(tick(T + 70_000, 110))[1:]) == []


def test_signal_when_symbols_interleave_then_windows_are_separate() -> None:
    eth = [tick(T + i * 10_000 + 5, 3000, symbol="ETH_USDT") for i in range(7)]
    out = signals(warmed(*eth, tick(T + 70_000, 102), tick(T + 70_005, 2900, symbol="ETH_USDT")))
    assert [(s.symbol, s.direction) for s in out] == [("BTC_USDT", "long"), ("ETH_USDT", "short")]


@st.composite
def tick_streams(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = [CONFIG.activated(T)]
    now, price = T, D(100)
    for _ in range(draw(st.integers(0, 150))):
        now += draw(st.integers(0, 15_000))
        if draw(st.integers(0, 9)) == 0:
            events.append(ClockTicked(at_ms=now))
            continue
        price = max(D(1), price + D(draw(st.integers(-100, 100))) / 100)
        events.append(
            tick(
                now,
                str(price),
                draw(st.integers(1, 5)),
                draw(st.sampled_from(["BTC_USDT", "ETH_USDT"])),
            )
        )
    return events


@settings(max_examples=150, deadline=None)
@given(tick_streams(), st.data())
def test_signals_when_the_future_is_cut_off_then_past_signals_are_unchanged(events, data) -> None:
    cut = data.draw(st.integers(0, len(events)))
    _, full = run(SignalMachine(), record_all(events))
    _, prefix = run(SignalMachine(), record_all(events[:cut]))
    assert [encode(e) for _, o in prefix for e in o] == [
        encode(e) for _, o in full[:cut] for e in o
    ]


@settings(max_examples=150, deadline=None)
@given(tick_streams())
def test_signals_when_emitted_then_directions_alternate_and_respect_the_rule(events) -> None:
    last: dict[str, str] = {}
    for s in signals(events):
        assert last.get(s.symbol, "flat") != s.direction
        last[s.symbol] = s.direction
        assert D(0) <= s.strength <= D(1)
        if s.direction != "flat":
            assert s.trades_in_window >= CONFIG.signal_min_trades
            assert s.contracts_in_window >= CONFIG.signal_min_contracts
            assert abs(s.momentum) >= CONFIG.signal_threshold_pct
            assert (s.momentum > 0) == (s.direction == "long")
            assert s.window_start_ms > s.at_ms - CONFIG.lookback_minutes * 60_000


@settings(max_examples=100, deadline=None)
@given(tick_streams())
def test_signals_when_run_twice_then_byte_identical(events) -> None:
    assert [encode(s) for s in signals(events)] == [encode(s) for s in signals(events)]
