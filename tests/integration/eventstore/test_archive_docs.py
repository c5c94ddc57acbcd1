"""docs/ARCHIVE.md's examples run as written: the DuckDB queries over an archive, and the
restore of archived partitions into PostgreSQL (rows and hashes as the ledger held them)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import duckdb
import pytest

from eventstore.migrations import ROOT
from tests.integration.eventstore.test_eventstore_archive import (
    _archive_cli,
    _fill,
    _live,
    _partitioned_ledger,
    _release,
)

pytestmark = [pytest.mark.db]

DOC = (ROOT / "docs" / "ARCHIVE.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


async def test_archive_docs_examples_when_run_on_an_archive_then_answer_from_the_files(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url = await _partitioned_ledger(fresh_database_url)
    await _fill(url)
    before = await _live(url)
    await _release(url)
    archive = tmp_path / "archive"
    archive.mkdir()
    assert await _archive_cli(url, archive) == 0

    per_symbol, candles = (
        duckdb.sql(block.replace("DIR", str(archive))).fetchall() for block in _blocks("sql")
    )
    # Positions 1..200: 120 BTC trades (1..120), 80 ETH trades (121..200).
    assert [(row[0], row[1]) for row in per_symbol] == [("BTC_USDT", 120), ("ETH_USDT", 80)]
    assert sum(row[5] for row in candles) == 120

    (restore_code,) = _blocks("python")
    scope: dict[str, object] = {}
    exec(restore_code, scope)
    await scope["restore"](url, str(archive), 51, 150)  # type: ignore[operator]
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT *, payload::text FROM restored.events ORDER BY position")
    finally:
        await conn.close()
    assert [tuple(row) for row in rows] == before[50:150]
