"""Exactly once, whatever happens: batches, crashes, live following and rebuilds agree."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from eventstore import EventStore
from projections import CheckpointMoved, Projector, rebuild
from projections.postgres import PostgresSink
from tests.integration.projections.projection_helpers import (
    append_in_order,
    read_facts,
    snapshot,
    with_acceptances,
)
from tests.unit.strategies import drive, market_sequences

pytestmark = [pytest.mark.db]

MakeDatabase = Callable[..., Awaitable[str]]


async def _ledger(make_database: MakeDatabase, items: list) -> tuple[str, EventStore]:
    url = await make_database(migrate=True)
    store = await EventStore.connect(url)
    await append_in_order(store, with_acceptances(drive(items).facts))
    return url, store


@settings(
    max_examples=12,
    deadline=None,
    # Each example builds a database; shrinking one would take many minutes: report it whole.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    items=market_sequences(min_size=20, max_size=120),
    cuts=st.lists(st.integers(1, 400), max_size=12),
)
async def test_project_when_facts_arrive_in_any_batches_then_rows_equal_a_full_rebuild(
    fresh_database_url: MakeDatabase, items: list, cuts: list[int]
) -> None:
    url, store = await _ledger(fresh_database_url, items)
    projector = await Projector.open(url)
    try:
        facts = await read_facts(store)
        bounds = sorted({0, len(facts), *(c for c in cuts if c < len(facts))})
        for start, end in itertools.pairwise(bounds):
            await projector.project(facts[start:end])
        incremental = await snapshot(url)
        await rebuild(url)
        rebuilt = await snapshot(url)
    finally:
        await projector.close()
        await store.close()
    assert incremental == rebuilt
    assert {position for _, position in rebuilt["checkpoints"]} == {len(facts)}


class _FailingSink(PostgresSink):
    """Raises inside the flush transaction, after the rows went in, on the n-th checkpoint save."""

    def __init__(self, conn: asyncpg.Connection, fail_at: int) -> None:
        super().__init__(conn)
        self.saves = 0
        self.fail_at = fail_at

    async def save_checkpoint(
        self, name: str, position: int, generation: int, recorded_at: datetime | None
    ) -> None:
        self.saves += 1
        if self.saves == self.fail_at:
            raise RuntimeError("power cut in the middle of a flush")
        await super().save_checkpoint(name, position, generation, recorded_at)


@settings(
    max_examples=6,
    deadline=None,
    # Each example builds a database; shrinking one would take many minutes: report it whole.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    items=market_sequences(min_size=60, max_size=150),
    batch=st.integers(3, 40),
    fail_at=st.integers(1, 30),
)
async def test_restart_when_flush_fails_midway_then_rows_equal_an_uninterrupted_run(
    fresh_database_url: MakeDatabase, items: list, batch: int, fail_at: int
) -> None:
    url, store = await _ledger(fresh_database_url, items)
    try:
        conn = await asyncpg.connect(url)
        crashing = Projector(store, _FailingSink(conn, fail_at), batch_events=batch)
        with pytest.raises(RuntimeError, match="power cut"):
            await crashing.catch_up()
            raise RuntimeError("power cut never came: the log was too short")  # still a crash
        await conn.close()
        resumed = await Projector.open(url, batch_events=batch)
        try:
            await resumed.catch_up()
        finally:
            await resumed.close()
        after_crash = await snapshot(url)
        await rebuild(url)
        assert after_crash == await snapshot(url)
    finally:
        await store.close()


@settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=market_sequences(min_size=200, max_size=200))
async def test_restart_when_projector_task_is_cancelled_mid_batch_then_rows_equal_uninterrupted(
    fresh_database_url: MakeDatabase, items: list
) -> None:
    url, store = await _ledger(fresh_database_url, items)
    try:
        commits: list[int] = []
        task: asyncio.Task[int] | None = None

        def cancel_after_third(position: int) -> None:
            commits.append(position)
            if len(commits) == 3 and task is not None:
                task.cancel()  # lands at the next await: mid-read or inside the next flush

        projector = await Projector.open(url, batch_events=5, on_commit=cancel_after_third)
        task = asyncio.create_task(projector.catch_up())
        with pytest.raises(asyncio.CancelledError):
            await task
        await projector.close()
        partial = await snapshot(url)
        assert {p for _, p in partial["checkpoints"]} == {commits[2]}

        resumed = await Projector.open(url, batch_events=7)
        try:
            await resumed.catch_up()
        finally:
            await resumed.close()
        resumed_rows = await snapshot(url)
        await rebuild(url)
        assert resumed_rows == await snapshot(url)
    finally:
        await store.close()


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(600):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=market_sequences(min_size=200, max_size=200))
async def test_follow_when_events_are_appended_live_then_rows_catch_up_and_lag_drains(
    fresh_database_url: MakeDatabase, items: list
) -> None:
    facts = with_acceptances(drive(items).facts)
    first, second = len(facts) // 3, 2 * len(facts) // 3
    url = await fresh_database_url(migrate=True)
    store = await EventStore.connect(url)
    await append_in_order(store, facts[:first])
    projector = await Projector.open(url, batch_events=50)
    running = asyncio.create_task(projector.run())

    async def projected() -> bool:
        head, _ = await store.head()
        found = await snapshot(url)
        return all(p == head for _, p in found["checkpoints"])

    try:
        for i in range(first, second, 10):  # arrives live, a few at a time
            await append_in_order(store, facts[i : min(i + 10, second)])
        await _until(projected, "the projector to reach the head")
        assert all(lag.events == 0 for lag in projector.lag().values())
        live = await snapshot(url)
        await rebuild(url)  # the live projector sees its checkpoints move and reloads
        assert live == await snapshot(url)
        for i in range(second, len(facts), 10):
            await append_in_order(store, facts[i : i + 10])
        await _until(projected, "the reloaded projector to follow on")
        assert not running.done()
        followed = await snapshot(url)
        await rebuild(url)
        assert followed == await snapshot(url)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await projector.close()
        await store.close()


@settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=market_sequences(min_size=80, max_size=80))
async def test_flush_when_a_rebuild_moved_the_checkpoint_then_it_refuses_to_write_twice(
    fresh_database_url: MakeDatabase, items: list
) -> None:
    url, store = await _ledger(fresh_database_url, items)
    try:
        facts = await read_facts(store)
        stale = await Projector.open(url)
        await stale.project(facts[:10])
        await rebuild(url)
        with pytest.raises(CheckpointMoved):
            await stale.project(facts[10:20])
        await stale.close()
    finally:
        await store.close()
