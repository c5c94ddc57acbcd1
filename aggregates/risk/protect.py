"""Protective actions shared by the risk handlers: halts, flattening, stop-losses, breakers.

Each takes a :class:`Decision` (the step's state, cause and growing output list) and appends
events; order ids derive from the cause's id and the output index, so replay re-derives them.
"""

from __future__ import annotations

from decimal import Decimal

from aggregates.config import ContractSpec
from aggregates.envelope import RecordedEvent, derive_event_id
from aggregates.events import (
    AlertRaised,
    CircuitBreakerCleared,
    CircuitBreakerTripped,
    Event,
    OrderCancelled,
    OrderIntent,
    OrderRejected,
    OrderRequested,
    RiskLayer,
    RiskVerdictIssued,
    Side,
    StopLossTriggered,
    TradingState,
    TradingStateChanged,
    VerdictDecision,
)
from aggregates.portfolio import DAY_MS, Position
from aggregates.risk.state import (
    HUNDRED,
    ZERO,
    ExitBackoff,
    ExitGoal,
    Limits,
    MoveWindow,
    PendingOrder,
    RiskState,
    ceil_to_step,
    floor_to_step,
    numbers,
)

#: At most this many orders for one exit decision; the rest follows as fills come back.
MAX_EXIT_ORDERS = 20
#: Back-off after a refused exit: first wait, and the cap of the doubling.
FIRST_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 300_000


class Decision:
    """Collects one step's outputs; order ids derive from the fact and the output index."""

    __slots__ = ("exited", "fact", "outputs", "state")

    def __init__(self, state: RiskState, fact: RecordedEvent) -> None:
        self.state = state
        self.fact = fact
        self.outputs: list[Event] = []
        #: Symbols that already got an exit verdict on this input (one per symbol per input).
        self.exited: set[str] = set()

    def emit(self, event: Event) -> None:
        self.outputs.append(event)

    def order(
        self,
        symbol: str,
        side: Side,
        contracts: Decimal,
        intent: OrderIntent,
        reduce_only: bool,
        price: Decimal,
    ) -> None:
        state = self.state
        client_order_id = derive_event_id("risk", self.fact.event_id, len(self.outputs)).hex
        self.outputs.append(
            OrderRequested(
                at_ms=state.now_ms,
                client_order_id=client_order_id,
                symbol=symbol,
                side=side,
                contracts=contracts,
                order_type="market",
                intent=intent,
                reduce_only=reduce_only,
                reference_price=price,
            )
        )
        state.pending[client_order_id] = PendingOrder(
            symbol, side, contracts, reduce_only, intent, price, self.fact.position
        )
        state.order_times.append(state.now_ms)

    def set_state(self, changed_by: str, reason: str, before: TradingState) -> None:
        after = self.state.trading_state
        if after != before:
            self.emit(
                TradingStateChanged(
                    at_ms=self.state.now_ms,
                    previous=before,
                    state=after,
                    changed_by=changed_by,
                    reason=reason,
                )
            )


def expire_breakers(d: Decision, symbol: str | None = None) -> None:
    """Lift abnormal-market pauses whose time has come (one symbol, or all when None)."""
    state = d.state
    now = state.now_ms
    symbols = list(state.abnormal_until) if symbol is None else [symbol]
    for name in symbols:
        until = state.abnormal_until.get(name)
        if until is not None and now >= until:
            del state.abnormal_until[name]
            d.emit(
                CircuitBreakerCleared(
                    at_ms=now, layer="abnormal_market", symbol=name, reason="pause_elapsed"
                )
            )


def abnormal(d: Decision, symbol: str, price: Decimal, limits: Limits) -> None:
    """The abnormal-market layer on a trade: expire a pause that is over, then, unless one is
    still in force for ``symbol``, trip on a move past the bar."""
    state = d.state
    until = None
    if state.abnormal_until:
        expire_breakers(d, symbol)
        until = state.abnormal_until.get(symbol)
    moved = move_past_bar(state, symbol, price, limits)
    if until is None and moved is not None:
        trip_abnormal(d, symbol, price, *moved, limits)


def move_past_bar(
    state: RiskState, symbol: str, price: Decimal, limits: Limits
) -> tuple[Decimal, Decimal, bool] | None:
    """Push the trade into ``symbol``'s window; (low, high, rise) if the price moved
    ``ABNORMAL_MOVE_PCT`` from the window's low (``rise``) or high, else None."""
    window = state.moves.get(symbol)
    if window is None:
        window = state.moves[symbol] = MoveWindow()
    low, high = window.push(state.now_ms, price, limits.abnormal_window_ms)
    bar = limits.abnormal_move_pct
    rise = (price - low) * HUNDRED >= bar * low
    if rise or (high - price) * HUNDRED >= bar * high:
        return low, high, rise
    return None


