"""The portfolio: a pure fold ``evolve(portfolio, event) -> portfolio`` over the ledger.

Shared by the risk manager, the projections and replay (STYLE.md principle 3), so all three see
the same numbers. Everything is :class:`~decimal.Decimal`; the state is frozen.

Accounting rules (netting, one position per symbol, USDT-margined linear contracts):

* A position is signed ``contracts`` (long > 0, short < 0) of ``contract_size`` base units.
  Notional = |contracts| × contract_size × mark; unrealised PnL = contracts × contract_size ×
  (mark − average entry). ``mark`` is the last trade price seen for the symbol (fill price until
  the next tick).
* A fill (partial or final; ``contracts`` is that fill's own quantity) in the position's direction
  raises it at a volume-weighted average entry. Against it, it realises PnL on the closed part at
  the entry price; past zero the rest opens a reversed position at the fill price.
* ``fee`` is a cost (positive = paid); ``FundingSettled.amount`` is received when positive.
* cash = initial equity + realised PnL − fees + funding; equity = cash + unrealised PnL.
* The trading day is the UTC day of the latest event time: at the first event of a new day the
  day's start and peak equity restart from the equity then; drawdown is measured from the peak.
* Contract size comes from ``ContractSpecified`` or, failing that, the configuration's
  ``CONTRACT_SPECS`` fallback. A fill for a symbol with neither is a broken invariant (the risk
  manager never orders without a spec) and raises :class:`UnknownContractSize`.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from aggregates.config import parse_config
from aggregates.events import (
    ConfigActivated,
    ContractSpecified,
    Event,
    FundingSettled,
    OrderFilled,
    OrderPartiallyFilled,
    TradeTicked,
)
from aggregates.numeric import exact_context

DAY_MS = 86_400_000
ZERO = Decimal(0)
HUNDRED = Decimal(100)


class UnknownContractSize(ValueError):
    """A fill arrived for a symbol whose contract size nobody specified."""


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """One symbol's net position, with its running PnL components (all USDT)."""

    symbol: str
    contracts: Decimal
    contract_size: Decimal
    average_entry: Decimal
    mark: Decimal
    realised_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO

    @property
    def unrealised_pnl(self) -> Decimal:
        return self.contracts * self.contract_size * (self.mark - self.average_entry)

    @property
    def notional(self) -> Decimal:
        """Absolute notional at the mark price, USDT."""
        return abs(self.contracts) * self.contract_size * self.mark

    @property
    def entry_notional(self) -> Decimal:
        return abs(self.contracts) * self.contract_size * self.average_entry


