"""Archive files and manifests: reading, listing and checking them against the chain.

Part of :mod:`eventstore.archive` (see there): what a manifest holds, the error that names a
bad file, and :func:`check_file`, which re-hashes a file's rows from the hash before it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from eventstore.archive_columns import chain_hashes
from eventstore.errors import ArchiveError

FORMAT: Literal[1] = 1
_READ_CHUNK = 50_000


#: A SHA-256 digest as a manifest writes it: checked on read, so a bad field is named, not a crash.
Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """What one archive file must contain; written next to it as ``<partition>.manifest.json``."""

    format: Literal[1]  # FORMAT: a manifest of another format is not read as this one
    ledger: Hex64  # hash of position 1: which ledger this file belongs to
    partition: str
    file: str
    first_position: int
    last_position: int
    previous_hash: Hex64  # the chain hash before first_position
    first_hash: Hex64
    last_hash: Hex64
    row_count: int
    sha256: Hex64


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _batches(path: Path) -> Iterator[Any]:
    """An archive file as Arrow tables of at most ``_READ_CHUNK`` rows (bounded memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
        for batch in reader.iter_batches(batch_size=_READ_CHUNK):
            yield pa.Table.from_batches([batch])
    except (OSError, ValueError, pa.ArrowException) as error:
        raise ArchiveError(
            f"archive file {path.name} is unreadable: {error}", file=path.name
        ) from None


def read_manifest(path: Path) -> Manifest:
    """A manifest file, or :class:`ArchiveError` naming it."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=Manifest)
    except (OSError, UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ArchiveError(f"manifest {path.name} is unreadable: {error}", file=path.name) from None


def manifests(directory: Path) -> list[Manifest]:
    """Every manifest of an archive directory, in position order.

    A manifest must describe the file it is named after (``P.manifest.json``: partition ``P``,
    file ``P.parquet``): a renamed or copied manifest is named, not read as another partition.
    """
    if not directory.is_dir():
        raise ArchiveError(f"archive directory {directory} does not exist", file=str(directory))
    found = []
    for path in sorted(directory.glob("*.manifest.json")):
        manifest = read_manifest(path)
        name = path.name.removesuffix(".manifest.json")
        if manifest.partition != name or manifest.file != f"{name}.parquet":
            raise ArchiveError(
                f"manifest {path.name} describes {manifest.partition} ({manifest.file}), not "
                f"{name}: a renamed or copied manifest",
                file=path.name,
            )
        found.append(manifest)
    return sorted(found, key=lambda manifest: manifest.first_position)


def uncovered_files(directory: Path, listed: list[Manifest]) -> list[str]:
    """Parquet files in ``directory`` that no manifest describes (a query over
    ``DIR/*.parquet`` would read their rows as archived events)."""
    covered = {manifest.file for manifest in listed}
    return sorted(p.name for p in directory.glob("*.parquet") if p.name not in covered)


def check_file(directory: Path, manifest: Manifest, previous: bytes) -> tuple[bytes, int]:
    """Check one archive file against its manifest and the chain before it.

    Returns the last hash and the row count; raises :class:`ArchiveError` naming the file and,
    for a chain break, the first bad position.
    """
    name = manifest.file
    path = directory / name
    if not path.is_file():
        raise ArchiveError(f"archive file {name} is missing", file=name)
    if _sha256(path) != manifest.sha256:
        raise ArchiveError(
            f"archive file {name} does not match its manifest's SHA-256 (corrupted or truncated)",
            file=name,
        )
    if bytes.fromhex(manifest.previous_hash) != previous:
        raise ArchiveError(
            f"archive file {name} does not continue the chain (position "
            f"{manifest.first_position}: its previous hash is not the one before it)",
            file=name,
            position=manifest.first_position,
        )
    first_hash, expected = None, manifest.first_position
    try:
        for part in _batches(path):
            positions = part.column("position").to_pylist()
            if positions != list(range(expected, expected + len(positions))):
                gap = next(i for i, p in enumerate(positions) if p != expected + i)
                raise ArchiveError(
                    f"archive file {name}: position {expected + gap} is missing",
                    file=name,
                    position=expected + gap,
                )
            hashes = chain_hashes(part, previous)
            first_hash = first_hash or hashes[0]
            previous = hashes[-1]
            expected += len(positions)
    except ArchiveError:
        raise
    except Exception as error:  # a row the archive's format cannot rebuild
        raise ArchiveError(f"archive file {name} has a row that cannot be rebuilt: {error}",
                           file=name) from None  # fmt: skip
    count = expected - manifest.first_position
    if (
        count != manifest.row_count
        or expected - 1 != manifest.last_position
        or first_hash is None
        or first_hash.hex() != manifest.first_hash
        or previous.hex() != manifest.last_hash
    ):
        raise ArchiveError(
            f"archive file {name} does not hold what its manifest says (rows, range or hashes)",
            file=name,
            position=manifest.first_position,
        )
    return previous, count
