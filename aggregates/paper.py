"""The paper exchange: deterministic fills from the recorded market, as a decision machine.

It answers every ``OrderRequested`` with ``OrderAccepted`` or ``OrderRejected`` (stable ``code``),
then fills accepted orders against the trades that follow in the log:

* **Market orders** fill at the *next* ``TradeTicked`` of their symbol, at its price moved
  ``PAPER_SLIPPAGE_BPS`` against the taker (a buy pays more, a sell gets less), taker fee.
* **Limit orders** fill when a trade reaches the limit (buy: price <= limit; sell: price >= limit),
  at the limit price, maker fee.
* **Volume is finite**: a trade's ``contracts`` are shared by the resting orders of its symbol in
  arrival order; what a trade cannot cover stays open (``OrderPartiallyFilled``) for later trades,
  and the last part is an ``OrderFilled``.
* **Reduce-only** orders never increase or flip a position. The exchange keeps the net position per
  symbol from its own fills; a reduce-only fill is clipped to it, and what the clip leaves over is
  cancelled (``reduce_only_clipped``), or the whole rest if the position is already flat
  (``reduce_only_position_closed``). A reduce-only request against a flat position or one on the
  same side is rejected (``reduce_only_would_increase``).

Fees are ``contracts x contract_size x price x rate`` in USDT, computed exactly (no rounding),
with the rates of the configuration in force (so a what-if on fee rates changes them). Contract
sizes come from the latest ``ContractSpecified`` of the symbol, else the configuration's
``CONTRACT_SPECS``.

Rejection codes: ``unknown_symbol`` (no contract spec anywhere), ``no_market_price`` (no trade of
the symbol seen yet), ``contracts_below_minimum``, ``contracts_above_maximum``,
``contracts_off_step``, ``price_off_step`` (limit price not on the tick),
``reduce_only_would_increase``.

Pure: the exchange's ids derive from the client order id (``paper-<client id>``, fills
``paper-<client id>-<n>``), time from the events, parameters from ``ConfigActivated`` (nothing is
decided before it: an order requested earlier is not answered).
"""

from __future__ import annotations

from decimal import Context, Decimal
from types import MappingProxyType
from typing import Literal

import msgspec

from aggregates import events as ev
from aggregates.config import ContractSpec, TradingConfig, parse_config
from aggregates.envelope import RecordedEvent

#: Wide enough that products of realistic prices, sizes and rates are exact: no rounding of money.
_EXACT = Context(prec=80)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_BPS = Decimal(10000)
_NOTHING: tuple[ev.Event, ...] = ()
_OWNED = (
    ev.OrderAccepted,
    ev.OrderPartiallyFilled,
    ev.OrderFilled,
    ev.OrderRejected,
    ev.OrderCancelled,
)
FEE_CURRENCY = "USDT"

Spec = ContractSpec | ev.ContractSpecified


class RestingOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted order that still has contracts to trade."""

    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: ev.Side
    order_type: Literal["market", "limit"]
    limit_price: Decimal | None
    remaining: Decimal
    reduce_only: bool
    fills: int = 0


class PaperState(msgspec.Struct, frozen=True, kw_only=True):
    """The paper book. Treated as immutable: every change builds new containers."""

    config: TradingConfig | None = None
    specs: dict[str, ev.ContractSpecified] = {}
    priced: frozenset[str] = frozenset()
    resting: dict[str, tuple[RestingOrder, ...]] = {}
    positions: dict[str, Decimal] = {}

    def position(self, symbol: str) -> Decimal:
        """Net contracts held in ``symbol`` by the paper account: > 0 long, < 0 short."""
        return self.positions.get(symbol, _ZERO)

    def open_orders(self) -> list[RestingOrder]:
        """Orders that can still trade, by symbol then arrival (for reconciliation)."""
        return [order for symbol in sorted(self.resting) for order in self.resting[symbol]]

    def contract_spec(self, symbol: str) -> Spec | None:
        spec = self.specs.get(symbol)
        if spec is not None:
            return spec
        return self.config.contract_spec(symbol) if self.config is not None else None


def slipped_price(price: Decimal, side: ev.Side, slippage_bps: Decimal) -> Decimal:
    """The taker's price: ``slippage_bps`` worse than the trade's, exact."""
    factor = _EXACT.divide(slippage_bps, _BPS)
    if side == "buy":
        return _EXACT.multiply(price, _EXACT.add(_ONE, factor))
    return _EXACT.multiply(price, _EXACT.subtract(_ONE, factor))


def fee_for(contracts: Decimal, contract_size: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """``notional x rate`` with notional = contracts x contract_size x price; exact."""
    notional = _EXACT.multiply(_EXACT.multiply(contracts, contract_size), price)
    return _EXACT.multiply(notional, rate)


def exchange_order_id(client_order_id: str) -> str:
    return f"paper-{client_order_id}"


def _on_trade(state: PaperState, fact: RecordedEvent) -> tuple[PaperState, tuple[ev.Event, ...]]:
    """``PaperExchange.step`` for a ``TradeTicked``: the bulk of the log, written for speed."""
    trade: ev.TradeTicked = fact.event  # type: ignore[assignment]
    symbol = trade.symbol
    waiting = state.resting.get(symbol)
    if symbol in state.priced and not waiting:
        return state, _NOTHING  # the hot path: a tick nobody waits for
    if symbol not in state.priced:
        state = msgspec.structs.replace(state, priced=state.priced | {symbol})
    if not waiting or state.config is None:
        return state, _NOTHING
    config = state.config
    spec = state.contract_spec(symbol)
    assert spec is not None, "an order was accepted without a contract spec"
    available = trade.contracts
    position = state.position(symbol)
    outputs: list[ev.Event] = []
    still: list[RestingOrder] = []
    for order in waiting:
        buy = order.side == "buy"
        if order.order_type == "limit":
            limit = order.limit_price
            assert limit is not None
            if available <= 0 or (trade.price > limit if buy else trade.price < limit):
                still.append(order)
                continue
            price, rate, liquidity = limit, config.maker_fee_rate, "maker"
        else:
            if available <= 0:
                still.append(order)
                continue
            price = slipped_price(trade.price, order.side, config.paper_slippage_bps)
            rate, liquidity = config.taker_fee_rate, "taker"
        contracts = min(order.remaining, available)
        clipped = False
        if order.reduce_only:
            room = max(-position, _ZERO) if buy else max(position, _ZERO)
            if room == 0:
                outputs.append(_cancel(trade, order, "reduce_only_position_closed"))
                continue
            if room < contracts:
                contracts, clipped = room, True
        remaining = order.remaining - contracts
        available -= contracts
        position = position + contracts if buy else position - contracts
        fills = order.fills + 1
        fill = dict(
            at_ms=trade.at_ms,
            client_order_id=order.client_order_id,
            symbol=symbol,
            side=order.side,
            price=price,
            contracts=contracts,
            fee=fee_for(contracts, spec.contract_size, price, rate),
            fee_currency=FEE_CURRENCY,
            liquidity=liquidity,
            fill_id=f"{order.exchange_order_id}-{fills}",
            reduce_only=order.reduce_only,
        )
        if remaining == 0:
            outputs.append(ev.OrderFilled(**fill))  # type: ignore[arg-type]
            continue
        outputs.append(ev.OrderPartiallyFilled(**fill, remaining_contracts=remaining))  # type: ignore[arg-type]
        rest = msgspec.structs.replace(order, remaining=remaining, fills=fills)
        if clipped:
            outputs.append(_cancel(trade, rest, "reduce_only_clipped"))
        else:
            still.append(rest)
    if not outputs:
        return state, _NOTHING
    book = dict(state.resting)
    if still:
        book[symbol] = tuple(still)
    else:
        del book[symbol]
    positions = dict(state.positions)
    if position:
        positions[symbol] = position
    else:
        positions.pop(symbol, None)
    return msgspec.structs.replace(state, resting=book, positions=positions), tuple(outputs)


class PaperExchange:
    """The paper venue as a :class:`~aggregates.machine.Machine` named ``"paper"``."""

    name = "paper"
    #: The only event types ``step`` reacts to (see :attr:`SignalMachine.consumes`).
    consumes = frozenset(
        {ev.TradeTicked, ev.OrderRequested, ev.ContractSpecified, ev.ConfigActivated}
    )
    #: ``step`` for its hot type without the dispatch (see :func:`aggregates.machine.step_for`).
    steps = MappingProxyType({ev.TradeTicked: _on_trade})

    def initial(self) -> PaperState:
        return PaperState()

    def owns(self, event: ev.Event) -> bool:
        return isinstance(event, _OWNED)

    def step(
        self, state: PaperState, fact: RecordedEvent
    ) -> tuple[PaperState, tuple[ev.Event, ...]]:
        match fact.event:
            case ev.TradeTicked():
                return _on_trade(state, fact)
            case ev.OrderRequested() as request:
                return _on_request(state, request)
            case ev.ContractSpecified() as spec:
                specs = {**state.specs, spec.symbol: spec}
                return msgspec.structs.replace(state, specs=specs), _NOTHING
            case ev.ConfigActivated() as activated:
                config = parse_config(activated.parameters)
                return msgspec.structs.replace(state, config=config), _NOTHING
        return state, _NOTHING


# --------------------------------------------------------------------------- requests


def _rejection(state: PaperState, order: ev.OrderRequested) -> tuple[str, str] | None:
    """Why the paper venue refuses ``order`` (code, message), or None to accept it."""
    symbol = order.symbol
    spec = state.contract_spec(symbol)
    if spec is None:
        return "unknown_symbol", f"no contract specification for {symbol}"
    if symbol not in state.priced:
        return "no_market_price", f"no trade of {symbol} seen yet"
    contracts = order.contracts
    if contracts < spec.min_contracts:
        return "contracts_below_minimum", f"{contracts} < minimum {spec.min_contracts}"
    if contracts > spec.max_contracts:
        return "contracts_above_maximum", f"{contracts} > maximum {spec.max_contracts}"
    if _EXACT.remainder(contracts, spec.contracts_step) != 0:
        return "contracts_off_step", f"{contracts} is not a multiple of {spec.contracts_step}"
    limit = order.limit_price
    if limit is not None and _EXACT.remainder(limit, spec.price_step) != 0:
        return "price_off_step", f"{order.limit_price} is not a multiple of {spec.price_step}"
    if order.reduce_only:
        position = state.position(symbol)
        if position == 0 or (position > 0) == (order.side == "buy"):
            return (
                "reduce_only_would_increase",
                f"reduce-only {order.side} against a position of {position} contracts",
            )
    return None


def _on_request(
    state: PaperState, order: ev.OrderRequested
) -> tuple[PaperState, tuple[ev.Event, ...]]:
    if state.config is None:
        return state, _NOTHING  # decide nothing before the configuration is in force
    refused = _rejection(state, order)
    if refused is not None:
        code, message = refused
        rejected = ev.OrderRejected(
            at_ms=order.at_ms,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            code=code,
            message=message,
        )
        return state, (rejected,)
    venue_id = exchange_order_id(order.client_order_id)
    resting = RestingOrder(
        client_order_id=order.client_order_id,
        exchange_order_id=venue_id,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        limit_price=order.limit_price,
        remaining=order.contracts,
        reduce_only=order.reduce_only,
    )
    book = dict(state.resting)
    book[order.symbol] = (*book.get(order.symbol, ()), resting)
    accepted = ev.OrderAccepted(
        at_ms=order.at_ms,
        client_order_id=order.client_order_id,
        exchange_order_id=venue_id,
        symbol=order.symbol,
    )
    return msgspec.structs.replace(state, resting=book), (accepted,)


# --------------------------------------------------------------------------- trades


def _cancel(trade: ev.TradeTicked, order: RestingOrder, reason: str) -> ev.OrderCancelled:
    return ev.OrderCancelled(
        at_ms=trade.at_ms,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        reason=reason,
        remaining_contracts=order.remaining,
    )
