"""The risk manager's state: the portfolio plus what the protection layers remember.

State is owned by the machine's fold (see :mod:`aggregates.machine`): ``step`` updates it in
place and returns it. Everything here is a fold of the log prefix, nothing else.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from aggregates.config import ContractSpec, TradingConfig
from aggregates.events import OrderIntent, RiskLayer, Side, TradingState, VerdictDecision
from aggregates.portfolio import EMPTY, Portfolio

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
MINUTE_MS = 60_000
SECOND_MS = 1_000

#: The order in which entry checks run; the first one that refuses decides the verdict.
#: The six design layers keep their binding order; the operator's trading state sits with the
#: halts, the extra guards (loss streak, cooldown, order rate) before sizing, pre-trade last.
ENTRY_CHECK_ORDER: tuple[str, ...] = (
    "daily_drawdown",
    "trading_state",
    "abnormal_market",
    "data_silence",
    "loss_streak",
    "cooldown",
    "order_rate",
    "exposure_limit",
    "position_size",
    "pre_trade",
)


@dataclass(frozen=True, slots=True)
class Limits:
    """The configuration, converted once per ``ConfigActivated`` for the hot path."""

    config: TradingConfig
    max_position_fraction: Decimal
    max_exposure_fraction: Decimal
    max_drawdown_pct: Decimal
    stop_loss_pct: Decimal
    abnormal_move_pct: Decimal
    abnormal_window_ms: int
    abnormal_pause_ms: int
    silence_ms: int
    cooldown_ms: int
    streak_count: int
    streak_window_ms: int
    streak_pause_ms: int
    max_orders_per_minute: int
    max_order_notional: Decimal

    @classmethod
    def of(cls, config: TradingConfig) -> Limits:
        return cls(
            config=config,
            max_position_fraction=config.max_position_pct / HUNDRED,
            max_exposure_fraction=config.max_exposure_pct / HUNDRED,
            max_drawdown_pct=config.max_daily_drawdown_pct,
            stop_loss_pct=config.stop_loss_pct,
            abnormal_move_pct=config.abnormal_move_pct,
            abnormal_window_ms=config.abnormal_window_seconds * SECOND_MS,
            abnormal_pause_ms=config.abnormal_pause_seconds * SECOND_MS,
            silence_ms=config.data_silence_seconds * SECOND_MS,
            cooldown_ms=config.exit_cooldown_seconds * SECOND_MS,
            streak_count=config.loss_streak_count,
            streak_window_ms=config.loss_streak_window_minutes * MINUTE_MS,
            streak_pause_ms=config.loss_streak_pause_minutes * MINUTE_MS,
            max_orders_per_minute=config.max_orders_per_minute,
            max_order_notional=config.max_order_notional,
        )


@dataclass(slots=True)
class PendingOrder:
    """An order requested and not yet finished; ``remaining`` shrinks with partial fills.
    ``batch`` is the log position of the input it was sent on (orders sent together share it);
    ``refusal_said`` marks an exit whose batch already raised the ``exit_refused`` alert."""

    symbol: str
    side: Side
    remaining: Decimal
    reduce_only: bool
    intent: OrderIntent
    reference_price: Decimal
    batch: int = 0
    refusal_said: bool = False


@dataclass(slots=True)
class ExitBackoff:
    """A symbol whose protective exit the venue refused: no new exit before ``until_ms``; the
    wait doubles with each refusal (1 s up to 5 min) and ends with a fill or a flat position."""

    until_ms: int
    delay_ms: int
    code: str


@dataclass(frozen=True, slots=True)
class ExitGoal:
    """What the exit in progress for a symbol is for, so that later inputs (fills, a back-off
    that elapsed) can finish it with the same verdict fields."""

    intent: OrderIntent
    layer: RiskLayer
    reason: str
    decision: VerdictDecision
    cooldown: bool


@dataclass(slots=True)
class MoveWindow:
    """Monotonic deques of (time, price) giving the window's low and high in O(1) amortised."""

    lows: deque[tuple[int, Decimal]] = field(default_factory=deque)
    highs: deque[tuple[int, Decimal]] = field(default_factory=deque)

    def push(self, now: int, price: Decimal, window_ms: int) -> tuple[Decimal, Decimal]:
        """Add a trade, forget those older than the window, return (low, high)."""
        lows, highs = self.lows, self.highs
        point = (now, price)
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append(point)
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append(point)
        horizon = now - window_ms
        while lows[0][0] < horizon:
            lows.popleft()
        while highs[0][0] < horizon:
            highs.popleft()
        return lows[0][1], highs[0][1]


