"""docs/ARCHIVE.md: "`claire projections rebuild [NAME] --archive DIR` rebuilds the read models
from archive plus table (equal to the read models before archiving; tested); a bad file is
named, exit 1, and the read models in service stay as they were." The retention floor keeps
every position a projection checkpoint still needs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from aggregates.snapshot import CODECS
from eventstore import EventStore
from eventstore.migrations import upgrade
from eventstore.snapshots import Snapshots, snapshot_of
from tests.blackbox_attack.projections.proj_helpers import (
    append,
    base_ledger,
    claire,
    fetchval,
    head,
    readmodels,
    tick,
)
from tests.blackbox_attack.projections.workload import session

MakeUrl = Callable[..., Awaitable[str]]
SYMBOLS = ("BTC_USDT", "ETH_USDT")
FAR_FUTURE = "2100-01-01"


async def small_partitions(fresh_database_url: MakeUrl, size: int = 50) -> str:
    url = await fresh_database_url(migrate=False)
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" SET claire.partition_size = {size}')
    finally:
        await conn.close()
    await asyncio.to_thread(upgrade, url)
    return url


async def snapshot_all(url: str, position: int) -> None:
    """Every decision service has a usable snapshot at ``position`` (docs/SNAPSHOTS.md)."""
    store = await EventStore.connect(url)
    try:
        snaps = Snapshots(store)
        chain = await snaps.chain_hash_at(position)
        assert chain is not None
        config = await snaps.config_hash_at(position)
        for machine, codec in CODECS.items():
            await snaps.save(
                snapshot_of(machine, codec.encode(codec.state_type()), position, chain, config)
            )
    finally:
        await store.close()


async def archived_ledger(
    fresh_database_url: MakeUrl, directory: Path, respec: bool = False
) -> tuple[str, dict]:  # type: ignore[type-arg]
    url = await small_partitions(fresh_database_url)
    await base_ledger(url, SYMBOLS)
    await append(url, session(60, SYMBOLS, seed=17), batch=True)
    floor = await head(url) - 3
    if respec:
        # pad to a partition boundary (50), then the feed announces the contracts again: the
        # table kept after archiving starts with them, so the table alone folds.
        pad = -(await head(url)) % 50
        await append(url, [tick("BTC_USDT", "100", n) for n in range(pad)], batch=True)
        floor = await head(url) + 1
        await base_ledger(url, SYMBOLS)
        await append(url, session(15, SYMBOLS, seed=27), batch=True)
    await snapshot_all(url, floor)
    assert (await claire(url, "projections", "rebuild")).code == 0
    before = await readmodels(url)
    await asyncio.to_thread(directory.mkdir, exist_ok=True)
    result = await claire(url, "archive", "--before", FAR_FUTURE, "--to", str(directory))
    assert result.code == 0, result.text
    archived = await fetchval(url, "SELECT count(*) FROM ledger.archived")
    assert isinstance(archived, int) and archived > 0, result.text
    return url, before


async def test_rebuild_without_the_archive_when_part_of_the_log_was_archived_then_refused_or_whole(
    fresh_database_url: MakeUrl, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    url, _ = await archived_ledger(fresh_database_url, directory, respec=True)
    assert (await claire(url, "projections", "rebuild", "--archive", str(directory))).code == 0
    whole = await readmodels(url)
    result = await claire(url, "projections", "rebuild")
    # Either it refuses (the table alone no longer starts at position 1) or it reads the whole
    # log; it must never swap in models that silently lack the archived fills.
    assert await readmodels(url) == whole, result.text[-800:]


async def test_rebuild_with_the_archive_then_equal_to_before_and_a_bad_file_named_models_kept(
    fresh_database_url: MakeUrl, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    url, before = await archived_ledger(fresh_database_url, directory)
    result = await claire(url, "projections", "rebuild", "--archive", str(directory))
    assert result.code == 0, result.text
    assert await readmodels(url) == before
    single = await claire(url, "projections", "rebuild", "portfolio", "--archive", str(directory))
    assert single.code == 0, single.text
    assert await readmodels(url) == before
    await append(url, session(10, SYMBOLS, seed=18), batch=True)
    assert (await claire(url, "projections", "rebuild", "--archive", str(directory))).code == 0
    current = await readmodels(url)
    assert current != before
    victim = sorted(directory.glob("*.parquet"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = await claire(url, "projections", "rebuild", "--archive", str(directory))
    assert result.code == 1, result.text
    assert victim.name in result.text, result.text
    assert "Traceback" not in result.text, result.text
    assert await readmodels(url) == current


async def test_archive_when_a_projection_checkpoint_lags_then_its_positions_stay_in_the_table(
    fresh_database_url: MakeUrl, tmp_path: Path
) -> None:
    url = await small_partitions(fresh_database_url)
    await base_ledger(url, SYMBOLS)
    await append(url, session(60, SYMBOLS, seed=19), batch=True)
    await snapshot_all(url, await head(url) - 3)
    # the projector never ran: every checkpoint is at 0, so nothing may be archived
    result = await claire(url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    assert result.code == 0, result.text
    assert await fetchval(url, "SELECT count(*) FROM ledger.archived") == 0, result.text
    assert (await claire(url, "projections", "rebuild")).code == 0
