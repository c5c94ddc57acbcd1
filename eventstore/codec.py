"""From typed events to ledger payloads and back, strictly. Pure: no I/O.

On the way in, every event is checked against the catalogue and validated by a full
encode/decode round trip (msgspec does not type-check at construction), then rendered as
canonical jsonb text. On the way out, a payload of the class's current schema version is
decoded directly; an older one is upcast step by step first (STYLE.md principle 5).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
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

    ``id_text``, ``occurred_us``, ``causation_text`` and ``correlation_text`` are its envelope
    fields as the canonical text renders them (:func:`eventstore.canonical.canonical_line`),
    computed here, outside the appender's critical section. ``event`` is kept for the store's
    in-process commit listeners (:meth:`EventStore.on_commit`).
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
    id_text: str
    occurred_us: int
    causation_text: str | None
    correlation_text: str | None


_KEY_ORDER: dict[type, tuple[str, ...]] = {}

#: The timestamps the ledger accepts (``occurred_at``): from the Unix epoch up to, not including,
#: the year 3000 (UTC), like the events' own ``at_ms``. Why bounded: PostgreSQL, asyncpg and the
#: canonical form do not agree at the edges of ``datetime`` (asyncpg sends ``datetime.max`` as
#: ``infinity``, which the audit query cannot turn into microseconds and reads refuse).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)

#: ``causation_position`` is a ledger position (or 0, "before the first"): a bigint >= 0.
_MAX_POSITION = 2**63 - 1

#: Checks one value against its declared type; raises :class:`TypeError` naming the problem.
_Check = Callable[[object], None]


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _compile(info: msgspec.inspect.Type) -> _Check:
    """A strict type check for one msgspec type (msgspec checks nothing at construction).

    Why: the payload is validated by an encode/decode round trip, which converts instead of
    refusing: a float in a Decimal field is written as a JSON number (whose jsonb text is not
    the one hashed), bytes or a datetime in a str field become strings. Here the Python value
    must already be of the declared type; money must be a finite Decimal.
    """
    if isinstance(info, msgspec.inspect.StrType | msgspec.inspect.LiteralType):
        kinds: tuple[type, ...] = (
            (str,)
            if isinstance(info, msgspec.inspect.StrType)
            else tuple({type(v) for v in info.values})
        )

        def check_plain(value: object) -> None:
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise TypeError(f"expected {kinds[0].__name__}, got {_describe(value)}")

        return check_plain
    if isinstance(info, msgspec.inspect.IntType):

        def check_int(value: object) -> None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"expected int, got {_describe(value)}")

        return check_int
    if isinstance(info, msgspec.inspect.BoolType):

        def check_bool(value: object) -> None:
            if value is not True and value is not False:
                raise TypeError(f"expected bool, got {_describe(value)}")

        return check_bool
    if isinstance(info, msgspec.inspect.NoneType):

        def check_none(value: object) -> None:
            if value is not None:
                raise TypeError(f"expected None, got {_describe(value)}")

        return check_none
    if isinstance(info, msgspec.inspect.DecimalType):

        def check_decimal(value: object) -> None:
            if not isinstance(value, Decimal):
                raise TypeError(f"expected a Decimal (never a float), got {_describe(value)}")
            if not value.is_finite():
                raise TypeError(f"expected a finite Decimal, got {value}")

        return check_decimal
    if isinstance(info, msgspec.inspect.StructType):
        return _struct_check(info)
    if isinstance(info, msgspec.inspect.VarTupleType | msgspec.inspect.ListType):
        item = _compile(info.item_type)

        def check_items(value: object) -> None:
            if not isinstance(value, tuple | list):
                raise TypeError(f"expected a tuple, got {_describe(value)}")
            for index, element in enumerate(value):
                try:
                    item(element)
                except TypeError as error:
                    raise TypeError(f"[{index}]: {error}") from None

        return check_items
    if isinstance(info, msgspec.inspect.DictType):
        key, val = _compile(info.key_type), _compile(info.value_type)

        def check_dict(value: object) -> None:
            if not isinstance(value, dict):
                raise TypeError(f"expected a dict, got {_describe(value)}")
            for k, v in value.items():
                try:
                    key(k)
                    val(v)
                except TypeError as error:
                    raise TypeError(f"[{k!r}]: {error}") from None

        return check_dict
    if isinstance(info, msgspec.inspect.UnionType):
        options = [_compile(option) for option in info.types]

        def check_union(value: object) -> None:
            problems = []
            for option in options:
                try:
                    option(value)
                    return
                except TypeError as error:
                    problems.append(str(error))
            raise TypeError(" or ".join(problems))

        return check_union
    # A type the catalogue did not use when this was written: refuse to guess (import fails).
    raise NotImplementedError(f"no strict check for {type(info).__name__}")


def _exact_types(info: msgspec.inspect.Type) -> frozenset[type] | None:
    """The exact Python types a scalar field takes, for the fast path; None if not scalar."""
    if isinstance(info, msgspec.inspect.StrType):
        return frozenset({str})
    if isinstance(info, msgspec.inspect.IntType):
        return frozenset({int})
    if isinstance(info, msgspec.inspect.BoolType):
        return frozenset({bool})
    if isinstance(info, msgspec.inspect.NoneType):
        return frozenset({type(None)})
    if isinstance(info, msgspec.inspect.DecimalType):
        return frozenset({Decimal})
    if isinstance(info, msgspec.inspect.LiteralType):
        return frozenset(type(v) for v in info.values)
    if isinstance(info, msgspec.inspect.UnionType):
        parts = [_exact_types(option) for option in info.types]
        if all(part is not None for part in parts):
            return frozenset().union(*parts)  # type: ignore[arg-type]
    return None


def _struct_check(info: msgspec.inspect.StructType) -> _Check:
    """Scalar fields first, by exact type in one pass (the common, valid case costs about a
    set lookup per field); any doubt, and the other fields, go through the per-field checks,
    which accept subclasses and name the culprit."""
    fields = [(field.name, _compile(field.type)) for field in info.fields]
    exact = [(field.name, _exact_types(field.type)) for field in info.fields]
    fast = [(name, kinds) for name, kinds in exact if kinds is not None]
    rest = [check for check, (_, kinds) in zip(fields, exact, strict=True) if kinds is None]
    kinds_of = [kinds for _, kinds in fast]
    getter = attrgetter(*(name for name, _ in fast)) if fast else None
    single = len(fast) == 1
    cls = info.cls

    def check_fields(value: object, which: list[tuple[str, _Check]]) -> None:
        for name, check in which:
            try:
                check(getattr(value, name))
            except TypeError as error:
                raise TypeError(f"field {name!r}: {error}") from None

    def check_struct(value: object) -> None:
        if not isinstance(value, cls):
            raise TypeError(f"expected {cls.__name__}, got {_describe(value)}")
        if getter is not None:
            values = (getter(value),) if single else getter(value)
            for item, kinds in zip(values, kinds_of):  # noqa: B905 - same length
                kind = type(item)
                if kind not in kinds or (kind is Decimal and not item.is_finite()):
                    check_fields(value, fields)  # raises, naming the field (or accepts a subclass)
                    break
        check_fields(value, rest)

    return check_struct


#: One strict check per event class, compiled at import (an unsupported field type fails here).
_TYPE_CHECKS: dict[type, _Check] = {
    kind: _struct_check(msgspec.inspect.type_info(kind))  # type: ignore[arg-type]
    for kind in ev.EVENT_TYPES.values()
}


def check_occurred_at(moment: object) -> datetime:
    """Refuse what the ledger cannot store and hash faithfully: see :data:`EARLIEST`.

    Returns the instant in UTC, computed once: the hash and the stored row both use it, so a
    ``tzinfo`` whose ``utcoffset()`` answers differently on each call cannot make them differ.
    """
    if not isinstance(moment, datetime):
        raise InvalidEvent(f"occurred_at must be a timezone-aware datetime, got {moment!r}")
    try:
        offset = moment.utcoffset()
        utc = moment.astimezone(UTC) if offset is not None else None
        inside = utc is not None and EARLIEST <= utc < LATEST
    except (OverflowError, ValueError, TypeError) as error:
        raise InvalidEvent(f"occurred_at {moment!r} has no usable UTC offset: {error}") from None
    if utc is None:
        raise InvalidEvent(f"occurred_at must be a timezone-aware datetime: {moment!r}")
    if not inside:
        raise InvalidEvent(
            f"occurred_at {moment.isoformat()} is outside the ledger's range "
            f"[{EARLIEST.isoformat()}, {LATEST.isoformat()})"
        )
    return utc


def _check_envelope(new: NewEvent) -> datetime:
    """Every envelope field checked here, before any transaction: a value PostgreSQL would
    refuse must fail only its own append, never the others grouped into the same commit.
    Returns ``occurred_at`` in UTC (see :func:`check_occurred_at`)."""
    if type(new.event_id) is not uuid.UUID and not isinstance(new.event_id, uuid.UUID):
        raise InvalidEvent(f"event_id must be a UUID, got {new.event_id!r}")
    occurred_at = check_occurred_at(new.occurred_at)
    for name in ("causation_id", "correlation_id"):
        value = getattr(new, name)
        if value is not None and not isinstance(value, uuid.UUID):
            raise InvalidEvent(f"{name} must be a UUID or None, got {_describe(value)}")
    position = new.causation_position
    if position is not None and (
        not isinstance(position, int)
        or isinstance(position, bool)
        or not 0 <= position <= _MAX_POSITION
    ):
        raise InvalidEvent(
            f"causation_position must be None or a ledger position (0..{_MAX_POSITION}), "
            f"got {_describe(position)}"
        )
    return occurred_at


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
    escapes strings exactly like PostgreSQL's ``escape_json`` (tests/unit/eventstore/test_codec.py
    checks every code point), and the decoder ignores key order, so this is the same validation.
    NUL (which jsonb refuses) and nested classes go the general way through :func:`render_object`.
    """
    try:
        plan = _FLAT[kind]
    except KeyError:
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


def check_read_argument(name: str, value: object, minimum: int) -> None:
    """A read's numeric argument, checked before it reaches the driver (whose errors for a
    wrong type would read as a lost connection): :class:`InvalidEvent` naming it."""
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value < 2**63:
        raise InvalidEvent(f"{name} must be an int in {minimum}..{2**63 - 1}, got {value!r}")


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
    occurred_at = _check_envelope(new)
    event_id = new.event_id
    try:
        _TYPE_CHECKS[kind](event)
    except TypeError as error:
        raise InvalidEvent(f"invalid {tag} payload: {error}") from None
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
        str(event_id),
        epoch_micros(occurred_at),
        None if causation is None else str(causation),
        None if correlation is None else str(correlation),
    )


_current_decoder = msgspec.json.Decoder(ev.AnyEvent)


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