@dataclass(slots=True)
class RiskState:
    """Everything the risk manager has folded; ``limits`` is None until configured."""

    limits: Limits | None = None
    portfolio: Portfolio = EMPTY
    exchange_specs: dict[str, ContractSpec] = field(default_factory=dict)
    last_price: dict[str, Decimal] = field(default_factory=dict)
    now_ms: int = 0
    day: int = -1
    last_market_ms: int | None = None
    pending: dict[str, PendingOrder] = field(default_factory=dict)
    operator_state: TradingState = "ACTIVE"
    drawdown_halted: bool = False
    peak_equity: Decimal = ZERO
    moves: dict[str, MoveWindow] = field(default_factory=dict)
    abnormal_until: dict[str, int] = field(default_factory=dict)
    silence_tripped: bool = False
    order_times: deque[int] = field(default_factory=deque)
    cooldown_until: dict[str, int] = field(default_factory=dict)
    stop_times: deque[int] = field(default_factory=deque)
    streak_until: int = -1
    exit_goal: dict[str, ExitGoal] = field(default_factory=dict)
    exit_backoff: dict[str, ExitBackoff] = field(default_factory=dict)

    @property
    def trading_state(self) -> TradingState:
        """The published state: a drawdown halt overrides the operator's choice."""
        return "HALTED" if self.drawdown_halted else self.operator_state

    def spec(self, symbol: str) -> ContractSpec | None:
        """Exchange specification first, configuration fallback second."""
        spec = self.exchange_specs.get(symbol)
        if spec is None and self.limits is not None:
            spec = self.limits.config.contract_spec(symbol)
        return spec

    def covered_exit(self, symbol: str) -> Decimal:
        """Contracts already on their way out of ``symbol`` through pending reduce-only orders."""
        covered = ZERO
        for order in self.pending.values():
            if order.reduce_only and order.symbol == symbol:
                covered += order.remaining
        return covered

    def pending_entry_notional(self) -> Decimal:
        """Notional of entries not yet filled, at their reference prices (counted as exposure)."""
        total = ZERO
        for order in self.pending.values():
            if not order.reduce_only:
                spec = self.spec(order.symbol)
                size = spec.contract_size if spec is not None else ZERO
                total += order.remaining * size * order.reference_price
        return total

    def pending_entry_contracts(self, symbol: str, side: str) -> Decimal:
        total = ZERO
        for order in self.pending.values():
            if not order.reduce_only and order.symbol == symbol and order.side == side:
                total += order.remaining
        return total

    def gross_exposure(self) -> Decimal:
        """Open positions at mark plus pending entries: what the exposure limit is checked on."""
        return self.portfolio.gross_notional + self.pending_entry_notional()


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` not above ``value`` (quantity precision)."""
    whole = (value / step).to_integral_value(rounding=ROUND_FLOOR).quantize(ONE)
    return whole * step


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The smallest multiple of ``step`` not below ``value``."""
    whole = (value / step).to_integral_value(rounding=ROUND_CEILING).quantize(ONE)
    return whole * step


def numbers(**values: object) -> dict[str, str]:
    """Verdict numbers as strings (events never carry floats)."""
    return {key: str(value) for key, value in values.items()}
