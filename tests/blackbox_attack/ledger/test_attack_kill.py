"""SIGKILL of a writer process in the middle of a big append: all or nothing, gapless, verify 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore import EventStore
from tests.blackbox_attack.ledger.attack_ledger_helpers import (
    ROOT,
    assert_intact,
    count_events,
    new,
    positions,
)

WRITER = """
import asyncio, sys, uuid
sys.path.insert(0, {helpers!r})
from tests.blackbox_attack.ledger.attack_ledger_helpers import new
from eventstore import EventStore

async def main() -> None:
    store = await EventStore.connect(sys.argv[1])
    print("ready", flush=True)
    await store.append("killed", [new() for _ in range(int(sys.argv[2]))])
    print("done", flush=True)
    await store.close()

asyncio.run(main())
"""


@pytest.mark.parametrize(
    "size,delay", [(20_000, 0.3), (20_000, 1.0), (20_000, 2.5), (5_000, 0.5), (5_000, 1.2)]
)
async def test_big_append_when_writer_sigkilled_midway_then_all_or_nothing_and_verifies(
    fresh_database_url, tmp_path: Path, size: int, delay: float
) -> None:  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(helpers=str(ROOT)))
    store = await EventStore.connect(url)
    try:
        await store.append("before", [new() for _ in range(3)])
        proc = subprocess.Popen(  # noqa: ASYNC220 - the writer must be its own process
            [sys.executable, str(script), url, str(size)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        assert (await asyncio.to_thread(proc.stdout.readline)).strip() == "ready"
        side = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while loop.time() < end:
            await store.append("side", [new()])
            side += 1
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        await store.append("after", [new(), new()])
        side += 2
        killed = [r async for r in store.read_stream("killed")]
        assert len(killed) in (0, size)
        total = 3 + side + len(killed)
        for _ in range(50):  # the server notices the dropped connection, then rolls back
            if await count_events(url) == total:
                break
            await asyncio.sleep(0.1)
        assert await positions(url) == list(range(1, total + 1))
        await assert_intact(store, url)
    finally:
        await store.close()
