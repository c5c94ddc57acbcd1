"""The reference model's protections and entry checks (the rules: ``tests/model/reference.py``).

Drawdown halt, pauses, stop-losses, exits split on the contract's step with back-off on refusal,
and the entry checks in binding order with sizing; each writes its outputs with ``say``/``order``.
"""

from decimal import Decimal

from aggregates.events import (
    AlertRaised,
    CircuitBreakerCleared,
    RiskVerdictIssued,
    SignalGenerated,
    StopLossTriggered,
)
from tests.model.reference_state import (
    MAX_EXIT_ORDERS,
    MINUTE,
    D,
    ModelState,
    Spec,
    ceil_step,
    floor_step,
)


class ModelRules(ModelState):
    """The rules a step applies once its input is folded: protections first, then entries."""

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
