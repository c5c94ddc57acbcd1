"""`verify --archive` with its files checked in worker processes: the same verdicts, naming the
same first bad file and position, as checking them one after another (docs/ARCHIVE.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eventstore import archive_verify
from eventstore.archive import verify_archive
from eventstore.archive_files import manifests as read_manifests
from tests.blackbox_attack.history.conftest import archived


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _lie_previous(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["previous_hash"] = "ab" * 32
    path.write_text(json.dumps(manifest))


#: Damage done to the archive's three files (by index, in log order: file or manifest), and
#: the index of the file verify must name (the first bad one in log order).
CASES = {
    "second file flipped": (1, [(1, ".parquet", _flip)]),
    "last file truncated": (2, [(2, ".parquet", _truncate)]),
    "second and third bad": (1, [(2, ".parquet", _flip), (1, ".parquet", _truncate)]),
    "second manifest's previous hash lies": (1, [(1, ".manifest.json", _lie_previous)]),
    "first flipped, second missing": (0, [(0, ".parquet", _flip), (1, ".parquet", Path.unlink)]),
}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="worker processes need two cores")
@pytest.mark.parametrize("case", list(CASES))
async def test_verify_archive_when_files_checked_in_processes_then_same_verdict_as_one_by_one(
    make_ledger, tmp_path, monkeypatch, case
):
    ledger = await archived(make_ledger, tmp_path)
    listed = read_manifests(tmp_path)
    names = [m.partition for m in listed]
    assert len(names) == 3, names
    monkeypatch.setattr(archive_verify, "PARALLEL_ROWS", 0)
    assert archive_verify._FileChecks(tmp_path, list(listed)).pool is not None
    assert (await verify_archive(ledger.url, tmp_path)).ok
    expected, damages = CASES[case]
    for index, suffix, damage in damages:
        damage(tmp_path / f"{names[index]}{suffix}")
    in_processes = await verify_archive(ledger.url, tmp_path)
    monkeypatch.setattr(archive_verify, "PARALLEL_ROWS", 10**12)
    one_by_one = await verify_archive(ledger.url, tmp_path)
    assert not one_by_one.ok and one_by_one.file == f"{names[expected]}.parquet", one_by_one
    assert in_processes == one_by_one
