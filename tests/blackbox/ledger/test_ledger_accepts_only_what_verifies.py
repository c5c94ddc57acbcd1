"""Issue 15, items 1-3 and 8: whatever ``append`` accepts verifies and reads back equal; whatever
it refuses raises ``InvalidEvent`` for that request alone and leaves no row.

Black-box: written from docs/LEDGER.md (the ledger's contract) and ``from eventstore import ...``
only; the events come from strategies built from the catalogue's own types (``ledger_catalogue``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates import events as ev
from aggregates.envelope import NewEvent
from eventstore import EventStore, EventStoreError, InvalidEvent
from tests.blackbox.ledger.ledger_blackbox import audit, claire_verify, rows_in
from tests.blackbox.ledger.ledger_catalogue import new_events, valid_new_event

pytestmark = [pytest.mark.db]

_streams = itertools.count(1)
_ids = itertools.count(1)
_examples = itertools.count(1)


def _unique_id(new: NewEvent) -> NewEvent:
    # Valid ids are made unique (a re-sent id is the idempotency promise, tested elsewhere).
    if isinstance(new.event_id, uuid.UUID):
        return msgspec.structs.replace(new, event_id=uuid.UUID(int=next(_ids) + (7 << 100)))
    return new


@settings(
    max_examples=int(os.environ.get("LEDGER_PROPERTY_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.too_slow,
    ],
)
@given(batch=st.lists(new_events(), min_size=1, max_size=4))
async def test_every_accepted_append_verifies_and_reads_back_equal_every_refused_leaves_no_row(
    store: EventStore, ledger_url: str, batch: list[NewEvent]
) -> None:
    batch = [_unique_id(new) for new in batch]
    streams = [f"prop-{next(_streams)}" for _ in batch]
    neighbour, neighbour_stream = valid_new_event(), f"prop-{next(_streams)}"
    neighbour = msgspec.structs.replace(neighbour, event_id=uuid.UUID(int=next(_ids) + (7 << 100)))
    # Concurrent: one group commit holds the neighbour and every drawn request.
    outcomes = await asyncio.gather(
        store.append(neighbour_stream, [neighbour], expected_version=0),
        *(store.append(s, [new]) for s, new in zip(streams, batch, strict=True)),
        return_exceptions=True,
    )
    assert not isinstance(outcomes[0], BaseException), f"a valid neighbour failed: {outcomes[0]!r}"
    for stream, new, outcome in zip(streams, batch, outcomes[1:], strict=True):
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, InvalidEvent), f"{new!r} raised {outcome!r}"
            assert await rows_in(ledger_url, stream) == 0, f"refused {new!r} left a row"
            continue
        [recorded] = [r async for r in store.read_stream(stream)]
        assert recorded.position == outcome[0]
        assert recorded.event == new.event
        assert recorded.event_id == new.event_id
        assert recorded.occurred_at == new.occurred_at
        assert (recorded.causation_id, recorded.causation_position, recorded.correlation_id) == (
            new.causation_id,
            new.causation_position,
            new.correlation_id,
        )
    assert await audit(ledger_url) is None
    result = await store.verify()
    assert result.ok, result.problem
    assert [r.position async for r in store.read_all()][-1] == result.head_position
    if next(_examples) % 40 == 0:
        run = await asyncio.to_thread(claire_verify, ledger_url)
        assert run.code == 0, run.err


def _at(moment: datetime, event: ev.Event | None = None) -> NewEvent:
    return NewEvent(
        event=event or ev.ClockTicked(at_ms=1),
        event_id=uuid.uuid4(),
        occurred_at=moment,
    )


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            ev.MoversSelected(at_ms=1, symbols=("BTC_USDT",), scores=(1e300,)), id="1e300"
        ),  # type: ignore[arg-type]
        pytest.param(ev.MoversSelected(at_ms=1, symbols=("BTC_USDT",), scores=(1e-7,)), id="1e-7"),  # type: ignore[arg-type]
        pytest.param(ev.MoversSelected(at_ms=1, symbols=("BTC_USDT",), scores=(2.5,)), id="2.5"),  # type: ignore[arg-type]
        pytest.param(
            ev.MoversSelected(at_ms=1, symbols=("BTC_USDT",), scores=(Decimal("NaN"),)), id="NaN"
        ),
        pytest.param(
            ev.MoversSelected(at_ms=1, symbols=("BTC_USDT",), scores=(Decimal("-Infinity"),)),
            id="-inf",
        ),
        *(
            pytest.param(
                ev.OrderCancelled(
                    at_ms=1,
                    client_order_id="c1",
                    symbol="BTC_USDT",
                    reason="r",
                    remaining_contracts=value,  # type: ignore[arg-type]
                ),
                id=f"field {value!r}",
            )
            for value in (Decimal("NaN"), Decimal("Infinity"), 1e300, 1e-7)
        ),
    ],
)
async def test_money_that_is_not_a_finite_decimal_is_refused_and_writes_nothing(
    store: EventStore, ledger_url: str, event: ev.Event
) -> None:
    with pytest.raises(InvalidEvent, match=r"scores|remaining_contracts"):
        await store.append("money", [_at(datetime(2026, 1, 1, tzinfo=UTC), event)])
    assert await rows_in(ledger_url, "money") == 0
    assert (await store.verify()).ok


@pytest.mark.parametrize(
    "moment",
    [
        datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=timezone(-timedelta(hours=12))),
        datetime(3000, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
    ids=str,
)
async def test_a_timestamp_outside_the_documented_range_is_refused_and_the_ledger_stays_readable(
    store: EventStore, ledger_url: str, moment: datetime
) -> None:
    await store.append("time", [_at(datetime(2026, 1, 1, tzinfo=UTC))])
    with pytest.raises(InvalidEvent, match="occurred_at"):
        await store.append("time", [_at(moment)])
    assert [r.stream async for r in store.read_all()] == ["time"]
    assert await audit(ledger_url) is None
    assert (await store.verify()).ok


async def test_the_documented_range_edges_are_accepted_verified_and_read_back(
    store: EventStore, ledger_url: str
) -> None:
    first = datetime(1970, 1, 1, tzinfo=UTC)
    last = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    await store.append("edges", [_at(first), _at(last.astimezone(timezone(timedelta(hours=14))))])
    assert [r.occurred_at async for r in store.read_stream("edges")] == [first, last]
    assert await audit(ledger_url) is None
    assert (await store.verify()).ok


@pytest.mark.parametrize(
    "bad",
    [
        {"causation_position": 2**63},
        {"causation_position": -1},
        {"causation_position": True},
        {"causation_id": "not-a-uuid"},
        {"correlation_id": "6f1d7a52-9b0e-5c1e-8d4a-c1a12ede0b1a"},
        {"causation_id": 12},
    ],
    ids=lambda bad: next(iter(bad.items())).__repr__(),
)
async def test_a_bad_envelope_field_fails_its_own_request_and_the_group_commit_keeps_the_others(
    store: EventStore, ledger_url: str, bad: dict[str, object]
) -> None:
    good = [valid_new_event() for _ in range(3)]
    wrong = msgspec.structs.replace(valid_new_event(), **bad)
    outcomes = await asyncio.gather(
        store.append("good-1", [good[0]]),
        store.append("bad", [wrong]),
        store.append("good-2", [good[1]]),
        store.append("good-3", [good[2]], expected_version=0),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], InvalidEvent), outcomes[1]
    assert all(isinstance(o, list) for o in (outcomes[0], outcomes[2], outcomes[3])), outcomes
    assert await rows_in(ledger_url, "bad") == 0
    assert sorted([r.stream async for r in store.read_all()]) == ["good-1", "good-2", "good-3"]
    assert (await store.verify()).ok


@pytest.mark.parametrize("value", [b"BTC_USDT", datetime(2026, 1, 1, tzinfo=UTC)], ids=repr)
async def test_a_wrong_python_type_in_a_text_field_is_refused_not_converted(
    store: EventStore, ledger_url: str, value: object
) -> None:
    event = msgspec.structs.replace(
        ev.ConfigActivated(at_ms=1, config_hash="a" * 64, parameters={}), source=value
    )
    with pytest.raises(InvalidEvent, match="source"):
        await store.append("types", [_at(datetime(2026, 1, 1, tzinfo=UTC), event)])
    assert await rows_in(ledger_url, "types") == 0


async def test_read_stream_with_a_bad_stream_name_raises_an_event_store_error(
    store: EventStore,
) -> None:
    with pytest.raises(EventStoreError):
        [r async for r in store.read_stream("no|pipes")]


@pytest.mark.parametrize(
    "call",
    [
        lambda store: store.append("s", valid_new_event()),
        lambda store: store.append("s", "not events"),
        lambda store: store.append("s", [valid_new_event()], expected_version=True),
        lambda store: store.append("s", [valid_new_event()], expected_version="0"),
        lambda store: store.append("bad name", [valid_new_event()]),
        lambda store: store.append("s", [ev.ClockTicked(at_ms=1)]),
        lambda store: _drain(store.read_all(after="0")),
        lambda store: _drain(store.read_all(batch_size=0)),
        lambda store: _drain(store.read_stream("s", from_version=1.5)),
        lambda store: _drain(store.read_stream("s", batch_size=-1)),
        lambda store: _drain(store.read_stream(b"s")),
        lambda store: store.position_at(datetime(2026, 1, 1)),  # noqa: DTZ001 - naive on purpose
    ],
    ids=lambda _: "",
)
async def test_every_error_of_the_public_api_is_an_event_store_error(
    store: EventStore, call: object
) -> None:
    with pytest.raises(EventStoreError):
        await call(store)  # type: ignore[operator]


async def _drain(events: object) -> None:
    async for _ in events:  # type: ignore[attr-defined]
        pass
