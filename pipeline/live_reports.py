"""Live execution's pure rules for what MEXC reports: no I/O, no clock (time comes in).

``pipeline.live_execution`` asks the exchange and records; these functions judge an order report
(:func:`implausible`), turn it into the ledger's events (:func:`report_events`, with ids derived
from the answer so a repeat is the same event: :func:`answers`), split its cumulative fees
(:func:`reported_fee`) and place a stop on the price grid (:func:`stop_price`).
"""

from __future__ import annotations

import re
import uuid
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

import msgspec

from adapters.mexc.rest_types import Order
from aggregates import events as ev
from aggregates.envelope import CLAIRE_NAMESPACE, NewEvent, utc_from_ms
from aggregates.live_book import PendingRequest
from aggregates.orders import OrderState, OrderStatus

#: MEXC's order states beyond 1 (uninformed) and 2 (uncompleted)
COMPLETED, CANCELLED, INVALID = 3, 4, 5
_CURRENCY = re.compile(r"^[A-Z0-9]{1,10}$")


def stop_price(entry: Decimal, direction: str, pct: Decimal, step: Decimal) -> Decimal:
    """``pct`` percent against the position from its entry, on the price grid, rounded toward
    the entry (the stop fires no later than the configured loss)."""
    if direction == "long":
        raw = entry * (1 - pct / 100)
        return (raw / step).to_integral_value(rounding=ROUND_CEILING) * step
    raw = entry * (1 + pct / 100)
    return (raw / step).to_integral_value(rounding=ROUND_FLOOR) * step


def fee_currency(found: Order) -> str:
    """The report's fee currency as the ledger records it (``UNKNOWN`` if not a plain code)."""
    currency = found.fee_currency or "USDT"
    return currency if _CURRENCY.fullmatch(currency) else "UNKNOWN"


def implausible(state: OrderState, found: Order) -> tuple[str, str, str] | None:
    """Why an order report from the exchange cannot be taken as it is, if it cannot."""
    if found.state not in (1, 2, COMPLETED, CANCELLED, INVALID):
        return (
            "unknown_order_state",
            "WARNING",
            f"order state {found.state!r} is not one MEXC documents; the ledger keeps the order"
            " as it was",
        )
    numbers = (found.deal_vol, found.deal_avg_price, found.taker_fee, found.maker_fee)
    if not all(isinstance(n, Decimal) and n.is_finite() for n in numbers):
        return ("implausible_order", "CRITICAL", f"non-finite numbers in the report: {numbers}")
    bad_price = found.deal_avg_price < 0 or (found.deal_vol > 0 and found.deal_avg_price == 0)
    if bad_price or not state.filled_contracts <= found.deal_vol <= state.contracts:
        return (
            "implausible_order",
            "CRITICAL",
            f"filled {found.deal_vol} of {state.contracts} contracts at {found.deal_avg_price}"
            f" (the ledger holds {state.filled_contracts}): not a possible fill",
        )
    return None


def reported_fee(
    found: Order, paid_taker: Decimal, paid_maker: Decimal, limit: bool
) -> tuple[Decimal, Literal["maker", "taker"]]:
    """The fee and liquidity of the new part of a fill, as the exchange reports them.

    MEXC reports each order's taker and maker fees so far; what the ledger does not hold yet
    (``paid_*``) belongs to the new fill. Its liquidity is the side whose fee grew (the larger
    growth if both did). With no fee at all (a 0 % maker rate), a limit order filled as maker
    and a market order as taker.
    """
    taker = Decimal(found.taker_fee) - paid_taker
    maker = Decimal(found.maker_fee) - paid_maker
    if taker == 0 and maker == 0:
        return Decimal(0), "maker" if limit else "taker"
    return taker + maker, "taker" if abs(taker) >= abs(maker) else "maker"


def report_events(
    state: OrderState,
    found: Order,
    fee: tuple[Decimal, Literal["maker", "taker"]],
    currency: str,
    now_ms: int,
) -> list[ev.Event]:
    """What the exchange's report adds to the ledger's order: the new part of its fills, else
    its end (cancelled there, or invalid before it was accepted); nothing if it adds nothing."""
    new_contracts = Decimal(found.deal_vol) - state.filled_contracts
    if new_contracts > 0 and found.deal_avg_price > 0:
        total_notional = Decimal(found.deal_avg_price) * Decimal(found.deal_vol)
        remaining = state.contracts - Decimal(found.deal_vol)
        filled = ev.OrderFilled(
            at_ms=found.update_time or now_ms,
            client_order_id=state.client_order_id,
            symbol=state.symbol,
            side=state.side,
            price=(total_notional - state.filled_notional) / new_contracts,
            contracts=new_contracts,
            fee=fee[0],
            fee_currency=currency,
            liquidity=fee[1],
            fill_id=f"{found.order_id}-{found.deal_vol}",
            reduce_only=state.reduce_only,
        )
        if remaining > 0 and found.state != COMPLETED:
            fields = msgspec.structs.asdict(filled)
            return [ev.OrderPartiallyFilled(**fields, remaining_contracts=remaining)]
        return [filled]
    if found.state == CANCELLED:
        return [
            ev.OrderCancelled(
                at_ms=found.update_time or now_ms,
                client_order_id=state.client_order_id,
                symbol=state.symbol,
                reason="cancelled_at_exchange",
                remaining_contracts=state.remaining_contracts,
            )
        ]
    if found.state == INVALID and state.status is OrderStatus.REQUESTED:
        return [
            ev.OrderRejected(
                at_ms=now_ms,
                client_order_id=state.client_order_id,
                symbol=state.symbol,
                code="mexc_invalid",
                message="the exchange reports the order as invalid",
            )
        ]
    return []


def answers(producer: str, request: PendingRequest, events: list[ev.Event]) -> list[NewEvent]:
    """The envelopes of what a report added: caused by the request, ids derived from the event
    itself (the same report twice is the same event, which the store takes once)."""
    coid = request.order.client_order_id
    return [
        NewEvent(
            event=event,
            event_id=uuid.uuid5(CLAIRE_NAMESPACE, f"{producer}/{coid}/{ev.encode(event)!r}"),
            occurred_at=utc_from_ms(event.at_ms),
            causation_id=request.event_id,
            causation_position=request.position,
            correlation_id=request.correlation,
        )
        for event in events
    ]
