"""SIGKILL a 100,000-event append at several points: all or nothing, gapless (issue 15.7).

A real OS process appends 100,000 events in one call while another process appends one event
at a time and a subscriber follows. The big writer is killed with SIGKILL while it validates,
while it stages rows by COPY, while it moves them in under the head lock (phases recognised
from ``pg_stat_activity``, as an operator would), and at a few plain delays. After each kill the
ledger holds all of that append or none of it, positions stay gapless, the other writer never
fails; at the end the follower has seen every position once and ``claire verify`` exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from eventstore import EventStore
from tests.blackbox.ledger_writer.writer_helpers import (
    assert_gapless,
    claire_verify_async,
    ledger_rows,
)

pytestmark = [pytest.mark.db, pytest.mark.timeout(290)]

HERE = Path(__file__).parent
SIZE = 100_000
ACTIVE = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active' AND query ILIKE $1
"""
#: (label, the statement to catch the writer in, or a delay in seconds after it says "appending")
POINTS = [
    ("staging", "COPY%claire_stage%"),
    ("moving", "%INSERT INTO ledger.events%claire_stage%"),
    ("early", 0.05),
    ("later", 1.5),
]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "writer_procs.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _kill_at(conn: asyncpg.Connection, proc: subprocess.Popen[str], point: object) -> None:
    line = await asyncio.to_thread(proc.stdout.readline)  # type: ignore[union-attr]
    assert line.startswith("appending"), line + proc.stderr.read()  # type: ignore[union-attr]
    if isinstance(point, float):
        await asyncio.sleep(point)
    else:
        for _ in range(20_000):
            if await conn.fetchval(ACTIVE, point) or proc.poll() is not None:
                break
            await asyncio.sleep(0.002)
    if proc.poll() is not None:  # it finished before the point: it must have succeeded
        out, err = proc.communicate()
        assert proc.returncode == 0 and "committed" in out, (point, proc.returncode, err)
        return
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


async def _follow(url: str, into: list[int]) -> None:
    async with await EventStore.connect(url) as store:
        async for event in store.subscribe(poll_interval=0.05):
            into.append(event.position)


async def test_big_append_when_sigkilled_anywhere_then_all_or_nothing_and_verified(
    ledger_url: str,
) -> None:
    small = _spawn("small", ledger_url)
    followed: list[int] = []
    follower = asyncio.create_task(_follow(ledger_url, followed))
    conn = await asyncpg.connect(ledger_url)
    outcomes: dict[str, int] = {}
    try:
        for label, point in POINTS:
            big = _spawn("big", ledger_url, label, str(SIZE))
            await _kill_at(conn, big, point)
            stored = await conn.fetchval(
                "SELECT count(*) FROM ledger.events WHERE stream = $1", f"big-{label}"
            )
            assert stored in (0, SIZE), (label, stored)
            outcomes[label] = stored
            assert_gapless(await ledger_rows(ledger_url))
        # And one that is left to finish: all of it.
        big = _spawn("big", ledger_url, "whole", str(SIZE))
        out, err = await asyncio.to_thread(big.communicate, timeout=240)
        assert big.returncode == 0, err
        assert "committed" in out
    finally:
        small.send_signal(signal.SIGTERM)
        await asyncio.to_thread(small.wait, 60)
        await conn.close()
    assert small.returncode == 0, small.stderr.read()  # type: ignore[union-attr]
    rows = await ledger_rows(ledger_url)
    assert_gapless(rows)
    assert sum(1 for row in rows if row[1] == "big-whole") == SIZE
    head = rows[-1][0]
    for _ in range(6000):
        if followed and followed[-1] >= head:
            break
        await asyncio.sleep(0.01)
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    assert followed == [row[0] for row in rows]
    verify = await claire_verify_async(ledger_url)
    assert verify.code == 0, verify.text
    print("kill outcomes (rows of the killed append):", outcomes)
