"""A correct expected_version is never refused, across processes (issue 15.4).

README: ``expected_version`` is the stream's version before the append; a mismatch raises
``ConcurrencyConflict`` and writes nothing. So an append whose expected version equals the
stored version must never get a conflict, whatever any store remembers. Several OS processes,
each with its own ``EventStore``, race one append per round at the same expected version on a
shared stream while appending to their own streams (whose expected versions are always right)
and to a free stream: exactly one wins each round, every loser's conflict names the winner's
version, no side append is refused. Then, in turns, each process appends at the version it just
read (its store last saw the stream several versions ago): never refused. The ledger stays
gapless and verifiable.
"""

from __future__ import annotations

import asyncio
import multiprocessing

import pytest
import race_worker

from tests.blackbox.ledger_writer.writer_helpers import (
    assert_gapless,
    claire_verify_async,
    ledger_rows,
)

pytestmark = [pytest.mark.db, pytest.mark.timeout(240)]


def _race(url: str, processes: int, rounds: int, seed: int) -> dict[int, list[tuple]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes, timeout=60)
    queue = context.Queue()
    workers = [
        context.Process(
            target=race_worker.run, args=(url, i, processes, rounds, barrier, queue, seed * 100 + i)
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        results = dict(queue.get(timeout=180) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    return results


@pytest.mark.parametrize("seed", [1, 2])
async def test_racing_processes_when_expected_version_is_right_then_never_a_false_conflict(
    ledger_url: str, seed: int
) -> None:
    processes, rounds = 4, 12
    results = await asyncio.to_thread(_race, ledger_url, processes, rounds, seed)
    problems = [
        (worker, outcome)
        for worker, outcomes in results.items()
        for outcome in outcomes
        if outcome[2] == "error" or (outcome[0] in ("side", "turn") and outcome[2] != "ok")
    ]
    assert not problems, problems
    for round_ in range(1, rounds + 1):
        race = [o for outcomes in results.values() for o in outcomes if o[:2] == ("race", round_)]
        winners = [o for o in race if o[2] == "ok"]
        assert len(winners) == 1, race
        assert len({o[3] for o in race if o[2] == "conflict"}) <= 1, race  # one version read
        for _, _, _, expected, actual in (o for o in race if o[2] == "conflict"):
            # A real conflict: the stream is at the round winner's version, not at ours.
            assert actual == expected + 1, race
    rows = await ledger_rows(ledger_url)
    assert_gapless(rows)
    race_rows = sum(1 for row in rows if row[1] == race_worker.RACE)
    assert race_rows == rounds * (1 + processes)
    # Per round: one race winner, and per process 2 side appends in the race, plus in its
    # turn one solo append and 2 appends that both succeed.
    assert len(rows) == rounds * (1 + processes * (2 + 1 + 2))
    verify = await claire_verify_async(ledger_url)
    assert verify.code == 0, verify.text
