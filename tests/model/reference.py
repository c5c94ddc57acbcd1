"""A reference model of the risk manager, written from the documented rules, as a test oracle.

Deliberately simple and slow: it recomputes from plain dicts and lists what the real machine
keeps incrementally, and it imports nothing from ``aggregates/`` but the event types, so a bug
in the real code is not copied here. The rules, from README.md, .env.example and
docs/ARCHITECTURE.md (and issue 16 for exits and time):

* Time: the clock is the latest time of any input; every decision carries it. A new UTC day
  (of that clock) restarts the day's peak equity from the equity *before* the input is applied,
  and ends a drawdown halt.
* Accounting: netting, one position per symbol; equity = initial + realised − fees + funding +
  unrealised at the last trade price.
* Entry checks in binding order, the first refusal decides: daily drawdown, trading state,
  abnormal market, data silence, loss streak, cooldown, order rate; then sizing
  (MAX_POSITION_PCT of equity × strength at the last price, floored to the step), trimmed by
  exposure, position size, per-order notional, the contract maximum; refused below the minimum.
* Protection: drawdown from the day's peak ≥ limit → CRITICAL alert, HALTED, flatten; abnormal
  move ≥ limit within the window → pause the symbol; silence > limit on a clock tick → pause
  all until the next trade; loss ≥ STOP_LOSS_PCT of entry → stop-loss exit; N stop-losses within
  the window → entries paused.
* Exits are reduce-only for what is not already leaving. The part on the step goes out in the
  fewest orders of at most the contract maximum, sizes spread evenly on the step (largest
  first), unless that leaves one under the minimum: then full orders and the remainder last;
  a part off the step is a last order of its own. At most one exit verdict and 20 orders per
  symbol per input, the rest as fills come back. A refused exit: CRITICAL ``exit_refused`` and
  no new exit for 1 s, doubling per refusal up to 5 min; retried by the first input after the
  wait; the other orders sent on the same input as the one that raised the alert say nothing
  when refused while that back-off is kept (a fill of an exit or a flat position drops it).
* An exit is in progress from its verdict until the position is flat or reversed; meanwhile
  no stop-loss fires for the symbol and the drawdown halt's follow-up flatten leaves it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from aggregates.events import (
    AlertRaised,
    CircuitBreakerCleared,
    CircuitBreakerTripped,
    ClockTicked,
    ConfigActivated,
    ContractSpecified,
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
    StopLossTriggered,
    TradeTicked,
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
class Model:
    """The risk manager's rules over plain data; :meth:`step` returns what it would say."""

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

    # ------------------------------------------------------------------ the step
    def step(self, event: Event) -> list[Event]:
        """Fold one input; return what the risk manager must say about it."""
        self.out, self.new_orders, self.exited_now = [], [], []
        self.inputs += 1
        self.now = max(self.now, event.at_ms)
        if isinstance(event, ConfigActivated):
            first = self.cfg is None
            self.cfg = dict(event.parameters)
            if first:
                self.cash += self.num("INITIAL_EQUITY_USDT")
                self.day = self.now // DAY
                self.peak = self.equity()
                if self.last_market is None:
                    self.last_market = event.at_ms
            return []
        if isinstance(event, ContractSpecified):
            self.exchange_specs[event.symbol] = Spec(
                event.contract_size, event.min_contracts, event.max_contracts, event.contracts_step
            )
            return []
        if self.cfg is None:
            self.fold_only(event)
            return []
        if self.now // DAY > self.day:
            self.day = self.now // DAY
            self.peak = self.equity()
            if self.halted_drawdown:
                before = self.state_name()
                self.halted_drawdown = False
                self.changed(before, "risk", "new_utc_day")
        handler = {
            TradeTicked: self.on_trade,
            ClockTicked: self.on_clock,
            SignalGenerated: self.on_signal,
            OrderFilled: self.on_fill,
            OrderPartiallyFilled: self.on_fill,
            OrderRejected: self.on_refused,
            OrderCancelled: self.on_refused,
            FundingSettled: self.on_funding,
            OperatorCommandIssued: self.on_command,
        }.get(type(event))
        if handler is not None:
            handler(event)  # type: ignore[operator]
        return self.out

    def fold_only(self, event: Event) -> None:
        if isinstance(event, TradeTicked):
            self.last_price[event.symbol] = event.price
            self.last_market = event.at_ms
            p = self.positions.get(event.symbol)
            if p and p.contracts:
                p.mark = event.price
        elif isinstance(event, OrderFilled | OrderPartiallyFilled):
            self.apply_fill(event)
        elif isinstance(event, FundingSettled):
            self.cash += event.amount

    # ------------------------------------------------------------------ handlers
    def on_trade(self, t: TradeTicked) -> None:
        p = self.positions.get(t.symbol)
        moved = p is not None and p.contracts != 0 and p.mark != t.price
        self.fold_only(t)
        if self.silent:
            self.silent = False
            self.say(
                CircuitBreakerCleared(
                    at_ms=self.now, layer="data_silence", symbol=None, reason="market_data_resumed"
                )
            )
        self.expire(t.symbol)
        window = self.ms("ABNORMAL_WINDOW_SECONDS", 1000)
        seen = [(at, px) for at, px in self.trades.get(t.symbol, []) if at >= self.now - window]
        seen.append((self.now, t.price))
        self.trades[t.symbol] = seen
        low = min(px for _, px in seen)
        high = max(px for _, px in seen)
        bar = self.num("ABNORMAL_MOVE_PCT")
        if t.symbol not in self.paused_until and (
            (t.price - low) * 100 >= bar * low or (high - t.price) * 100 >= bar * high
        ):
            until = self.now + self.ms("ABNORMAL_PAUSE_SECONDS", 1000)
            self.paused_until[t.symbol] = until
            self.say(
                CircuitBreakerTripped(
                    at_ms=self.now,
                    layer="abnormal_market",
                    symbol=t.symbol,
                    reason="abnormal_price_move",
                )
            )
            self.say(
                AlertRaised(
                    at_ms=self.now,
                    severity="WARNING",
                    code="abnormal_market",
                    message="-",
                    symbol=t.symbol,
                )
            )
        if moved:
            self.drawdown()
            self.stop(t.symbol)
        self.retry()

    def on_clock(self, _c: ClockTicked) -> None:
        self.expire(None)
        last = self.last_market
        if (
            not self.silent
            and last is not None
            and self.now - last > self.ms("DATA_SILENCE_SECONDS", 1000)
        ):
            self.silent = True
            self.say(
                CircuitBreakerTripped(
                    at_ms=self.now, layer="data_silence", symbol=None, reason="no_market_data"
                )
            )
            self.say(
                AlertRaised(at_ms=self.now, severity="WARNING", code="data_silence", message="-")
            )
        self.drawdown()
        self.retry()

    def on_signal(self, s: SignalGenerated) -> None:
        self.expire(s.symbol)
        held = self.held(s.symbol)
        if s.direction == "flat":
            if held:
                self.exit(s.symbol, "exit", "none", "signal_flat", "approved", True)
            return
        if held and (held > 0) != (s.direction == "long"):
            self.exit(s.symbol, "exit", "none", "signal_reversal", "approved", False)
        self.entry(s)

    def on_fill(self, f: OrderFilled | OrderPartiallyFilled) -> None:
        before = self.held(f.symbol)
        self.apply_fill(f)
        mine = self.orders.get(f.client_order_id)
        if mine is not None:
            if isinstance(f, OrderFilled):
                del self.orders[f.client_order_id]
            else:
                mine.left = f.remaining_contracts
            if mine.reduce_only:
                self.wait.pop(f.symbol, None)
        after = self.held(f.symbol)
        if after == 0 or (before > 0 > after) or (before < 0 < after):
            self.exit_for.pop(f.symbol, None)
            self.wait.pop(f.symbol, None)
        if after == 0 and before != 0:
            self.cooldown[f.symbol] = self.now + self.ms("EXIT_COOLDOWN_SECONDS", 1000)
        self.after_equity_change(f.symbol)
        if self.held(f.symbol) != 0 and f.symbol in self.exit_for:
            self.exit(f.symbol, *self.exit_for[f.symbol])

    def on_refused(self, r: OrderRejected | OrderCancelled) -> None:
        mine = self.orders.pop(r.client_order_id, None)
        if mine is None or not mine.reduce_only:
            return
        if self.held(r.symbol) == 0:
            self.wait.pop(r.symbol, None)
            self.exit_for.pop(r.symbol, None)
            return
        if r.symbol in self.wait and (self.now < self.wait[r.symbol][0] or mine.alert_said):
            return
        delay = min(self.wait[r.symbol][1] * 2, 300_000) if r.symbol in self.wait else 1_000
        self.wait[r.symbol] = (self.now + delay, delay)
        for other in self.orders.values():
            if other.symbol == r.symbol and other.reduce_only and other.sent_on == mine.sent_on:
                other.alert_said = True
        self.say(
            AlertRaised(
                at_ms=self.now,
                severity="CRITICAL",
                code="exit_refused",
                message="-",
                symbol=r.symbol,
            )
        )

    def on_funding(self, f: FundingSettled) -> None:
        self.cash += f.amount
        self.after_equity_change(f.symbol)

    def on_command(self, c: OperatorCommandIssued) -> None:
        before = self.state_name()
        if c.command == "reset_drawdown":
            self.halted_drawdown = False
            self.peak = self.equity()
        else:
            self.operator = {"halt": "HALTED", "resume": "ACTIVE"}.get(c.command, "REDUCING")
        self.changed(before, f"operator:{c.operator}", f"operator_{c.command}")
        if c.command == "flatten":
            self.flatten("trading_state", "operator_flatten")

    # ------------------------------------------------------------------ protections
    def after_equity_change(self, symbol: str) -> None:
        self.drawdown()
        if self.halted_drawdown:
            for symbol in sorted(self.positions):
                if symbol not in self.exit_for:
                    self.exit(
                        symbol,
                        "flatten",
                        "daily_drawdown",
                        "halted_position_flattened",
                        "flatten",
                        True,
                    )
        else:
            self.stop(symbol)

    def expire(self, symbol: str | None) -> None:
        for name in list(self.paused_until) if symbol is None else [symbol]:
            if name in self.paused_until and self.now >= self.paused_until[name]:
                del self.paused_until[name]
                self.say(
                    CircuitBreakerCleared(
                        at_ms=self.now, layer="abnormal_market", symbol=name, reason="pause_elapsed"
                    )
                )

    def drawdown(self) -> None:
        equity = self.equity()
        if equity > self.peak:
            self.peak = equity
            return
        limit = self.num("MAX_DAILY_DRAWDOWN_PCT")
        if self.halted_drawdown or self.peak <= 0 or (self.peak - equity) * 100 < limit * self.peak:
            return
        before = self.state_name()
        self.halted_drawdown = True
        self.say(
            AlertRaised(
                at_ms=self.now, severity="CRITICAL", code="daily_drawdown_breached", message="-"
            )
        )
        self.changed(before, "risk", "daily_drawdown")
        self.say(
            RiskVerdictIssued(
                at_ms=self.now,
                symbol=None,
                decision="halt",
                layer="daily_drawdown",
                reason="daily_drawdown_breached",
                intent="flatten",
            )
        )
        self.flatten("daily_drawdown", "daily_drawdown_breached")

    def flatten(self, layer: str, reason: str) -> None:
        for symbol in sorted(self.positions):
            self.exit(symbol, "flatten", layer, reason, "flatten", True)

    def waiting(self, symbol: str) -> bool:
        return symbol in self.wait and self.now < self.wait[symbol][0]

    def leaving(self, symbol: str) -> Decimal:
        return sum(
            (o.left for o in self.orders.values() if o.reduce_only and o.symbol == symbol), D(0)
        )

    def stop(self, symbol: str) -> None:
        p = self.positions.get(symbol)
        if p is None or p.contracts == 0 or symbol in self.exit_for:
            return
        adverse = (p.entry - p.mark) if p.contracts > 0 else (p.mark - p.entry)
        if adverse * 100 < self.num("STOP_LOSS_PCT") * p.entry:
            return
        uncovered = abs(p.contracts) - self.leaving(symbol)
        if uncovered <= 0 or self.waiting(symbol):
            return
        self.say(
            StopLossTriggered(
                at_ms=self.now,
                symbol=symbol,
                entry_price=p.entry,
                mark_price=p.mark,
                loss_pct=D(0),
                contracts=uncovered,
            )
        )
        self.exit(symbol, "stop_loss", "stop_loss", "stop_loss_reached", "approved", True)
        window = self.ms("LOSS_STREAK_WINDOW_MINUTES", MINUTE)
        self.stops = [at for at in self.stops if at > self.now - window] + [self.now]
        if len(self.stops) >= int(self.num("LOSS_STREAK_COUNT")):
            self.stops = []
            self.streak_until = self.now + self.ms("LOSS_STREAK_PAUSE_MINUTES", MINUTE)
            self.say(
                AlertRaised(
                    at_ms=self.now, severity="WARNING", code="loss_streak_pause", message="-"
                )
            )

    def retry(self) -> None:
        for symbol in sorted(self.wait):
            if self.now < self.wait[symbol][0]:
                continue
            if self.held(symbol) == 0:
                del self.wait[symbol]
                self.exit_for.pop(symbol, None)
            elif symbol in self.exit_for:
                self.exit(symbol, *self.exit_for[symbol])
            else:
                self.stop(symbol)

    def exit(
        self, symbol: str, intent: str, layer: str, reason: str, decision: str, cooldown: bool
    ) -> None:
        p = self.positions.get(symbol)
        if p is None or p.contracts == 0 or symbol in self.exited_now:
            return
        self.exit_for[symbol] = (intent, layer, reason, decision, cooldown)
        if self.waiting(symbol):
            return
        covered = self.leaving(symbol)
        contracts = abs(p.contracts) - covered
        if contracts <= 0:
            return
        side = "sell" if p.contracts > 0 else "buy"
        price = self.last_price.get(symbol, p.mark)
        sizes = exit_sizes(contracts, self.spec(symbol))
        self.exited_now.append(symbol)
        self.say(
            RiskVerdictIssued(
                at_ms=self.now,
                symbol=symbol,
                decision=decision,
                layer=layer,
                reason=reason,
                intent=intent,
                side=side,
                requested_contracts=contracts,
                approved_contracts=sum(sizes, D(0)),
            )
        )  # type: ignore[arg-type]
        for size in sizes:
            self.order(symbol, side, size, intent, True, price)
        if cooldown:
            self.cooldown[symbol] = self.now + self.ms("EXIT_COOLDOWN_SECONDS", 1000)

    # ------------------------------------------------------------------ entries
    def entry(self, s: SignalGenerated) -> None:
        side = "buy" if s.direction == "long" else "sell"
        price = self.last_price.get(s.symbol, s.reference_price)
        decision, layer, reason, requested, qty = self.judge(s, side, price)
        self.say(
            RiskVerdictIssued(
                at_ms=self.now,
                symbol=s.symbol,
                decision=decision,
                layer=layer,
                reason=reason,
                intent="entry",
                side=side,
                requested_contracts=requested,
                approved_contracts=qty,
            )
        )  # type: ignore[arg-type]
        if decision != "rejected":
            self.order(s.symbol, side, qty, "entry", False, price)

    def judge(
        self, s: SignalGenerated, side: str, price: Decimal
    ) -> tuple[str, str, str, Decimal, Decimal]:
        zero = D(0)

        def no(layer: str, reason: str, requested: Decimal = zero) -> tuple:  # type: ignore[type-arg]
            return ("rejected", layer, reason, requested, zero)

        now, symbol = self.now, s.symbol
        if self.halted_drawdown:
            return no("daily_drawdown", "halted_daily_drawdown")
        if self.operator != "ACTIVE":
            return no(
                "trading_state",
                "halted_by_operator" if self.operator == "HALTED" else "reducing_only",
            )
        if symbol in self.paused_until and now < self.paused_until[symbol]:
            return no("abnormal_market", "circuit_breaker_abnormal_market")
        if self.silent:
            return no("data_silence", "circuit_breaker_data_silence")
        if self.streak_until > now:
            return no("loss_streak", "loss_streak_pause")
        if symbol in self.cooldown and now < self.cooldown[symbol]:
            return no("cooldown", "exit_cooldown")
        if len([t for t in self.order_times if t > now - MINUTE]) >= int(
            self.num("MAX_ORDERS_PER_MINUTE")
        ):
            return no("order_rate", "order_rate_limit")
        spec = self.spec(symbol)
        if spec is None:
            return no("pre_trade", "no_contract_spec")
        # entries are never sized on more than the configured capital (INITIAL_EQUITY_USDT)
        equity = min(self.equity(), self.num("INITIAL_EQUITY_USDT"))
        if equity <= 0:
            return no("exposure_limit", "no_equity")
        unit = price * spec.size
        position_fraction = self.num("MAX_POSITION_PCT") / 100
        target = equity * position_fraction * s.strength
        requested = qty = floor_step(target / unit, spec.step)
        layer, reason = "none", "approved"
        pending_entries = [o for o in self.orders.values() if not o.reduce_only]
        gross = sum((abs(p.contracts) * p.size * p.mark for p in self.positions.values()), zero)
        for o in pending_entries:
            o_spec = self.spec(o.symbol)
            gross += o.left * (o_spec.size if o_spec else zero) * o.price
        cap = equity * (self.num("MAX_EXPOSURE_PCT") / 100)
        room = floor_step((cap - gross) / unit, spec.step)
        if room < qty:
            if room < spec.low:
                return no("exposure_limit", "exposure_limit_reached", requested)
            qty, layer, reason = room, "exposure_limit", "trimmed_to_exposure_limit"
        held = self.held(symbol)
        same = max(held, zero) if side == "buy" else max(-held, zero)
        same += sum(
            (o.left for o in pending_entries if o.symbol == symbol and o.side == side), zero
        )
        room = floor_step(equity * position_fraction / unit - same, spec.step)
        if room < qty:
            if room < spec.low:
                why = "position_limit_reached" if same > 0 else "position_cap_below_min"
                return no("position_size", why, requested)
            qty, layer, reason = room, "position_size", "trimmed_to_position_limit"
        if qty < spec.low:
            return no("position_size", "below_min_contracts", requested)
        room = floor_step(self.num("MAX_ORDER_NOTIONAL_USDT") / unit, spec.step)
        if room < qty:
            qty, layer, reason = room, "pre_trade", "trimmed_to_max_order_notional"
        if qty > spec.high:
            qty, layer, reason = (
                floor_step(spec.high, spec.step),
                "pre_trade",
                "trimmed_to_max_contracts",
            )
        if qty < spec.low:
            return no("pre_trade", "max_order_below_min_contracts", requested)
        return ("approved" if layer == "none" else "trimmed", layer, reason, requested, qty)

    def adopt(self, ids: list[str]) -> None:
        """Track this step's orders under the ids the real machine gave them (ids are derived
        from the log, not decided: the oracle compares everything else first)."""
        assert len(ids) == len(self.new_orders)
        for oid, key in zip(ids, self.new_orders, strict=True):
            if key in self.orders:
                self.orders[oid] = self.orders.pop(key)


