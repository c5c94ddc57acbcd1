"""``replay --verify --all --jobs N``: every segment between consecutive snapshots, in parallel.

Each machine's usable snapshots cut its history into segments: (0, p1], (p1, p2], ... (pk, head].
A segment is verified on its own: the machine starts from the snapshot at its start (or its
initial state), re-decides every step in the segment and compares with the recorded decisions
(``replay.verify.Verifier``), and at the segment's end its state must hash to the next
snapshot's digest, so no snapshot is trusted without being reproduced. Segments with the same
bounds for several machines are one job (one read). Jobs run in ``N`` worker processes (default:
one per core); the first divergence in log order is reported, whichever worker found it.

The hash chain is not checked here: ``claire verify`` (or ``--since``) does that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregates.snapshot import CODECS, digest
from eventstore import EventStore
from eventstore.snapshots import Snapshots
from replay.verify import Verifier, verification_machines


@dataclass(frozen=True)
class Segment:
    """Positions ``after < p <= until`` for ``machines``; their start states and end digests."""

    after: int
    until: int
    machines: tuple[str, ...]
    states: tuple[bytes | None, ...]  # None: the initial state
    digests: tuple[bytes | None, ...]  # None: no snapshot at the end (the head)


@dataclass(frozen=True)
class SegmentResult:
    after: int
    until: int
    machines: tuple[str, ...]
    decisions: int
    #: (cause position, index, machine, problem) of the first divergence, or None.
    divergence: tuple[int, int, str, str] | None


async def plan(store: EventStore) -> list[Segment]:
    """The segments of every verified machine, grouped by bounds, in log order."""
    head, _ = await store.head()
    snapshots = Snapshots(store)
    cuts: dict[tuple[int, int], list[tuple[str, bytes | None, bytes | None]]] = {}
    for machine in verification_machines():
        usable = []
        for snapshot in reversed(
            await snapshots.candidates(machine.name, at_or_before=head, limit=1 << 20)
        ):
            if await snapshots.problem(snapshot) is None:
                usable.append(snapshot)
        bounds = [(0, None), *((s.position, s) for s in usable)]
        for (after, start), (until, end) in zip(bounds, [*bounds[1:], (head, None)], strict=True):
            if until <= after:
                continue
            cuts.setdefault((after, until), []).append(
                (
                    machine.name,
                    start.state if start is not None else None,
                    end.state_digest if end is not None else None,
                )
            )
    return [
        Segment(
            after,
            until,
            tuple(name for name, _, _ in parts),
            tuple(state for _, state, _ in parts),
            tuple(end for _, _, end in parts),
        )
        for (after, until), parts in sorted(cuts.items())
    ]


def verify_segment(url: str, segment: Segment, archive: Path | None = None) -> SegmentResult:
    """A worker's job (a top-level function: it runs in another process). With ``archive``,
    archived positions are read from that directory (``eventstore.archive.ArchivedLog``)."""
    return asyncio.run(_verify_segment(url, segment, archive))


async def _verify_segment(url: str, segment: Segment, archive: Path | None) -> SegmentResult:
    machines = [m for m in verification_machines() if m.name in segment.machines]
    verifier = Verifier(segment.after + 1, segment.until, machines)
    for check in verifier.checks:
        data = segment.states[segment.machines.index(check.name)]
        if data is not None:
            check.state = CODECS[check.name].decode(data)
    ends = dict(zip(segment.machines, segment.digests, strict=True))
    store: Any = await EventStore.connect(url, max_connections=2)
    if archive is not None:
        from eventstore.archive import ArchivedLog

        store = ArchivedLog(store, archive)
    try:
        async with contextlib.aclosing(store.read_all_batches(after=segment.after)) as batches:
            async for batch in batches:
                for fact in batch:
                    verifier.feed(fact)
                    if fact.position == segment.until:
                        _compare_ends(verifier, ends, segment.until)
                    if fact.position >= segment.until and verifier.done(fact.position):
                        break
                else:
                    continue
                break
    finally:
        await store.close()
    result = verifier.finish()
    found = result.divergence
    return SegmentResult(
        segment.after,
        segment.until,
        segment.machines,
        result.decisions_checked,
        None
        if found is None
        else (found.cause_position, found.index, found.machine, found.problem),
    )


def _compare_ends(verifier: Verifier, ends: dict[str, bytes | None], position: int) -> None:
    for check in verifier.checks:
        expected = ends.get(check.name)
        if expected is None or check.enabled is False:
            continue
        if digest(CODECS[check.name].encode(check.state)) != expected:
            verifier._diverged(
                check,
                position,
                1 << 30,
                f"the fold from the previous snapshot does not reproduce the {check.name} "
                f"snapshot at position {position}",
                None,
                None,
            )


@dataclass(frozen=True)
class AllResult:
    segments: int
    jobs: int
    decisions: int
    divergence: tuple[int, int, str, str] | None

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def to_json(self) -> dict[str, Any]:
        cause, index, machine, problem = self.divergence or (None, None, None, None)
        return {
            "type": "verify_all",
            "ok": self.ok,
            "segments": self.segments,
            "jobs": self.jobs,
            "decisions_checked": self.decisions,
            "divergence": None
            if self.divergence is None
            else {"cause_position": cause, "index": index, "machine": machine, "problem": problem},
        }

    def render(self) -> str:
        head = f"{self.segments} segments in {self.jobs} worker processes"
        if self.divergence is None:
            return f"verify ok: {self.decisions} decisions checked, zero divergences ({head})"
        cause, _, machine, problem = self.divergence
        return (
            f"first divergence at the outputs of position {cause}, machine {machine}: "
            f"{problem}\nverify FAILED ({head})"
        )


async def verify_all(
    url: str, store: EventStore, jobs: int | None, archive: Path | None = None
) -> AllResult:
    """Verify every segment in ``jobs`` processes; the first divergence in log order.
    ``archive``: read archived positions from there (a bad file raises ``ArchiveError``)."""
    segments = await plan(store)
    workers = max(1, jobs or os.cpu_count() or 1)
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    # Longest first (segments differ: cut every N events and at each UTC midnight), so the last
    # job to start is a short one and the workers finish together instead of one waiting on a
    # long tail. The outcome does not depend on the order: the first divergence is the least.
    longest_first = sorted(segments, key=lambda segment: segment.after - segment.until)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        results = await asyncio.gather(
            *(
                loop.run_in_executor(pool, verify_segment, url, segment, archive)
                for segment in longest_first
            )
        )
    divergences = [r.divergence for r in results if r.divergence is not None]
    return AllResult(
        segments=len(segments),
        jobs=workers,
        decisions=sum(r.decisions for r in results),
        divergence=min(divergences) if divergences else None,
    )
