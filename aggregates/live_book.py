"""What live execution learns from the log, as one value with canonical bytes (docs/SNAPSHOTS.md).

``pipeline.live_execution`` sends the ledger's requested orders to MEXC and records the answers.
Everything it decides from the log is here: the order book, the request behind each order still
open (its answers are derived from it: ids, causation, correlation), the fees the ledger already
holds per open order and liquidity (MEXC reports fees cumulatively, so a new fill's fee is the
difference) and the exchange-resident stop per symbol. The service keeps only its I/O.

Pure: no I/O, no clock. :meth:`LiveBookState.fold` folds one recorded event; :meth:`apply` folds
an event the service recorded itself, before the log hands it back. The state is mutable on
purpose, like :class:`aggregates.orders.OrderBook` (copying the book per event would make a long
fold quadratic). Requests and fees are dropped once their order is finished: nothing asks for
them after that, and the snapshot stays the size of what is open plus the book.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

import msgspec

from aggregates import events as ev
from aggregates.envelope import NewEvent, RecordedEvent, committed
from aggregates.orders import OrderBook

_ZERO = Decimal(0)


class PendingRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An open order's ``OrderRequested`` and what its answers take from its envelope."""

    order: ev.OrderRequested
    event_id: uuid.UUID
    position: int
    occurred_at: datetime
    correlation_id: uuid.UUID | None = None

    @classmethod
    def of(cls, recorded: RecordedEvent) -> PendingRequest:
        assert isinstance(recorded.event, ev.OrderRequested)
        return cls(
            order=recorded.event,
            event_id=recorded.event_id,
            position=recorded.position,
            occurred_at=recorded.occurred_at,
            correlation_id=recorded.correlation_id,
        )

    @property
    def correlation(self) -> uuid.UUID:
        """The correlation its answers carry (the request's own, else the request itself)."""
        return self.correlation_id or self.event_id

    def cause(self) -> RecordedEvent:
        """The request's envelope as far as ``aggregates.envelope.derived`` reads it (id,
        position, time, correlation); the stream and hash are not kept: never persist it."""
        new = NewEvent(
            event=self.order,
            event_id=self.event_id,
            occurred_at=self.occurred_at,
            correlation_id=self.correlation_id,
        )
        return committed(new, self.position, "")


class ExchangeStop(msgspec.Struct, frozen=True, kw_only=True):
    """One exchange-resident stop as the ledger tells it (``exchange_id`` once placed)."""

    stop_id: str
    exchange_id: str | None
    direction: str
    contracts: Decimal
    trigger: Decimal


class LiveBookState(msgspec.Struct, kw_only=True):
    """Live execution's fold of the log: see the module docstring."""

    book: OrderBook = msgspec.field(default_factory=OrderBook)
    #: the request of each open order, by client order id, in the order they were requested
    requests: dict[str, PendingRequest] = {}
    #: fees the ledger holds per open order: client order id -> liquidity -> cumulative fee
    fees: dict[str, dict[str, Decimal]] = {}
    #: the exchange-resident stop per symbol (execution.stop_*)
    stops: dict[str, ExchangeStop] = {}

    def fold(self, recorded: RecordedEvent) -> LiveBookState:
        """Fold one event read from the log (returns ``self``, changed)."""
        if isinstance(recorded.event, ev.OrderRequested):
            self.requests[recorded.event.client_order_id] = PendingRequest.of(recorded)
        return self.apply(recorded.event)

    def apply(self, event: ev.Event) -> LiveBookState:
        """Fold one event without its envelope: one the service has just recorded itself."""
        if isinstance(event, ev.ExecutionStopRequested):
            self.stops[event.symbol] = ExchangeStop(
                stop_id=event.stop_id,
                exchange_id=None,
                direction=event.direction,
                contracts=event.contracts,
                trigger=event.trigger_price,
            )
            return self
        if isinstance(event, ev.ExecutionStopPlaced | ev.ExecutionStopEnded):
            stop = self.stops.get(event.symbol)
            if stop is not None and stop.stop_id == event.stop_id:
                if isinstance(event, ev.ExecutionStopEnded):
                    del self.stops[event.symbol]
                else:
                    placed = msgspec.structs.replace(stop, exchange_id=event.exchange_stop_id)
                    self.stops[event.symbol] = placed
            return self
        order = self.book.apply(event)
        if order is None:
            return self
        if not order.is_working:
            self.requests.pop(order.client_order_id, None)
            self.fees.pop(order.client_order_id, None)
        elif isinstance(event, ev.OrderPartiallyFilled):
            paid = self.fees.setdefault(event.client_order_id, {})
            paid[event.liquidity] = paid.get(event.liquidity, _ZERO) + event.fee
        return self

    def net_contracts(self) -> dict[str, Decimal]:
        """The net contracts the ledger's fills add up to per symbol (> 0 long, < 0 short)."""
        net: dict[str, Decimal] = {}
        for order in self.book:
            signed = order.filled_contracts if order.side == "buy" else -order.filled_contracts
            net[order.symbol] = net.get(order.symbol, _ZERO) + signed
        return net

    def fee_paid(self, client_order_id: str, liquidity: Literal["maker", "taker"]) -> Decimal:
        """The fees the ledger holds for an open order's ``liquidity`` fills so far."""
        return self.fees.get(client_order_id, {}).get(liquidity, _ZERO)


def fold(state: LiveBookState, recorded: RecordedEvent) -> LiveBookState:
    """``state`` after one recorded event (the state is changed in place and returned)."""
    return state.fold(recorded)