def exit_sizes(contracts: Decimal, spec: Spec | None) -> list[Decimal]:
    """Orders for an exit (the first 20): the part on the step in n = ceil(part / largest)
    orders as equal as the step allows, bigger ones first, if none is then under the minimum;
    else as many largest orders as fit and the remainder; any part off the step last, alone."""
    if spec is None:
        return [contracts]
    largest = floor_step(spec.high, spec.step)
    if largest <= 0:
        return [contracts]
    part = floor_step(contracts, spec.step)
    sizes: list[Decimal] = []
    if part > 0:
        n = int(ceil_step(part / largest, D(1)))
        low = floor_step(part / n, spec.step)
        if low >= ceil_step(spec.low, spec.step):
            sizes = [low] * n
            i = 0
            while sum(sizes, D(0)) < part:  # hand out what is left one step at a time
                sizes[i] += spec.step
                i += 1
        else:
            rest = part
            while rest > largest:
                sizes.append(largest)
                rest -= largest
            sizes.append(rest)
    if contracts > part:
        sizes.append(contracts - part)
    return sizes[:MAX_EXIT_ORDERS]


@dataclass
class SignalModel:
    """The momentum rule (README, .env.example): per symbol, the trades of the last
    LOOKBACK_MINUTES (strictly after now − look-back); nothing until the symbol's history covers
    a whole look-back; flat when fewer than SIGNAL_MIN_TRADES trades or SIGNAL_MIN_CONTRACTS
    contracts; else momentum = (last − first) / first in percent, long at ≥ the threshold, short
    at ≤ −threshold; strength = min(1, |momentum| / (2 × threshold)) to 4 places, 0 when flat; a
    signal only when the direction changes (from flat)."""

    cfg: dict[str, str] | None = None
    seen_since: dict[str, int] = field(default_factory=dict)
    trades: dict[str, list[tuple[int, Decimal, Decimal]]] = field(default_factory=dict)
    direction: dict[str, str] = field(default_factory=dict)

    def step(self, event: Event) -> list[Said]:
        if isinstance(event, ConfigActivated):
            self.cfg = dict(event.parameters)
            return []
        if not isinstance(event, TradeTicked) or self.cfg is None:
            return []
        symbol, now = event.symbol, event.at_ms
        lookback = int(self.cfg["LOOKBACK_MINUTES"]) * MINUTE
        self.seen_since.setdefault(symbol, now)
        window = [t for t in self.trades.get(symbol, []) if t[0] > now - lookback]
        window.append((now, event.price, event.contracts))
        self.trades[symbol] = window
        if self.seen_since[symbol] > now - lookback:
            return []
        threshold = D(self.cfg["SIGNAL_THRESHOLD_PCT"])
        first = window[0][1]
        momentum = (event.price - first) * 100 / first
        direction = "flat"
        thin = len(window) < int(self.cfg["SIGNAL_MIN_TRADES"]) or sum(
            (t[2] for t in window), ZERO
        ) < D(self.cfg["SIGNAL_MIN_CONTRACTS"])
        if not thin and momentum >= threshold:
            direction = "long"
        elif not thin and momentum <= -threshold:
            direction = "short"
        if direction == self.direction.get(symbol, "flat"):
            return []
        self.direction[symbol] = direction
        strength = ZERO
        if direction != "flat":
            strength = min(D(1), abs(momentum) / (2 * threshold)).quantize(D("0.0001"))
        return [("signal", now, symbol, direction, strength, event.price)]


def said_signal(event: Event) -> Said:
    assert isinstance(event, SignalGenerated)
    return (
        "signal",
        event.at_ms,
        event.symbol,
        event.direction,
        event.strength,
        event.reference_price,
    )
