"""Attacks on docs/ARCHIVE.md's `claire verify --archive`: every damaged, missing, swapped,
foreign or lying archive file fails verification, named, with no traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from eventstore.archive import ArchiveError
from tests.blackbox_attack.history.archive_helpers import (
    lie,
    manifests,
    non_utf8,
    parquets,
    verify_fails,
)
from tests.blackbox_attack.history.conftest import (
    archived,
    no_traceback,
    run,
)


async def test_verify_archive_when_file_byte_flipped_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    await verify_fails(ledger, tmp_path, target.name)


async def test_verify_archive_when_file_truncated_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[-1]
    target.write_bytes(target.read_bytes()[:100])
    await verify_fails(ledger, tmp_path, target.name)


async def test_verify_archive_when_file_missing_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[0]
    target.unlink()
    await verify_fails(ledger, tmp_path, target.name)


async def test_verify_archive_when_manifest_missing_then_names_it(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[-1]
    target.unlink()
    await verify_fails(ledger, tmp_path, target.name.split(".")[0])


async def test_verify_archive_when_directory_empty_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path / "a")
    empty = tmp_path / "empty"
    empty.mkdir()
    await verify_fails(ledger, empty, "events_p0")


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
    await verify_fails(ledger, tmp_path, a.name.split(".")[0])


async def test_verify_archive_when_only_data_files_swapped_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path, events=45, snapshot_at=35)
    a, b = parquets(tmp_path)[:2]
    tmp = a.with_suffix(".tmpswap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    await verify_fails(ledger, tmp_path, a.name.split(".")[0])


async def test_verify_archive_when_file_from_another_ledger_then_fails(make_ledger, tmp_path):
    ours = await archived(make_ledger, tmp_path / "ours")
    await archived(make_ledger, tmp_path / "theirs")
    target = parquets(tmp_path / "ours")[0]
    for theirs in (tmp_path / "theirs").iterdir():
        shutil.copy(theirs, tmp_path / "ours" / theirs.name)
    await verify_fails(ours, tmp_path / "ours", target.name.split(".")[0])


# Was a finding (docs/ARCHIVE.md 'no file may be missing or extra'): an extra or stray
# Parquet file was not reported; now verify --archive names it, exit 1.


async def test_verify_archive_when_extra_partition_file_present_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    last = parquets(tmp_path)[-1]
    extra = "events_p0000000000000000031"
    shutil.copy(last, tmp_path / f"{extra}.parquet")
    shutil.copy(manifests(tmp_path)[-1], tmp_path / f"{extra}.manifest.json")
    await verify_fails(ledger, tmp_path, extra)


async def test_verify_archive_when_stray_parquet_file_present_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    (tmp_path / "stray.parquet").write_bytes(b"not parquet at all")
    await verify_fails(ledger, tmp_path, "stray")


async def test_verify_archive_when_manifest_sha_lies_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    lie(target, "sha256", "0" * 64)
    await verify_fails(ledger, tmp_path, target.name.split(".")[0])


async def test_verify_archive_when_manifest_is_not_json_then_names_file(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    target.write_text("{ this is not json")
    await verify_fails(ledger, tmp_path, target.name.split(".")[0])


async def test_verify_archive_when_manifest_is_json_of_wrong_shape_then_names_file(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    for shape in ("[]", "null", '{"sha256": 5}', "{}"):
        target.write_text(shape)
        await verify_fails(ledger, tmp_path, target.name.split(".")[0])


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
        text = await verify_fails(ledger, tmp_path, target.name.split(".")[0])
        assert text, key
    target.write_text(json.dumps(original))
    assert (await run(ledger.url, "verify", "--archive", str(tmp_path))).code == 0


async def test_verify_archive_when_manifest_format_unknown_then_fails(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    lie(target, "format", 99)
    await verify_fails(ledger, tmp_path, target.name.split(".")[0])


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


async def test_verify_archive_when_manifest_not_utf8_then_exit_1_named(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    non_utf8(target)
    await verify_fails(ledger, tmp_path, target.name.split(".")[0])


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
    lie(target, key, "zz" * 32)
    await verify_fails(ledger, tmp_path, target.name.split(".")[0])
