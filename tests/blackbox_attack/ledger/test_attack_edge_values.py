"""Edge values against "accepts only what verifies and reads back equal; refusals write nothing"."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest

from aggregates.envelope import NewEvent
from aggregates.events import ConfigActivated, RiskVerdictIssued, SignalGenerated
from eventstore import EventStore, EventStoreError, InvalidEvent
from tests.blackbox_attack.ledger.attack_ledger_helpers import (
    T0,
    all_recorded,
    audit,
    count_events,
    new,
    note,
    trade,
)


async def _rule(store: EventStore, url: str, events: list[NewEvent]) -> str:
    """Either stored exactly (reads back equal, verify + audit intact) or InvalidEvent, nothing."""
    before = await count_events(url)
    try:
        await store.append("attack-edge", events)
    except InvalidEvent:
        assert await count_events(url) == before
        return "refused"
    stored = {r.event_id: r for r in await all_recorded(store)}
    for sent in events:
        got = stored[sent.event_id]
        assert got.event == sent.event
        assert got.occurred_at == sent.occurred_at
        assert got.causation_id == sent.causation_id
        assert got.causation_position == sent.causation_position
        assert got.correlation_id == sent.correlation_id
    result = await store.verify()
    assert result.ok, result
    assert await audit(url) == []
    return "stored"


@pytest.fixture
async def store_url(fresh_database_url):  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    store = await EventStore.connect(url)
    try:
        yield store, url
    finally:
        await store.close()


DECIMALS = [
    Decimal("1E+999999"),
    Decimal("1E-999999"),
    Decimal("-0"),
    Decimal("0E-50"),
    Decimal("0E+50"),
    Decimal("123.4500"),
    Decimal("9" * 500),
    Decimal("0." + "0" * 300 + "1"),
    Decimal("1E+2"),
    Decimal("-1.5E-7"),
]


@pytest.mark.parametrize("value", DECIMALS, ids=str)
async def test_append_when_decimal_has_extreme_exponent_or_digits_then_stored_exactly_or_refused(
    store_url, value: Decimal
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    signal = SignalGenerated(
        at_ms=1_748_854_800_000,
        symbol="BTC_USDT",
        direction="long",
        strength=Decimal("0.5"),
        momentum=value,
        reference_price=Decimal("100"),
        window_start_ms=0,
        trades_in_window=3,
        contracts_in_window=Decimal("1"),
    )
    outcome = await _rule(store, url, [new(signal)])
    if outcome == "stored":
        (got,) = [r for r in await all_recorded(store)]
        assert str(got.event.momentum) == str(value)


TEXTS = [
    "\x01\x1f\x7f\x80\x9f",
    "\u2028\u2029\ufeff\ufffe\uffff",
    "\U0001f600\U0010ffff",
    'quote " backslash \\ slash / tab \t nl \n cr \r',
    "\\u0000 literally",
    "e\u0301 vs \u00e9",
    "",
    "x" * 2000,
]


@pytest.mark.parametrize("text", TEXTS, ids=repr)
async def test_append_when_text_has_control_or_nonbmp_chars_then_reads_back_equal_and_verifies(
    store_url, text: str
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    assert await _rule(store, url, [new(note(text))]) == "stored"


@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "x\udfffy"], ids=repr)
async def test_append_when_text_has_nul_or_lone_surrogate_then_invalid_event_and_nothing_written(
    store_url, text: str
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    good = new(note("fine"))
    with pytest.raises(InvalidEvent):
        await store.append("attack-edge", [good, new(note(text))])
    assert await count_events(url) == 0


KEYSETS = [
    {"\u00e9": "1", "ab": "2"},
    {"b": "1", "aa": "2", "\U0001f600": "3", "zz": "4", "\u00e9\u00e9": "5"},
    {"Z": "1", "a": "2", "_": "3", "\x7f": "4", "\x01": "5"},
    {"": "empty key", "k": ""},
    {"\u2028": "ls", 'a"b': 'q"', "a\\b": "bs"},
]


@pytest.mark.parametrize("keys", KEYSETS, ids=repr)
async def test_append_when_dict_keys_sort_differently_by_chars_and_bytes_then_verifies(
    store_url, keys: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    config = ConfigActivated(at_ms=1_748_854_800_000, parameters=keys, config_hash="a" * 64)
    verdict = RiskVerdictIssued(
        at_ms=1_748_854_800_000,
        symbol="BTC_USDT",
        decision="rejected",
        layer="cooldown",
        reason="cooldown",
        intent="entry",
        numbers=keys,
    )
    assert await _rule(store, url, [new(config), new(verdict)]) == "stored"


ACCEPTED_TIMES = [
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-1))),
    datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(3000, 1, 1, 0, 59, 59, 999999, tzinfo=timezone(timedelta(hours=1))),
    datetime(2025, 6, 2, 9, 0, 0, 1, tzinfo=timezone(timedelta(seconds=1))),
    datetime(2025, 6, 2, 9, 0, 0, 1, tzinfo=timezone(timedelta(hours=23, minutes=59))),
    datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(microseconds=1))),
]


@pytest.mark.parametrize("when", ACCEPTED_TIMES, ids=str)
async def test_append_when_occurred_at_inside_documented_range_edges_then_same_instant_and_verifies(
    store_url, when: datetime
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    assert await _rule(store, url, [new(occurred_at=when)]) == "stored"


REFUSED_TIMES = [
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(3000, 1, 1, tzinfo=UTC),
    datetime(1970, 1, 1, 0, 59, 59, tzinfo=timezone(timedelta(hours=1))),
    datetime(2999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-1))),
    datetime.min.replace(tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    datetime(2025, 6, 2, 9, 0),  # noqa: DTZ001 - naive on purpose
]


@pytest.mark.parametrize("when", REFUSED_TIMES, ids=str)
async def test_append_when_occurred_at_outside_range_or_naive_then_invalid_event_nothing_written(
    store_url, when: datetime
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    with pytest.raises(InvalidEvent):
        await store.append("attack-edge", [new(), new(occurred_at=when)])
    assert await count_events(url) == 0


UUIDS = [
    uuid.UUID(int=0),
    uuid.UUID(int=2**128 - 1),
    uuid.UUID("00000000-0000-0000-0000-000000000001"),
]


@pytest.mark.parametrize("value", UUIDS, ids=str)
async def test_append_when_ids_are_nil_or_max_uuid_then_reads_back_equal_and_verifies(
    store_url, value: uuid.UUID
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    event = new(event_id=value, causation_id=value, correlation_id=value, causation_position=0)
    assert await _rule(store, url, [event]) == "stored"


@pytest.mark.parametrize("position", [0, 2**63 - 1])
async def test_append_when_causation_position_at_bigint_edges_then_stored_and_verifies(
    store_url, position: int
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    assert await _rule(store, url, [new(causation_position=position)]) == "stored"


BAD_FIELDS = [
    {"causation_position": -1},
    {"causation_position": 2**63},
    {"causation_position": True},
    {"causation_position": 1.0},
    {"causation_position": "1"},
    {"causation_id": "6f1d7a52-9b0e-5c1e-8d4a-c1a12ede0b1a"},
    {"correlation_id": 5},
    {"correlation_id": b"\x00" * 16},
    {"event_id": "6f1d7a52-9b0e-5c1e-8d4a-c1a12ede0b1a"},
    {"event_id": None},
    {"occurred_at": "2025-06-02T09:00:00Z"},
    {"occurred_at": 1_748_854_800},
]


@pytest.mark.parametrize("fields", BAD_FIELDS, ids=repr)
async def test_append_when_envelope_field_has_wrong_type_then_invalid_event_nothing_written(
    store_url, fields: dict[str, object]
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    with pytest.raises(InvalidEvent):
        await store.append("attack-edge", [new(), new(**fields)])
    assert await count_events(url) == 0


def _forced(event: object, **fields: object) -> object:
    """A valid event with fields forced past its own checks (as a careless caller could)."""
    for name, value in fields.items():
        msgspec.structs.force_setattr(event, name, value)
    return event


BAD_PAYLOADS = [
    _forced(trade(), price=1.5),
    _forced(trade(), price=100),
    _forced(trade(), price=True),
    _forced(trade(), price=Decimal("NaN")),
    _forced(trade(), price=Decimal("sNaN")),
    _forced(trade(), price=Decimal("-Infinity")),
    _forced(trade(), symbol=b"BTC_USDT"),
    _forced(trade(), at_ms=-1),
    _forced(trade(), at_ms=32503680000001),
    _forced(trade(), at_ms=True),
    _forced(trade(), at_ms=1.0),
    _forced(trade(), trade_id=datetime(2025, 1, 1, tzinfo=UTC)),
    _forced(note("ok"), note="x" * 2001),
    _forced(note("ok"), command="explode"),
]


@pytest.mark.parametrize("event", BAD_PAYLOADS, ids=repr)
async def test_append_when_payload_field_invalid_then_invalid_event_and_nothing_written(
    store_url, event: object
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    with pytest.raises(InvalidEvent):
        await store.append("attack-edge", [new(), new(event)])
    assert await count_events(url) == 0


@pytest.mark.parametrize("count", [2**63, 2**64, 10**30, -1])
async def test_append_when_int_field_beyond_machine_ints_then_stored_exactly_or_refused(
    store_url, count: int
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    signal = SignalGenerated(
        at_ms=1_748_854_800_000,
        symbol="BTC_USDT",
        direction="long",
        strength=Decimal("0.5"),
        momentum=Decimal("0.01"),
        reference_price=Decimal("100"),
        window_start_ms=0,
        trades_in_window=count,
        contracts_in_window=Decimal("1"),
    )
    try:
        await _rule(store, url, [new(signal)])
    except EventStoreError as error:  # pragma: no cover - a failure message
        raise AssertionError(f"not InvalidEvent: {error!r}") from error


@pytest.mark.parametrize(
    "stream", ["", "a" * 201, "a b", "str\u00e9am", "a/b", "a\x00", "\na"], ids=repr
)
async def test_append_and_read_when_stream_name_invalid_then_invalid_event(
    store_url, stream: str
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    with pytest.raises(InvalidEvent):
        await store.append(stream, [new()])
    with pytest.raises(EventStoreError):
        async for _ in store.read_stream(stream):
            pass
    assert await count_events(url) == 0


async def test_append_when_stream_name_at_200_chars_of_every_allowed_class_then_stored(
    store_url,
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    stream = ("Az09_.:-" * 25)[:200]
    await store.append(stream, [new()])
    got = [r async for r in store.read_stream(stream)]
    assert len(got) == 1 and got[0].stream == stream
    assert await audit(url) == []


@pytest.mark.parametrize("bad", [[], (), None, "abc", [trade()], [None]], ids=repr)
async def test_append_when_events_is_not_a_sequence_of_new_event_then_store_error_nothing_written(
    store_url, bad: object
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    try:
        result = await store.append("attack-edge", bad)  # type: ignore[arg-type]
    except EventStoreError:
        pass
    else:
        assert bad in ([], ()) and result == []
    assert await count_events(url) == 0


@pytest.mark.parametrize("version", [True, False, -1, 1.0, "0"], ids=repr)
async def test_append_when_expected_version_is_bool_negative_or_other_type_then_invalid_event(
    store_url, version: object
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    with pytest.raises(InvalidEvent):
        await store.append("attack-edge", [new()], expected_version=version)  # type: ignore[arg-type]
    assert await count_events(url) == 0


async def test_append_when_one_id_twice_identical_in_one_call_then_no_duplicate_row_and_verifies(
    store_url,
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    event = new()
    try:
        got = await store.append("attack-edge", [event, event])
    except EventStoreError:
        assert await count_events(url) == 0
        return
    assert got[0] == got[1]
    assert await count_events(url) == 1
    assert await audit(url) == []


_ = T0


async def test_append_when_stream_name_has_trailing_newline_then_invalid_event(
    store_url,
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    with pytest.raises(InvalidEvent):
        await store.append("a\n", [new()])
    assert await count_events(url) == 0


async def test_read_stream_when_stream_name_has_trailing_newline_then_store_error(
    store_url,
) -> None:  # type: ignore[no-untyped-def]
    store, _ = store_url
    with pytest.raises(EventStoreError):
        async for _ in store.read_stream("a\n"):
            pass
