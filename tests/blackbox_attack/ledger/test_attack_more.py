"""More edges: nested payloads, empty lists, dict keys, API argument errors, settings, reorders."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates.events import (
    ConfigActivated,
    MoversSelected,
    TickerQuote,
    TickersSnapshotted,
)
from eventstore import EventStore, EventStoreError, InvalidEvent
from tests.blackbox_attack.ledger.attack_ledger_helpers import (
    all_recorded,
    assert_intact,
    audit,
    claire,
    claire_async,
    count_events,
    new,
    note,
    trade,
)


@pytest.fixture
async def store_url(fresh_database_url):  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    store = await EventStore.connect(url)
    try:
        yield store, url
    finally:
        await store.close()


def _quote(**forced: object) -> TickerQuote:
    quote = TickerQuote(
        symbol="BTC_USDT",
        last_price=Decimal("1"),
        rise_fall_rate=Decimal("0"),
        volume_24h=Decimal("0"),
    )
    for name, value in forced.items():
        msgspec.structs.force_setattr(quote, name, value)
    return quote


def _config(parameters: dict) -> ConfigActivated:  # type: ignore[type-arg]
    config = ConfigActivated(at_ms=0, parameters={"a": "1"}, config_hash="0" * 64)
    msgspec.structs.force_setattr(config, "parameters", parameters)
    return config


async def test_append_when_lists_are_empty_then_reads_back_equal_and_verifies(store_url) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    events = [
        new(TickersSnapshotted(at_ms=0, quotes=())),
        new(MoversSelected(at_ms=0, symbols=(), scores=(), previous=())),
        new(ConfigActivated(at_ms=0, parameters={}, config_hash="f" * 64)),
    ]
    await store.append("empty", events)
    back = await all_recorded(store)
    assert [r.event for r in back] == [e.event for e in events]
    await assert_intact(store, url)


@pytest.mark.parametrize(
    "event",
    [
        TickersSnapshotted(at_ms=0, quotes=(_quote(), _quote(fair_price=1.5))),
        TickersSnapshotted(at_ms=0, quotes=(_quote(rise_fall_rate=Decimal("NaN")),)),
        TickersSnapshotted(at_ms=0, quotes=(_quote(volume_24h=7),)),
        TickersSnapshotted(at_ms=0, quotes=[_quote()]),  # type: ignore[arg-type]
        MoversSelected(at_ms=0, symbols=("BTC_USDT",), scores=(0.5,)),  # type: ignore[arg-type]
        _config({"a\x00": "1"}),
        _config({"a": "1\x00"}),
        _config({"\ud800": "1"}),
        _config({"a": 1}),
        _config({1: "a"}),
        _config({"a": None}),
    ],
    ids=repr,
)
async def test_append_when_nested_or_dict_field_invalid_then_invalid_event_nothing_written(
    store_url, event: object
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    try:
        await store.append("nested", [new(), new(event)])
    except InvalidEvent:
        assert await count_events(url) == 0
        return
    # A list where a tuple is declared may be accepted, but then it must read back equal.
    back = await all_recorded(store)
    assert back[1].event == event or list(back[1].event.quotes) == list(event.quotes)  # type: ignore[attr-defined]
    await assert_intact(store, url)


async def test_api_when_read_arguments_bad_then_event_store_error(store_url) -> None:  # type: ignore[no-untyped-def]
    store, _ = store_url
    await store.append("s", [new()])
    bad_reads = [
        lambda: store.read_all(after="0"),
        lambda: store.read_all(after=0, batch_size=0),
        lambda: store.read_all(after=1.0),
        lambda: store.read_stream("s", from_version="0"),
    ]
    for make in bad_reads:
        with pytest.raises(EventStoreError):
            async for _ in make():
                pass
    with pytest.raises(EventStoreError):
        await store.position_at(datetime(2025, 1, 1))  # noqa: DTZ001 - naive on purpose
    head = await store.head()
    with pytest.raises(EventStoreError):
        await store.verify(expect=head, resume=head)


async def test_verify_api_when_expect_position_zero_with_wrong_hash_then_not_ok(store_url) -> None:  # type: ignore[no-untyped-def]
    store, _ = store_url
    await store.append("s", [new()])
    result = await store.verify(expect=(0, b"\x11" * 32))
    assert not result.ok


async def test_verify_when_replication_role_stored_for_all_roles_in_database_then_exit_1(
    store_url,
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    await store.append("s", [new()])
    conn = await asyncpg.connect(url)
    try:
        db = await conn.fetchval("SELECT current_database()")
        await conn.execute(
            f'ALTER ROLE ALL IN DATABASE "{db}" SET session_replication_role = replica'
        )
    finally:
        await conn.close()
    done = await claire_async(url, "verify")
    assert done.code == 1, done.text
    assert "Traceback" not in done.text


@pytest.mark.parametrize(
    "statement,position",
    [
        (
            "UPDATE ledger.events SET position = CASE position WHEN 2 THEN 100 WHEN 3 THEN 2 "
            "END WHERE position IN (2, 3); UPDATE ledger.events SET position = 3 "
            "WHERE position = 100",
            2,
        ),
        ("UPDATE ledger.head SET position = position - 1", None),
    ],
    ids=["swap-2-3", "head-rewound"],
)
async def test_verify_and_audit_when_rows_reordered_or_head_rewound_then_both_fail(
    store_url, statement: str, position: int | None
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    await store.append("s", [new(note(str(i))) for i in range(5)])
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            f"DO $$ BEGIN SET LOCAL session_replication_role = replica; {statement}; END $$"
        )
    finally:
        await conn.close()
    done = await claire_async(url, "verify")
    out = done.text
    assert done.code == 1 and "Traceback" not in out, out
    rows = await audit(url)
    assert rows, "audit query found nothing"
    if position is not None:
        assert rows[0][0] == position and str(position) in out, (rows, out)


def test_verify_when_database_unreachable_then_exit_2_without_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = claire(f"postgresql://nobody@/nodb?host={tmp_path}", "verify")
    out = done.text
    assert done.code == 2 and "Traceback" not in out, out


_BAD = [
    {"occurred_at": datetime(2025, 1, 1)},  # noqa: DTZ001 - naive on purpose
    {"event_id": "not-a-uuid"},
    {"causation_position": -5},
    {"event": msgspec.structs.replace(trade(), trade_id="a\x00b")},
]


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.tuples(st.integers(1, 3), st.none() | st.integers(0, len(_BAD) - 1)),
        min_size=2,
        max_size=8,
    )
)
def test_group_commit_property_when_random_bad_requests_then_each_fails_alone(
    fresh_database_url, plan: list[tuple[int, int | None]]
) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        url = await fresh_database_url()
        store = await EventStore.connect(url)
        try:
            requests = []
            for size, bad in plan:
                events = [new() for _ in range(size)]
                if bad is not None:
                    events[-1] = new(**_BAD[bad])
                requests.append(events)
            results = await asyncio.gather(
                *(store.append(f"s{i}", events) for i, events in enumerate(requests)),
                return_exceptions=True,
            )
            expected = 0
            for (size, bad), result in zip(plan, results, strict=True):
                if bad is None:
                    assert isinstance(result, list) and len(result) == size, result
                    expected += size
                else:
                    assert isinstance(result, InvalidEvent), result
            assert await count_events(url) == expected
            await assert_intact(store, url)
        finally:
            await store.close()

    asyncio.run(run())
