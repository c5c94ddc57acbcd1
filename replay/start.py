"""Where a replay starts: from verified snapshots at or before the window, not position 1.

``replay --from D`` (and ``--verify``) needs the machines' states just before D. With usable
snapshots (``eventstore.snapshots``: versions, chain hash, configuration and digest checked) at
or before the window's first position, each machine starts from its own snapshot; the machines
whose snapshot is older catch up by folding to the newest one, ``S``, and the replay reads from
``S + 1``. The cost is the tail, not the history. Without a usable snapshot for every machine,
the replay folds from position 1, as before.

``--verify`` also checks every later snapshot it passes: the fold from snapshot k must reproduce
snapshot k+1's state digest (:class:`SnapshotChecks`), so a wrong snapshot cannot hide a
divergence: it is reported as one.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aggregates.machine import Machine
from aggregates.snapshot import CODECS, digest
from eventstore import EventStore
from eventstore.snapshots import Snapshot, Snapshots

_log = logging.getLogger(__name__)


@dataclass
class Start:
    """The states at position ``position`` of each machine (by name), and their snapshots."""

    position: int
    states: dict[str, Any]
    chain_hash: bytes
    used: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        used = ", ".join(f"{name} at {position}" for name, position in sorted(self.used.items()))
        return f"starting from snapshots ({used}): folding from position {self.position + 1}"


async def snapshot_start(
    store: EventStore, machines: list[Machine[Any]], before: int
) -> Start | None:
    """States of ``machines`` at one position below ``before`` from snapshots, or None."""
    if before <= 1 or any(machine.name not in CODECS for machine in machines):
        return None
    snapshots = Snapshots(store)
    found = {}
    for machine in machines:
        restored = await snapshots.latest_usable(machine.name, at_or_before=before - 1)
        if restored is None:
            return None
        found[machine.name] = restored
    start = max(restored.snapshot.position for restored in found.values())
    states = {name: restored.state for name, restored in found.items()}
    lagging = {
        machine.name: machine
        for machine in machines
        if found[machine.name].snapshot.position < start
    }
    if lagging:  # catch up to the newest snapshot, each machine from its own
        after = min(found[name].snapshot.position for name in lagging)
        async with contextlib.aclosing(store.read_all_batches(after=after)) as batches:
            async for batch in batches:
                for fact in batch:
                    if fact.position > start:
                        break
                    for name, machine in lagging.items():
                        if fact.position > found[name].snapshot.position and not machine.owns(
                            fact.event
                        ):
                            states[name], _ = machine.step(states[name], fact)
                else:
                    continue
                break
    chain = await snapshots.chain_hash_at(start)
    assert chain is not None  # every snapshot passed its chain check
    used = {name: restored.snapshot.position for name, restored in found.items()}
    return Start(position=start, states=states, chain_hash=chain, used=used)


@dataclass(frozen=True)
class Mismatch:
    """A later snapshot the fold did not reproduce."""

    machine: str
    position: int
    recorded: str
    recomputed: str

    @property
    def problem(self) -> str:
        return (
            f"the fold does not reproduce the {self.machine} snapshot at position "
            f"{self.position} (state SHA-256 {self.recomputed[:16]}, snapshot says "
            f"{self.recorded[:16]})"
        )


class SnapshotChecks:
    """The snapshots after the start, to compare with the fold as it passes their positions."""

    def __init__(self, pending: list[Snapshot]) -> None:
        self._pending = sorted(pending, key=lambda s: (s.position, s.machine), reverse=True)
        self.checked = 0
        self.mismatches: list[Mismatch] = []

    @property
    def next_position(self) -> int:
        """The next position at which a snapshot is due (a huge number when none is)."""
        return self._pending[-1].position if self._pending else 1 << 62

    def check(self, position: int, states: dict[str, Any]) -> None:
        """Compare the snapshots at ``position`` with ``states`` (the fold after ``position``)."""
        pending = self._pending
        while pending and pending[-1].position <= position:
            snapshot = pending.pop()
            state = states.get(snapshot.machine)
            if snapshot.position < position or state is None:
                continue  # passed without a look (not a verified machine): nothing to say
            recomputed = digest(CODECS[snapshot.machine].encode(state))
            self.checked += 1
            if recomputed != snapshot.state_digest:
                self.mismatches.append(
                    Mismatch(
                        snapshot.machine,
                        position,
                        snapshot.state_digest.hex(),
                        recomputed.hex(),
                    )
                )


async def later_snapshots(
    store: EventStore, machines: list[Machine[Any]], after: int, last: int
) -> SnapshotChecks:
    """Every usable snapshot of ``machines`` at positions ``after < p <= last``.

    One failing its own checks (another code or layout, damaged bytes, another ledger or
    configuration) is skipped with a WARNING, as a restore and ``--verify --all`` skip it: it is
    a broken cache row, not a claim about the log. One passing them that the fold does not
    reproduce is a divergence (:class:`SnapshotChecks`)."""
    snapshots = Snapshots(store)
    pending = []
    for machine in machines:
        if machine.name not in CODECS:
            continue
        for snapshot in await snapshots.candidates(machine.name, at_or_before=last, limit=1 << 20):
            if snapshot.position <= after:
                break
            problem = await snapshots.problem(snapshot)
            if problem is None:
                pending.append(snapshot)
            else:
                _log.warning(
                    "%s: snapshot at position %d skipped: %s",
                    machine.name,
                    snapshot.position,
                    problem,
                )
    return SnapshotChecks(pending)
