"""Writer processes for the SIGKILL test: ``python writer_procs.py big URL LABEL SIZE`` appends
SIZE events to ``big-LABEL`` in one call; ``python writer_procs.py small URL`` appends
one event at a time until SIGTERM, exit 1 on any error. Public API only."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # run as a script: the repo root

from eventstore import EventStore
from tests.blackbox.ledger_writer.writer_helpers import trade


async def big(url: str, label: str, size: int) -> None:
    events = [trade(n, label=label) for n in range(size)]
    async with await EventStore.connect(url) as store:
        # A long-lived writer has appended before (its store knows the head).
        await store.append(f"warm-{label}", [trade(-1, label=label)])
        print("appending", flush=True)
        positions = await store.append(f"big-{label}", events, expected_version=0)
        print("committed", positions[0], positions[-1], flush=True)


async def small(url: str) -> None:
    n = 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with await EventStore.connect(url) as store:
        while not stop.is_set():
            await store.append("small", [trade(n, label="small")], expected_version=n)
            n += 1
    print("wrote", n, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "big":
        asyncio.run(big(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        asyncio.run(small(sys.argv[2]))