def trip_abnormal(
    d: Decision,
    symbol: str,
    price: Decimal,
    low: Decimal,
    high: Decimal,
    rise: bool,
    limits: Limits,
) -> None:
    """A move past the bar from the window's low (``rise``) or high: pause entries, warn."""
    state = d.state
    now = state.now_ms
    move_pct = ((price - low) / low if rise else (price - high) / high) * HUNDRED
    state.abnormal_until[symbol] = now + limits.abnormal_pause_ms
    facts = numbers(
        move_pct=move_pct,
        window_low=low,
        window_high=high,
        price=price,
        paused_until_ms=now + limits.abnormal_pause_ms,
    )
    d.emit(
        CircuitBreakerTripped(
            at_ms=now,
            layer="abnormal_market",
            symbol=symbol,
            reason="abnormal_price_move",
            numbers=facts,
        )
    )
    d.emit(
        AlertRaised(
            at_ms=now,
            severity="WARNING",
            code="abnormal_market",
            message=f"{symbol} moved {move_pct:.2f}% within {limits.abnormal_window_ms // 1000}s; "
            "entries paused",
            symbol=symbol,
        )
    )


def new_day(d: Decision) -> None:
    """A new UTC day: the drawdown reference restarts and a drawdown halt ends."""
    state = d.state
    state.day = state.now_ms // DAY_MS
    state.peak_equity = state.portfolio.equity
    if state.drawdown_halted:
        before = state.trading_state
        state.drawdown_halted = False
        d.set_state("risk", "new_utc_day", before)


def check_drawdown(d: Decision) -> None:
    state = d.state
    assert state.limits is not None
    if drawdown_reached(state, state.limits):
        halt_on_drawdown(d)


def drawdown_reached(state: RiskState, limits: Limits) -> bool:
    """Lifts the day's peak if equity rose above it; whether a halt is due now (run once per
    step: the halt that follows, :func:`halt_on_drawdown`, is separate so a tick that decides
    nothing pays for no :class:`Decision`)."""
    portfolio = state.portfolio
    equity = portfolio.cash + portfolio.unrealised
    peak = state.peak_equity
    if equity > peak:
        state.peak_equity = equity
        return False
    if state.drawdown_halted or peak <= 0:
        return False
    return (peak - equity) * HUNDRED >= limits.max_drawdown_pct * peak


def halt_on_drawdown(d: Decision) -> None:
    """The drawdown limit is reached: CRITICAL alert, HALTED, flatten everything."""
    state = d.state
    limits = state.limits
    assert limits is not None
    equity = state.portfolio.equity
    peak = state.peak_equity
    before = state.trading_state
    state.drawdown_halted = True
    drawdown_pct = (peak - equity) * HUNDRED / peak
    now = state.now_ms
    facts = numbers(
        peak_equity=peak,
        equity=equity,
        drawdown_pct=drawdown_pct,
        max_daily_drawdown_pct=limits.max_drawdown_pct,
    )
    d.emit(
        AlertRaised(
            at_ms=now,
            severity="CRITICAL",
            code="daily_drawdown_breached",
            message=f"daily drawdown {drawdown_pct:.2f}% reached the limit of "
            f"{limits.max_drawdown_pct}%: trading halted, all positions being closed",
        )
    )
    d.set_state("risk", "daily_drawdown", before)
    d.emit(
        RiskVerdictIssued(
            at_ms=now,
            symbol=None,
            decision="halt",
            layer="daily_drawdown",
            reason="daily_drawdown_breached",
            intent="flatten",
            numbers=facts,
        )
    )
    flatten_all(d, "daily_drawdown", "daily_drawdown_breached")


def flatten_all(d: Decision, layer: RiskLayer, reason: str) -> None:
    for symbol in sorted(d.state.portfolio.positions):
        exit_position(d, symbol, "flatten", layer, reason, "flatten")


def flatten_while_halted(d: Decision) -> None:
    """While halted by the drawdown: flatten every position with no exit in progress (one that
    appeared after the halt); an exit in progress is continued by its own fills instead."""
    state = d.state
    for symbol in sorted(state.portfolio.positions):
        if symbol not in state.exit_goal:
            exit_position(
                d, symbol, "flatten", "daily_drawdown", "halted_position_flattened", "flatten"
            )


def check_stop(d: Decision, symbol: str) -> None:
    state = d.state
    assert state.limits is not None
    if stop_reached(state, symbol, state.limits):
        stop_out(d, symbol)


