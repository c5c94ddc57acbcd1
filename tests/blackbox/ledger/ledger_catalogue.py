"""Hypothesis strategies for the whole event catalogue, built from the event types themselves.

Black-box: they read only the public types (``aggregates.events``, ``aggregates.envelope``)
through msgspec's public ``inspect`` API, never the store's code. Each field draws mostly valid
values (honouring the declared patterns and bounds, so most appends are accepted) and sometimes
an edge value a careless caller could pass: floats (huge, tiny, NaN, infinite), non-finite
Decimals, bytes or datetimes where text is expected, ints beyond any column, NUL and lone
surrogates, timestamps at the edges of ``datetime``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
from hypothesis import strategies as st

from aggregates import events as ev
from aggregates.envelope import NewEvent

_EDGE_FLOATS = st.sampled_from([0.1, 1e300, 1e-300, 5e-324, 1.7976931348623157e308, 2.5])
_EDGE_DECIMALS = st.sampled_from(
    [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")]
)
_EDGE_NUMBERS = st.one_of(_EDGE_FLOATS, _EDGE_FLOATS, st.floats(), _EDGE_DECIMALS)
_EDGE_TEXT = st.one_of(
    st.binary(max_size=8),
    st.datetimes(timezones=st.just(UTC)),
    st.sampled_from(["a\x00b", "\ud800", "x" * 3000]),
)
_EDGE_INTS = st.sampled_from([-1, 2**63, -(2**63) - 1, 2**64 + 5, 10**30])


def _valid(info: msgspec.inspect.Type) -> st.SearchStrategy[object]:
    """Values of the declared type, within its declared constraints."""
    if isinstance(info, msgspec.inspect.StrType):
        if info.pattern:
            return st.from_regex(info.pattern, fullmatch=True).filter(
                lambda s: len(s) <= (info.max_length or 10**9)
            )
        return st.text(max_size=min(info.max_length or 40, 40))
    if isinstance(info, msgspec.inspect.IntType):
        return st.integers(
            min_value=info.ge if info.ge is not None else -(2**63),
            max_value=info.le if info.le is not None else 2**63 - 1,
        )
    if isinstance(info, msgspec.inspect.DecimalType):
        return st.decimals(allow_nan=False, allow_infinity=False) | st.sampled_from(
            [Decimal("0.00000001"), Decimal("1E+30"), Decimal("123456789.123456789"), Decimal(1)]
        )
    if isinstance(info, msgspec.inspect.BoolType):
        return st.booleans()
    if isinstance(info, msgspec.inspect.NoneType):
        return st.none()
    if isinstance(info, msgspec.inspect.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, msgspec.inspect.StructType):
        return struct_values(info)
    if isinstance(info, msgspec.inspect.VarTupleType):
        return st.lists(field_values(info.item_type), max_size=3).map(tuple)
    if isinstance(info, msgspec.inspect.DictType):
        return st.dictionaries(_valid(info.key_type), field_values(info.value_type), max_size=3)
    if isinstance(info, msgspec.inspect.UnionType):
        return st.one_of([field_values(option) for option in info.types])
    raise NotImplementedError(f"no strategy for {info!r}")


def _edge(info: msgspec.inspect.Type) -> st.SearchStrategy[object]:
    if isinstance(info, msgspec.inspect.DecimalType | msgspec.inspect.IntType):
        return _EDGE_NUMBERS | _EDGE_INTS
    if isinstance(info, msgspec.inspect.StrType | msgspec.inspect.LiteralType):
        return _EDGE_TEXT
    return _EDGE_NUMBERS | _EDGE_TEXT


def field_values(info: msgspec.inspect.Type) -> st.SearchStrategy[object]:
    """Valid values of a field (nested structs may still carry one edge value)."""
    return _valid(info)


def struct_values(info: msgspec.inspect.StructType) -> st.SearchStrategy[object]:
    """A struct whose fields are valid but for at most one, which gets an edge value (so each
    kind of bad input is tried on its own, not hidden behind another bad field)."""
    names = [field.name for field in info.fields]
    valid = {field.name: field_values(field.type) for field in info.fields}
    edges = {field.name: _edge(field.type) for field in info.fields}

    def build(values: dict[str, object]) -> object:
        try:
            return info.cls(**values)
        except (ValueError, TypeError, AttributeError, ArithmeticError):
            return None  # the type itself refused it (its __post_init__): not an append's input

    def draw(corrupt: str | None) -> st.SearchStrategy[object]:
        fields = {n: (edges[n] if n == corrupt else valid[n]) for n in names}
        return st.fixed_dictionaries(fields).map(build)

    choice = st.one_of(st.none(), st.sampled_from(names)) if names else st.none()
    return choice.flatmap(draw).filter(lambda v: v is not None)


#: Every event type of the catalogue (a new one is covered without editing this module).
EVENT_CLASSES = sorted(ev.EVENT_TYPES.values(), key=lambda kind: kind.__name__)


def events() -> st.SearchStrategy[ev.Event]:
    return st.sampled_from(EVENT_CLASSES).flatmap(
        lambda kind: struct_values(msgspec.inspect.type_info(kind))  # type: ignore[arg-type]
    )


_ZONES = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=14)),
        timezone(-timedelta(hours=12)),
        timezone(timedelta(hours=5, minutes=30)),
    ]
)
_EDGE_MOMENTS = st.sampled_from(
    [
        datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=timezone(-timedelta(hours=12))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(3000, 1, 1, tzinfo=UTC),
        datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1),  # noqa: DTZ001 - naive on purpose
    ]
)
_MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - st.datetimes takes naive bounds
    max_value=datetime(2999, 12, 30),  # noqa: DTZ001
    timezones=_ZONES,
)


def moments() -> st.SearchStrategy[datetime]:
    return st.one_of(_MOMENTS, _MOMENTS, _EDGE_MOMENTS)


_IDS = st.uuids()
_BAD_IDS = st.sampled_from(["not-a-uuid", b"\x00" * 16, 12, "6f1d7a52-9b0e-5c1e-8d4a-c1a12ede0b1a"])
_POSITIONS = st.integers(min_value=0, max_value=2**63 - 1)
_BAD_POSITIONS = st.sampled_from([-1, 2**63, 2**70, True, 1.0, "7"])


def new_events() -> st.SearchStrategy[NewEvent]:
    """An envelope around any event, its fields mostly valid, sometimes an edge value."""
    return st.builds(
        NewEvent,
        event=events(),
        event_id=st.one_of(_IDS, _IDS, _IDS, _IDS, _BAD_IDS),
        occurred_at=moments(),
        causation_id=st.one_of(st.none(), _IDS, _BAD_IDS),
        causation_position=st.one_of(st.none(), _POSITIONS, _BAD_POSITIONS),
        correlation_id=st.one_of(st.none(), _IDS, _BAD_IDS),
    )


def valid_new_event(kind: type[ev.Event] = ev.ClockTicked) -> NewEvent:
    """A plain valid event for a neighbour in the same group commit."""
    return NewEvent(
        event=ev.ClockTicked(at_ms=1_767_225_600_000),
        event_id=uuid.uuid4(),
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
