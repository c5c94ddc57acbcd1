"""Shared by the projection tests: put facts into a real ledger and read the read models back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from decimal import Decimal

import msgspec

from aggregates.envelope import NewEvent, RecordedEvent
from aggregates.events import (
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderRequested,
)
from eventstore import EventStore
from projections import ALL_PROJECTIONS
from projections.postgres import PostgresSink

Snapshot = dict[str, list[tuple[object, ...]]]


def new_from(fact: RecordedEvent) -> NewEvent:
    """The envelope that appends ``fact`` again, with its id and causation."""
    return NewEvent(
        event=fact.event,
        event_id=fact.event_id,
        occurred_at=fact.occurred_at,
        causation_id=fact.causation_id,
        causation_position=fact.causation_position,
        correlation_id=fact.correlation_id,
    )


async def append_in_order(store: EventStore, facts: Sequence[RecordedEvent]) -> list[int]:
    """Append each fact to its own stream; queued in order, so positions keep the order."""
    results = await asyncio.gather(*(store.append(f.stream, [new_from(f)]) for f in facts))
    positions = [p for batch in results for p in batch]
    assert positions == sorted(positions), "appends must keep the given order"
    return positions


async def read_facts(store: EventStore, after: int = 0) -> list[RecordedEvent]:
    return [fact async for fact in store.read_all(after=after)]


async def snapshot(database_url: str) -> Snapshot:
    """Every read-model row (through the views) and each checkpoint's position."""
    sink = await PostgresSink.connect(database_url, as_projector=False)
    try:
        found: Snapshot = {}
        for projection in ALL_PROJECTIONS:
            for table in projection.tables:
                found[table.name] = await sink.table_rows(table)
        checkpoints = await sink.checkpoints([p.name for p in ALL_PROJECTIONS])
        found["checkpoints"] = sorted((c.projection, c.position) for c in checkpoints.values())
        return found
    finally:
        await sink.close()


def with_acceptances(facts: Sequence[RecordedEvent]) -> list[RecordedEvent]:
    """Make the closed-loop driver's venue speak like a real one to the strict order fold.

    Its venue fills straight from REQUESTED and may "reject" a partly filled order; a real venue
    acknowledges first (an ``OrderAccepted`` goes before the first fill) and cancels the rest of
    an order that already traded (that reject becomes an ``OrderCancelled``).
    """
    remaining: dict[str, Decimal] = {}
    accepted: set[str] = set()
    out: list[RecordedEvent] = []
    for fact in facts:
        event = fact.event
        if isinstance(event, OrderRequested):
            remaining[event.client_order_id] = event.contracts
        elif isinstance(event, OrderRejected) and event.client_order_id in accepted:
            cancel = OrderCancelled(
                at_ms=event.at_ms,
                client_order_id=event.client_order_id,
                symbol=event.symbol,
                reason=event.code,
                remaining_contracts=remaining[event.client_order_id],
            )
            fact = msgspec.structs.replace(fact, event=cancel, event_type="order.cancelled")
        elif isinstance(event, OrderPartiallyFilled | OrderFilled):
            if event.client_order_id not in accepted:
                accepted.add(event.client_order_id)
                ack = OrderAccepted(
                    at_ms=event.at_ms,
                    client_order_id=event.client_order_id,
                    exchange_order_id=f"x-{event.client_order_id}",
                    symbol=event.symbol,
                )
                out.append(
                    msgspec.structs.replace(
                        fact,
                        event=ack,
                        event_type="order.accepted",
                        event_id=uuid.uuid5(fact.event_id, "accepted"),
                    )
                )
            remaining[event.client_order_id] -= event.contracts
        out.append(fact)
    return out
