"""The risk manager's invariants as Hypothesis properties over arbitrary closed-loop runs.

An independent observer (:class:`Observer`) walks the committed log of a run — inputs and the
machine's own outputs, in order — folding the portfolio itself and tracking halts, breakers and
pending orders only from recorded events, then checks each invariant at each decision.
"""

from __future__ import annotations

import copy
from decimal import Decimal

from hypothesis import HealthCheck, given, settings

from aggregates.config import TradingConfig, parse_config
from aggregates.events import (
    AlertRaised,
    CircuitBreakerCleared,
    CircuitBreakerTripped,
    ClockTicked,
    ConfigActivated,
    Event,
    FundingSettled,
    OperatorCommandIssued,
    OrderCancelled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderRequested,
    RiskVerdictIssued,
    SignalGenerated,
    TradeTicked,
    encode,
)
from aggregates.machine import run
from aggregates.portfolio import DAY_MS, EMPTY, evolve
from aggregates.risk import RiskMachine
from tests.unit.strategies import Run, drive, market_sequences

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOLERANCE = Decimal("1e-9")
ENTRY_LAYERS = ("daily_drawdown", "trading_state", "abnormal_market", "data_silence", "loss_streak")
_DAY_FACTS = (
    TradeTicked,
    ClockTicked,
    SignalGenerated,
    OrderFilled,
    OrderPartiallyFilled,
    FundingSettled,
    OperatorCommandIssued,
    OrderRejected,
    OrderCancelled,
)


class Observer:
    """What an auditor reconstructs from the log alone."""

    def __init__(self) -> None:
        self.config: TradingConfig | None = None
        self.portfolio = EMPTY
        self.pending: dict[str, OrderRequested] = {}
        self.remaining: dict[str, Decimal] = {}
        self.operator = "ACTIVE"
        self.drawdown_day: int | None = None
        self.abnormal: set[str] = set()
        self.silent = False
        self.streak_until = -1
        self.now = 0
        self.critical_alerts = 0
        #: Symbols whose exit the venue refused and that are backing off (until the next exit).
        self.refused: set[str] = set()

    def covered(self, symbol: str) -> Decimal:
        return sum(
            (
                self.remaining[o]
                for o, r in self.pending.items()
                if r.reduce_only and r.symbol == symbol
            ),
            Decimal(0),
        )

    def blockers(self, symbol: str) -> list[str]:
        """Entry-blocking conditions in force, in binding order."""
        found = []
        if self.drawdown_day is not None:
            found.append("daily_drawdown")
        if self.operator != "ACTIVE":
            found.append("trading_state")
        if symbol in self.abnormal:
            found.append("abnormal_market")
        if self.silent:
            found.append("data_silence")
        if self.now < self.streak_until:
            found.append("loss_streak")
        return found

    def observe(self, event: Event) -> None:
        self.now = max(self.now, event.at_ms)
        if (
            self.drawdown_day is not None
            and isinstance(event, _DAY_FACTS)
            and event.at_ms // DAY_MS > self.drawdown_day
        ):
            self.drawdown_day = None
        self.portfolio = evolve(self.portfolio, event)
        if isinstance(event, ConfigActivated):
            self.config = parse_config(event.parameters)
        elif isinstance(event, OrderRequested):
            if event.reduce_only:
                self.refused.discard(event.symbol)
            self.pending[event.client_order_id] = event
            self.remaining[event.client_order_id] = event.contracts
        elif isinstance(event, OrderPartiallyFilled) and event.client_order_id in self.pending:
            self.remaining[event.client_order_id] = event.remaining_contracts
        elif isinstance(event, OrderFilled | OrderRejected | OrderCancelled):
            self.pending.pop(event.client_order_id, None)
        elif isinstance(event, OperatorCommandIssued):
            if event.command == "reset_drawdown":
                self.drawdown_day = None
            else:
                self.operator = {"halt": "HALTED", "resume": "ACTIVE"}.get(
                    event.command, "REDUCING"
                )
        elif isinstance(event, CircuitBreakerTripped):
            if event.layer == "data_silence":
                self.silent = True
            else:
                self.abnormal.add(event.symbol or "")
        elif isinstance(event, CircuitBreakerCleared):
            if event.layer == "data_silence":
                self.silent = False
            else:
                self.abnormal.discard(event.symbol or "")
        elif isinstance(event, AlertRaised) and event.code == "loss_streak_pause":
            assert self.config is not None
            self.streak_until = event.at_ms + self.config.loss_streak_pause_minutes * 60_000
        elif isinstance(event, AlertRaised) and event.code == "exit_refused":
            self.refused.add(event.symbol or "")
        elif isinstance(event, AlertRaised) and event.code == "daily_drawdown_breached":
            self.critical_alerts += 1
            self.drawdown_day = event.at_ms // DAY_MS


