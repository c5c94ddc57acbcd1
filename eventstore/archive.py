"""The ledger's archive: whole old partitions as Parquet files, verifiable without PostgreSQL.

Why: the live table must stay bounded while the history stays provable. ``claire archive``
exports each old partition to one zstd Parquet file plus a JSON manifest (position range, the
hash before, first and last chain hashes, row count, the file's SHA-256, the ledger's identity),
reads the file back, re-hashes every row to the same chain, and only then, in one transaction,
records it in ``ledger.archived``, prunes the uniqueness side tables and detaches and drops the
partition. Files are written under a temporary name, fsynced and renamed: a failed export
(directory not writable, disk full) leaves no file that looks complete and the table untouched.

The file holds every field of the canonical text (see :mod:`eventstore.canonical`), so each
row's hash is recomputed, not stored: a market trade is typed columns (symbol, price and size
as integer units and scale, side, effect, time) and its content-derived id (``pipeline.ingest``)
is recomputed too; any row that the typed form would not reproduce byte for byte keeps its
payload text and id. Export checks the round trip before anything is dropped.

The retention floor (:func:`retention_floor`): nothing at or after the lowest position that a
projection's checkpoint, or a service's restore, still needs is archived. Services restore by
folding the log from their newest snapshot (``ledger.snapshots``); with no snapshot table or no
snapshot rows they fold from position 1, so the floor is 0 and archiving is refused.

The archive's code, one module per job (this module re-exports their public names):

* :mod:`eventstore.archive_columns`: ledger rows <-> Arrow tables, canonical texts (no I/O);
* :mod:`eventstore.archive_files`: manifests, listing and checking files against the chain;
* :mod:`eventstore.archive_export`: the retention floor and ``claire archive``;
* :mod:`eventstore.archive_verify`: ``claire verify --archive``;
* :mod:`eventstore.archive_read`: :func:`read_archived` and :class:`ArchivedLog`.
"""

from __future__ import annotations

from eventstore.archive_columns import ArchivedRow, canonical_texts, chain_hashes, rows_of
from eventstore.archive_export import ArchiveReport, archive, retention_floor
from eventstore.archive_files import (
    FORMAT,
    Manifest,
    check_file,
    manifests,
    read_manifest,
    uncovered_files,
)
from eventstore.archive_read import ArchivedLog, read_archived
from eventstore.archive_verify import ArchiveVerifyResult, verify_archive
from eventstore.errors import ArchiveError

__all__ = [
    "FORMAT",
    "ArchiveError",
    "ArchiveReport",
    "ArchiveVerifyResult",
    "ArchivedLog",
    "ArchivedRow",
    "Manifest",
    "archive",
    "canonical_texts",
    "chain_hashes",
    "check_file",
    "manifests",
    "read_archived",
    "read_manifest",
    "retention_floor",
    "rows_of",
    "uncovered_files",
    "verify_archive",
]