def stop_reached(state: RiskState, symbol: str, limits: Limits) -> bool:
    """Whether the position in ``symbol`` lost ``STOP_LOSS_PCT`` of its entry price."""
    position = state.portfolio.positions.get(symbol)
    if position is None or not position.contracts:
        return False
    return _adverse_move(position) * HUNDRED >= limits.stop_loss_pct * position.average_entry


def _adverse_move(position: Position) -> Decimal:
    """How far the mark moved against the position from its entry price (negative: in favour)."""
    entry = position.average_entry
    return (entry - position.mark) if position.contracts > 0 else (position.mark - entry)


def stop_out(d: Decision, symbol: str) -> None:
    """The stop is reached: ``StopLossTriggered`` and a reduce-only exit for what is not
    already leaving, which also counts toward the loss streak. Not while an exit of the symbol
    is in progress (from its verdict until a fill leaves the position flat or reversed): so a
    stop-loss fires once per position episode, and its own exit's fills never trigger it again."""
    state = d.state
    if symbol in state.exit_goal:
        return  # already leaving: the exit in progress goes on with its fills and retries
    limits = state.limits
    assert limits is not None
    position = state.portfolio.positions[symbol]
    uncovered = abs(position.contracts) - state.covered_exit(symbol)
    if uncovered <= 0:
        return
    backoff = state.exit_backoff.get(symbol)
    if backoff is not None and state.now_ms < backoff.until_ms:
        return  # the venue refused the exit lately: it is retried when the back-off ends
    now = state.now_ms
    d.emit(
        StopLossTriggered(
            at_ms=now,
            symbol=symbol,
            entry_price=position.average_entry,
            mark_price=position.mark,
            loss_pct=_adverse_move(position) * HUNDRED / position.average_entry,
            contracts=uncovered,
        )
    )
    exit_position(d, symbol, "stop_loss", "stop_loss", "stop_loss_reached", "approved")
    loss_streak(d, limits)


def loss_streak(d: Decision, limits: Limits) -> None:
    state = d.state
    now = state.now_ms
    times = state.stop_times
    times.append(now)
    while times[0] <= now - limits.streak_window_ms:
        times.popleft()
    if len(times) < limits.streak_count:
        return
    times.clear()
    state.streak_until = now + limits.streak_pause_ms
    d.emit(
        AlertRaised(
            at_ms=now,
            severity="WARNING",
            code="loss_streak_pause",
            message=f"{limits.streak_count} stop-losses within "
            f"{limits.streak_window_ms // 60_000} min: "
            f"entries paused for {limits.streak_pause_ms // 60_000} min",
        )
    )


def exit_position(
    d: Decision,
    symbol: str,
    intent: OrderIntent,
    layer: RiskLayer,
    reason: str,
    decision: VerdictDecision,
    *,
    cooldown: bool = True,
) -> None:
    """Reduce-only orders for the part of the position not already leaving, split into sizes
    the venue accepts (:func:`split_exit`); nothing if none, while a refusal backs off, or if
    the symbol already got an exit verdict on this input (at most one, of at most
    :data:`MAX_EXIT_ORDERS` orders, per symbol and input)."""
    state = d.state
    if symbol in d.exited:
        return
    position = state.portfolio.positions.get(symbol)
    if position is None or position.contracts == 0:
        return
    state.exit_goal[symbol] = ExitGoal(intent, layer, reason, decision, cooldown)
    backoff = state.exit_backoff.get(symbol)
    if backoff is not None and state.now_ms < backoff.until_ms:
        return
    held = abs(position.contracts)
    covered = state.covered_exit(symbol)
    contracts = held - covered
    if contracts <= 0:
        return
    side: Side = "sell" if position.contracts > 0 else "buy"
    price = state.last_price.get(symbol, position.mark)
    sizes = split_exit(contracts, state.spec(symbol))
    approved = sum(sizes, start=ZERO)
    d.exited.add(symbol)
    d.emit(
        RiskVerdictIssued(
            at_ms=state.now_ms,
            symbol=symbol,
            decision=decision,
            layer=layer,
            reason=reason,
            intent=intent,
            side=side,
            requested_contracts=contracts,
            approved_contracts=approved,
            numbers=numbers(
                position_contracts=position.contracts,
                already_exiting=covered,
                price=price,
                orders=len(sizes),
            ),
        )
    )
    for size in sizes:
        d.order(symbol, side, size, intent, True, price)
    limits = state.limits
    assert limits is not None
    if cooldown:  # a reversal's exit is half of one decision: its entry is not cooled down
        state.cooldown_until[symbol] = state.now_ms + limits.cooldown_ms