def walk(result: Run, check_step_end, check_event) -> Observer:  # type: ignore[no-untyped-def]
    """Feed the observer every fact; call ``check_event`` before each, ``check_step_end`` after
    the last output of each risk step (or after the input itself when the step decided nothing)."""
    last_of_step: dict[int, tuple[Event, ...]] = {}
    for fact, outputs in result.steps:
        last_of_step[id(outputs[-1] if outputs else fact.event)] = outputs
    observer = Observer()
    for fact in result.facts:
        check_event(observer, fact.event)
        observer.observe(fact.event)
        outputs = last_of_step.get(id(fact.event))
        if outputs is not None:
            check_step_end(observer, outputs)
    return observer


def _nothing(*_: object) -> None:
    return None


def _is_entry_approval(event: Event) -> bool:
    return (
        isinstance(event, RiskVerdictIssued)
        and event.intent == "entry"
        and event.decision in ("approved", "trimmed")
    )


@PROPERTY
@given(market_sequences())
def test_entry_when_halted_or_paused_then_never_approved(items: list) -> None:
    def check(observer: Observer, event: Event) -> None:
        if _is_entry_approval(event):
            assert observer.blockers(event.symbol) == [], (event, observer.blockers(event.symbol))

    walk(drive(items), _nothing, check)


@PROPERTY
@given(market_sequences())
def test_entry_when_several_layers_apply_then_earliest_in_binding_order_decides(
    items: list,
) -> None:
    def check(observer: Observer, event: Event) -> None:
        if isinstance(event, RiskVerdictIssued) and event.intent == "entry":
            blockers = observer.blockers(event.symbol or "")
            if blockers:
                assert event.decision == "rejected"
                assert event.layer == blockers[0], (event.layer, blockers)
            else:
                assert event.layer not in ENTRY_LAYERS, (event.layer, event.reason)

    walk(drive(items), _nothing, check)


@PROPERTY
@given(market_sequences())
def test_entry_when_approved_then_exposure_and_position_within_limits(items: list) -> None:
    def check(observer: Observer, event: Event) -> None:
        if not _is_entry_approval(event):
            return
        config = observer.config
        assert config is not None and event.symbol is not None
        spec = config.contract_spec(event.symbol)
        assert spec is not None
        price = Decimal(event.numbers["mark_price"])
        unit = price * spec.contract_size
        portfolio = observer.portfolio
        equity = portfolio.equity
        pending_entries = [
            (r, observer.remaining[o]) for o, r in observer.pending.items() if not r.reduce_only
        ]
        gross = portfolio.gross_notional + sum(
            (left * r.reference_price * spec_size(config, r.symbol) for r, left in pending_entries),
            Decimal(0),
        )
        added = event.approved_contracts * unit
        assert gross + added <= equity * config.max_exposure_pct / 100 + TOLERANCE
        held = portfolio.contracts(event.symbol)
        same = max(held, Decimal(0)) if event.side == "buy" else max(-held, Decimal(0))
        same += sum(
            (
                left
                for r, left in pending_entries
                if r.symbol == event.symbol and r.side == event.side
            ),
            Decimal(0),
        )
        assert same * unit + added <= equity * config.max_position_pct / 100 + TOLERANCE
        assert added <= config.max_order_notional + TOLERANCE
        assert event.approved_contracts >= spec.min_contracts
        assert event.approved_contracts % spec.contracts_step == 0

    walk(drive(items), _nothing, check)


