"""``claire verify --archive``: one chain from position 1 through every archive file into the table.

Part of :mod:`eventstore.archive` (see there).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from eventstore.archive_export import _ARCHIVED, _ledger_identity
from eventstore.archive_files import check_file, manifests, uncovered_files
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
    previous = GENESIS
    for entry in recorded:
        name = entry["partition"]
        manifest = found.pop(name, None)
        if manifest is None:
            return bad(
                f"archive file {entry['file']} (positions {entry['first_position']}.."
                f"{entry['last_position']}) is missing from {directory}",
                entry["file"],
                entry["first_position"],
            )
        if manifest.ledger != identity:
            return bad(f"archive file {manifest.file} is from another ledger", manifest.file)
        if (
            manifest.sha256 != entry["file_sha256"]
            or manifest.first_position != entry["first_position"]
            or manifest.last_position != entry["last_position"]
            or manifest.last_hash != entry["last_hash"].hex()
        ):
            return bad(
                f"manifest of {manifest.file} does not match what the ledger recorded when it "
                "was archived",
                manifest.file,
                entry["first_position"],
            )
        try:
            previous, count = await asyncio.to_thread(check_file, directory, manifest, previous)
        except ArchiveError as error:
            return bad(str(error), error.file, error.position)
        files, events = files + 1, events + count
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
