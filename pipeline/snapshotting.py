"""How a service restores from and writes its snapshots (docs/SNAPSHOTS.md), in one place.

The decision services, live execution and the ingest's screener fold all restore from the newest
usable snapshot (:func:`latest_usable`); the decision services and live execution write theirs
beside their live path, one at a time (:class:`SnapshotWriter`). A snapshot is a shortcut: a
table that cannot be read means a fold from position 1, a write that fails is a WARNING.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aggregates.envelope import RecordedEvent
from eventstore import EventLog, EventStoreError, connection_lost
from eventstore.snapshots import Restored, Snapshots, snapshot_of
from pipeline.startup import StartRefused

_log = logging.getLogger(__name__)


async def latest_usable(snapshots: Snapshots | None, machine: str) -> Restored | None:
    """The newest usable snapshot of ``machine``; None without one, without a snapshot store,
    or when the table cannot be read (e.g. a database not yet upgraded). A lost connection is
    raised: the service's supervisor waits for the ledger."""
    if snapshots is None:
        return None
    try:
        return await snapshots.latest_usable(machine)
    except EventStoreError as error:
        if connection_lost(error):
            raise
        _log.warning("%s: snapshots unreadable (%s); folding from 1", machine, error)
        return None


async def restore_tail(store: EventLog, machine: str, after: int) -> AsyncIterator[RecordedEvent]:
    """The log after ``after`` for a restore: refused (:class:`StartRefused`, one line) when the
    table no longer holds position ``after + 1``, i.e. ``claire archive`` moved it out. Folding
    what is left would build a state that silently lacks the archived history; the retention
    floor prevents it for every restore the ledger knows it needs, this catches the rest (a
    service that never ran here before, started after an archive)."""
    first = True
    async for recorded in store.read_all(after):
        if first and recorded.position != after + 1:
            raise StartRefused(
                f"{machine}: its restore needs position {after + 1}, but the ledger's table starts"
                f" at {recorded.position} (archived by `claire archive`) and no usable snapshot"
                f" of {machine} is at or after {recorded.position - 1}: restore the archived"
                " partitions into PostgreSQL first (docs/ARCHIVE.md)"
            )
        first = False
        yield recorded


class SnapshotWriter:
    """Writes one machine's snapshots beside its live path, one at a time.

    The caller encodes the state on its own path (the bytes must be those of that moment) and
    hands them over; the database write runs as a task. ``on_written`` is told each position
    stored.
    """

    def __init__(
        self,
        snapshots: Snapshots,
        machine: str,
        on_written: Callable[[int], None] = lambda position: None,
    ) -> None:
        self._snapshots = snapshots
        self._machine = machine
        self._on_written = on_written
        self._writing: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """A snapshot is still being written (the next trigger takes one)."""
        return self._writing is not None and not self._writing.done()

    def write(self, position: int, data: bytes, config_hash: str | None = None) -> None:
        """Store ``data``, the fold of positions 1..``position``; ``config_hash`` None: the
        configuration in force at ``position``, as the log tells it."""
        self._writing = asyncio.create_task(
            self._write(position, data, config_hash), name=f"{self._machine}-snapshot"
        )

    async def _write(self, position: int, data: bytes, config_hash: str | None) -> None:
        try:
            chain = await self._snapshots.chain_hash_at(position)
            if chain is None:
                return
            if config_hash is None:
                config_hash = await self._snapshots.config_hash_at(position)
            snapshot = snapshot_of(self._machine, data, position, chain, config_hash)
            await self._snapshots.save(snapshot)
            self._on_written(position)
        except Exception:  # a snapshot is a shortcut: never let it stop the service
            _log.warning("%s: snapshot at %d not written", self._machine, position, exc_info=True)

    async def wait(self) -> None:
        """Wait for a snapshot being written (tests, shutdown)."""
        if self._writing is not None:
            await asyncio.shield(self._writing)
