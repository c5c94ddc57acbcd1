"""The reference model's state and bookkeeping (see ``tests/model/reference.py`` for the rules).

What the model keeps, as plain dicts and lists, and what every rule uses: the configuration's
numbers, netting accounting, and how an output is said. ``said`` is what the oracle compares.
"""

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from aggregates.events import (
    AlertRaised,
    CircuitBreakerCleared,
    CircuitBreakerTripped,
    Event,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRequested,
    RiskVerdictIssued,
    StopLossTriggered,
    TradingStateChanged,
)

D = Decimal
DAY = 86_400_000
MINUTE = 60_000
MAX_EXIT_ORDERS = 20
ZERO = Decimal(0)

#: What the oracle compares of each output: the decision, never ids or the ``numbers`` detail.
Said = tuple[object, ...]


def said(event: Event) -> Said:
    """The comparable content of a risk output."""
    at = event.at_ms
    if isinstance(event, RiskVerdictIssued):
        return (
            "verdict",
            at,
            event.symbol,
            event.decision,
            event.layer,
            event.reason,
            event.intent,
            event.side,
            event.requested_contracts,
            event.approved_contracts,
        )
    if isinstance(event, OrderRequested):
        return (
            "order",
            at,
            event.symbol,
            event.side,
            event.contracts,
            event.intent,
            event.reduce_only,
        )
    if isinstance(event, TradingStateChanged):
        return ("state", at, event.previous, event.state, event.changed_by, event.reason)
    if isinstance(event, AlertRaised):
        return ("alert", at, event.severity, event.code, event.symbol)
    if isinstance(event, CircuitBreakerTripped):
        return ("tripped", at, event.layer, event.symbol, event.reason)
    if isinstance(event, CircuitBreakerCleared):
        return ("cleared", at, event.layer, event.symbol, event.reason)
    if isinstance(event, StopLossTriggered):
        return ("stop", at, event.symbol, event.contracts)
    return ("other", at, type(event).__name__)


def floor_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def ceil_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


@dataclass
class Spec:
    size: Decimal
    low: Decimal
    high: Decimal
    step: Decimal


@dataclass
class Pos:
    contracts: Decimal
    entry: Decimal
    mark: Decimal
    size: Decimal


@dataclass
class Order:
    symbol: str
    side: str
    left: Decimal
    reduce_only: bool
    price: Decimal
    sent_on: int = 0  # the input it was sent on (orders sent together share it)
    alert_said: bool = False  # an order sent with it already raised exit_refused


@dataclass
class ModelState:
    """The risk manager's state over plain data, with the bookkeeping the rules share."""

    cfg: dict[str, str] | None = None
    cash: Decimal = ZERO
    positions: dict[str, Pos] = field(default_factory=dict)
    exchange_specs: dict[str, Spec] = field(default_factory=dict)
    last_price: dict[str, Decimal] = field(default_factory=dict)
    now: int = 0
    day: int = -1
    peak: Decimal = ZERO
    halted_drawdown: bool = False
    operator: str = "ACTIVE"
    last_market: int | None = None
    silent: bool = False
    trades: dict[str, list[tuple[int, Decimal]]] = field(default_factory=dict)
    paused_until: dict[str, int] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    order_times: list[int] = field(default_factory=list)
    cooldown: dict[str, int] = field(default_factory=dict)
    stops: list[int] = field(default_factory=list)
    streak_until: int = -1
    exit_for: dict[str, tuple[str, str, str, str, bool]] = field(default_factory=dict)
    wait: dict[str, tuple[int, int]] = field(default_factory=dict)  # symbol -> (until, delay)
    out: list[Event] = field(default_factory=list)
    new_orders: list[str] = field(default_factory=list)
    inputs: int = 0
    exited_now: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ configuration
    def num(self, name: str) -> Decimal:
        assert self.cfg is not None
        return D(self.cfg[name])

    def ms(self, name: str, unit: int) -> int:
        return int(self.num(name)) * unit

    def spec(self, symbol: str) -> Spec | None:
        if symbol in self.exchange_specs:
            return self.exchange_specs[symbol]
        assert self.cfg is not None
        for entry in filter(None, self.cfg["CONTRACT_SPECS"].split(",")):
            name, size, low, high, step, _price = entry.split(":")
            if name == symbol:
                return Spec(D(size), D(low), D(high), D(step))
        return None

    # ------------------------------------------------------------------ accounting
    def equity(self) -> Decimal:
        unrealised = sum(
            (p.contracts * p.size * (p.mark - p.entry) for p in self.positions.values()), D(0)
        )
        return self.cash + unrealised

    def held(self, symbol: str) -> Decimal:
        p = self.positions.get(symbol)
        return p.contracts if p else D(0)

    def apply_fill(self, fill: OrderFilled | OrderPartiallyFilled) -> None:
        p = self.positions.get(fill.symbol)
        if p is None:
            spec = self.spec(fill.symbol)
            assert spec is not None
            p = self.positions[fill.symbol] = Pos(D(0), D(0), fill.price, spec.size)
        delta = fill.contracts if fill.side == "buy" else -fill.contracts
        after = p.contracts + delta
        if p.contracts == 0 or (p.contracts > 0) == (delta > 0):
            p.entry = (abs(p.contracts) * p.entry + fill.contracts * fill.price) / abs(after)
        else:
            closed = min(abs(delta), abs(p.contracts))
            sign = 1 if p.contracts > 0 else -1
            self.cash += closed * p.size * (fill.price - p.entry) * sign
            if after == 0:
                p.entry = D(0)
            elif (after > 0) != (p.contracts > 0):
                p.entry = fill.price
        p.contracts = after
        p.mark = fill.price
        self.cash -= fill.fee

    # ------------------------------------------------------------------ outputs
    def state_name(self) -> str:
        return "HALTED" if self.halted_drawdown else self.operator

    def say(self, event: Event) -> None:
        self.out.append(event)

    def changed(self, before: str, by: str, reason: str) -> None:
        if self.state_name() != before:
            self.say(
                TradingStateChanged(
                    at_ms=self.now,
                    previous=before,
                    state=self.state_name(),
                    changed_by=by,
                    reason=reason,
                )
            )  # type: ignore[arg-type]

    def order(
        self,
        symbol: str,
        side: str,
        contracts: Decimal,
        intent: str,
        reduce_only: bool,
        price: Decimal,
    ) -> None:
        self.say(
            OrderRequested(
                at_ms=self.now,
                client_order_id="model",
                symbol=symbol,
                side=side,
                contracts=contracts,
                order_type="market",  # type: ignore[arg-type]
                intent=intent,
                reduce_only=reduce_only,
                reference_price=price,
            )
        )  # type: ignore[arg-type]
        key = f"model-{len(self.new_orders)}"  # re-keyed by adopt() once the real ids are known
        self.new_orders.append(key)
        self.orders[key] = Order(symbol, side, contracts, reduce_only, price, self.inputs)
        self.order_times.append(self.now)
