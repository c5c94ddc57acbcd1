"""``claire verify --archive``: one chain from position 1 through every archive file into the table.

Part of :mod:`eventstore.archive` (see there).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from eventstore.archive_export import _ARCHIVED, _ledger_identity
from eventstore.archive_files import Manifest, check_file, manifests, uncovered_files
from eventstore.canonical import (
    GENESIS,
)
from eventstore.errors import ArchiveError


@dataclass(frozen=True)
class ArchiveVerifyResult:
    """``claire verify --archive``: archive files and live table, one chain."""

    ok: bool
    files: int
    archived_events: int
    live_events: int
    problem: str | None = None
    file: str | None = None
    first_bad_position: int | None = None


async def verify_archive(url: str, directory: Path) -> ArchiveVerifyResult:
    """Check the chain from position 1 through every archive file, then the live table.

    Every file the ledger recorded as archived must be present, match its recorded SHA-256
    and manifest, belong to this ledger and continue the chain; no file may be left out or
    added; the live table must continue from the last file (``EventStore.verify``).
    """
    from eventstore.postgres import EventStore

    conn = await asyncpg.connect(url)
    try:
        recorded = await conn.fetch(_ARCHIVED)
        identity = await _ledger_identity(conn)
    finally:
        await conn.close()
    files = events = 0

    def bad(
        problem: str, file: str | None = None, position: int | None = None
    ) -> ArchiveVerifyResult:
        return ArchiveVerifyResult(False, files, events, 0, problem, file, position)

    try:
        listed = await asyncio.to_thread(manifests, directory)
    except ArchiveError as error:
        return bad(str(error), error.file)
    found = {m.partition: m for m in listed}
    in_order = [found.get(entry["partition"]) for entry in recorded]
    checks = _FileChecks(directory, in_order)
    try:
        previous = GENESIS
        for entry, manifest in zip(recorded, in_order, strict=True):
            if manifest is None:
                return bad(
                    f"archive file {entry['file']} (positions {entry['first_position']}.."
                    f"{entry['last_position']}) is missing from {directory}",
                    entry["file"],
                    entry["first_position"],
                )
            del found[manifest.partition]
            if manifest.ledger != identity:
                return bad(f"archive file {manifest.file} is from another ledger", manifest.file)
            if (
                manifest.sha256 != entry["file_sha256"]
                or manifest.first_position != entry["first_position"]
                or manifest.last_position != entry["last_position"]
                or manifest.last_hash != entry["last_hash"].hex()
            ):
                return bad(
                    f"manifest of {manifest.file} does not match what the ledger recorded when "
                    "it was archived",
                    manifest.file,
                    entry["first_position"],
                )
            try:
                checked = await checks.result(manifest, previous)
            except ArchiveError as error:
                return bad(str(error), error.file, error.position)
            previous, count = checked
            files, events = files + 1, events + count
    finally:
        checks.close()
    if found:
        manifest = min(found.values(), key=lambda m: m.first_position)
        other = " from another ledger" if manifest.ledger != identity else ""
        return bad(
            f"archive file {manifest.file}{other} is not one this ledger archived",
            manifest.file,
        )
    strays = await asyncio.to_thread(uncovered_files, directory, listed)
    if strays:
        return bad(
            f"archive directory {directory} holds files no manifest describes: "
            f"{', '.join(strays)} (a query over *.parquet would read them as archived events)",
            strays[0],
        )
    store = await EventStore.connect(url, max_connections=1)
    try:
        live = await store.verify()
    finally:
        await store.close()
    if not live.ok:
        return ArchiveVerifyResult(
            False, files, events, live.events_checked, live.problem, None, live.first_bad_position
        )
    return ArchiveVerifyResult(True, files, events, live.events_checked)


#: Below this many archived rows, ``verify --archive`` checks the files one after another in
#: this process: starting worker processes would cost more than it saves.
PARALLEL_ROWS = 200_000


class _FileChecks:
    """The files' checks (:func:`eventstore.archive_files.check_file`), run ahead in worker
    processes when there are enough rows and cores, one process per core.

    Each file's chain is checked from the previous hash its manifest states; :meth:`result`,
    asked in log order with the hash the files before it actually ended on, uses that check
    only if the two hashes agree and otherwise checks the file again from the actual hash. So
    the verdict, and the first bad file and position it names, are exactly those of checking
    the files one after another, only sooner.
    """

    def __init__(self, directory: Path, in_order: list[Manifest | None]) -> None:
        self.directory = directory
        self.pool: ProcessPoolExecutor | None = None
        self.ahead: dict[str, Future[tuple[bytes, int]]] = {}
        present = [m for m in in_order if m is not None]
        workers = min(os.cpu_count() or 1, len(present))
        rows = sum(max(m.row_count, 0) for m in present)
        if workers < 2 or rows < PARALLEL_ROWS:
            return
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        # fork: a worker starts with this process's modules loaded (spawning one re-imports
        # pyarrow and the ledger's code, longer than checking a file of a million rows).
        context = multiprocessing.get_context("fork")
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        for manifest in present:
            start = bytes.fromhex(manifest.previous_hash)
            self.ahead[manifest.partition] = self.pool.submit(
                check_file, directory, manifest, start
            )

    async def result(self, manifest: Manifest, previous: bytes) -> tuple[bytes, int]:
        """:func:`check_file` of ``manifest`` from ``previous``, the chain's actual hash."""
        future = self.ahead.pop(manifest.partition, None)
        if future is not None and bytes.fromhex(manifest.previous_hash) == previous:
            return await asyncio.wrap_future(future)
        if future is not None:
            future.cancel()
        return await asyncio.to_thread(check_file, self.directory, manifest, previous)

    def close(self) -> None:
        for future in self.ahead.values():
            future.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