def split_exit(
    contracts: Decimal, spec: ContractSpec | None, limit: int = MAX_EXIT_ORDERS
) -> list[Decimal]:
    """Order sizes for an exit of ``contracts``, at most ``limit`` of them (the rest is sent
    as fills come back). Without a spec, one order: the venue's answer decides.

    The part on the contract step is split into the fewest orders of at most the maximum
    (floored to the step), n = ceil(part / largest), their sizes spread evenly on the step,
    largest first: every order is then within [minimum, maximum] whenever any split is. If
    none is (n orders of the minimum exceed the part), full orders of the largest size and
    the remainder last. A part off the step (the step changed under the position) goes alone
    as the very last order, so that only it can be refused."""
    if spec is None:
        return [contracts]
    step = spec.contracts_step
    largest = floor_to_step(spec.max_contracts, step)
    if largest <= 0:
        return [contracts]
    on_step = floor_to_step(contracts, step)
    sizes = _even_split(on_step, largest, ceil_to_step(spec.min_contracts, step), step, limit)
    off_step = contracts - on_step
    if off_step > 0 and len(sizes) < limit:
        sizes.append(off_step)
    return sizes


def _even_split(
    total: Decimal, largest: Decimal, smallest: Decimal, step: Decimal, limit: int
) -> list[Decimal]:
    """The first ``limit`` sizes of ``total`` (a multiple of ``step``) as described in
    :func:`split_exit`; ``largest`` and ``smallest`` are multiples of ``step``."""
    units = int(total / step)
    most = int(largest / step)
    if units <= 0:
        return []
    n = -(-units // most)
    if n * int(smallest / step) > units:  # no split fits: the largest orders, then the rest
        full, rest = divmod(units, most)
        plan = [most] * min(full, limit)
        if rest and len(plan) < limit:
            plan.append(rest)
    else:
        base, bigger = divmod(units, n)  # ``bigger`` orders of base + 1, the others of base
        first = min(bigger, limit)
        plan = [base + 1] * first + [base] * min(n - bigger, limit - first)
    return [step * k for k in plan]


def continue_exit(d: Decision, symbol: str) -> None:
    """After a fill: finish an exit in progress whose orders did not cover the whole position
    (more than :data:`MAX_EXIT_ORDERS` were needed, or one was refused and its wait is over)."""
    goal = d.state.exit_goal.get(symbol)
    if goal is not None:
        exit_position(
            d, symbol, goal.intent, goal.layer, goal.reason, goal.decision, cooldown=goal.cooldown
        )


def retry_exits(d: Decision) -> None:
    """On a timed input: re-issue exits whose back-off has elapsed (the new input that allows
    a retry); the wait itself stays recorded so the next refusal doubles it."""
    state = d.state
    now = state.now_ms
    for symbol in sorted(state.exit_backoff):
        if now < state.exit_backoff[symbol].until_ms:
            continue
        if state.portfolio.contracts(symbol) == 0:
            del state.exit_backoff[symbol]
            state.exit_goal.pop(symbol, None)
            continue
        if symbol in state.exit_goal:
            continue_exit(d, symbol)
        else:
            check_stop(d, symbol)


def exit_refused(d: Decision, order: PendingOrder, event: OrderRejected | OrderCancelled) -> None:
    """The venue refused (or cancelled the rest of) a protective exit: if the position is still
    uncovered, a CRITICAL ``exit_refused`` alert and a doubling back-off before the next try.
    Orders sent together (on one input) share one back-off and one alert: once one of them
    raised the alert, the refusal of another says nothing, however late it comes, as long as
    the back-off is recorded (until a fill of an exit or a flat position ends it)."""
    state = d.state
    symbol = order.symbol
    now = state.now_ms
    if state.portfolio.contracts(symbol) == 0:
        state.exit_backoff.pop(symbol, None)
        state.exit_goal.pop(symbol, None)
        return
    backoff = state.exit_backoff.get(symbol)
    if backoff is not None and (now < backoff.until_ms or order.refusal_said):
        return  # already waiting, or its batch already said so: the retry re-covers it
    delay = FIRST_BACKOFF_MS if backoff is None else min(backoff.delay_ms * 2, MAX_BACKOFF_MS)
    code = event.code if isinstance(event, OrderRejected) else event.reason
    state.exit_backoff[symbol] = ExitBackoff(now + delay, delay, code)
    for sibling in state.pending.values():
        if sibling.batch == order.batch and sibling.symbol == symbol and sibling.reduce_only:
            sibling.refusal_said = True
    d.emit(
        AlertRaised(
            at_ms=now,
            severity="CRITICAL",
            code="exit_refused",
            message=f"{symbol}: the venue refused a {order.intent} exit of {order.remaining} "
            f"contracts ({code}); retrying in {delay // 1000}s",
            symbol=symbol,
        )
    )
