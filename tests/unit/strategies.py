"""Hypothesis strategies and drivers for the pure core (stable: other test modules import them).

* :func:`config_values` / :func:`trading_config` — a valid configuration mapping / object.
* :func:`market_sequences` — arbitrary, time-ordered sequences of ticks, clock ticks, signals,
  funding, operator commands and :class:`Settle` markers (the venue settles pending orders now).
* :func:`drive` — runs SignalMachine + RiskMachine over a sequence with a tiny deterministic venue
  that fills, partially fills or rejects the risk manager's orders at a ``Settle`` marker, and
  returns every committed fact in log order with the step outputs (a closed loop, as live).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from hypothesis import strategies as st

from aggregates.config import TradingConfig, parse_config
from aggregates.envelope import RecordedEvent
from aggregates.events import (
    ClockTicked,
    Event,
    FundingSettled,
    OperatorCommandIssued,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderRequested,
    SignalGenerated,
    TradeTicked,
)
from aggregates.machine import record
from aggregates.risk import RiskMachine, RiskState
from aggregates.signal import SignalMachine, SignalState

D = Decimal
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SYMBOLS = ("BTC_USDT", "ETH_USDT")
BASE_PRICE = {"BTC_USDT": D(50000), "ETH_USDT": D(3000)}

BASE_VALUES: dict[str, str] = {
    "INITIAL_EQUITY_USDT": "10000",
    "MAX_POSITION_PCT": "20",
    "MAX_EXPOSURE_PCT": "30",
    "MAX_DAILY_DRAWDOWN_PCT": "3",
    "STOP_LOSS_PCT": "2",
    "LOOKBACK_MINUTES": "1",
    "SIGNAL_THRESHOLD_PCT": "0.5",
    "SIGNAL_MIN_TRADES": "3",
    "SIGNAL_MIN_CONTRACTS": "5",
    "ABNORMAL_MOVE_PCT": "6",
    "ABNORMAL_WINDOW_SECONDS": "30",
    "ABNORMAL_PAUSE_SECONDS": "60",
    "DATA_SILENCE_SECONDS": "20",
    "EXIT_COOLDOWN_SECONDS": "10",
    "LOSS_STREAK_COUNT": "2",
    "LOSS_STREAK_WINDOW_MINUTES": "10",
    "LOSS_STREAK_PAUSE_MINUTES": "5",
    "MAX_ORDERS_PER_MINUTE": "6",
    "MAX_ORDER_NOTIONAL_USDT": "2500",
    "TAKER_FEE_RATE": "0.0006",
    "MAKER_FEE_RATE": "0.0002",
    "PAPER_SLIPPAGE_BPS": "2",
    "CONTRACT_SPECS": "BTC_USDT:0.0001:1:100000:1:0.1,ETH_USDT:0.01:1:100000:1:0.01",
}


#: A momentum session that trades often over a generated market: the parameters of the replay
#: tests and of ``benchmarks/bench_replay.py``.
REPLAY_VALUES: dict[str, str] = {
    "INITIAL_EQUITY_USDT": "10000",
    "MAX_POSITION_PCT": "40",
    "MAX_EXPOSURE_PCT": "120",
    "MAX_DAILY_DRAWDOWN_PCT": "4",
    "STOP_LOSS_PCT": "6",
    "LOOKBACK_MINUTES": "3",
    "SIGNAL_THRESHOLD_PCT": "0.3",
    "SIGNAL_MIN_TRADES": "20",
    "SIGNAL_MIN_CONTRACTS": "100",
    "ABNORMAL_MOVE_PCT": "12",
    "ABNORMAL_WINDOW_SECONDS": "60",
    "ABNORMAL_PAUSE_SECONDS": "300",
    "DATA_SILENCE_SECONDS": "45",
    "EXIT_COOLDOWN_SECONDS": "60",
    "LOSS_STREAK_COUNT": "3",
    "LOSS_STREAK_WINDOW_MINUTES": "60",
    "LOSS_STREAK_PAUSE_MINUTES": "30",
    "MAX_ORDERS_PER_MINUTE": "20",
    "MAX_ORDER_NOTIONAL_USDT": "5000",
    "TAKER_FEE_RATE": "0.0006",
    "MAKER_FEE_RATE": "0.0002",
    "PAPER_SLIPPAGE_BPS": "2",
    "CONTRACT_SPECS": "BTC_USDT:0.0001:1:5000000:1:0.1,ETH_USDT:0.01:1:1000000:1:0.01",
}


def config_values(**overrides: str) -> dict[str, str]:
    """A complete, valid variable mapping with optional overrides."""
    values = dict(BASE_VALUES)
    values.update(overrides)
    return values


def trading_config(**overrides: str) -> TradingConfig:
    return parse_config(config_values(**overrides))


@st.composite
def config_mappings(draw: st.DrawFn) -> dict[str, str]:
    """Valid configurations whose limits vary, so every layer gets its turn."""
    position = draw(st.sampled_from(["5", "10", "20", "25"]))
    exposure = draw(st.sampled_from(["25", "30", "50", "100"]))
    return config_values(
        MAX_POSITION_PCT=position,
        MAX_EXPOSURE_PCT=exposure,
        MAX_DAILY_DRAWDOWN_PCT=draw(st.sampled_from(["0.5", "1", "3"])),
        STOP_LOSS_PCT=draw(st.sampled_from(["0.5", "1", "2"])),
        ABNORMAL_MOVE_PCT=draw(st.sampled_from(["2", "6", "12"])),
        MAX_ORDERS_PER_MINUTE=draw(st.sampled_from(["2", "6", "30"])),
        MAX_ORDER_NOTIONAL_USDT=draw(st.sampled_from(["400", "2500", "100000"])),
        EXIT_COOLDOWN_SECONDS=draw(st.sampled_from(["0", "10", "120"])),
        LOSS_STREAK_COUNT=draw(st.sampled_from(["1", "2", "3"])),
    )


@dataclass(frozen=True)
class Settle:
    """Marker: the venue now settles every pending order (not an event; :func:`drive` acts)."""

    mode: Literal["fill", "partial", "reject"]


Item = Event | Settle


@st.composite
def market_sequences(
    draw: st.DrawFn, *, min_size: int = 5, max_size: int = 120, with_config: bool = True
) -> list[Item]:
    """Time-ordered ticks (random walks, with jumps), clock ticks, signals, funding, commands."""
    items: list[Item] = []
    now = START_MS + draw(st.integers(0, 86_400_000 - 3_600_000))
    if with_config:
        items.append(parse_config(draw(config_mappings())).activated(now))
    prices = dict(BASE_PRICE)
    count = draw(st.integers(min_size, max_size))
    kinds = st.sampled_from(
        ["tick"] * 10
        + ["clock", "signal", "signal", "signal", "settle", "settle", "settle"]
        + ["funding", "command", "gap"]
    )
    for _ in range(count):
        kind = draw(kinds)
        now += draw(st.integers(0, 3_000))
        symbol = draw(st.sampled_from(SYMBOLS))
        if kind == "tick":
            move_bp = draw(st.integers(-120, 120) | st.sampled_from([-700, -300, 300, 700]))
            prices[symbol] = max(
                D(1), (prices[symbol] * (10_000 + move_bp) / 10_000).quantize(D("0.1"))
            )
            items.append(
                TradeTicked(
                    at_ms=now,
                    symbol=symbol,
                    price=prices[symbol],
                    contracts=D(draw(st.integers(1, 50))),
                    taker_side=draw(st.sampled_from(["buy", "sell"])),
                    position_effect="open",
                )
            )
        elif kind == "clock":
            items.append(ClockTicked(at_ms=now))
        elif kind == "gap":
            now += draw(st.sampled_from([25_000, 90_000, 86_400_000]))  # silence or a new day
            items.append(ClockTicked(at_ms=now))
        elif kind == "signal":
            direction = draw(st.sampled_from(["long", "short", "flat"]))
            strength = D(0) if direction == "flat" else D(draw(st.integers(1, 20))) / 20
            items.append(
                SignalGenerated(
                    at_ms=now,
                    symbol=symbol,
                    direction=direction,
                    strength=strength,
                    momentum=D(0),
                    reference_price=prices[symbol],
                    window_start_ms=max(0, now - 60_000),
                    trades_in_window=10,
                    contracts_in_window=D(100),
                )
            )
        elif kind == "settle":
            items.append(Settle(draw(st.sampled_from(["fill", "fill", "partial", "reject"]))))
        elif kind == "funding":
            amount = D(draw(st.integers(-300, 100))) / 10
            items.append(FundingSettled(at_ms=now, symbol=symbol, rate=D("0.0001"), amount=amount))
        else:
            command = draw(
                st.sampled_from(["reduce", "halt", "resume", "resume", "flatten", "reset_drawdown"])
            )
            items.append(OperatorCommandIssued(at_ms=now, command=command, operator="tester"))
    return items


@dataclass
class Run:
    """Everything a closed-loop run committed: facts in order and each step's outputs."""

    facts: list[RecordedEvent] = field(default_factory=list)
    steps: list[tuple[RecordedEvent, tuple[Event, ...]]] = field(default_factory=list)
    risk_state: RiskState | None = None
    signal_state: SignalState | None = None

    def outputs(self) -> list[Event]:
        return [event for _, out in self.steps for event in out]


