"""Verified snapshots of machine state, in ``ledger.snapshots`` beside the log (docs/SNAPSHOTS.md).

A snapshot is only ever a shortcut: a fold of the log prefix 1..p, stored so that a service, a
replay or a verification can start at p instead of 1. It is used only if every check holds:

* the machine, the code version (a digest of the decision code, :func:`code_version`) and the
  byte layout (:data:`aggregates.snapshot.SCHEMA`) are this process's;
* the chain hash recorded with it equals the ledger's hash at p (same ledger, same history);
* the configuration hash recorded with it equals that of the last ``ConfigActivated`` at or
  before p;
* the state bytes hash to the recorded SHA-256 and decode as the machine's state.

A snapshot failing any check is skipped with a WARNING naming the check, and the one before it
is tried; with none usable the caller folds from position 1, as without snapshots.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

import aggregates
from aggregates.snapshot import CODECS, SCHEMA, SnapshotDecodeError, StateCodec, digest
from eventstore import driver
from eventstore.postgres import EventStore

_log = logging.getLogger(__name__)

#: How many snapshots (newest first) a restore considers before falling back to position 1.
CANDIDATES = 16

_INSERT = """
INSERT INTO ledger.snapshots
    (machine, code_version, schema_version, config_hash, position, chain_hash, state_digest, state)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (machine, code_version, schema_version, position) DO NOTHING
"""
_COLUMNS = (
    "machine, code_version, schema_version, config_hash, position, chain_hash, state_digest,"
    " {state}, taken_at, id"
)
_CANDIDATES = """
SELECT {columns} FROM ledger.snapshots
WHERE machine = $1 AND position <= $2
ORDER BY position DESC, id DESC LIMIT $3
"""
_STATE = "SELECT state FROM ledger.snapshots WHERE id = $1"
_ALL = (
    f"SELECT {_COLUMNS.format(state='state')} FROM ledger.snapshots ORDER BY machine, position, id"
)
_CHAIN_HASH_AT = "SELECT hash FROM ledger.events WHERE position = $1"
_CONFIG_HASH_AT = """
SELECT payload->>'config_hash' FROM ledger.events
WHERE event_type = 'config.activated' AND position <= $1
ORDER BY position DESC LIMIT 1
"""


@functools.cache
def code_version() -> str:
    """A digest of the decision code (every module of ``aggregates``): a snapshot written by other
    code may hold a state this code would not have folded, so it is never used."""
    root = Path(aggregates.__file__).resolve().parent
    hasher = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        hasher.update(path.relative_to(root).as_posix().encode() + b"\0")
        hasher.update(path.read_bytes() + b"\0")
    return hasher.hexdigest()[:16]


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``ledger.snapshots``."""

    machine: str
    code_version: str
    schema_version: int
    config_hash: str
    position: int
    chain_hash: bytes
    state_digest: bytes
    state: bytes
    taken_at: datetime | None = None
    #: The row's id (0 before it is stored); ``state`` is left empty when read without it.
    id: int = 0
    state_loaded: bool = True


def snapshot_of(
    machine: str, data: bytes, position: int, chain_hash: bytes, config_hash: str
) -> Snapshot:
    """The snapshot of state bytes (``aggregates.snapshot.CODECS[machine].encode(state)``), a fold
    of positions 1..``position``, in this code's versions."""
    return Snapshot(
        machine=machine,
        code_version=code_version(),
        schema_version=SCHEMA,
        config_hash=config_hash,
        position=position,
        chain_hash=chain_hash,
        state_digest=digest(data),
        state=data,
    )


class Restored(msgspec.Struct, frozen=True):
    """A usable snapshot and its decoded state."""

    snapshot: Snapshot
    state: Any


