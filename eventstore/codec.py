"""From typed events to ledger payloads and back, strictly. Pure: no I/O.

On the way in, every event is checked against the catalogue and validated by a full
encode/decode round trip (msgspec does not type-check at construction), then rendered as
canonical jsonb text. On the way out, a payload of the class's current schema version is
decoded directly; an older one is upcast step by step first (STYLE.md principle 5).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from aggregates import events as ev
from aggregates.envelope import NewEvent
from aggregates.upcasting import UPCASTERS, UpcastError, Upcasters
from eventstore.canonical import (
    CanonicalError,
    check_stream,
    epoch_micros,
    jsonb_key_order,
    render_object,
)
from eventstore.errors import CorruptEvent, InvalidEvent


class Prepared(msgspec.Struct, frozen=True):
    """A validated event ready for the appender: everything but position, version and hash.

    ``middle`` and ``tail`` are the parts of its canonical text that do not depend on where it
    lands, computed here, outside the appender's critical section.
    """

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    occurred_at: datetime
    causation_id: uuid.UUID | None
    causation_position: int | None
    correlation_id: uuid.UUID | None
    payload_text: str
    middle: str
    tail: str


_KEY_ORDER: dict[type, tuple[str, ...]] = {}


def _render(kind: type, data: dict[str, object]) -> str:
    order = _KEY_ORDER.get(kind)
    if order is None or len(order) != len(data):
        order = _KEY_ORDER[kind] = jsonb_key_order(list(data))
    return render_object(data, order)


def prepare(stream: str, new: NewEvent) -> Prepared:
    """Validate one new event for ``stream``; raises :class:`InvalidEvent` naming the problem."""
    try:
        check_stream(stream)
    except ValueError as error:
        raise InvalidEvent(str(error)) from None
    if not isinstance(new, NewEvent):
        raise InvalidEvent(f"expected a NewEvent, got {type(new).__name__}")
    event = new.event
    kind = type(event)
    tag = getattr(getattr(kind, "__struct_config__", None), "tag", None)
    if not isinstance(tag, str) or ev.EVENT_TYPES.get(tag) is not kind:
        raise InvalidEvent(f"{kind.__name__} is not an event type of aggregates.events")
    if not isinstance(new.event_id, uuid.UUID):
        raise InvalidEvent(f"event_id must be a UUID, got {new.event_id!r}")
    if not isinstance(new.occurred_at, datetime) or new.occurred_at.tzinfo is None:
        raise InvalidEvent(f"occurred_at must be a timezone-aware datetime: {new.occurred_at!r}")
    try:
        encoded = ev.encode(event)
        ev.decode(encoded)
        payload_text = _render(kind, msgspec.json.decode(encoded))
    except (msgspec.ValidationError, CanonicalError, UnicodeEncodeError, TypeError) as error:
        raise InvalidEvent(f"invalid {tag} payload: {error}") from None
    causation, correlation = new.causation_id, new.correlation_id
    cause_position = new.causation_position
    return Prepared(
        event_id=new.event_id,
        event_type=tag,
        schema_version=kind.schema_version,
        occurred_at=new.occurred_at,
        causation_id=new.causation_id,
        causation_position=new.causation_position,
        correlation_id=new.correlation_id,
        payload_text=payload_text,
        middle=f"{new.event_id}|{tag}|{kind.schema_version}|{epoch_micros(new.occurred_at)}",
        tail=(
            f"{'' if causation is None else causation}|"
            f"{'' if cause_position is None else cause_position}|"
            f"{'' if correlation is None else correlation}|{payload_text}"
        ),
    )


_current_decoder = msgspec.json.Decoder(ev.AnyEvent)  # type: ignore[arg-type]


def decode_payload(
    position: int,
    event_type: str,
    schema_version: int,
    payload: str | bytes,
    upcasters: Upcasters = UPCASTERS,
) -> ev.Event:
    """The typed event of a stored row; raises :class:`CorruptEvent` naming the position."""
    kind = ev.EVENT_TYPES.get(event_type)
    if kind is None:
        raise CorruptEvent(position, f"unknown event type {event_type!r}")
    try:
        if schema_version == kind.schema_version:
            event = _current_decoder.decode(payload)
        else:
            data = msgspec.json.decode(payload)
            if not isinstance(data, dict):
                raise CorruptEvent(position, "payload is not a JSON object")
            data = upcasters.upcast(
                event_type, schema_version, data, to_version=kind.schema_version
            )
            event = ev.from_builtins(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UpcastError) as error:
        raise CorruptEvent(position, f"{event_type} v{schema_version}: {error}") from None
    if type(event) is not kind:
        raise CorruptEvent(position, f"payload is a {type(event).__name__}, row says {event_type}")
    return event
