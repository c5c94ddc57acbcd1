"""Attacks on docs/ARCHIVE.md: `claire archive`, `claire verify --archive`, `replay --archive`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eventstore import EventStore
from eventstore.archive import ArchivedLog, ArchiveError
from tests.blackbox_attack.history.conftest import (
    FAR_FUTURE,
    archivable_ledger,
    archived,
    no_traceback,
    run,
)


def parquets(directory: Path) -> list[Path]:
    return sorted(directory.glob("events_p*.parquet"))


def manifests(directory: Path) -> list[Path]:
    return sorted(directory.glob("events_p*.manifest.json"))


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


async def _verify_fails(ledger, directory: Path, name: str) -> str:
    rows = await ledger.rows()
    result = await run(ledger.url, "verify", "--archive", str(directory))
    no_traceback(result)
    assert result.code == 1, result.text
    assert name in result.text, result.text
    assert await ledger.rows() == rows
    return result.text


async def test_verify_archive_when_file_byte_flipped_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    await _verify_fails(ledger, tmp_path, target.name)


async def test_verify_archive_when_file_truncated_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[-1]
    target.write_bytes(target.read_bytes()[:100])
    await _verify_fails(ledger, tmp_path, target.name)


async def test_verify_archive_when_file_missing_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[0]
    target.unlink()
    await _verify_fails(ledger, tmp_path, target.name)


async def test_verify_archive_when_manifest_missing_then_names_it(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[-1]
    target.unlink()
    await _verify_fails(ledger, tmp_path, target.name.split(".")[0])


async def test_verify_archive_when_directory_empty_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path / "a")
    empty = tmp_path / "empty"
    empty.mkdir()
    await _verify_fails(ledger, empty, "events_p0")


async def test_verify_archive_when_directory_missing_then_exit_1_named(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path / "a")
    result = await run(ledger.url, "verify", "--archive", str(tmp_path / "nowhere"))
    no_traceback(result)
    assert result.code in (1, 2), result.text
    assert "nowhere" in result.text


async def test_verify_archive_when_two_files_swapped_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path, events=45, snapshot_at=35)
    a, b = parquets(tmp_path)[:2]
    ma, mb = manifests(tmp_path)[:2]
    for x, y in ((a, b), (ma, mb)):
        tmp = x.with_suffix(".tmpswap")
        x.rename(tmp)
        y.rename(x)
        tmp.rename(y)
    await _verify_fails(ledger, tmp_path, a.name.split(".")[0])


async def test_verify_archive_when_only_data_files_swapped_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path, events=45, snapshot_at=35)
    a, b = parquets(tmp_path)[:2]
    tmp = a.with_suffix(".tmpswap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    await _verify_fails(ledger, tmp_path, a.name.split(".")[0])


async def test_verify_archive_when_file_from_another_ledger_then_fails(make_ledger, tmp_path):
    ours = await archived(make_ledger, tmp_path / "ours")
    await archived(make_ledger, tmp_path / "theirs")
    target = parquets(tmp_path / "ours")[0]
    for theirs in (tmp_path / "theirs").iterdir():
        shutil.copy(theirs, tmp_path / "ours" / theirs.name)
    await _verify_fails(ours, tmp_path / "ours", target.name.split(".")[0])


# Was a finding (docs/ARCHIVE.md 'no file may be missing or extra'): an extra or stray
# Parquet file was not reported; now verify --archive names it, exit 1.


async def test_verify_archive_when_extra_partition_file_present_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    last = parquets(tmp_path)[-1]
    extra = "events_p0000000000000000031"
    shutil.copy(last, tmp_path / f"{extra}.parquet")
    shutil.copy(manifests(tmp_path)[-1], tmp_path / f"{extra}.manifest.json")
    await _verify_fails(ledger, tmp_path, extra)


async def test_verify_archive_when_stray_parquet_file_present_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    (tmp_path / "stray.parquet").write_bytes(b"not parquet at all")
    await _verify_fails(ledger, tmp_path, "stray")


def _lie(manifest: Path, key: str, value: object) -> None:
    data = json.loads(manifest.read_text())
    assert key in data, sorted(data)
    data[key] = value
    manifest.write_text(json.dumps(data))


async def test_verify_archive_when_manifest_sha_lies_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    _lie(target, "sha256", "0" * 64)
    await _verify_fails(ledger, tmp_path, target.name.split(".")[0])


async def test_verify_archive_when_manifest_is_not_json_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    target.write_text("{ this is not json")
    await _verify_fails(ledger, tmp_path, target.name.split(".")[0])


async def test_verify_archive_when_manifest_is_json_of_wrong_shape_then_names_file(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    for shape in ("[]", "null", '{"sha256": 5}', "{}"):
        target.write_text(shape)
        await _verify_fails(ledger, tmp_path, target.name.split(".")[0])


async def test_verify_archive_when_manifest_every_field_lies_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    original = json.loads(target.read_text())
    for key, value in original.items():
        if key == "format":
            continue  # see test_verify_archive_when_manifest_format_unknown_then_fails
        if isinstance(value, bool):
            bad: object = not value
        elif isinstance(value, int):
            bad = value + 1
        elif isinstance(value, str):
            bad = value[:-1] + ("0" if value[-1:] != "0" else "1") if value else "x"
        else:
            continue
        data = dict(original)
        data[key] = bad
        target.write_text(json.dumps(data))
        text = await _verify_fails(ledger, tmp_path, target.name.split(".")[0])
        assert text, key
    target.write_text(json.dumps(original))
    assert (await run(ledger.url, "verify", "--archive", str(tmp_path))).code == 0


async def test_replay_when_archive_read_then_same_walk_as_before_archiving(make_ledger, tmp_path):
    ledger = await archivable_ledger(make_ledger)
    before = await run(ledger.url, "--from", "2025-06-02", "-q", tool="replay")
    assert before.code == 0, before.text
    tmp_path.joinpath("a").mkdir()
    done = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path / "a"))
    assert done.code == 0 and parquets(tmp_path / "a"), done.text
    after = await run(
        ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path / "a"), tool="replay"
    )
    assert after.code == 0, after.text
    assert after.out == before.out


async def test_replay_when_archive_file_corrupted_then_exit_1_named(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    result = await run(
        ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path), tool="replay"
    )
    no_traceback(result)
    assert result.code == 1, result.text
    assert target.name.split(".")[0] in result.text


async def test_replay_when_archive_file_missing_then_exit_1_named(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[0]
    target.unlink()
    result = await run(
        ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path), tool="replay"
    )
    no_traceback(result)
    assert result.code == 1, result.text
    assert target.name.split(".")[0] in result.text


async def test_replay_when_archived_positions_but_no_archive_given_then_exit_1_no_traceback(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path)
    result = await run(ledger.url, "--from", "2025-06-02", "-q", tool="replay")
    no_traceback(result)
    assert result.code in (0, 1), result.text


async def test_verify_archive_when_manifest_format_unknown_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    _lie(target, "format", 99)
    await _verify_fails(ledger, tmp_path, target.name.split(".")[0])


async def test_replay_when_manifest_lies_then_exit_1_no_traceback(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    original = target.read_text()
    for key, value in (("sha256", "0" * 64), ("last_position", 11)):
        _lie(target, key, value)
        result = await run(
            ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path), tool="replay"
        )
        no_traceback(result)
        assert result.code == 1, (key, result.text)
        target.write_text(original)


# Was a finding: replay --archive / ArchivedLog accepted another ledger's whole archive;
# now the archive must join this table's chain (ArchivedLog checks it before any read).


async def test_replay_when_archive_is_another_ledgers_then_exit_1(make_ledger, tmp_path):
    ours = await archived(make_ledger, tmp_path / "ours")
    await archived(make_ledger, tmp_path / "theirs", first=1000)
    assert (await run(ours.url, "verify", "--archive", str(tmp_path / "theirs"))).code == 1
    foreign = await run(
        ours.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path / "theirs"), tool="replay"
    )
    no_traceback(foreign)
    assert foreign.code == 1, foreign.text


async def test_archived_log_when_archive_is_another_ledgers_then_raises_archive_error(
    make_ledger, tmp_path
):
    ours = await archived(make_ledger, tmp_path / "ours")
    await archived(make_ledger, tmp_path / "theirs", first=1000)
    store = await EventStore.connect(ours.url)
    try:
        honest = [e.event async for e in ArchivedLog(store, tmp_path / "ours").read_all()]
        assert len(honest) == 45
        with pytest.raises(ArchiveError):
            seen = [e.event async for e in ArchivedLog(store, tmp_path / "theirs").read_all()]
            assert seen == honest, "read another ledger's events as this one's"
    finally:
        await store.close()


async def test_replay_verify_when_archived_with_sound_snapshots_then_same_verdicts(
    make_ledger, tmp_path
):
    # tickers events fold to no machine state, so the empty-state snapshots at 35 are sound
    ledger = await archivable_ledger(make_ledger, kind="tickers")
    before_all = await run(ledger.url, "--verify", "--all", "--jobs", "2", tool="replay")
    before = await run(ledger.url, "--from", "2025-06-02", "--verify", "-q", tool="replay")
    assert before_all.code == 0 and before.code == 0, before_all.text + before.text
    directory = tmp_path / "a"
    directory.mkdir()
    done = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(directory))
    assert done.code == 0 and parquets(directory), done.text
    for extra in ((), ("--archive", str(directory))):
        every = await run(ledger.url, "--verify", "--all", "--jobs", "2", *extra, tool="replay")
        no_traceback(every)
        assert every.code == 0, every.text
    window = await run(
        ledger.url,
        "--from",
        "2025-06-02",
        "--verify",
        "-q",
        "--archive",
        str(directory),
        tool="replay",
    )
    assert window.code == 0, window.text
    folded = await run(
        ledger.url,
        "--from",
        "2025-06-02",
        "--verify",
        "-q",
        "--no-snapshots",
        "--archive",
        str(directory),
        tool="replay",
    )
    assert folded.code == 0, folded.text
    assert window.out.splitlines()[0] == before.out.splitlines()[0]
    status = await run(ledger.url, "status")
    no_traceback(status)
    assert status.code == 0, status.text


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


async def test_verify_archive_api_when_any_byte_of_any_file_flipped_then_names_that_file(
    make_ledger, tmp_path
):
    import random

    from eventstore.archive import verify_archive

    ledger = await archived(make_ledger, tmp_path)
    assert (await verify_archive(ledger.url, tmp_path)).ok
    files = parquets(tmp_path) + manifests(tmp_path)
    chooser = random.Random(20261203)
    for _ in range(40):
        target = chooser.choice(files)
        original = target.read_bytes()
        offset = chooser.randrange(len(original))
        data = bytearray(original)
        # bits 0..6 only: a manifest stays ASCII (invalid UTF-8: see the not_utf8 finding)
        data[offset] ^= 1 << chooser.randrange(7)
        target.write_bytes(bytes(data))
        try:
            result = await verify_archive(ledger.url, tmp_path)
        except Exception as error:
            assert isinstance(error, ArchiveError), (target.name, offset, repr(error))
            assert target.name.split(".")[0] in str(error).lower(), (target.name, offset)
        else:
            assert not result.ok, (target.name, offset)
            assert result.file and target.name.split(".")[0] in result.file.lower(), (
                target.name,
                offset,
                result,
            )
        finally:
            target.write_bytes(original)
    assert (await verify_archive(ledger.url, tmp_path)).ok


def _non_utf8(target: Path) -> None:
    data = bytearray(target.read_bytes())
    data[data.index(b'"sha256"') + 20] = 0xE6
    target.write_bytes(bytes(data))


async def test_verify_archive_when_manifest_not_utf8_then_exit_1_named(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    _non_utf8(target)
    await _verify_fails(ledger, tmp_path, target.name.split(".")[0])


async def test_replay_when_manifest_not_utf8_then_exit_1_no_traceback(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    _non_utf8(manifests(tmp_path)[0])
    replay = await run(
        ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path), tool="replay"
    )
    no_traceback(replay)
    assert replay.code == 1, replay.text


@pytest.mark.parametrize(
    "key",
    [
        "previous_hash",
        "first_hash",
        "last_hash",
        "sha256",
        "ledger",
    ],
)
async def test_verify_archive_when_manifest_hash_not_hex_then_exit_1_named(
    make_ledger, tmp_path, key
):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[1]
    _lie(target, key, "zz" * 32)
    await _verify_fails(ledger, tmp_path, target.name.split(".")[0])


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


async def test_replay_verify_all_when_archive_corrupted_then_exit_1_no_traceback(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path, kind="tickers")
    target = parquets(tmp_path)[0]
    target.write_bytes(target.read_bytes()[:-50])
    for extra in (("--jobs", "1"), ("--jobs", "2")):
        result = await run(
            ledger.url, "--verify", "--all", *extra, "--archive", str(tmp_path), tool="replay"
        )
        no_traceback(result)
        assert result.code == 1, result.text
        assert "events_p0" in result.text, result.text


@pytest.mark.parametrize("snapshots", [(), ("--no-snapshots",)])
async def test_replay_from_verify_when_archive_truncated_then_exit_1_named(
    make_ledger, tmp_path, snapshots
):
    ledger = await archived(make_ledger, tmp_path, kind="tickers")
    target = parquets(tmp_path)[0]
    target.write_bytes(target.read_bytes()[:-50])
    result = await run(
        ledger.url,
        "--from",
        "2025-06-02",
        "--verify",
        "-q",
        *snapshots,
        "--archive",
        str(tmp_path),
        tool="replay",
    )
    no_traceback(result)
    assert result.code == 1, result.text
    assert "events_p0" in result.text, result.text
