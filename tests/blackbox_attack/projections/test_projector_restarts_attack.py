"""The projector service against a rebuild: stopped, resumed, killed, doubled.

docs/AUDIT.md: "each projection is one pure fold whose rows are written together with its
checkpoint in one transaction, so a crash never loses or repeats a row"; docs/PROMISES.md: the
read models equal a rebuild from scratch after kill -9.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from tests.blackbox_attack.projections.proj_helpers import (
    Projector,
    append,
    base_ledger,
    caught_up,
    checkpoints,
    claire,
    fetchval,
    head,
    readmodels,
    until,
)
from tests.blackbox_attack.projections.workload import session

SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT")

MakeUrl = Callable[..., Awaitable[str]]


async def ledger(fresh_database_url: MakeUrl, orders: int, seed: int = 7) -> str:
    url = await fresh_database_url()
    await base_ledger(url, SYMBOLS)
    await append(url, session(orders, SYMBOLS, seed), batch=True)
    return url


async def rebuilt(url: str) -> dict[str, list[tuple[object, ...]]]:
    result = await claire(url, "projections", "rebuild")
    assert result.code == 0, result.text
    return await readmodels(url)


async def projected(url: str) -> dict[str, list[tuple[object, ...]]]:
    projector = Projector(url, duration=60).start()
    try:
        assert await until(lambda: caught_up(url)), "the projector never reached the head"
    finally:
        projector.kill()  # rows and checkpoint commit together: any stop is a clean stop
    return await readmodels(url)


async def test_rebuild_when_repeated_at_once_whole_or_by_name_then_the_read_models_are_identical(
    fresh_database_url: MakeUrl,
) -> None:
    url = await ledger(fresh_database_url, 80)
    first = await rebuilt(url)
    assert len(first["fills"]) > 80
    assert await rebuilt(url) == first
    both = await asyncio.gather(
        claire(url, "projections", "rebuild"), claire(url, "projections", "rebuild")
    )
    assert [run.code for run in both] == [0, 0], [run.text for run in both]
    assert await readmodels(url) == first
    for name in ("portfolio", "orders"):
        result = await claire(url, "projections", "rebuild", name)
        assert result.code == 0, result.text
        assert await readmodels(url) == first, name
    assert set((await checkpoints(url)).values()) == {await head(url)}


async def test_projector_when_stopped_and_resumed_then_equal_to_a_rebuild_that_never_stopped(
    fresh_database_url: MakeUrl,
) -> None:
    url = await ledger(fresh_database_url, 80, seed=3)
    first = await projected(url)
    assert len(first["fills"]) > 80
    assert set((await checkpoints(url)).values()) == {await head(url)}
    assert await rebuilt(url) == first
    await append(url, session(80, SYMBOLS, seed=4), batch=True)
    resumed = await projected(url)
    assert len(resumed["fills"]) > len(first["fills"])
    assert await rebuilt(url) == resumed


async def test_projector_when_sigkilled_while_folding_then_a_restart_equals_a_rebuild(
    fresh_database_url: MakeUrl,
) -> None:
    url = await ledger(fresh_database_url, 250, seed=11)
    for round_ in range(1):
        projector = Projector(url, duration=60).start()

        async def moved() -> bool:
            marks = await checkpoints(url)
            return any(p > 0 for p in marks.values())

        await until(moved, patience=30)
        projector.kill()
        await append(url, session(40, SYMBOLS, seed=100 + round_), batch=True)
    live = await projected(url)
    rows = await fetchval(url, "SELECT count(*) FROM readmodel.order_events")
    distinct = await fetchval(url, "SELECT count(DISTINCT position) FROM readmodel.order_events")
    assert rows == distinct, "an order event was applied twice"
    assert live == await rebuilt(url)


async def test_two_projectors_when_running_at_once_then_each_event_is_applied_once(
    fresh_database_url: MakeUrl,
) -> None:
    url = await ledger(fresh_database_url, 200, seed=5)
    first = Projector(url, duration=60).start()
    second = Projector(url, duration=60).start()
    try:
        await append(url, session(60, SYMBOLS, seed=6), batch=True)
        assert await until(lambda: caught_up(url)), "the projectors never reached the head"
    finally:
        for projector in (first, second):
            projector.process.send_signal(signal.SIGKILL)
        outputs = [await p.wait() for p in (first, second)]
    live = await readmodels(url)
    fills = await fetchval(url, "SELECT count(*) FROM readmodel.fills")
    distinct = await fetchval(url, "SELECT count(DISTINCT position) FROM readmodel.fills")
    assert fills == distinct, outputs
    assert live == await rebuilt(url), outputs