def spec_size(config: TradingConfig, symbol: str) -> Decimal:
    spec = config.contract_spec(symbol)
    assert spec is not None
    return spec.contract_size


@PROPERTY
@given(market_sequences())
def test_drawdown_when_breached_then_one_critical_alert_and_every_position_closing(
    items: list,
) -> None:
    def check_event(observer: Observer, event: Event) -> None:
        if isinstance(event, AlertRaised) and event.code == "daily_drawdown_breached":
            assert observer.drawdown_day is None, "a second CRITICAL alert for the same breach"

    def check_step(observer: Observer, outputs: tuple[Event, ...]) -> None:
        if observer.drawdown_day is None:
            return
        for symbol, position in observer.portfolio.positions.items():
            if position.contracts != 0 and symbol not in observer.refused:
                assert observer.covered(symbol) >= abs(position.contracts), symbol

    walk(drive(items), check_step, check_event)


@PROPERTY
@given(market_sequences())
def test_position_when_loss_reaches_stop_loss_then_exit_order_pending(items: list) -> None:
    def check_step(observer: Observer, outputs: tuple[Event, ...]) -> None:
        config = observer.config
        if config is None:
            return
        for symbol, p in observer.portfolio.positions.items():
            if p.contracts == 0:
                continue
            loss = (p.average_entry - p.mark) if p.contracts > 0 else (p.mark - p.average_entry)
            if (
                loss * 100 >= config.stop_loss_pct * p.average_entry
                and symbol not in observer.refused
            ):
                assert observer.covered(symbol) >= abs(p.contracts), (symbol, loss)

    walk(drive(items), check_step, _nothing)


@PROPERTY
@given(market_sequences())
def test_reduce_only_exit_when_requested_then_never_increases_the_position(items: list) -> None:
    def check(observer: Observer, event: Event) -> None:
        if isinstance(event, OrderRequested) and event.reduce_only:
            held = observer.portfolio.contracts(event.symbol)
            assert held != 0
            assert event.side == ("sell" if held > 0 else "buy")
            assert observer.covered(event.symbol) + event.contracts <= abs(held)

    walk(drive(items), _nothing, check)


@PROPERTY
@given(market_sequences())
def test_decisions_when_run_twice_then_byte_identical(items: list) -> None:
    first = [encode(e) for e in drive(items).outputs()]
    second = [encode(e) for e in drive(items).outputs()]
    assert first == second


@PROPERTY
@given(market_sequences(), market_sequences(with_config=False))
def test_risk_fold_when_resumed_from_a_snapshot_then_equals_one_run(head: list, tail: list) -> None:
    result = drive(head + tail)
    facts = result.facts
    cut = len(facts) // 2
    machine = RiskMachine()
    state, first = run(machine, facts[:cut])
    _, second = run(machine, facts[cut:], copy.deepcopy(state))
    replayed = [encode(e) for _, out in first + second for e in out]
    assert replayed == [encode(e) for e in result.outputs()]


@PROPERTY
@given(market_sequences())
def test_orders_when_decided_then_each_follows_its_approving_verdict(items: list) -> None:
    for _, outputs in drive(items).steps:
        for index, event in enumerate(outputs):
            if isinstance(event, OrderRequested):
                verdict = outputs[index - 1]
                assert isinstance(verdict, RiskVerdictIssued)
                assert verdict.decision != "rejected"
                assert verdict.symbol == event.symbol
                assert verdict.approved_contracts == event.contracts
                assert len(event.client_order_id) == 32
