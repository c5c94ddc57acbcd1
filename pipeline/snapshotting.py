"""How a service restores from and writes its snapshots (docs/SNAPSHOTS.md), in one place.

The decision services, live execution and the ingest's screener fold all restore from the newest
usable snapshot (:func:`latest_usable`); the decision services and live execution write theirs
beside their live path, one at a time (:class:`SnapshotWriter`). A snapshot is a shortcut: a
table that cannot be read means a fold from position 1, a write that fails is a WARNING.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from eventstore import EventStoreError, connection_lost
from eventstore.snapshots import Restored, Snapshots, snapshot_of

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