class _Venue:
    """Settles requested orders at the last trade price, with taker fees; deterministic."""

    def __init__(self) -> None:
        self.open: dict[str, OrderRequested] = {}
        self.remaining: dict[str, Decimal] = {}
        self.last: dict[str, Decimal] = dict(BASE_PRICE)
        self.fills = 0

    def settle(self, mode: str, now: int) -> list[Event]:
        events: list[Event] = []
        for oid, order in list(self.open.items()):
            price = self.last[order.symbol]
            left = self.remaining[oid]
            if mode == "reject":
                events.append(
                    OrderRejected(
                        at_ms=now,
                        client_order_id=oid,
                        symbol=order.symbol,
                        code="test_reject",
                        message="",
                    )
                )
                del self.open[oid]
                continue
            part = left if mode == "fill" or left < 2 else (left / 2).to_integral_value()
            self.fills += 1
            common = {
                "at_ms": now,
                "client_order_id": oid,
                "symbol": order.symbol,
                "side": order.side,
                "price": price,
                "contracts": part,
                "fee": (price * part * D("0.0001") * D("0.0006")).quantize(D("0.00000001")),
                "fee_currency": "USDT",
                "liquidity": "taker",
                "fill_id": f"f{self.fills}",
                "reduce_only": order.reduce_only,
            }
            if part == left:
                events.append(OrderFilled(**common))
                del self.open[oid]
            else:
                events.append(OrderPartiallyFilled(**common, remaining_contracts=left - part))
                self.remaining[oid] = left - part
        return events


