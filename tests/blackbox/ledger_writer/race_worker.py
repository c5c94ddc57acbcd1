"""One OS process of the multi-process race (test_version_race.py): its own EventStore.

Spawned by multiprocessing; reports every outcome through a queue. Only the public API and
plain SQL on ``ledger.events``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg

from eventstore import ConcurrencyConflict, EventStore
from tests.blackbox.ledger_writer.writer_helpers import trade

RACE = "race-shared"
VERSION = "SELECT coalesce(max(stream_version), 0) FROM ledger.events WHERE stream = $1"


def _outcome(label: str, round_: int, result: object) -> tuple:
    if isinstance(result, ConcurrencyConflict):
        return (label, round_, "conflict", result.expected, result.actual)
    if isinstance(result, BaseException):
        return (label, round_, "error", repr(result), None)
    return (label, round_, "ok", result, None)


async def _race(
    url: str, worker: int, workers: int, rounds: int, barrier: Any, seed: int
) -> list[tuple]:
    """Per round: (1) every process appends to RACE at the version all of them just read, with
    side appends in the same breath; (2) in turns, each process reads RACE's version and appends
    at it (its store's memory of RACE is stale by then): that must succeed."""
    rng = random.Random(seed)
    outcomes: list[tuple] = []
    own, serial = 0, 0

    def new(kind: str) -> list:
        nonlocal serial
        serial += 1
        return [trade(serial, label=f"{kind}-{worker}")]

    async def with_sides(label: str, round_: int, expected: int) -> None:
        nonlocal own
        calls = [
            store.append(RACE, new("race"), expected_version=expected),
            store.append(f"own-{worker}", new("own"), expected_version=own),
        ]
        if label == "race":
            calls.append(store.append("shared-free", new("free")))
        order = list(range(len(calls)))
        rng.shuffle(order)
        results = await asyncio.gather(*(calls[i] for i in order), return_exceptions=True)
        by_call = dict(zip(order, results, strict=True))
        outcomes.append(_outcome(label, round_, by_call[0]))
        outcomes.extend(_outcome("side", round_, by_call[i]) for i in order if i)
        own += 1

    async def sync() -> None:
        await asyncio.to_thread(barrier.wait)

    conn = await asyncpg.connect(url)
    async with await EventStore.connect(url) as store:
        try:
            for round_ in range(1, rounds + 1):
                await sync()
                version = await conn.fetchval(VERSION, RACE)
                await sync()
                await asyncio.sleep(rng.random() * 0.002)
                await with_sides("race", round_, version)
                for turn in range(workers):
                    await sync()
                    if turn != worker:
                        continue
                    outcomes.append(
                        _outcome(
                            "side",
                            round_,
                            await store.append(f"own-{worker}", new("own"), expected_version=own),
                        )
                    )
                    own += 1
                    await with_sides("turn", round_, await conn.fetchval(VERSION, RACE))
        finally:
            await conn.close()
    return outcomes


def run(
    url: str, worker: int, workers: int, rounds: int, barrier: Any, queue: Any, seed: int
) -> None:
    """Process entry point: race ``rounds`` rounds, then put (worker, outcomes) on ``queue``."""
    try:
        queue.put((worker, asyncio.run(_race(url, worker, workers, rounds, barrier, seed))))
    except BaseException as error:  # the parent must hear about it, not wait forever
        queue.put((worker, [("crash", 0, "error", repr(error), None)]))
        raise
