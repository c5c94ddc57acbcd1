"""The momentum signal engine: trade ticks in, a direction per symbol out.

The rule (deterministic, documented in ``.env.example``):

* Window: per symbol, the trades with ``at_ms`` in ``(t − LOOKBACK_MINUTES, t]`` where ``t`` is
  the time of the latest trade. Every one of them precedes the decision in the log, so there is
  no look-ahead. A symbol decides nothing until its history covers a whole look-back (warm-up).
* Momentum = (last price − first price in the window) / first price, in percent.
* Activity filter: fewer than ``SIGNAL_MIN_TRADES`` trades or ``SIGNAL_MIN_CONTRACTS`` contracts in
  the window → flat (thin markets give no signal).
* Direction: long if momentum ≥ ``SIGNAL_THRESHOLD_PCT``, short if ≤ −threshold, else flat.
  Strength = min(1, |momentum| / (2 × threshold)), rounded to 4 places; 0 when flat.
* Output: a ``SignalGenerated`` only when a symbol's direction changes (from an implicit initial
  flat), which keeps the log compact; its ``reference_price`` is the last trade price.

The window is a deque with a running contract sum: O(1) amortised per tick.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from aggregates.config import parse_config
from aggregates.envelope import RecordedEvent
from aggregates.events import ConfigActivated, Direction, Event, SignalGenerated, TradeTicked

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
_STRENGTH_PLACES = Decimal("0.0001")
_MOMENTUM_PLACES = Decimal("0.000001")


@dataclass(slots=True)
class SymbolWindow:
    """One symbol's trades inside the look-back, oldest first."""

    first_seen_ms: int
    trades: deque[tuple[int, Decimal, Decimal]] = field(default_factory=deque)
    contracts: Decimal = ZERO
    direction: Direction = "flat"


@dataclass(slots=True)
class SignalParameters:
    """The configuration values the rule needs, pre-converted for the hot path."""

    lookback_ms: int
    threshold_pct: Decimal
    min_trades: int
    min_contracts: Decimal


@dataclass(slots=True)
class SignalState:
    """Per-symbol windows; ``params`` is None until a ``ConfigActivated`` arrives."""

    params: SignalParameters | None = None
    windows: dict[str, SymbolWindow] = field(default_factory=dict)


def _step_trade(state: SignalState, fact: RecordedEvent) -> tuple[SignalState, tuple[Event, ...]]:
    """``SignalMachine.step`` for a ``TradeTicked``: the bulk of the log, written for speed."""
    params = state.params
    if params is None:
        return state, ()
    tick: TradeTicked = fact.event  # type: ignore[assignment]
    now = tick.at_ms
    price = tick.price
    size = tick.contracts
    window = state.windows.get(tick.symbol)
    if window is None:
        window = state.windows[tick.symbol] = SymbolWindow(first_seen_ms=now)
    trades = window.trades
    trades.append((now, price, size))
    contracts = window.contracts + size
    horizon = now - params.lookback_ms
    while trades[0][0] <= horizon:
        contracts -= trades.popleft()[2]
    window.contracts = contracts
    if window.first_seen_ms > horizon:
        return state, ()  # warm-up: the history does not yet cover a whole look-back
    first = trades[0][1]
    direction: Direction
    if len(trades) < params.min_trades or contracts < params.min_contracts:
        direction = "flat"
    else:  # (last - first) * 100 against threshold * first: no division per tick
        moved = (price - first) * HUNDRED
        bar = params.threshold_pct * first
        direction = "long" if moved >= bar else "short" if moved <= -bar else "flat"
    if direction == window.direction:
        return state, ()
    window.direction = direction
    momentum = (price - first) * HUNDRED / first
    if direction == "flat":
        strength = ZERO
    else:
        strength = min(ONE, abs(momentum) / (2 * params.threshold_pct)).quantize(_STRENGTH_PLACES)
    signal = SignalGenerated(
        at_ms=now,
        symbol=tick.symbol,
        direction=direction,
        strength=strength,
        momentum=momentum.quantize(_MOMENTUM_PLACES),
        reference_price=tick.price,
        window_start_ms=trades[0][0],
        trades_in_window=len(trades),
        contracts_in_window=contracts,
    )
    return state, (signal,)


class SignalMachine:
    """Machine ``signal``: owns ``SignalGenerated``."""

    name = "signal"
    #: The only event types ``step`` reacts to; on any other it returns its state and no output,
    #: so a fold may skip those (``tests/unit/aggregates/test_machine_consumes.py`` pins this).
    consumes = frozenset({TradeTicked, ConfigActivated})
    #: ``step`` for its hot type without the dispatch (see :func:`aggregates.machine.step_for`).
    steps = MappingProxyType({TradeTicked: _step_trade})

    def initial(self) -> SignalState:
        return SignalState()

    def owns(self, event: Event) -> bool:
        return type(event) is SignalGenerated

    def step(
        self, state: SignalState, fact: RecordedEvent
    ) -> tuple[SignalState, tuple[Event, ...]]:
        match fact.event:
            case TradeTicked():
                return _step_trade(state, fact)
            case ConfigActivated() as activated:
                config = parse_config(activated.parameters)
                state.params = SignalParameters(
                    lookback_ms=config.lookback_minutes * 60_000,
                    threshold_pct=config.signal_threshold_pct,
                    min_trades=config.signal_min_trades,
                    min_contracts=config.signal_min_contracts,
                )
        return state, ()
