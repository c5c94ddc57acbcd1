"""Attacks on docs/ARCHIVE.md's `claire archive`: what it moves out, what it never overwrites,
and a table left untouched whenever it stops."""

from __future__ import annotations

import json

from tests.blackbox_attack.history.archive_helpers import (
    manifests,
    parquets,
)
from tests.blackbox_attack.history.conftest import (
    FAR_FUTURE,
    archivable_ledger,
    archived,
    no_traceback,
    run,
)


async def test_archive_when_no_snapshots_then_archives_nothing_and_says_why(make_ledger, tmp_path):
    ledger = await archivable_ledger(make_ledger, snapshot_at=None)
    before = await ledger.rows()
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(result)
    assert result.code == 0, result.text
    assert "floor" in result.text and "snapshot" in result.text.lower(), result.text
    assert list(tmp_path.iterdir()) == []
    assert await ledger.rows() == before


async def test_archive_when_snapshots_then_whole_partitions_under_floor_leave_table(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path, events=45, snapshot_at=35)
    files = parquets(tmp_path)
    assert [f.name for f in files][:1] == ["events_p0.parquet"] or files, files
    assert len(files) == len(manifests(tmp_path)) >= 1
    positions = [p for p, _ in await ledger.rows()]
    for manifest in manifests(tmp_path):
        data = json.loads(manifest.read_text())
        assert isinstance(data, dict)
    # nothing at or after the floor (35) left the table
    assert all(p in positions for p in range(35, 46))
    assert min(positions) > 1
    verify = await run(ledger.url, "verify", "--archive", str(tmp_path))
    assert verify.code == 0, verify.text


async def test_archive_when_run_twice_then_second_run_changes_nothing(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    rows = await ledger.rows()
    again = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(again)
    assert again.code == 0, again.text
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert await ledger.rows() == rows
    assert (await run(ledger.url, "verify", "--archive", str(tmp_path))).code == 0


async def test_archive_when_second_run_targets_another_directory_then_archive_stays_whole(
    make_ledger, tmp_path
):
    first = tmp_path / "one"
    ledger = await archived(make_ledger, first)
    second = tmp_path / "two"
    second.mkdir()
    again = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(second))
    no_traceback(again)
    assert again.code == 0, again.text
    assert (await run(ledger.url, "verify", "--archive", str(first))).code == 0


async def test_archive_when_before_date_precedes_every_record_then_archives_nothing(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger)
    rows = await ledger.rows()
    result = await run(ledger.url, "archive", "--before", "2000-01-01", "--to", str(tmp_path))
    no_traceback(result)
    assert result.code == 0, result.text
    assert list(tmp_path.iterdir()) == []
    assert await ledger.rows() == rows


async def test_archive_when_directory_is_a_file_then_exit_1_named_and_table_untouched(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger)
    rows = await ledger.rows()
    target = tmp_path / "plainfile"
    target.write_text("not a directory")
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(target))
    no_traceback(result)
    assert result.code == 1, result.text
    assert "plainfile" in result.text
    assert await ledger.rows() == rows
    assert target.read_text() == "not a directory"


async def test_archive_when_directory_missing_then_exit_1_and_table_untouched(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger)
    rows = await ledger.rows()
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path / "x"))
    no_traceback(result)
    assert result.code == 1, result.text
    assert await ledger.rows() == rows


async def test_archive_when_file_name_already_exists_then_never_overwritten_and_table_untouched(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger)
    rows = await ledger.rows()
    squatter = tmp_path / "events_p0.parquet"
    squatter.write_bytes(b"someone else's file")
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(result)
    assert result.code == 1, result.text
    assert "events_p0" in result.text
    assert squatter.read_bytes() == b"someone else's file"
    assert await ledger.rows() == rows


async def test_archive_when_before_is_malformed_then_usage_error(make_ledger, tmp_path):
    ledger = await archivable_ledger(make_ledger)
    rows = await ledger.rows()
    for bad in ("yesterday", "2026-13-45", ""):
        result = await run(ledger.url, "archive", "--before", bad, "--to", str(tmp_path))
        no_traceback(result)
        assert result.code == 2, (bad, result.text)
    assert await ledger.rows() == rows


async def test_archive_when_two_runs_race_then_one_consistent_archive(make_ledger, tmp_path):
    import asyncio

    ledger = await archivable_ledger(make_ledger)
    args = ("archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    first, second = await asyncio.gather(run(ledger.url, *args), run(ledger.url, *args))
    for result in (first, second):
        no_traceback(result)
        assert result.code in (0, 1), result.text
    assert 0 in (first.code, second.code), first.text + second.text
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith((".parquet", ".json"))]
    verify = await run(ledger.url, "verify", "--archive", str(tmp_path))
    assert verify.code == 0, verify.text


async def test_archive_when_only_a_manifest_name_exists_then_not_overwritten(make_ledger, tmp_path):
    ledger = await archivable_ledger(make_ledger)
    rows = await ledger.rows()
    squatter = tmp_path / "events_p0.manifest.json"
    squatter.write_text('{"mine": true}')
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(result)
    assert squatter.read_text() == '{"mine": true}'
    if result.code == 0:
        verify = await run(ledger.url, "verify", "--archive", str(tmp_path))
        assert verify.code == 1, verify.text
    else:
        assert result.code == 1 and "events_p0" in result.text, result.text
        assert await ledger.rows() == rows


async def test_archive_when_stale_temporary_files_present_then_archive_and_verify_ok(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger)
    (tmp_path / ".events_p0.parquet.tmp").write_bytes(b"half written")
    (tmp_path / "events_p0.parquet.tmp").write_bytes(b"half written")
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(result)
    assert result.code in (0, 1), result.text
    if result.code == 0:
        assert (await run(ledger.url, "verify", "--archive", str(tmp_path))).code == 0


async def test_archive_when_later_file_name_taken_then_earlier_stay_archived_and_consistent(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger)
    squatter = tmp_path / "events_p0000000000000000011.parquet"
    squatter.write_bytes(b"in the way")
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(result)
    assert result.code == 1, result.text
    assert "events_p0000000000000000011" in result.text, result.text
    assert squatter.read_bytes() == b"in the way"
    positions = [p for p, _ in await ledger.rows()]
    assert positions == list(range(11, 46)), positions
    squatter.unlink()
    assert (await run(ledger.url, "verify", "--archive", str(tmp_path))).code == 0
    again = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    assert again.code == 0, again.text
    assert [p for p, _ in await ledger.rows()] == list(range(31, 46))
    assert (await run(ledger.url, "verify", "--archive", str(tmp_path))).code == 0
