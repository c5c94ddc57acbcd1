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
    SignalGenerated,
    TradeTicked,
)
from tests.model.reference_rules import ModelRules
from tests.model.reference_signal import SignalModel, said_signal
from tests.model.reference_state import DAY, Said, Spec, said

__all__ = ["Model", "Said", "SignalModel", "said", "said_signal"]


class Model(ModelRules):
    """The risk manager's rules over plain data; :meth:`step` returns what it would say.

    State and bookkeeping live in ``reference_state``, protections and entries in
    ``reference_rules``; here are the step and the handler of each input.
    """

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
