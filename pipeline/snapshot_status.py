"""The snapshots each decision service could restore from, for ``claire status``.

A service restores from the newest snapshot passing every check (``eventstore.snapshots``); this
lists, per machine, that snapshot (or "from position 1") and why any newer one would be skipped,
so an operator sees before a restart what the restart will cost.
"""

from __future__ import annotations

from aggregates.snapshot import CODECS
from eventstore import EventStore, EventStoreError
from eventstore.snapshots import Snapshots


async def snapshot_lines(url: str) -> list[str]:
    """``claire status`` lines: per machine, the usable snapshot and the skipped newer ones."""
    lines = ["snapshots (what a restart would restore from):"]
    try:
        store = await EventStore.connect(url, max_connections=1)
    except EventStoreError as error:
        return [*lines, f"  unavailable: {error}"]
    try:
        snapshots = Snapshots(store)
        head, _ = await store.head()
        width = max(map(len, CODECS))
        for machine in sorted(CODECS):
            skipped: list[str] = []
            usable = None
            for snapshot in await snapshots.candidates(machine, states=False):
                problem = await snapshots.problem(snapshot)
                if problem is None:
                    usable = snapshot
                    break
                skipped.append(f"    skipped at {snapshot.position}: {problem}")
            if usable is None:
                lines.append(
                    f"  {machine:<{width}} none usable: folds {head} events from position 1"
                )
            else:
                taken = usable.taken_at.isoformat(timespec="seconds") if usable.taken_at else "-"
                lines.append(
                    f"  {machine:<{width}} position {usable.position} (taken {taken}):"
                    f" folds {head - usable.position} events"
                )
            lines.extend(skipped)
    except EventStoreError as error:
        lines.append(f"  unavailable: {error}")
    finally:
        await store.close()
    return lines
