"""Subscribe (catch up, then follow), close then use, and racing appends: on both logs.

docs/LEDGER.md: ``subscribe`` "catches up, then waits ... for new appends and ends at
``close()``" (the in-memory log); every error of the public API is an ``EventStoreError``
subclass, among them "a naive ``position_at``"; expected versions let exactly one of two
racing appends win.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest

from eventstore import ConcurrencyConflict, EventLog, EventStore, MemoryEventLog
from tests.blackbox_attack.memory_log import diff_helpers as h

pytestmark = [pytest.mark.db]


def _event(n: int, note: str = "e") -> Any:
    return h.new(h.command(n, f"{note}{n}"), uuid.UUID(int=n + 1_000 * len(note)))


async def _follow(log: EventLog, after: int, count: int) -> list[Any]:
    seen = []
    async for recorded in log.subscribe(after):
        seen.append(recorded)
        if len(seen) == count:
            break
    return seen


async def test_subscribe_when_catching_up_then_following_then_both_logs_deliver_the_same(
    pg: EventStore, mem: MemoryEventLog
) -> None:
    views = []
    for log in (pg, mem):
        await log.append("sub.a", [_event(1), _event(2), _event(3)])
        follower = asyncio.create_task(_follow(log, 1, 5))
        await asyncio.sleep(0.05)
        await log.append("sub.b", [_event(4)])
        await log.append("sub.a", [_event(5)], expected_version=3)
        await log.append("sub.a", [_event(1)])  # an identical re-send: nothing new to deliver
        await log.append("sub.b", [_event(6)])
        seen = await asyncio.wait_for(follower, 10)
        views.append([h.view(recorded) for recorded in seen])
    assert views[0] == views[1]
    assert [view["position"] for view in views[0]] == [2, 3, 4, 5, 6]


async def test_subscriber_when_log_closed_then_it_ends_on_both_logs(
    ledger_url: str,
) -> None:
    """The memory log's docs: close() ends every subscriber; the port is one contract."""
    endings = []
    for log in (await EventStore.connect(ledger_url), MemoryEventLog()):
        await log.append("close.a", [_event(1)])
        follower = asyncio.create_task(h.collect(log.subscribe(0)))
        await asyncio.sleep(0.1)
        await log.close()
        endings.append(await h.outcome(asyncio.wait_for(follower, 5)))
    assert endings[0][0] == endings[1][0] == "ok", endings
    assert [h.view(r) for r in endings[0][1]] == [h.view(r) for r in endings[1][1]]


_AFTER_CLOSE = {
    "append": lambda log: log.append("closed.a", [_event(9)]),
    "append_empty": lambda log: log.append("closed.a", []),
    "close_again": lambda log: log.close(),
    "head": lambda log: log.head(),
    "position_at": lambda log: log.position_at(h.EPOCH),
    "read_all": lambda log: h.collect(log.read_all()),
    "read_stream": lambda log: h.collect(log.read_stream("closed.a")),
    "subscribe": lambda log: h.collect(log.subscribe(0)),
    "verify": lambda log: log.verify(),
}


@pytest.mark.parametrize("call", list(_AFTER_CLOSE))
async def test_call_when_log_closed_then_both_logs_answer_alike(shared_url: str, call: str) -> None:
    answers = []
    for log in (await EventStore.connect(shared_url), MemoryEventLog()):
        await log.close()
        answers.append(await h.outcome(asyncio.wait_for(_AFTER_CLOSE[call](log), 5)))
    assert answers[0] == answers[1], answers


async def _race(log: EventLog, stream: str, version: int, salt: int) -> list[Any]:
    return await asyncio.gather(
        log.append(stream, [_event(salt, "left")], expected_version=version),
        log.append(stream, [_event(salt, "right")], expected_version=version),
        return_exceptions=True,
    )


@pytest.mark.parametrize("version", [0, 1, 2])
async def test_two_appends_when_racing_on_one_expected_version_then_exactly_one_wins_on_each(
    pg: EventStore, mem: MemoryEventLog, version: int
) -> None:
    for log in (pg, mem):
        if version:
            await log.append("race.a", [_event(100 + n, "seed") for n in range(version)])
        outcomes = await _race(log, "race.a", version, 7)
        wins = [o for o in outcomes if isinstance(o, list)]
        losses = [o for o in outcomes if isinstance(o, ConcurrencyConflict)]
        assert len(wins) == 1 and len(losses) == 1, outcomes
        assert str(losses[0]) == str(ConcurrencyConflict("race.a", version, version + 1)), (
            log,
            losses[0],
        )
        assert len(await h.collect(log.read_stream("race.a"))) == version + 1
        assert (await log.verify()).ok


async def test_position_at_when_given_a_string_then_both_logs_raise_invalid_event(
    shared_url: str, mem: MemoryEventLog
) -> None:
    """LEDGER.md: every error of the public API is an EventStoreError (e.g. a naive position_at)."""
    pg = await EventStore.connect(shared_url)
    answers = await h.both(pg, mem, lambda log: log.position_at("2026-01-01"))
    await pg.close()
    assert answers[0] == answers[1], answers
    assert answers[0][1].startswith("InvalidEvent:"), answers


async def test_funding_with_edge_decimals_when_read_back_then_same_decimals(
    pg: EventStore, mem: MemoryEventLog
) -> None:
    event = h.new(h.funding(1, Decimal("-0.000"), Decimal("1.10E+5")), uuid.UUID(int=77))
    for log in (pg, mem):
        await log.append("dec.a", [event])
    [from_pg], [from_mem] = await h.collect(pg.read_all()), await h.collect(mem.read_all())
    assert str(from_pg.event.rate) == str(from_mem.event.rate) == "-0.000"  # type: ignore[attr-defined]
    assert str(from_pg.event.amount) == str(from_mem.event.amount)  # type: ignore[attr-defined]


async def test_subscribe_when_a_big_append_lands_with_small_batches_then_same_events_on_both(
    pg: EventStore, mem: MemoryEventLog
) -> None:
    big = [_event(n, "big") for n in range(1, 251)]
    views = []
    for log in (pg, mem):
        await log.append("sub.big", big[:30])
        follower = asyncio.create_task(_follow_batches(log, 250))
        await asyncio.sleep(0.05)
        await log.append("sub.big", big, expected_version=30)  # 30 stored ids + 220 new
        views.append([h.view(recorded) for recorded in await asyncio.wait_for(follower, 20)])
    assert views[0] == views[1]
    assert [view["position"] for view in views[0]] == list(range(1, 251))


async def _follow_batches(log: EventLog, count: int) -> list[Any]:
    seen = []
    async for recorded in log.subscribe(0, batch_size=7):
        seen.append(recorded)
        if len(seen) == count:
            break
    return seen