class Portfolio(msgspec.Struct, frozen=True, kw_only=True):
    """The account. ``unrealised`` and ``gross_notional`` are kept incrementally for speed."""

    configured: bool = False
    cash: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    unrealised: Decimal = ZERO
    gross_notional: Decimal = ZERO
    positions: dict[str, Position] = {}
    contract_sizes: dict[str, Decimal] = {}
    fallback_sizes: dict[str, Decimal] = {}
    day: int = -1
    day_start_equity: Decimal = ZERO
    day_peak_equity: Decimal = ZERO

    @property
    def equity(self) -> Decimal:
        return self.cash + self.unrealised

    @property
    def exposure(self) -> Decimal:
        """Gross exposure as a fraction of equity (0 when equity is not positive)."""
        equity = self.equity
        return self.gross_notional / equity if equity > 0 else ZERO

    @property
    def drawdown(self) -> Decimal:
        """Today's drawdown from the day's peak equity, as a fraction (0..1+)."""
        peak = self.day_peak_equity
        return (peak - self.equity) / peak if peak > 0 else ZERO

    @property
    def drawdown_pct(self) -> Decimal:
        return self.drawdown * HUNDRED

    def position(self, symbol: str) -> Position | None:
        return self.positions.get(symbol)

    def contracts(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        return position.contracts if position is not None else ZERO

    def contract_size(self, symbol: str) -> Decimal | None:
        size = self.contract_sizes.get(symbol)
        return size if size is not None else self.fallback_sizes.get(symbol)


EMPTY = Portfolio()
_replace = msgspec.structs.replace
_EXACT = exact_context()


def evolve(portfolio: Portfolio, event: Event) -> Portfolio:
    """The portfolio after ``event``; events that do not concern it return it unchanged."""
    day = event.at_ms // DAY_MS
    if day > portfolio.day:
        equity = portfolio.cash + portfolio.unrealised
        portfolio = _replace(portfolio, day=day, day_start_equity=equity, day_peak_equity=equity)
    match event:
        case TradeTicked():
            return _mark(portfolio, event)
        case OrderFilled() | OrderPartiallyFilled():
            return _fill(portfolio, event)
        case FundingSettled():
            return _funding(portfolio, event)
        case ContractSpecified():
            sizes = dict(portfolio.contract_sizes)
            sizes[event.symbol] = event.contract_size
            return _replace(portfolio, contract_sizes=sizes)
        case ConfigActivated():
            return _configure(portfolio, event)
    return portfolio


def evolve_tick(portfolio: Portfolio, tick: TradeTicked) -> Portfolio:
    """:func:`evolve` for a ``TradeTicked`` (the bulk of the log), without the type dispatch."""
    if tick.at_ms // DAY_MS > portfolio.day:
        return evolve(portfolio, tick)
    return _mark(portfolio, tick)


def fold(events: list[Event] | tuple[Event, ...], portfolio: Portfolio = EMPTY) -> Portfolio:
    """Fold events in order: ``fold(a + b) == fold(b, fold(a))``."""
    for event in events:
        portfolio = evolve(portfolio, event)
    return portfolio


def _peaked(portfolio: Portfolio, **changes: object) -> Portfolio:
    """Apply changes and lift the day's peak if equity rose above it."""
    portfolio = _replace(portfolio, **changes)
    equity = portfolio.cash + portfolio.unrealised
    if equity > portfolio.day_peak_equity:
        portfolio = _replace(portfolio, day_peak_equity=equity)
    return portfolio


def _configure(portfolio: Portfolio, event: ConfigActivated) -> Portfolio:
    config = parse_config(event.parameters)
    fallback = {symbol: spec.contract_size for symbol, spec in config.contract_specs.items()}
    if portfolio.configured:
        return _replace(portfolio, fallback_sizes=fallback)
    # The first activation funds the account; later ones (restarts) only refresh fallbacks.
    return _peaked(
        portfolio,
        configured=True,
        cash=portfolio.cash + config.initial_equity,
        day_start_equity=portfolio.day_start_equity + config.initial_equity,
        fallback_sizes=fallback,
    )


def _mark(portfolio: Portfolio, tick: TradeTicked) -> Portfolio:
    """Re-mark an open position: the hot path of the fold, so one replace and no helpers."""
    symbol = tick.symbol
    position = portfolio.positions.get(symbol)
    if position is None:
        return portfolio
    price = tick.price
    moved = price - position.mark
    if not moved or not position.contracts:
        return portfolio
    base = position.contracts * position.contract_size
    positions = dict(portfolio.positions)
    positions[symbol] = _replace(position, mark=price)
    unrealised = portfolio.unrealised + base * moved
    equity = portfolio.cash + unrealised
    peak = portfolio.day_peak_equity
    return _replace(
        portfolio,
        positions=positions,
        unrealised=unrealised,
        gross_notional=portfolio.gross_notional + abs(base) * moved,
        day_peak_equity=equity if equity > peak else peak,
    )


def _fill(portfolio: Portfolio, fill: OrderFilled | OrderPartiallyFilled) -> Portfolio:
    symbol = fill.symbol
    before = portfolio.positions.get(symbol)
    if before is None:
        size = portfolio.contract_size(symbol)
        if size is None:
            raise UnknownContractSize(f"no contract size known for {symbol}")
        before = Position(
            symbol=symbol, contracts=ZERO, contract_size=size, average_entry=ZERO, mark=fill.price
        )
    size = before.contract_size
    held = before.contracts
    # Contracts held are a count, summed exactly (money below rounds at the pinned 28 digits).
    delta = fill.contracts if fill.side == "buy" else fill.contracts.copy_negate()
    after_contracts = _EXACT.add(held, delta)
    realised = ZERO
    if held == 0 or (held > 0) == (delta > 0):
        entry = (abs(held) * before.average_entry + fill.contracts * fill.price) / abs(
            after_contracts
        )
    else:
        closed = min(abs(delta), abs(held))
        direction = 1 if held > 0 else -1
        realised = closed * size * (fill.price - before.average_entry) * direction
        if after_contracts == 0:
            entry = ZERO
        elif (after_contracts > 0) == (held > 0):
            entry = before.average_entry
        else:
            entry = fill.price  # reversed through zero: the rest opens at the fill price
    after = Position(
        symbol=symbol,
        contracts=after_contracts,
        contract_size=size,
        average_entry=entry,
        mark=fill.price,
        realised_pnl=before.realised_pnl + realised,
        fees=before.fees + fill.fee,
        funding=before.funding,
    )
    positions = dict(portfolio.positions)
    positions[symbol] = after
    return _peaked(
        portfolio,
        positions=positions,
        cash=portfolio.cash + realised - fill.fee,
        realised_pnl=portfolio.realised_pnl + realised,
        fees=portfolio.fees + fill.fee,
        unrealised=portfolio.unrealised - before.unrealised_pnl + after.unrealised_pnl,
        gross_notional=portfolio.gross_notional - before.notional + after.notional,
    )


def _funding(portfolio: Portfolio, event: FundingSettled) -> Portfolio:
    positions = portfolio.positions
    position = positions.get(event.symbol)
    if position is not None:
        positions = dict(positions)
        positions[event.symbol] = _replace(position, funding=position.funding + event.amount)
    return _peaked(
        portfolio,
        positions=positions,
        cash=portfolio.cash + event.amount,
        funding=portfolio.funding + event.amount,
    )
