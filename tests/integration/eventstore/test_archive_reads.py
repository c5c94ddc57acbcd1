"""``ArchivedLog`` reads (docs/ARCHIVE.md, "Reading the archive"): streamed, and only of an
archive that joins this ledger's table.

Written from the findings of the history attack (tests/blackbox_attack/history): the archived
rows were all loaded before the first batch, and an archive was used without checking that the
table continues its chain.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import eventstore.archive_files as archive_files
import eventstore.archive_read as archive_read
from eventstore import EventStore
from eventstore.archive import ArchivedLog, ArchiveError
from tests.integration.eventstore.test_eventstore_archive import _archived_ledger

pytestmark = [pytest.mark.db]


async def test_archived_log_when_first_batch_taken_then_later_archive_batches_not_read_yet(
    fresh_database_url: Callable[..., Awaitable[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, archive = await _archived_ledger(fresh_database_url, tmp_path)
    monkeypatch.setattr(archive_files, "_READ_CHUNK", 10)
    read: list[int] = []
    batches = archive_read._batches

    def counted(path: Path) -> Any:
        for part in batches(path):
            read.append(part.num_rows)
            yield part

    monkeypatch.setattr(archive_read, "_batches", counted)
    async with await EventStore.connect(url) as store:
        log = ArchivedLog(store, archive)
        async with contextlib.aclosing(log.read_all_batches(batch_size=10)) as stream:
            first = await anext(stream)
            assert [fact.position for fact in first] == list(range(1, 11))
            assert len(read) <= 2, read  # one Parquet batch at a time, not the whole archive
            rest = [fact.position async for batch in stream for fact in batch]
    assert len(read) > 10, read
    assert rest[0] == 11 and rest == list(range(11, 11 + len(rest)))


async def test_archived_log_when_archive_lacks_its_last_file_then_refused_naming_the_end(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url, archive = await _archived_ledger(fresh_database_url, tmp_path)
    files = sorted(archive.glob("*.parquet"))
    files[-1].unlink()
    files[-1].with_name(files[-1].name.replace(".parquet", ".manifest.json")).unlink()
    async with await EventStore.connect(url) as store:
        with pytest.raises(ArchiveError) as refused:
            [fact async for fact in ArchivedLog(store, archive).read_all()]
    assert refused.value.file == files[-2].name
    assert "not all of it" in str(refused.value)
