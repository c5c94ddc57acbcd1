"""Calls that overlap in time, on both logs: one group of concurrent appends, reads that run
while appends land, subscribers that start beyond the head.

docs/LEDGER.md: with group commit "each request is still atomic and checked on its own ... a bad
request fails alone and the requests committed with it are written"; the in-memory log keeps
the same contract. Concurrent calls are gathered in the same order on both logs.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import EventLog, EventStore, MemoryEventLog
from tests.blackbox_attack.memory_log import diff_helpers as h

pytestmark = [pytest.mark.db]


def _event(n: int, note: str = "i") -> Any:
    return (
        h.new(h.funding(n, Decimal(n), Decimal("0.1")), uuid.UUID(int=5_000 + n), **{})
        if note == "i"
        else (h.new(h.command(n, note), uuid.UUID(int=6_000 + n)))
    )


_SHARED = _event(1)
_SHARED_CHANGED = msgspec.structs.replace(_SHARED, event=h.funding(1, Decimal(2), Decimal("0.1")))

#: name -> the appends gathered together (stream, events, expected_version).
_GROUPS: dict[str, list[tuple[str, list[Any], int | None]]] = {
    "good_bad_good": [
        ("grp.a", [_event(2)], None),
        ("grp.b", [_event(3, "nul\u0000")], None),
        ("grp.c", [_event(4)], None),
    ],
    "same_id_identical": [("grp.a", [_SHARED], None), ("grp.a", [_SHARED], None)],
    "same_id_other_streams": [("grp.a", [_SHARED], None), ("grp.b", [_SHARED], None)],
    "same_id_changed": [("grp.a", [_SHARED], None), ("grp.a", [_SHARED_CHANGED], None)],
    "versions_chain": [
        ("grp.a", [_event(2)], 0),
        ("grp.a", [_event(3)], 1),
        ("grp.a", [_event(4)], 2),
    ],
    "versions_reversed": [
        ("grp.a", [_event(4)], 2),
        ("grp.a", [_event(3)], 1),
        ("grp.a", [_event(2)], 0),
    ],
    "empty_among_others": [("grp.a", [], 0), ("grp.a", [_event(2)], 0), ("grp.a", [], 1)],
}


def _answer(result: Any) -> Any:
    return result if isinstance(result, list) else f"{type(result).__name__}: {result}"


@pytest.mark.parametrize("group", sorted(_GROUPS))
async def test_appends_when_gathered_at_once_then_both_logs_answer_each_alike(
    pg: EventStore, mem: MemoryEventLog, group: str
) -> None:
    answers = []
    for log in (pg, mem):
        results = await asyncio.gather(
            *(log.append(stream, events, version) for stream, events, version in _GROUPS[group]),
            return_exceptions=True,
        )
        answers.append([_answer(result) for result in results])
    assert answers[0] == answers[1]
    pg_all, mem_all = await h.collect(pg.read_all()), await h.collect(mem.read_all())
    assert [h.view(r) for r in pg_all] == [h.view(r) for r in mem_all]
    assert (await pg.verify()).ok and (await mem.verify()).ok


async def _read_while_appending(log: EventLog, reader: Callable[[EventLog], Any]) -> list[int]:
    await log.append("mix.a", [_event(n) for n in range(1, 4)])
    seen = []
    async for recorded in reader(log):
        seen.append(recorded.position)
        if len(seen) == 1:
            await log.append("mix.a", [_event(10)])
            await log.append("mix.b", [_event(11)])
    return seen


_READERS: dict[str, Callable[[EventLog], Any]] = {
    "read_all_batch_1": lambda log: log.read_all(0, batch_size=1),
    "read_all_batch_2000": lambda log: log.read_all(0),
    "read_stream_batch_1": lambda log: log.read_stream("mix.a", 0, batch_size=1),
    "read_stream_batch_2000": lambda log: log.read_stream("mix.a", 0),
}


_PAGE_SNAPSHOT = pytest.mark.xfail(
    strict=True,
    reason="FINDING: one contract, but a read whose first page holds the whole result sees"
    " appends that land during iteration on MemoryEventLog (batch_size 'otherwise unused') and"
    " not on the PostgreSQL store (it ends with the short page it fetched): the same calls"
    " yield different events, and on PostgreSQL what a read sees depends on batch_size",
)


@pytest.mark.parametrize(
    "reader",
    [
        pytest.param(name, marks=[_PAGE_SNAPSHOT] if name.endswith("2000") else [])
        for name in sorted(_READERS)
    ],
)
async def test_read_when_appends_land_during_iteration_then_both_logs_yield_the_same(
    pg: EventStore, mem: MemoryEventLog, reader: str
) -> None:
    pg_seen = await _read_while_appending(pg, _READERS[reader])
    mem_seen = await _read_while_appending(mem, _READERS[reader])
    assert pg_seen == mem_seen


async def _first_from(log: EventLog, after: int) -> list[int]:
    async def follow() -> list[int]:
        seen = []
        async for recorded in log.subscribe(after):
            seen.append(recorded.position)
            if len(seen) == 2:
                return seen
        return seen

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    for n in range(20, 26):
        await log.append("sub.far", [_event(n)])
    return await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("after", [0, 2, 4])
async def test_subscribe_when_after_is_below_or_beyond_the_head_then_same_events(
    pg: EventStore, mem: MemoryEventLog, after: int
) -> None:
    assert await _first_from(pg, after) == await _first_from(mem, after)


_ATTEMPTS = 8  # fresh stores, side by side: one hang is enough to show the finding


async def _first_live(log: EventLog, after: int) -> Any:
    async def follow() -> int | None:
        async for recorded in log.subscribe(after):
            return recorded.position
        return None

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # the subscriber has caught up (nothing) and waits for appends
    await log.append("sub.neg", [_event(30)])
    return await h.outcome(asyncio.wait_for(task, 2.5))  # PostgreSQL re-polls every 1 s


async def test_subscribe_when_after_is_minus_three_and_an_append_lands_then_both_deliver_it(
    database_copy: Callable[[], Awaitable[str]],
) -> None:
    async def attempt() -> Any:
        store = await EventStore.connect(await database_copy())
        try:
            return await _first_live(store, -3)
        finally:
            await store.close()

    outcomes = [await _first_live(MemoryEventLog(), -3)]
    outcomes += await asyncio.gather(*(attempt() for _ in range(_ATTEMPTS)))
    assert outcomes == [("ok", 1)] * (1 + _ATTEMPTS), outcomes


_REQUEST = st.tuples(
    st.sampled_from(["a", "b"]),
    st.lists(st.sampled_from(["new", "shared", "changed", "bad"]), min_size=0, max_size=3),
    st.sampled_from([None, 0, 1, 2]),
)
_ROUND = itertools.count()


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests=st.lists(_REQUEST, min_size=2, max_size=4))
async def test_any_group_of_gathered_appends_then_both_logs_answer_each_alike(
    pg: EventStore, mem: MemoryEventLog, requests: list[Any]
) -> None:
    """One group commit on PostgreSQL, one after the other in memory: the same answers."""
    tag = f"g{next(_ROUND)}"
    shared = h.new(h.command(1, tag), uuid.uuid4())
    made = {
        "shared": lambda: shared,
        "changed": lambda: msgspec.structs.replace(shared, event=h.command(2, tag)),
        "new": lambda: h.new(h.command(3, tag), uuid.uuid4()),
        "bad": lambda: h.new(h.command(4, "nul\u0000"), uuid.uuid4()),
    }
    calls = [
        (f"{tag}.{stream}", [made[kind]() for kind in kinds], version)
        for stream, kinds, version in requests
    ]
    answers = []
    for log in (pg, mem):
        results = await asyncio.gather(
            *(log.append(stream, events, version) for stream, events, version in calls),
            return_exceptions=True,
        )
        answers.append([_answer(result) for result in results])
    assert answers[0] == answers[1]
    pg_all, mem_all = await h.collect(pg.read_all()), await h.collect(mem.read_all())
    assert [h.view(r) for r in pg_all] == [h.view(r) for r in mem_all]
