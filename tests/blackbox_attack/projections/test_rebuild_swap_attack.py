"""`claire projections rebuild` swaps atomically (docs/AUDIT.md): "refills a fresh generation of
the tables out of sight and repoints the readmodel.* views in one transaction: readers see the
old model or the new one, never a half-built one"; a failed rebuild leaves the read models in
service as they were (docs/ARCHIVE.md)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import asyncpg

from tests.blackbox_attack.projections.proj_helpers import (
    VIEWS,
    Projector,
    append,
    base_ledger,
    caught_up,
    claire,
    readmodels,
    until,
)
from tests.blackbox_attack.projections.workload import session

SYMBOLS = ("BTC_USDT", "ETH_USDT")
MakeUrl = Callable[..., Awaitable[str]]

#: One statement, so one snapshot: what a reader sees of four read models at one instant.
SEEN = """
SELECT (SELECT count(*) FROM readmodel.fills),
       (SELECT count(*) FROM readmodel.order_events),
       (SELECT count(*) FROM readmodel.orders),
       (SELECT count(*) FROM readmodel.positions)
"""


async def watch(
    url: str, stop: asyncio.Event, sql: str = SEEN
) -> tuple[list[tuple[int, ...]], list[str]]:
    """Query until told to stop: what was seen, and every error a query met."""
    conn = await asyncpg.connect(url)
    seen: list[tuple[int, ...]] = []
    errors: list[str] = []
    try:
        while not stop.is_set():
            try:
                row = await conn.fetchrow(sql)
            except asyncpg.PostgresError as error:
                errors.append(repr(error))
                continue
            assert row is not None
            seen.append(tuple(row))
            await asyncio.sleep(0)
    finally:
        await conn.close()
    return seen, errors


async def test_rebuild_when_readers_query_meanwhile_then_each_sees_the_old_or_the_new_models(
    fresh_database_url: MakeUrl,
) -> None:
    url = await fresh_database_url()
    await base_ledger(url, SYMBOLS)
    await append(url, session(600, SYMBOLS, seed=21), batch=True)
    old = tuple(
        len(rows)
        for rows in (
            await readmodels(url, ["fills", "order_events", "orders", "positions"])
        ).values()
    )
    assert old == (0, 0, 0, 0)  # the projector never ran: the models in service are empty

    stop = asyncio.Event()
    readers = [asyncio.create_task(watch(url, stop)) for _ in range(2)]
    for _ in range(3):  # a rebuild may lose a deadlock to a reader: see the test below
        result = await claire(url, "projections", "rebuild")
        if result.code == 0:
            break
    stop.set()
    seen = {snapshot for reader in readers for snapshot in (await reader)[0]}
    assert result.code == 0, result.text
    new = tuple(
        len(rows)
        for rows in (
            await readmodels(url, ["fills", "order_events", "orders", "positions"])
        ).values()
    )
    assert new[0] > 600
    assert seen <= {old, new}, sorted(seen - {old, new})[:5]


async def test_rebuild_when_readers_join_several_views_meanwhile_then_no_query_and_no_rebuild_fails(
    fresh_database_url: MakeUrl,
) -> None:
    url = await fresh_database_url()
    await base_ledger(url, SYMBOLS)
    await append(url, session(100, SYMBOLS, seed=22), batch=True)
    views = list(VIEWS)
    queries = [
        "SELECT " + ", ".join(f"(SELECT count(*) FROM readmodel.{v})" for v in order)
        for order in [views[k:] + views[:k] for k in range(0, 11, 2)] + [views[::-1]]
    ]
    stop = asyncio.Event()
    readers = [asyncio.create_task(watch(url, stop, sql)) for sql in queries]
    failed: list[str] = []
    for _ in range(8):
        result = await claire(url, "projections", "rebuild")
        if result.code != 0:
            failed.append(result.text[-300:])
            break
        if any(task.done() for task in readers):
            break
        await asyncio.sleep(0)
    stop.set()
    errors = [error for task in readers for error in (await task)[1]]
    assert not failed, failed
    assert not errors, errors[:3]


async def test_rebuild_when_the_name_is_unknown_then_exit_2_without_a_traceback(
    database_url: str,
) -> None:
    url = database_url
    result = await claire(url, "projections", "rebuild", "no_such_projection")
    assert result.code == 2, result.text
    assert "Traceback" not in result.text, result.text


async def test_rebuild_when_the_live_projector_runs_and_appends_go_on_then_models_equal_a_rebuild(
    fresh_database_url: MakeUrl,
) -> None:
    url = await fresh_database_url()
    await base_ledger(url, SYMBOLS)
    await append(url, session(200, SYMBOLS, seed=31), batch=True)
    projector = Projector(url, duration=90).start()
    try:
        assert await until(lambda: caught_up(url)), "the projector never reached the head"
        rebuild = asyncio.create_task(claire(url, "projections", "rebuild"))
        for seed in range(32, 36):
            await append(url, session(25, SYMBOLS, seed=seed), batch=True)
        assert (await rebuild).code == 0
        for seed in range(36, 39):
            await append(url, session(25, SYMBOLS, seed=seed), batch=True)
        assert await until(lambda: caught_up(url)), "the projector stalled after the rebuild"
        live = await readmodels(url)
    finally:
        projector.process.send_signal(signal.SIGKILL)
        await projector.wait()
    result = await claire(url, "projections", "rebuild")
    assert result.code == 0, result.text
    assert live == await readmodels(url)