def drive(items: Iterable[Item], *, with_signal_machine: bool = True) -> Run:
    """Run the closed loop: each fact goes to both machines; their outputs are appended after it."""
    signal, risk = SignalMachine(), RiskMachine()
    s_state, r_state = signal.initial(), risk.initial()
    venue = _Venue()
    result = Run()
    queue: list[Event] = []
    position = 0
    now = START_MS

    def commit(event: Event) -> None:
        nonlocal position, s_state, r_state
        position += 1
        fact = record(event, position)
        result.facts.append(fact)
        if isinstance(event, TradeTicked):
            venue.last[event.symbol] = event.price
        if isinstance(event, OrderRequested):
            venue.open[event.client_order_id] = event
            venue.remaining[event.client_order_id] = event.contracts
        # Risk's outputs are committed before the signal engine's, so each risk step's outputs
        # directly follow its input in the log (as when the risk service appends atomically).
        if not risk.owns(event):
            r_state, out = risk.step(r_state, fact)
            result.steps.append((fact, out))
            queue.extend(out)
        if with_signal_machine and not signal.owns(event):
            s_state, out = signal.step(s_state, fact)
            queue.extend(out)

    for item in items:
        if isinstance(item, Settle):
            pending = venue.settle(item.mode, now)
        else:
            now = max(now, item.at_ms)
            pending = [item]
        for event in pending:
            commit(event)
            while queue:
                commit(queue.pop(0))
    result.risk_state = r_state
    result.signal_state = s_state
    return result
