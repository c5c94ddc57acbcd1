"""``claire archive``: the retention floor, and each old partition exported, read back and dropped.

Part of :mod:`eventstore.archive` (see there for the whole design).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec

from eventstore.archive_arrow import EXPORT_SELECT, csv_table
from eventstore.archive_columns import _PARQUET_OPTIONS, _schema, _table
from eventstore.archive_files import (
    FORMAT,
    Manifest,
    _fsync_dir,
    _sha256,
    check_file,
)
from eventstore.canonical import (
    GENESIS,
)
from eventstore.errors import ArchiveError

_ARCHIVED = (
    "SELECT partition, first_position, last_position, first_hash, last_hash, row_count, file,"
    " file_sha256 FROM ledger.archived ORDER BY first_position"
)
_PARTITIONS = """
SELECT c.relname, (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                'FROM \\(''?(\\d+)''?\\) TO \\(''?(\\d+)''?\\)'))[1:2]::bigint[]
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'ledger.events'::regclass
"""
_HAS = "SELECT to_regclass($1) IS NOT NULL"
T = TypeVar("T")


async def retention_floor(conn: asyncpg.Connection, url: str) -> tuple[int, str]:
    """The highest position that may be archived, and what holds it there.

    The minimum of: every projection's checkpoint (a projection still to read a position needs
    it in the table), and every decision service's newest *usable* snapshot (the one its restore
    would take: :meth:`eventstore.snapshots.Snapshots.latest_usable`). A service with no usable
    snapshot restores by folding the log from position 1, so then nothing may go.
    """
    floor, reason = await conn.fetchval("SELECT position FROM ledger.head"), "the head"
    if await conn.fetchval(_HAS, "readmodel.checkpoints"):
        row = await conn.fetchrow(
            "SELECT projection, position FROM readmodel.checkpoints ORDER BY position LIMIT 1"
        )
        if row is not None and row[1] < floor:
            floor, reason = row[1], f"projection {row[0]}'s checkpoint"
    if not await conn.fetchval(_HAS, "ledger.snapshots"):
        return 0, "no snapshots: a service restore folds the log from position 1"
    restore, why = await _restore_floor(url)
    if restore < floor:
        floor, reason = restore, why
    return floor, reason


#: Live execution has run on this ledger: its stream holds (or held, before an archive) events.
_LIVE_RAN = "SELECT EXISTS (SELECT 1 FROM ledger.stream_versions WHERE stream = 'execution')"


async def _restore_floor(url: str) -> tuple[int, str]:
    """The oldest of the services' newest usable snapshots (0 if one whose restore this ledger
    needs has none).

    Paper and live execution never run side by side, so not both restores are needed: live
    execution's only once it has run here (its ``execution`` stream is not empty); paper's
    unless live execution has run and paper never stored a snapshot (a live deployment from the
    start). Without that, a live deployment, whose paper service never runs, could never archive.
    """
    from aggregates.snapshot import CODECS
    from eventstore.postgres import EventStore
    from eventstore.snapshots import Snapshots

    store = await EventStore.connect(url, max_connections=1)
    try:
        snapshots = Snapshots(store)
        live_ran = bool((await store._fetch(_LIVE_RAN))[0][0])
        floor: tuple[int, str] | None = None
        for machine, codec in CODECS.items():
            found = await snapshots.latest_usable(machine)
            if found is None:
                if codec.mode == "live" and not live_ran:
                    continue  # never run on this ledger (a paper deployment)
                if (
                    codec.mode == "paper"
                    and live_ran
                    and not await snapshots.candidates(machine, limit=1, states=False)
                ):
                    continue  # never run on this ledger (live from the start)
                return 0, f"no usable snapshot of {machine}: its restore folds from position 1"
            if floor is None or found.snapshot.position < floor[0]:
                floor = (found.snapshot.position, f"the newest usable snapshot of {machine}")
        assert floor is not None
        return floor
    finally:
        await store.close()


async def _ledger_identity(conn: asyncpg.Connection) -> str:
    first = await conn.fetchval(
        "SELECT first_hash FROM ledger.archived WHERE first_position = 1"
    ) or await conn.fetchval("SELECT hash FROM ledger.events WHERE position = 1")
    return (first or GENESIS).hex()


@dataclass(frozen=True)
class ArchiveReport:
    """What one ``claire archive`` run did."""

    archived: list[Manifest]
    floor: int
    floor_reason: str
    stopped: str  # why no further partition was archived


def _check_writable(directory: Path) -> None:
    if not directory.is_dir():
        raise ArchiveError(f"archive directory {directory} does not exist", file=str(directory))
    try:  # a real probe: permissions, read-only mounts and ACLs all answer it
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise ArchiveError(
            f"archive directory {directory} is not writable: {error.strerror}",
            file=str(directory),
        ) from None


async def archive(url: str, before: datetime, directory: Path) -> ArchiveReport:
    """Archive, oldest first, every whole partition recorded before ``before`` and under the
    retention floor; see the module docstring. Raises :class:`ArchiveError` (nothing dropped
    for the partition at fault; partitions archived before it stay archived and consistent).

    Three things overlap, each on its own core when one is free: PostgreSQL writes the next
    rows (``COPY`` on this connection, at most :data:`_READ_AHEAD` chunks ahead), this
    process builds, writes and reads back the current file (worker threads), and PostgreSQL
    prunes and drops the partition before it (a second connection). What must come first
    still does: a partition is dropped only after its file was read back and re-hashed to
    the chain, and a file is renamed into place only after the partition before it was
    dropped, so a failure leaves each partition either archived or untouched."""
    await asyncio.to_thread(_check_writable, directory)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        # One run at a time: two runs would write the same files (the second waits, then
        # finds the partitions the first archived gone).
        await conn.execute("SELECT pg_advisory_lock(hashtext('claire.archive'))")
        floor, reason = await retention_floor(conn, url)
        identity = await _ledger_identity(conn)
        archived = await conn.fetch(_ARCHIVED)
        after = (0, GENESIS)
        if archived:
            after = (archived[-1]["last_position"], archived[-1]["last_hash"])
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=_READ_AHEAD)
        reader = asyncio.create_task(_read_partitions(conn, before, floor, after, queue))
        try:
            done: list[Manifest] = []
            stopped = await _write_partitions(url, directory, identity, queue, done)
            return ArchiveReport(done, floor, reason, stopped)
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
    finally:
        await conn.close()


#: Chunks of rows ``COPY`` may read ahead of the file being written.
_READ_AHEAD = 2


@dataclass(frozen=True)
class _Partition:
    """A partition about to be read: its name, the hash before it, its first and last rows."""

    name: str
    previous: bytes
    first: tuple[int, bytes]
    last: tuple[int, bytes]


@dataclass(frozen=True)
class _Stop:
    reason: str  # why no further partition is archived


_END = b""  # all of the partition's rows were read


async def _read_partitions(
    conn: asyncpg.Connection,
    before: datetime,
    floor: int,
    after: tuple[int, bytes],
    queue: asyncio.Queue[Any],
) -> None:
    """Put on ``queue``, oldest first, each partition to archive (a :class:`_Partition`, its
    rows as ``COPY`` CSV chunks, :data:`_END`), then a :class:`_Stop`; or the error, if the
    ledger does not continue the archive."""
    try:
        previous_last, previous = after
        rows = await conn.fetch(_PARTITIONS)
        for low, high, name in sorted((row[1][0], row[1][1], row[0]) for row in rows):
            stopped = await _not_archivable(conn, name, low, high, before, floor, previous_last)
            if stopped is not None:
                await queue.put(_Stop(stopped))
                return
            # One snapshot for the rows and the hashes at both ends (the read-back proves
            # they agree); the rows come as CSV, parsed column-wise: no Python object per row.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                ends = "SELECT position, hash FROM ledger.{0} ORDER BY position {1} LIMIT 1"
                start_row = await conn.fetchrow(ends.format(name, "ASC"))
                end_row = await conn.fetchrow(ends.format(name, "DESC"))
                first, last = (start_row[0], start_row[1]), (end_row[0], end_row[1])
                await queue.put(_Partition(name, previous, first, last))
                for start in range(first[0], high, _EXPORT_CHUNK):
                    data = await _copy_csv(
                        conn,
                        f"SELECT {EXPORT_SELECT} FROM ledger.{name} WHERE position >= {start}"
                        f" AND position < {start + _EXPORT_CHUNK} ORDER BY position",
                    )
                    await queue.put(data)
            await queue.put(_END)
            previous_last, previous = last
        await queue.put(_Stop("no partition left"))
    except Exception as error:  # the writer raises it, after what came before it
        await queue.put(error)


async def _not_archivable(
    conn: asyncpg.Connection,
    name: str,
    low: int,
    high: int,
    before: datetime,
    floor: int,
    previous_last: int,
) -> str | None:
    """Why partition ``name`` is not archived (``None``: it is); :class:`ArchiveError` if it
    does not continue the archive at ``previous_last + 1``."""
    head = await conn.fetchval("SELECT position FROM ledger.head")
    first = await conn.fetchval(f"SELECT min(position) FROM ledger.{name}")
    last = high - 1
    if last > head:
        return f"the oldest partition {name} is not full yet (ends at {last}, head {head})"
    if last > floor:
        return f"partition {name} ends at {last}, after the retention floor {floor}"
    recorded = await conn.fetchval(
        f"SELECT recorded_at FROM ledger.{name} ORDER BY position DESC LIMIT 1"
    )
    if recorded is None or first != previous_last + 1 or first != max(low, 1):
        raise ArchiveError(
            f"partition {name} does not continue the archive at {previous_last + 1}",
            position=previous_last + 1,
        )
    if recorded >= before:
        return f"partition {name} holds events recorded at or after {before.isoformat()}"
    return None


async def _write_partitions(
    url: str, directory: Path, identity: str, queue: asyncio.Queue[Any], done: list[Manifest]
) -> str:
    """Take what :func:`_read_partitions` puts on ``queue``: write, read back and publish each
    partition's file, then drop the partition on a second connection while the next file is
    written; each dropped partition's manifest goes on ``done``. Returns why no further
    partition was archived."""
    dropper = await asyncpg.connect(url)
    dropping: asyncio.Task[Manifest] | None = None
    export: _FileExport | None = None
    try:
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            if isinstance(item, _Stop):
                break
            if isinstance(item, _Partition):
                export = _FileExport(item.name, directory, item.previous, identity)
                export.first, export.last = item.first, item.last
                await _step(export, export.start)
            elif item is _END:
                assert export is not None
                manifest = await _step(export, export.finish)
                if dropping is not None:  # the partition before is gone first
                    done.append(await dropping)
                    dropping = None
                await _step(export, export.publish)
                # The reader's snapshot locks only the partition it reads, never the parent,
                # so this DETACH (ACCESS EXCLUSIVE on ledger.events) does not wait for it
                # (which would deadlock: the reader waits for this loop to take its chunks).
                dropping = asyncio.create_task(_drop(dropper, export.name, manifest))
                export = None
            else:
                assert export is not None
                await _step(export, export.write, item)
        if dropping is not None:
            done.append(await dropping)
            dropping = None
        return item.reason
    finally:
        if export is not None:
            await asyncio.to_thread(export.abort)
        if dropping is not None:  # failing: the drop before still ends (or fails) first
            with contextlib.suppress(Exception):
                await dropping
        await dropper.close()


async def _step(export: _FileExport, step: Callable[..., T], *args: Any) -> T:
    """One step of ``export`` in a worker thread; an :class:`OSError` (directory not
    writable, disk full) becomes :class:`ArchiveError` naming the file."""
    try:
        return await asyncio.to_thread(step, *args)
    except OSError as error:
        raise ArchiveError(
            f"cannot write archive file {export.file} in {export.directory}: {error}; "
            "nothing was dropped",
            file=export.file,
        ) from None


async def _copy_csv(conn: asyncpg.Connection, query: str) -> bytes:
    """``COPY (query) TO STDOUT (FORMAT csv, FORCE_QUOTE *)``: a NULL is an unquoted empty
    field, an empty text a quoted one."""
    parts: list[bytes] = []

    async def sink(data: bytes) -> None:
        parts.append(data)

    await conn.copy_from_query(query, output=sink, format="csv", force_quote=True)
    return b"".join(parts)


#: Rows per Parquet write during an export (memory stays bounded whatever the partition size).
_EXPORT_CHUNK = 100_000


class _FileExport:
    """One partition's archive file in the making; each step runs in a worker thread.

    Read-back needs no copy of the rows: the file's rows are re-hashed from the hash before
    the partition, and the chain ending at the ledger's own last hash (with the same first
    hash, positions and count) proves every row rebuilt exactly (SHA-256 chain).
    """

    def __init__(self, name: str, directory: Path, previous: bytes, identity: str) -> None:
        self.name, self.directory, self.previous, self.identity = (
            name,
            directory,
            previous,
            identity,
        )
        self.file = f"{name}.parquet"
        self.path = directory / self.file
        self.manifest_path = directory / f"{name}.manifest.json"
        self.temporary = directory / f".{self.file}.partial"
        self.temporary_manifest = directory / f".{name}.manifest.json.partial"
        self.writer: Any = None
        self.first: tuple[int, bytes] | None = None
        self.last: tuple[int, bytes] | None = None
        self.count = 0
        self.published = False

    def start(self) -> None:
        import pyarrow.parquet as pq

        if self.path.exists() or self.manifest_path.exists():
            raise ArchiveError(
                f"archive file {self.file} already exists: the archive is append-only",
                file=self.file,
            )
        self.writer = pq.ParquetWriter(self.temporary, _schema(), **_PARQUET_OPTIONS)

    def write(self, data: bytes) -> None:
        """One chunk of the partition, as ``COPY (SELECT EXPORT_SELECT ..)`` wrote it."""
        table = _table(csv_table(data))
        self.writer.write_table(table)
        self.count += table.num_rows

    def finish(self) -> Manifest:
        self.writer.close()
        self.writer = None
        with self.temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        if self.first is None or self.last is None:
            raise ArchiveError(f"partition {self.name} is empty", file=self.file)
        manifest = Manifest(
            format=FORMAT,
            ledger=self.identity if self.first[0] != 1 else self.first[1].hex(),
            partition=self.name,
            file=self.file,
            first_position=self.first[0],
            last_position=self.last[0],
            previous_hash=self.previous.hex(),
            first_hash=self.first[1].hex(),
            last_hash=self.last[1].hex(),
            row_count=self.count,
            sha256=_sha256(self.temporary),
        )
        staged = Manifest(**{**msgspec.structs.asdict(manifest), "file": self.temporary.name})
        try:
            check_file(self.directory, staged, self.previous)
        except ArchiveError as error:
            raise ArchiveError(
                f"archive file {self.file} does not read back to the ledger's chain "
                f"({error}); nothing was dropped",
                file=self.file,
                position=error.position,
            ) from None
        self.temporary_manifest.write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
        with self.temporary_manifest.open("rb+") as handle:
            os.fsync(handle.fileno())
        return manifest

    def publish(self) -> None:
        """Rename the read-back file and its manifest into place (after :meth:`finish`)."""
        self.temporary.rename(self.path)
        self.temporary_manifest.rename(self.manifest_path)
        _fsync_dir(self.directory)
        self.published = True

    def abort(self) -> None:
        if self.published:  # renamed into place: never removed
            return
        with contextlib.suppress(Exception):
            if self.writer is not None:
                self.writer.close()
        for path in (self.temporary, self.temporary_manifest):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


async def _drop(conn: asyncpg.Connection, name: str, manifest: Manifest) -> Manifest:
    """Record the file, prune the side tables, detach and drop the partition: one transaction.
    Returns the manifest, once its partition is gone."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO ledger.archived (partition, first_position, last_position, first_hash,"
            " last_hash, row_count, file, file_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            name, manifest.first_position, manifest.last_position,
            bytes.fromhex(manifest.first_hash), bytes.fromhex(manifest.last_hash),
            manifest.row_count, manifest.file, manifest.sha256,
        )  # fmt: skip
        await conn.execute(
            f"DELETE FROM ledger.event_ids i USING ledger.{name} e WHERE i.event_id = e.event_id"
        )
        # Each stream keeps its last version: a stream never starts again at version 1. Each
        # stream's last version is looked up once (MATERIALIZED), not once per deleted row;
        # the pairs to delete are materialized too, so they meet the side table in one hash
        # join (estimated from the CTE, the planner probed the partition once per live row).
        await conn.execute(
            f"""
            WITH last AS MATERIALIZED (
                SELECT s.stream, (SELECT max(m.stream_version) FROM ledger.stream_versions m
                                  WHERE m.stream = s.stream) AS version
                FROM (SELECT DISTINCT stream FROM ledger.{name}) s
            ), gone AS MATERIALIZED (
                SELECT e.stream, e.stream_version FROM ledger.{name} e JOIN last l USING (stream)
                WHERE e.stream_version < l.version
            )
            DELETE FROM ledger.stream_versions v USING gone g
            WHERE v.stream = g.stream AND v.stream_version = g.stream_version
            """
        )
        await conn.execute(f"ALTER TABLE ledger.events DETACH PARTITION ledger.{name}")
        await conn.execute(f"DROP TABLE ledger.{name}")
    return manifest
