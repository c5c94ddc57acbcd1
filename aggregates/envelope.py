"""The ledger's envelope around a domain event, as plain data.

It lives in the pure core (not in ``eventstore``) because decision machines, projections and
replay all consume recorded events, and none of them may depend on the database adapter.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from aggregates.events import Event, event_type

#: Namespace for ids derived from causing events (uuid5), so replay re-derives identical ids.
CLAIRE_NAMESPACE = uuid.UUID("6f1d7a52-9b0e-5c1e-8d4a-c1a12ede0b1a")


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event on its way into the ledger; the store assigns position, version and hash."""

    event: Event
    event_id: uuid.UUID
    occurred_at: datetime
    causation_id: uuid.UUID | None = None
    causation_position: int | None = None
    correlation_id: uuid.UUID | None = None


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the ledger records around an event, in its column order: the one field list.

    :class:`RecordedEvent` and the bus's wire form extend it; the store's SQL column lists
    (``eventstore.sql``) and the canonical text (``eventstore.canonical.canonical_line``) follow
    :data:`ENVELOPE_FIELDS`, and tests hold every other spelling (the reader's array-like rows)
    to it.
    """

    position: int
    stream: str
    stream_version: int
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    causation_id: uuid.UUID | None
    causation_position: int | None
    correlation_id: uuid.UUID | None


#: The envelope's field names, in the ledger's column (and canonical text) order.
ENVELOPE_FIELDS: tuple[str, ...] = Envelope.__struct_fields__


class RecordedEvent(Envelope, frozen=True, kw_only=True, gc=False):
    """A committed event with everything the ledger knows about it: its envelope, the event,
    and its chain hash.

    ``gc=False``: reads and replays create one per event, and the cycle collector need not scan
    them; none can be part of a reference cycle (its fields are immutable values and an event,
    whose own fields are values too).
    """

    event: Event
    hash: bytes


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_ms(at_ms: int) -> datetime:
    """An event's domain time (UTC epoch milliseconds) as an aware datetime, exactly.

    The one conversion for the whole code base: integer arithmetic, no float division.
    """
    return _EPOCH + timedelta(milliseconds=at_ms)


def derive_event_id(producer: str, cause_id: uuid.UUID, index: int) -> uuid.UUID:
    """The id of the ``index``-th event a producer derived from a cause: stable across replays."""
    return uuid.uuid5(CLAIRE_NAMESPACE, f"{producer}/{cause_id}/{index}")


def derived(
    producer: str, cause: RecordedEvent, events: tuple[Event, ...] | list[Event]
) -> list[NewEvent]:
    """Wrap a decision's output events with ids, time and causation taken from their cause."""
    correlation = cause.correlation_id or cause.event_id
    return [
        NewEvent(
            event=event,
            event_id=derive_event_id(producer, cause.event_id, index),
            occurred_at=cause.occurred_at,
            causation_id=cause.event_id,
            causation_position=cause.position,
            correlation_id=correlation,
        )
        for index, event in enumerate(events)
    ]


def committed(new: NewEvent, position: int, stream: str) -> RecordedEvent:
    """The envelope of an event just appended at ``position``, to derive decisions from it.

    Only what causation needs is exact (id, position, time, correlation); the stream version,
    recorded-at and hash are the store's and are not known here: never persist this object.
    """
    return RecordedEvent(
        position=position,
        stream=stream,
        stream_version=0,
        event_id=new.event_id,
        event_type=event_type(new.event),
        schema_version=type(new.event).schema_version,
        occurred_at=new.occurred_at,
        recorded_at=new.occurred_at,
        causation_id=new.causation_id,
        causation_position=new.causation_position,
        correlation_id=new.correlation_id,
        event=new.event,
        hash=b"",
    )
