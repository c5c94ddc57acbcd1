"""``claire archive`` and ``claire verify --archive``, black-box through the CLI and the files.

Written from issue 18 items 2 and 3 and docs/ARCHIVE.md: whole old partitions leave the table
for Parquet files that rebuild every event exactly; one chain runs from position 1 through the
files into the table; the retention floor is respected; every bad archive is named, exits 1 and
leaves the live table untouched.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import pyarrow.parquet as pq
import pytest

from aggregates.snapshot import CODECS
from cli.main import main
from eventstore import ConcurrencyConflict, EventStore
from eventstore.archive import read_archived
from eventstore.migrations import ROOT, upgrade
from eventstore.snapshots import Snapshots, snapshot_of
from pipeline.ingest import as_new_events
from tests.integration.eventstore.eventstore_helpers import BASE_TIME, alert, audit, tick

pytestmark = [pytest.mark.db]

SIZE = 50
FUTURE = "2100-01-01"


async def _partitioned_ledger(fresh_database_url: Callable[..., Awaitable[str]]) -> str:
    url = await fresh_database_url(migrate=False)
    conn = await asyncpg.connect(url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{name}" SET claire.partition_size = {SIZE}')
    finally:
        await conn.close()
    await asyncio.to_thread(upgrade, url)
    return url


async def _fill(url: str) -> None:
    """235 events over 5 partitions: trades with derived ids (as ingested), trades with other
    ids, and alerts whose payload text needs escaping."""
    async with await EventStore.connect(url) as store:
        trades = [tick(n, label="x").event for n in range(120)]
        await store.append("market-BTC_USDT", as_new_events(trades))
        await store.append("market-ETH_USDT", [tick(n, symbol="ETH_USDT") for n in range(80)])
        await store.append("risk", [alert(n, f'line\n{n} "q" \\ é ✓') for n in range(35)])


async def _release(
    url: str, position: int | None = None, *, held: dict[str, int] | None = None
) -> None:
    """Let the retention floor reach ``position`` (default: the head): every projection's
    checkpoint there, and a usable snapshot of every decision service there (or at the position
    ``held`` names for it)."""
    conn = await asyncpg.connect(url)
    try:
        head = await conn.fetchval("SELECT position FROM ledger.head")
        at = head if position is None else position
        await conn.execute("UPDATE readmodel.checkpoints SET position = $1", at)
    finally:
        await conn.close()
    async with await EventStore.connect(url) as store:
        snapshots = Snapshots(store)
        for machine, codec in CODECS.items():
            where = (held or {}).get(machine, at)
            chain = await snapshots.chain_hash_at(where)
            assert chain is not None
            config = await snapshots.config_hash_at(where)
            state = codec.encode(codec.state_type())
            await snapshots.save(snapshot_of(machine, state, where, chain, config))


async def _live(url: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT *, payload::text FROM ledger.events ORDER BY position")
        return [tuple(row) for row in rows]
    finally:
        await conn.close()


def _cli(*args: str) -> int:
    return main(list(args))


async def _archive_cli(url: str, directory: Path, before: str = FUTURE) -> int:
    return await asyncio.to_thread(
        _cli, "--database-url", url, "archive", "--before", before, "--to", str(directory)
    )


async def _verify_archive_cli(url: str, directory: Path) -> int:
    return await asyncio.to_thread(
        _cli, "--database-url", url, "verify", "--archive", str(directory)
    )


async def _archived_ledger(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> tuple[str, Path]:
    url = await _partitioned_ledger(fresh_database_url)
    await _fill(url)
    await _release(url)
    archive = tmp_path / "archive"
    archive.mkdir(parents=True)
    code = await asyncio.to_thread(
        _cli, "--database-url", url, "archive", "--before", FUTURE, "--to", str(archive)
    )
    assert code == 0
    return url, archive


async def test_archive_when_partitions_full_and_released_then_files_rebuild_every_event(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url = await _partitioned_ledger(fresh_database_url)
    await _fill(url)
    before = await _live(url)
    await _release(url)
    archive = tmp_path / "archive"
    archive.mkdir()
    assert (
        await asyncio.to_thread(
            _cli, "--database-url", url, "archive", "--before", FUTURE, "--to", str(archive)
        )
        == 0
    )
    # Four full partitions (1..200) left the table; the one holding the head stayed.
    files = sorted(path.name for path in archive.glob("*.parquet"))
    assert len(files) == 4 and len(list(archive.glob("*.manifest.json"))) == 4
    live = await _live(url)
    assert [row[0] for row in live] == list(range(201, 236))
    archived = list(read_archived(archive))
    assert [row.position for row, _ in archived] == list(range(1, 201))
    for (row, digest), original in zip(archived, before, strict=False):
        assert digest == original[12]
        assert (
            row.position, row.stream, row.stream_version, row.event_id, row.event_type,
            row.schema_version, row.occurred_at, row.recorded_at, row.causation_id,
            row.causation_position, row.correlation_id, row.payload_text,
        ) == (*original[:11], original[-1])  # fmt: skip
    manifest = json.loads((archive / files[0].replace(".parquet", ".manifest.json")).read_text())
    assert (manifest["first_position"], manifest["last_position"], manifest["row_count"]) == (
        1, 50, 50,
    )  # fmt: skip
    # Trades as typed columns, ingest's content-derived ids recomputed rather than stored.
    first = pq.read_table(archive / files[0])
    assert first.column("payload").null_count == first.column("event_id").null_count == 50
    assert first.column("symbol").to_pylist() == ["BTC_USDT"] * 50
    assert manifest["first_hash"] == before[0][12].hex()
    assert manifest["last_hash"] == before[49][12].hex()
    # One chain: archive then table, by every check there is.
    assert await _verify_archive_cli(url, archive) == 0
    assert await asyncio.to_thread(_cli, "--database-url", url, "verify") == 0
    assert await audit(url) is None


async def test_append_when_streams_archived_then_versions_continue_and_chain_holds(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url, archive = await _archived_ledger(fresh_database_url, tmp_path)
    async with await EventStore.connect(url) as store:
        # market-BTC_USDT (positions 1..120) lives in the archive only now.
        with pytest.raises(ConcurrencyConflict):
            await store.append("market-BTC_USDT", [tick(500, label="n")], expected_version=0)
        assert await store.append("market-BTC_USDT", [tick(501, label="n")]) == [236]
        assert await store.append("risk", [alert(99, "after")], expected_version=35) == [237]
        assert (await store.verify()).ok
    async for event in _stream(url, "market-BTC_USDT"):
        assert event == 121
    assert await _verify_archive_cli(url, archive) == 0


async def _stream(url: str, stream: str):  # type: ignore[no-untyped-def]
    async with await EventStore.connect(url) as store:
        async for event in store.read_stream(stream):
            yield event.stream_version


async def test_archive_when_run_again_then_appends_only_new_partitions(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url, archive = await _archived_ledger(fresh_database_url, tmp_path)
    async with await EventStore.connect(url) as store:
        await store.append("more", [tick(n, label="m") for n in range(100)])
    await _release(url)
    assert await _archive_cli(url, archive) == 0
    assert len(list(archive.glob("*.parquet"))) == 6
    assert [row.position for row, _ in read_archived(archive)] == list(range(1, 301))
    assert await _verify_archive_cli(url, archive) == 0


@pytest.mark.parametrize("holder", ["no snapshots", "a projection checkpoint", "a snapshot"])
async def test_archive_when_something_still_needs_rows_then_they_stay_in_the_table(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path, holder: str
) -> None:
    url = await _partitioned_ledger(fresh_database_url)
    await _fill(url)
    if holder == "a snapshot":  # the risk service's newest usable snapshot is at 60
        await _release(url, held={"risk": 60})
    elif holder != "no snapshots":
        await _release(url)
    if holder == "a projection checkpoint":
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("UPDATE readmodel.checkpoints SET position = 120"
                               " WHERE projection = 'risk'")  # fmt: skip
        finally:
            await conn.close()
    before = await _live(url)
    archive = tmp_path / "a"
    archive.mkdir()
    assert await _archive_cli(url, archive) == 0
    kept = {"no snapshots": 0, "a projection checkpoint": 100, "a snapshot": 50}[holder]
    assert [row.position for row, _ in read_archived(archive)] == list(range(1, kept + 1))
    assert await _live(url) == before[kept:]


async def test_archive_when_partitions_recorded_after_date_then_nothing_moves(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url = await _partitioned_ledger(fresh_database_url)
    await _fill(url)
    await _release(url)
    before = await _live(url)
    assert await _archive_cli(url, tmp_path, "2001-01-01") == 0
    assert await asyncio.to_thread(os.listdir, tmp_path) == []
    assert await _live(url) == before


# --------------------------------------------------------------------------- bad input


def _first_file(archive: Path) -> Path:
    return sorted(archive.glob("*.parquet"))[0]


def _corrupt(archive: Path) -> str:
    path = _first_file(archive)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path.name


def _truncate(archive: Path) -> str:
    path = _first_file(archive)
    path.write_bytes(path.read_bytes()[:-100])
    return path.name


def _remove(archive: Path) -> str:
    path = sorted(archive.glob("*.parquet"))[1]
    path.unlink()
    return path.name


def _lying_manifest(archive: Path) -> str:
    path = sorted(archive.glob("*.manifest.json"))[1]
    manifest = json.loads(path.read_text())
    manifest["row_count"] -= 1
    manifest["last_position"] -= 1
    path.write_text(json.dumps(manifest))
    return manifest["file"]


def _lying_manifest_and_file(archive: Path) -> str:
    """A file rewritten with one event dropped, its manifest's digest updated to match."""
    import hashlib

    import pyarrow.parquet as pq

    path = _first_file(archive)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 49), path, compression="zstd")
    manifest_path = path.with_name(path.name.replace(".parquet", ".manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    return path.name


BAD = {
    "corrupted": (_corrupt, "SHA-256"),
    "truncated": (_truncate, "SHA-256"),
    "missing": (_remove, "missing"),
    "a manifest that lies": (_lying_manifest, "does not match what the ledger recorded"),
    "a manifest re-signed over an edited file": (_lying_manifest_and_file, "recorded"),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_verify_archive_when_archive_is_bad_then_names_the_file_and_exits_1(
    fresh_database_url: Callable[..., Awaitable[str]],
    tmp_path: Path,
    case: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, archive = await _archived_ledger(fresh_database_url, tmp_path)
    live = await _live(url)
    spoil, words = BAD[case]
    name = spoil(archive)
    capsys.readouterr()
    assert await _verify_archive_cli(url, archive) == 1
    err = capsys.readouterr().err
    assert name in err and words in err and "Traceback" not in err
    assert await _live(url) == live


async def test_verify_archive_when_a_file_comes_from_another_ledger_then_named(
    fresh_database_url: Callable[..., Awaitable[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, archive = await _archived_ledger(fresh_database_url, tmp_path / "one")
    other_url = await _partitioned_ledger(fresh_database_url)
    async with await EventStore.connect(other_url) as store:
        await store.append("other", [tick(n, label="other") for n in range(120)])
    await _release(other_url)
    other = tmp_path / "other"
    other.mkdir()
    assert await _archive_cli(other_url, other) == 0
    # The other ledger's second file put in place of ours.
    ours = sorted(archive.glob("events_p*"))
    for path in ours[2:4]:
        path.unlink()
    for path in sorted(other.glob("events_p*"))[2:4]:
        shutil.copy(path, archive / path.name)
    capsys.readouterr()
    assert await _verify_archive_cli(url, archive) == 1
    err = capsys.readouterr().err
    assert "another ledger" in err and ours[2].name.split(".")[0] in err


def _archive_in_subprocess(
    url: str, directory: Path, *, file_size_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--database-url", url, "archive",
         "--before", FUTURE, "--to", str(directory)],
        cwd=ROOT, capture_output=True, text=True, preexec_fn=limit, check=False, timeout=300,
    )  # fmt: skip


async def test_archive_when_disk_fills_mid_export_then_exit_1_and_table_untouched(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url = await _partitioned_ledger(fresh_database_url)
    await _fill(url)
    await _release(url)
    before = await _live(url)
    done = await asyncio.to_thread(_archive_in_subprocess, url, tmp_path, file_size_limit=2000)
    assert done.returncode == 1, done.stderr
    assert "cannot write archive file" in done.stderr and "Traceback" not in done.stderr
    assert await _live(url) == before
    assert [p for p in await asyncio.to_thread(os.listdir, tmp_path) if "parquet" in p] == []
    assert await asyncio.to_thread(_cli, "--database-url", url, "verify") == 0


async def test_archive_when_directory_not_writable_then_exit_1_and_table_untouched(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url = await _partitioned_ledger(fresh_database_url)
    await _fill(url)
    await _release(url)
    before = await _live(url)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes through permissions; not into /proc
        locked = Path("/proc/self")
    done = await asyncio.to_thread(_archive_in_subprocess, url, locked)
    assert done.returncode == 1, done.stderr
    assert "not writable" in done.stderr and "Traceback" not in done.stderr
    assert await _live(url) == before


async def test_archive_when_directory_missing_then_exit_1(
    ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(
        _cli, "--database-url", ledger_url, "archive", "--before", FUTURE, "--to",
        str(tmp_path / "nowhere"),
    )  # fmt: skip
    assert code == 1 and "does not exist" in capsys.readouterr().err


async def test_archive_when_date_is_not_a_date_then_exit_2(
    ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(
        _cli, "--database-url", ledger_url, "archive", "--before", "soon", "--to", str(tmp_path)
    )
    assert code == 2 and "is not a date" in capsys.readouterr().err


# --------------------------------------------------------------------------- reading the archive


def _replay(url: str, *extra: str) -> tuple[int, str]:
    from cli.replay import main as replay_main

    out = io.StringIO()
    code = replay_main(
        ["--from", "2000-01-01", "--json", "--database-url", url, *extra], stdout=out
    )
    return code, out.getvalue()


async def test_replay_when_reading_archive_then_same_output_as_before_archiving(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url = await _partitioned_ledger(fresh_database_url)
    await _fill(url)
    code, before = await asyncio.to_thread(_replay, url)
    assert code == 0 and '"first_position":1,' in before
    await _release(url)
    archive = tmp_path / "archive"
    archive.mkdir()
    assert await _archive_cli(url, archive) == 0
    assert await asyncio.to_thread(_replay, url, "--archive", str(archive)) == (0, before)
    # A window that starts inside the archive is found there too.
    start = (BASE_TIME + timedelta(seconds=100)).isoformat()
    code, window = await asyncio.to_thread(_replay, url, "--archive", str(archive), "--from", start)
    assert code == 0 and json.loads(window.splitlines()[0])["first_position"] == 101


async def test_replay_when_archive_file_corrupted_then_exit_1_naming_it(
    fresh_database_url: Callable[..., Awaitable[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, archive = await _archived_ledger(fresh_database_url, tmp_path)
    name = _corrupt(archive)
    capsys.readouterr()
    code, _ = await asyncio.to_thread(_replay, url, "--archive", str(archive))
    assert code == 1 and name in capsys.readouterr().err


async def _read_models(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every read model's rows (the ``readmodel`` views), in a stable order."""
    conn = await asyncpg.connect(url)
    try:
        views = [
            row[0]
            for row in await conn.fetch(
                "SELECT table_name FROM information_schema.views"
                " WHERE table_schema = 'readmodel' ORDER BY table_name"
            )
        ]
        return {
            view: sorted(
                (tuple(row) for row in await conn.fetch(f'SELECT * FROM readmodel."{view}"')),
                key=repr,
            )
            for view in views
        }
    finally:
        await conn.close()


async def test_projections_when_rebuilt_from_archive_and_table_then_equal_to_before_archiving(
    fresh_database_url: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    url = await _partitioned_ledger(fresh_database_url)
    await _fill(url)
    assert await asyncio.to_thread(_cli, "--database-url", url, "projections", "rebuild") == 0
    before = await _read_models(url)
    assert before["alerts"], "the ledger's alerts reach a read model"
    await _release(url)
    archive = tmp_path / "archive"
    archive.mkdir()
    assert await _archive_cli(url, archive) == 0
    assert len(await _live(url)) < 235  # rows really left the table
    rebuilt = await asyncio.to_thread(
        _cli, "--database-url", url, "projections", "rebuild", "--archive", str(archive)
    )
    assert rebuilt == 0
    assert await _read_models(url) == before


async def test_projections_when_rebuilt_from_a_corrupted_archive_then_exit_1_naming_the_file(
    fresh_database_url: Callable[..., Awaitable[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, archive = await _archived_ledger(fresh_database_url, tmp_path)
    name = _corrupt(archive)
    capsys.readouterr()
    code = await asyncio.to_thread(
        _cli, "--database-url", url, "projections", "rebuild", "--archive", str(archive)
    )
    assert code == 1
    assert name in capsys.readouterr().err