class Snapshots:
    """Read and write ``ledger.snapshots`` through an open :class:`EventStore`'s connections."""

    def __init__(self, store: EventStore) -> None:
        self._pool = store._pool

    async def save(self, snapshot: Snapshot) -> None:
        """Store ``snapshot``; one of the same machine, versions and position is a no-op."""
        await driver.fetch(
            self._pool,
            _INSERT,
            snapshot.machine,
            snapshot.code_version,
            snapshot.schema_version,
            snapshot.config_hash,
            snapshot.position,
            snapshot.chain_hash,
            snapshot.state_digest,
            snapshot.state,
        )

    async def chain_hash_at(self, position: int) -> bytes | None:
        """The ledger's stored hash at ``position``; None past the head."""
        rows = await driver.fetch(self._pool, _CHAIN_HASH_AT, position)
        return bytes(rows[0][0]) if rows else None

    async def config_hash_at(self, position: int) -> str:
        """The hash of the configuration in force at ``position`` ('' before the first one)."""
        rows = await driver.fetch(self._pool, _CONFIG_HASH_AT, position)
        return (rows[0][0] or "") if rows else ""

    async def candidates(
        self,
        machine: str,
        at_or_before: int | None = None,
        limit: int = CANDIDATES,
        *,
        states: bool = True,
    ) -> list[Snapshot]:
        """The newest snapshots of ``machine`` at or before a position, newest first.

        ``states=False`` leaves the state bytes in the database until a check needs them (a
        restore reads only the one it uses: states may be large).
        """
        columns = _COLUMNS.format(state="state" if states else "''::bytea")
        query = _CANDIDATES.format(columns=columns)
        rows = await driver.fetch(self._pool, query, machine, at_or_before or 2**62, limit)
        return [_snapshot(row, loaded=states) for row in rows]

    async def all(self) -> list[Snapshot]:
        """Every stored snapshot, by machine and position (for ``claire status``)."""
        return [_snapshot(row) for row in await driver.fetch(self._pool, _ALL)]

    async def problem(self, snapshot: Snapshot) -> str | None:
        """Why ``snapshot`` must not be used, or None when it passes every check."""
        problem, _ = await self._check(snapshot)
        return problem

    async def _check(self, snapshot: Snapshot) -> tuple[str | None, Any]:
        codec: StateCodec | None = CODECS.get(snapshot.machine)
        if codec is None:
            return f"no machine named {snapshot.machine!r} in this code", None
        if snapshot.code_version != code_version():
            return f"written by code version {snapshot.code_version}, not {code_version()}", None
        if snapshot.schema_version != SCHEMA:
            return f"layout version {snapshot.schema_version}, not {SCHEMA}", None
        if not snapshot.state_loaded:
            rows = await driver.fetch(self._pool, _STATE, snapshot.id)
            if not rows:
                return "the row is gone", None
            snapshot = msgspec.structs.replace(snapshot, state=bytes(rows[0][0]), state_loaded=True)
        if digest(snapshot.state) != snapshot.state_digest:
            return "state bytes do not hash to the recorded SHA-256 (truncated or edited)", None
        chain = await self.chain_hash_at(snapshot.position)
        if chain is None:
            return f"position {snapshot.position} is past the ledger's head (another ledger)", None
        if chain != snapshot.chain_hash:
            return f"chain hash differs from the ledger's at {snapshot.position}", None
        config = await self.config_hash_at(snapshot.position)
        if config != snapshot.config_hash:
            shown = snapshot.config_hash[:12] or "(none)"
            return f"configuration hash {shown} is not the one in force ({config[:12]})", None
        try:
            state = codec.decode(snapshot.state)
        except SnapshotDecodeError as error:
            return str(error), None
        return None, (snapshot, state)

    async def latest_usable(self, machine: str, at_or_before: int | None = None) -> Restored | None:
        """The newest snapshot of ``machine`` (at or before a position) passing every check.

        Each one skipped is logged with a WARNING naming the failed check.
        """
        for snapshot in await self.candidates(machine, at_or_before, states=False):
            problem, found = await self._check(snapshot)
            if problem is None:
                return Restored(*found)
            _log.warning(
                "%s: snapshot at position %d skipped: %s", machine, snapshot.position, problem
            )
        return None


def _snapshot(row: Any, *, loaded: bool = True) -> Snapshot:
    return Snapshot(
        machine=row[0],
        code_version=row[1],
        schema_version=row[2],
        config_hash=row[3],
        position=row[4],
        chain_hash=bytes(row[5]),
        state_digest=bytes(row[6]),
        state=bytes(row[7]),
        taken_at=row[8],
        id=row[9],
        state_loaded=loaded,
    )
