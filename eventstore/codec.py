"""From typed events to ledger payloads and back, strictly. Pure: no I/O.

On the way in, every event is checked against the catalogue and validated by a full
encode/decode round trip (msgspec does not type-check at construction), then rendered as
canonical jsonb text. On the way out, a payload of the class's current schema version is
decoded directly; an older one is upcast step by step first (STYLE.md principle 5).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from operator import attrgetter

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
    lands, computed here, outside the appender's critical section. ``event`` is kept for the
    store's in-process commit listeners (:meth:`EventStore.on_commit`).
    """

    event: ev.Event
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

#: Field types whose JSON is a scalar msgspec writes exactly as jsonb prints it (see _flat_plan).
_SCALARS = (
    msgspec.inspect.StrType,
    msgspec.inspect.IntType,
    msgspec.inspect.BoolType,
    msgspec.inspect.NoneType,
    msgspec.inspect.DecimalType,
    msgspec.inspect.LiteralType,
)


class _FlatPlan(msgspec.Struct, frozen=True):
    """How to lay out one flat event class in jsonb key order (computed once per class)."""

    keys: tuple[str, ...]  # every JSON key, "type" included, in jsonb order
    tag_index: int  # where the tag goes among them
    values: Callable[[ev.Event], tuple[object, ...]]  # the other fields, in that order


_FLAT: dict[type, _FlatPlan | None] = {}


def _flat_plan(kind: type) -> _FlatPlan | None:
    """A plan for classes whose every field is a scalar; None for the rest (nested values)."""
    info = msgspec.inspect.type_info(kind)
    names = []
    for field in info.fields:  # type: ignore[attr-defined]
        types = getattr(field.type, "types", (field.type,))
        if field.name != field.encode_name or not all(isinstance(t, _SCALARS) for t in types):
            return None
        names.append(field.name)
    keys = jsonb_key_order([info.tag_field, *names])  # type: ignore[attr-defined]
    tag_index = keys.index(info.tag_field)  # type: ignore[attr-defined]
    getter = attrgetter(*(k for k in keys if k != info.tag_field))  # type: ignore[attr-defined]
    values = getter if len(keys) > 2 else lambda event: (getter(event),)
    return _FlatPlan(keys, tag_index, values)


def _render(kind: type, data: dict[str, object]) -> str:
    order = _KEY_ORDER.get(kind)
    if order is None or len(order) != len(data):
        order = _KEY_ORDER[kind] = jsonb_key_order(list(data))
    return render_object(data, order)


def _payload(kind: type, tag: str, event: ev.Event) -> str:
    """Validate ``event`` by a strict decode of its JSON; return its jsonb text.

    Flat classes (all of today's hot ones) take one encode of their fields already in jsonb key
    order, and ``msgspec.json.format(indent=0)`` supplies jsonb's ``", "`` / ``": "``: msgspec
    escapes strings exactly like PostgreSQL's ``escape_json`` (tests/unit/test_codec.py checks
    every code point), and the decoder ignores key order, so this is the same validation. NUL
    (which jsonb refuses) and nested classes go the general way through :func:`render_object`.
    """
    plan = _FLAT.get(kind, False)
    if plan is False:
        plan = _FLAT[kind] = _flat_plan(kind)
    if plan is not None:
        values = list(plan.values(event))
        values.insert(plan.tag_index, tag)
        encoded = ev.encode(dict(zip(plan.keys, values, strict=True)))  # type: ignore[arg-type]
        ev.decode(encoded)
        if b"\\u0000" not in encoded:
            return msgspec.json.format(encoded, indent=0).decode()
    encoded = ev.encode(event)
    ev.decode(encoded)
    return _render(kind, msgspec.json.decode(encoded))


def prepare(stream: str, new: NewEvent) -> Prepared:
    """Validate one new event for ``stream``; raises :class:`InvalidEvent` naming the problem."""
    check_stream_name(stream)
    return prepare_checked(stream, new)


def check_stream_name(stream: str) -> None:
    """:func:`eventstore.canonical.check_stream` as an append reports it: :class:`InvalidEvent`."""
    try:
        check_stream(stream)
    except ValueError as error:
        raise InvalidEvent(str(error)) from None


def prepare_checked(stream: str, new: NewEvent) -> Prepared:
    """:func:`prepare` for a stream name already checked with :func:`check_stream`."""
    if type(new) is not NewEvent and not isinstance(new, NewEvent):
        raise InvalidEvent(f"expected a NewEvent, got {type(new).__name__}")
    event = new.event
    kind = type(event)
    tag = getattr(getattr(kind, "__struct_config__", None), "tag", None)
    if not isinstance(tag, str) or ev.EVENT_TYPES.get(tag) is not kind:
        raise InvalidEvent(f"{kind.__name__} is not an event type of aggregates.events")
    event_id, occurred_at = new.event_id, new.occurred_at
    if type(event_id) is not uuid.UUID and not isinstance(event_id, uuid.UUID):
        raise InvalidEvent(f"event_id must be a UUID, got {event_id!r}")
    if not isinstance(occurred_at, datetime) or occurred_at.tzinfo is None:
        raise InvalidEvent(f"occurred_at must be a timezone-aware datetime: {occurred_at!r}")
    try:
        payload_text = _payload(kind, tag, event)
    except (msgspec.ValidationError, CanonicalError, UnicodeEncodeError, TypeError) as error:
        raise InvalidEvent(f"invalid {tag} payload: {error}") from None
    causation, correlation = new.causation_id, new.correlation_id
    cause_position = new.causation_position
    schema = kind.schema_version
    return Prepared(
        event,
        event_id,
        tag,
        schema,
        occurred_at,
        causation,
        cause_position,
        correlation,
        payload_text,
        f"{event_id}|{tag}|{schema}|{epoch_micros(occurred_at)}",
        (
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
