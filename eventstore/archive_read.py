"""Reading the archive: :func:`read_archived` from the files alone, and :class:`ArchivedLog`,
a store whose reads start in the archive and continue in the table.

Part of :mod:`eventstore.archive` (see there). Reads are streamed one Parquet batch at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from eventstore import sql
from eventstore.archive_columns import ArchivedRow, rows_of
from eventstore.archive_files import Manifest, _batches, _sha256, manifests
from eventstore.canonical import (
    GENESIS,
    chain,
)
from eventstore.errors import ArchiveError
from eventstore.verify import row_canonical


def read_archived(directory: Path, after: int = 0) -> Iterator[tuple[ArchivedRow, bytes]]:
    """The archived events with position > ``after`` and their chain hashes, in order, from
    the files alone, one Parquet batch at a time: first every file to be read is checked
    against its manifest (SHA-256) and the files must follow one another; then each file's
    rows must rebuild the chain to its manifest's last hash. :class:`ArchiveError` names a bad
    file."""
    needed = _files_after(directory, manifests(directory), after)
    for manifest, previous in needed:
        for part in _batches(directory / manifest.file):
            for row in rows_of(part):
                previous = chain(previous, row.canonical())
                if row.position > after:
                    yield row, previous
        if previous.hex() != manifest.last_hash:
            raise ArchiveError(
                f"archive file {manifest.file} does not rebuild to its manifest's last hash",
                file=manifest.file,
            )


def _files_after(
    directory: Path, found: list[Manifest], after: int
) -> list[tuple[Manifest, bytes]]:
    """The manifests of the files holding positions after ``after``, each with the chain hash
    before it; the files follow one another from position 1 and match their SHA-256."""
    previous, expected = GENESIS, 1
    needed: list[tuple[Manifest, bytes]] = []
    for manifest in found:
        if manifest.first_position != expected:
            raise ArchiveError(
                f"archive in {directory} lacks positions {expected}..{manifest.first_position - 1}"
                f" (before {manifest.file})",
                file=manifest.file,
                position=expected,
            )
        expected = manifest.last_position + 1
        if manifest.last_position > after:
            if bytes.fromhex(manifest.previous_hash) != previous:
                raise ArchiveError(
                    f"archive file {manifest.file} does not continue the chain",
                    file=manifest.file,
                )
            path = directory / manifest.file
            if not path.is_file() or _sha256(path) != manifest.sha256:
                raise ArchiveError(
                    f"archive file {manifest.file} is missing or corrupted", file=manifest.file
                )
            needed.append((manifest, previous))
        previous = bytes.fromhex(manifest.last_hash)
    return needed


_FIRST_LIVE = sql.READ_FOR_VERIFY


def _archived_batches(directory: Path, after: int, size: int) -> Generator[list[Any]]:
    """:func:`read_archived` as lists of at most ``size`` recorded events."""
    from aggregates.envelope import RecordedEvent
    from eventstore.codec import decode_payload

    batch: list[RecordedEvent] = []
    for row, digest in read_archived(directory, after):
        batch.append(
            RecordedEvent(
                position=row.position,
                stream=row.stream,
                stream_version=row.stream_version,
                event_id=row.event_id,
                event_type=row.event_type,
                schema_version=row.schema_version,
                occurred_at=row.occurred_at,
                recorded_at=row.recorded_at,
                causation_id=row.causation_id,
                causation_position=row.causation_position,
                correlation_id=row.correlation_id,
                event=decode_payload(
                    row.position, row.event_type, row.schema_version, row.payload_text
                ),
                hash=digest,
            )
        )
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class ArchivedLog:
    """An :class:`eventstore.EventStore` whose reads start in the archive, then the table.

    For ``replay --archive DIR`` and projection rebuilds: ``read_all``/``read_all_batches``
    serve archived positions from the files (checked as :func:`read_archived` does, streamed
    one Parquet batch at a time) and continue from the table at the first live position;
    ``position_at`` searches both. Before any read, the archive must join this ledger's table:
    the table's first row follows the archive's last position and hashes from its last chain
    hash (an archive of another ledger is refused). Everything else (appends, ``head``,
    ``verify``) is the store's.
    """

    def __init__(self, store: Any, directory: Path) -> None:
        self._store = store
        self._directory = directory
        self._joined = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _check_join(self) -> list[Manifest]:
        """The archive's manifests, once the archive is known to end where the table begins."""
        found = await asyncio.to_thread(manifests, self._directory)
        if self._joined:
            return found
        last = found[-1] if found else None
        end = last.last_position if last is not None else 0
        end_hash = bytes.fromhex(last.last_hash) if last is not None else GENESIS
        named = last.file if last is not None else str(self._directory)
        rows = await self._store._fetch(_FIRST_LIVE, 0, 1)
        if rows:
            first, stored = rows[0][0], rows[0][12]
            try:
                follows = chain(end_hash, row_canonical(rows[0])) == stored
            except (ValueError, TypeError, OverflowError, ArithmeticError):
                follows = False
        else:
            first, head_hash = await self._store.head()
            first, follows = first + 1, head_hash == end_hash
        if first != end + 1:
            raise ArchiveError(
                f"the archive in {self._directory} ends at position {end} ({named}) but this "
                f"ledger's table continues from {first}: not this ledger's archive, or not all "
                "of it",
                file=named,
                position=end + 1,
            )
        if not follows:
            raise ArchiveError(
                f"archive file {named} is not this ledger's: the table's position {first} does "
                "not follow its last chain hash (an archive of another ledger?)",
                file=named,
                position=first,
            )
        self._joined = True
        return found

    async def read_all_batches(
        self, after: int = 0, *, batch_size: int = 2000, chunks: Any = None
    ) -> Any:
        await self._check_join()
        batches = _archived_batches(self._directory, after, batch_size)
        last = after
        try:
            while (batch := await asyncio.to_thread(next, batches, None)) is not None:
                last = batch[-1].position
                yield batch
        finally:
            with contextlib.suppress(ValueError):  # still running in its thread: cancelled
                batches.close()
        async with contextlib.aclosing(
            self._store.read_all_batches(after=last, batch_size=batch_size, chunks=chunks)
        ) as live:
            async for live_batch in live:
                if live_batch and live_batch[0].position != last + 1:
                    raise ArchiveError(
                        f"the table starts at {live_batch[0].position}, the archive in "
                        f"{self._directory} ends at {last}",
                        position=last + 1,
                    )
                last = live_batch[-1].position
                yield live_batch

    async def read_all(self, after: int = 0, *, batch_size: int = 2000, chunks: Any = None) -> Any:
        async with contextlib.aclosing(
            self.read_all_batches(after, batch_size=batch_size, chunks=chunks)
        ) as batches:
            async for batch in batches:
                for fact in batch:
                    yield fact

    async def position_at(self, moment: datetime) -> int | None:
        await self._check_join()
        found = await asyncio.to_thread(self._archived_position_at, moment)
        return found if found is not None else await self._store.position_at(moment)

    def _archived_position_at(self, moment: datetime) -> int | None:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        best: int | None = None
        for manifest in manifests(self._directory):
            try:
                table = pq.read_table(
                    self._directory / manifest.file, columns=["position", "occurred_at"]
                )
            except Exception as error:  # pyarrow raises many types for a broken file
                raise ArchiveError(
                    f"archive file {manifest.file} is unreadable: {error}", file=manifest.file
                ) from None
            hits = table.filter(pc.greater_equal(table["occurred_at"], moment))
            if hits.num_rows:
                first = pc.min(hits["position"]).as_py()
                best = first if best is None else min(best, first)
        return best
