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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
import msgspec

from aggregates.envelope import CLAIRE_NAMESPACE
from eventstore import sql
from eventstore.canonical import (
    GENESIS,
    canonical_text,
    chain,
    jsonb_key_order,
    render_object,
)
from eventstore.errors import EventStoreError

FORMAT = 1
_TRADE_KEYS = (
    "type", "symbol", "price", "contracts", "taker_side", "position_effect", "self_trade",
    "trade_id", "at_ms",
)  # fmt: skip
_TRADE_ORDER = jsonb_key_order(_TRADE_KEYS)
_TRADE_KEY_SET = frozenset(_TRADE_KEYS)
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(?:\.([0-9]+))?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_READ_CHUNK = 20_000


class ArchiveError(EventStoreError):
    """An archive that cannot be written or trusted; names the file (and position) at fault."""

    def __init__(self, problem: str, *, file: str | None = None, position: int | None = None):
        super().__init__(problem)
        self.file = file
        self.position = position


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


@dataclass(frozen=True, slots=True)
class ArchivedRow:
    """One archived event, every field of its canonical text (the payload as jsonb text).

    Times are microseconds since the epoch, as the canonical text writes them (turning each
    into a datetime cost more than the rest of a row's rebuild); the properties give datetimes.
    """

    position: int
    stream: str
    stream_version: int
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    occurred_us: int
    recorded_us: int
    causation_id: uuid.UUID | None
    causation_position: int | None
    correlation_id: uuid.UUID | None
    payload_text: str

    @property
    def occurred_at(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.occurred_us)

    @property
    def recorded_at(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.recorded_us)

    def canonical(self) -> str:
        """:func:`eventstore.canonical.canonical_text` of this row."""
        cause, corr, cause_position = (
            self.causation_id,
            self.correlation_id,
            self.causation_position,
        )
        return "|".join(
            (
                str(self.position),
                self.stream,
                str(self.stream_version),
                str(self.event_id),
                self.event_type,
                str(self.schema_version),
                str(self.occurred_us),
                str(self.recorded_us),
                "" if cause is None else str(cause),
                "" if cause_position is None else str(cause_position),
                "" if corr is None else str(corr),
                self.payload_text,
            )
        )


# --------------------------------------------------------------------------- columns


def _schema() -> Any:
    import pyarrow as pa

    uid = pa.binary(16)
    return pa.schema(
        [
            ("position", pa.int64()),
            ("stream", pa.dictionary(pa.int32(), pa.string())),
            ("stream_version", pa.int64()),
            ("event_type", pa.dictionary(pa.int32(), pa.string())),
            ("schema_version", pa.int32()),
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("recorded_at", pa.timestamp("us", tz="UTC")),
            ("causation_id", uid),
            ("causation_position", pa.int64()),
            ("correlation_id", uid),
            ("event_id", uid),  # null: a market trade's content-derived id
            ("payload", pa.string()),  # null: a market trade in the typed columns below
            ("symbol", pa.dictionary(pa.int32(), pa.string())),
            ("price_units", pa.int64()),
            ("price_scale", pa.int8()),
            ("contracts_units", pa.int64()),
            ("contracts_scale", pa.int8()),
            ("taker_side", pa.dictionary(pa.int32(), pa.string())),
            ("position_effect", pa.dictionary(pa.int32(), pa.string())),
            ("self_trade", pa.bool_()),
            ("trade_id", pa.string()),
            ("at_ms", pa.int64()),
        ]
    )


def _split_decimal(text: object) -> tuple[int, int] | None:
    if not isinstance(text, str):
        return None
    match = _DECIMAL.match(text)
    if match is None:
        return None
    fraction = match.group(2) or ""
    return int(match.group(1) + fraction), len(fraction)


def _join_decimal(units: int, scale: int) -> str:
    if scale == 0:
        return str(units)
    digits = str(units).rjust(scale + 1, "0")
    return f"{digits[:-scale]}.{digits[-scale:]}"


_SIMPLE = re.compile(r'[^"\\\x00-\x1f\x7f-\U0010ffff]*')


def _json_or_null(text: str | None) -> str:
    return "null" if text is None else f'"{text}"'


def _trade_payload(fields: dict[str, Any]) -> str:
    """jsonb's text of a trade payload (keys in jsonb order), straight from the fields."""
    symbol, trade_id = fields["symbol"], fields["trade_id"]
    side, effect = fields["taker_side"], fields["position_effect"]
    if not all(_SIMPLE.fullmatch(v) for v in (symbol, side, effect, trade_id or "")):
        return render_object(fields, _TRADE_ORDER)
    return (
        f'{{"type": "market.trade", "at_ms": {fields["at_ms"]}, "price": "{fields["price"]}", '
        f'"symbol": "{symbol}", "trade_id": {_json_or_null(trade_id)}, '
        f'"contracts": "{fields["contracts"]}", '
        f'"self_trade": {"true" if fields["self_trade"] else "false"}, '
        f'"taker_side": "{side}", "position_effect": "{effect}"}}'
    )


_NAMESPACE = CLAIRE_NAMESPACE.bytes


def _trade_id(fields: dict[str, Any]) -> uuid.UUID:
    """The id ``pipeline.ingest.market_event_ids`` gives a trade (rank 0 in its batch):
    uuid5 of the event's msgspec JSON, built here without the event object."""
    symbol, trade_id = fields["symbol"], fields["trade_id"]
    side, effect = fields["taker_side"], fields["position_effect"]
    if all(_SIMPLE.fullmatch(v) for v in (symbol, side, effect, trade_id or "")):
        body = (
            f'{{"type":"market.trade","symbol":"{symbol}","price":"{fields["price"]}",'
            f'"contracts":"{fields["contracts"]}","taker_side":"{side}",'
            f'"position_effect":"{effect}",'
            f'"self_trade":{"true" if fields["self_trade"] else "false"},'
            f'"trade_id":{_json_or_null(trade_id)},'
            f'"at_ms":{fields["at_ms"]}}}'
        )
    else:
        body = msgspec.json.encode({key: fields[key] for key in _TRADE_KEYS}).decode()
    digest = bytearray(hashlib.sha1(_NAMESPACE + f"market/0/{body}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(digest))


def _rebuilt_trade(columns: tuple[Any, ...]) -> dict[str, Any]:
    symbol, p_units, p_scale, c_units, c_scale, side, effect, self_trade, trade_id, at_ms = columns
    return {
        "type": "market.trade",
        "symbol": symbol,
        "price": _join_decimal(p_units, p_scale),
        "contracts": _join_decimal(c_units, c_scale),
        "taker_side": side,
        "position_effect": effect,
        "self_trade": self_trade,
        "trade_id": trade_id,
        "at_ms": at_ms,
    }


def _table(rows: list[asyncpg.Record]) -> Any:
    """Rows of ``ledger.events`` (payload as text) -> an Arrow table in the archive's schema.

    Column-wise: trade payloads are decoded in one call, their typed columns built, and the
    payload text and content-derived id they imply compared with the stored ones in Arrow; a
    row whose typed form would not rebuild its text (or id) keeps the text (or id).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = _schema()
    n = len(rows)
    columns = (list(column) for column in zip(*(row[:12] for row in rows), strict=True))
    (position, stream, version, eids, etype, sversion, occurred, recorded, cause, cause_pos,
     corr, payload) = columns  # fmt: skip
    trades = [i for i, kind in enumerate(etype) if kind == "market.trade"]
    typed: list[list[Any]] = [[None] * n for _ in range(10)]
    if trades:
        try:
            decoded = msgspec.json.decode(
                ("[" + ",".join(payload[i] for i in trades) + "]").encode()
            )
        except msgspec.DecodeError:
            decoded = [None] * len(trades)
        symbol, p_units, p_scale, c_units, c_scale, side, effect, self_trade, trade_id, at_ms = (
            typed
        )
        for i, fields in zip(trades, decoded, strict=True):
            if not isinstance(fields, dict) or fields.keys() != _TRADE_KEY_SET:
                continue
            price, contracts = _split_decimal(fields["price"]), _split_decimal(fields["contracts"])
            at, tid = fields["at_ms"], fields["trade_id"]
            if (
                price is None or contracts is None or max(price[1], contracts[1]) > 100
                or not (price[0] < 2**63 and contracts[0] < 2**63)
                or type(at) is not int or not -(2**63) <= at < 2**63
                or not isinstance(fields["symbol"], str)
                or not isinstance(fields["taker_side"], str)
                or not isinstance(fields["position_effect"], str)
                or type(fields["self_trade"]) is not bool
                or not (tid is None or isinstance(tid, str))
                or fields["type"] != "market.trade"
            ):  # fmt: skip
                continue
            symbol[i], side[i] = fields["symbol"], fields["taker_side"]
            effect[i] = fields["position_effect"]
            p_units[i], p_scale[i] = price
            c_units[i], c_scale[i] = contracts
            self_trade[i], trade_id[i], at_ms[i] = fields["self_trade"], tid, at
    ids = [eid.bytes for eid in eids]
    base = [
        pa.array(position, pa.int64()),
        pa.array(stream, pa.string()).dictionary_encode(),
        pa.array(version, pa.int64()),
        pa.array(etype, pa.string()).dictionary_encode(),
        pa.array(sversion, pa.int32()),
        pa.array(occurred, pa.timestamp("us", tz="UTC")),
        pa.array(recorded, pa.timestamp("us", tz="UTC")),
        pa.array([None if c is None else c.bytes for c in cause], pa.binary(16)),
        pa.array(cause_pos, pa.int64()),
        pa.array([None if c is None else c.bytes for c in corr], pa.binary(16)),
    ]
    trade_arrays = [
        pa.array(values, field.type)
        if not pa.types.is_dictionary(field.type)
        else pa.array(values, pa.string()).dictionary_encode()
        for values, field in zip(typed, list(schema)[12:], strict=True)
    ]
    names = schema.names
    candidate = pa.Table.from_arrays(
        [*base, pa.array([None] * n, pa.binary(16)), pa.array([None] * n, pa.string()),
         *trade_arrays],
        names=names,
    )  # fmt: skip
    if trades and candidate.column("symbol").null_count < n:
        built, bodies = _trade_texts(candidate)
        stored = pa.array(payload, pa.string())
        same = pc.fill_null(pc.equal(built, stored), False)
        keep_text = pc.invert(same)
        derived = [
            same_row and body is not None and _derived_id_bytes(body) == raw
            for same_row, body, raw in zip(same.to_pylist(), bodies, ids, strict=True)
        ]
    else:
        keep_text = pa.array([True] * n)
        derived = [False] * n
    null_text = pa.scalar(None, pa.string())
    columns = [
        *base,
        pa.array([None if d else raw for d, raw in zip(derived, ids, strict=True)], pa.binary(16)),
        pc.if_else(keep_text, pa.array(payload, pa.string()), null_text),
    ]
    for array in trade_arrays:
        empty = pa.scalar(None, array.type)
        columns.append(pc.if_else(keep_text, empty, array) if array.null_count < n else array)
    return pa.Table.from_arrays(
        [pc.cast(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )


def _column(table: Any, name: str) -> list[Any]:
    import pyarrow as pa

    column = table.column(name)
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    elif pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return column.to_pylist()


def rows_of(table: Any) -> Iterator[ArchivedRow]:
    """The archived events of an Arrow table in the archive's schema, every field rebuilt."""
    data = {name: _column(table, name) for name in table.column_names}
    trade_names = _schema().names[12:]
    trades = zip(*(data[name] for name in trade_names), strict=True)
    for i, trade in enumerate(trades):
        payload = data["payload"][i]
        raw_id = data["event_id"][i]
        if payload is None:
            fields = _rebuilt_trade(trade)
            payload = _trade_payload(fields)
            event_id = uuid.UUID(bytes=raw_id) if raw_id is not None else _trade_id(fields)
        else:
            if raw_id is None:
                raise ValueError(f"row {i} has neither an event id nor a typed trade")
            event_id = uuid.UUID(bytes=raw_id)
        cause, corr = data["causation_id"][i], data["correlation_id"][i]
        yield ArchivedRow(
            position=data["position"][i],
            stream=data["stream"][i],
            stream_version=data["stream_version"][i],
            event_id=event_id,
            event_type=data["event_type"][i],
            schema_version=data["schema_version"][i],
            occurred_us=data["occurred_at"][i],
            recorded_us=data["recorded_at"][i],
            causation_id=None if cause is None else uuid.UUID(bytes=cause),
            causation_position=data["causation_position"][i],
            correlation_id=None if corr is None else uuid.UUID(bytes=corr),
            payload_text=payload,
        )


def _uuid_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _derived_id_bytes(body: str) -> bytes:
    digest = bytearray(hashlib.sha1(_NAMESPACE + body.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return bytes(digest)


#: A character a JSON string must escape (or that the fast path leaves to the slow one).
_NOT_PLAIN = r"[^ !#-\[\]-~]"


def _trade_texts(table: Any) -> tuple[Any, list[str | None]]:
    """From the typed trade columns: each row's payload text (null where not a typed trade)
    and the body its content-derived id hashes (``market/0/`` + the event's msgspec JSON)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def text(name: str) -> Any:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            return column.cast(pa.string())
        return pc.cast(column, pa.string())

    def decimal(units: str, scale: str) -> Any:
        digits, scales = text(units), table.column(scale)
        result = digits
        for k in pc.unique(scales).to_pylist():
            if not k:
                continue
            padded = pc.utf8_lpad(digits, width=k + 1, padding="0")
            joined = pc.binary_join_element_wise(
                pc.utf8_slice_codeunits(padded, start=0, stop=-k),
                pc.utf8_slice_codeunits(padded, start=-k),
                ".",
            )
            result = pc.if_else(pc.equal(scales, k), joined, result)
        return result

    join = pc.binary_join_element_wise
    price = decimal("price_units", "price_scale")
    contracts = decimal("contracts_units", "contracts_scale")
    symbol, side, effect = text("symbol"), text("taker_side"), text("position_effect")
    at_ms, trade_id = text("at_ms"), text("trade_id")
    quoted_id = pc.if_else(pc.is_null(trade_id), "null", join('"', trade_id, '"', ""))
    quoted_id = pc.if_else(pc.is_null(symbol), pa.scalar(None, pa.string()), quoted_id)
    self_trade = pc.if_else(table.column("self_trade"), "true", "false")
    payload = (
        join(
            '{"type": "market.trade", "at_ms": ', at_ms, ', "price": "', price,
            '", "symbol": "', symbol, '", "trade_id": ', quoted_id, ', "contracts": "',
            contracts, '", "self_trade": ', self_trade, ', "taker_side": "', side,
            '", "position_effect": "', effect, '"}', "",
        )
    )  # fmt: skip
    bodies = join(
        'market/0/{"type":"market.trade","symbol":"', symbol, '","price":"', price,
        '","contracts":"', contracts, '","taker_side":"', side, '","position_effect":"', effect,
        '","self_trade":', self_trade, ',"trade_id":', quoted_id, ',"at_ms":', at_ms, "}", "",
    ).to_pylist()  # fmt: skip
    return payload, bodies


def canonical_texts(table: Any) -> list[str]:
    """The canonical text of every row of an archive table, built column-wise with Arrow.

    The same text :meth:`ArchivedRow.canonical` gives (the tests hold both to the ledger's
    hashes), several times faster: for verify and the export's read-back.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    def text(name: str) -> Any:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            return column.cast(pa.string())
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        return pc.cast(column, pa.string())

    strings = ("symbol", "taker_side", "position_effect", "trade_id")
    if any(pc.any(pc.match_substring_regex(text(n), _NOT_PLAIN)).as_py() for n in strings):
        return [row.canonical() for row in rows_of(table)]

    join = pc.binary_join_element_wise
    built, bodies = _trade_texts(table)
    payload = pc.coalesce(table.column("payload"), built)
    ids = [
        _uuid_text(raw if raw is not None else _derived_id_bytes(body))
        for raw, body in zip(table.column("event_id").to_pylist(), bodies, strict=True)
    ]
    causes = [_uuid_text(raw) for raw in table.column("causation_id").to_pylist()]
    correlations = [_uuid_text(raw) for raw in table.column("correlation_id").to_pylist()]
    texts = join(
        text("position"), text("stream"), text("stream_version"), pa.array(ids, pa.string()),
        text("event_type"), text("schema_version"), text("occurred_at"), text("recorded_at"),
        pa.array(causes, pa.string()), text("causation_position"),
        pa.array(correlations, pa.string()), payload, "|",
        null_handling="replace", null_replacement="",
    )  # fmt: skip
    return texts.to_pylist()


def chain_hashes(table: Any, previous: bytes) -> list[bytes]:
    """Every row's chain hash, from the hash before the table's first row."""
    out = []
    sha256 = hashlib.sha256
    for text in canonical_texts(table):
        previous = sha256(previous + text.encode()).digest()
        out.append(previous)
    return out


# --------------------------------------------------------------------------- files


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


_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 9,
    "use_dictionary": ["stream", "event_type", "symbol", "taker_side", "position_effect"],
    "column_encoding": {
        "position": "DELTA_BINARY_PACKED",
        "stream_version": "DELTA_BINARY_PACKED",
        "occurred_at": "DELTA_BINARY_PACKED",
        "recorded_at": "DELTA_BINARY_PACKED",
        "at_ms": "DELTA_BINARY_PACKED",
        "price_units": "DELTA_BINARY_PACKED",
        "contracts_units": "DELTA_BINARY_PACKED",
    },
}


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


# --------------------------------------------------------------------------- database side

_ARCHIVED = (
    "SELECT partition, first_position, last_position, first_hash, last_hash, row_count, file,"
    " file_sha256 FROM ledger.archived ORDER BY first_position"
)
_PARTITIONS = """
SELECT c.relname, (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                'FROM \\(''?(\\d+)''?\\) TO \\(''?(\\d+)''?\\)'))[1:2]::bigint[]
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'ledger.events'::regclass
"""
_HAS = "SELECT to_regclass($1) IS NOT NULL"


async def retention_floor(conn: asyncpg.Connection, url: str) -> tuple[int, str]:
    """The highest position that may be archived, and what holds it there.

    The minimum of: every projection's checkpoint (a projection still to read a position needs
    it in the table), and every decision service's newest *usable* snapshot (the one its restore
    would take: :meth:`eventstore.snapshots.Snapshots.latest_usable`). A service with no usable
    snapshot restores by folding the log from position 1, so then nothing may go.
    """
    floor, reason = await conn.fetchval("SELECT position FROM ledger.head"), "the head"
    if await conn.fetchval(_HAS, "readmodel.checkpoints"):
        row = await conn.fetchrow(
            "SELECT projection, position FROM readmodel.checkpoints ORDER BY position LIMIT 1"
        )
        if row is not None and row[1] < floor:
            floor, reason = row[1], f"projection {row[0]}'s checkpoint"
    if not await conn.fetchval(_HAS, "ledger.snapshots"):
        return 0, "no snapshots: a service restore folds the log from position 1"
    restore, why = await _restore_floor(url)
    if restore < floor:
        floor, reason = restore, why
    return floor, reason


async def _restore_floor(url: str) -> tuple[int, str]:
    """The oldest of the decision services' newest usable snapshots (0 if one has none)."""
    from aggregates.snapshot import CODECS
    from eventstore.postgres import EventStore
    from eventstore.snapshots import Snapshots

    store = await EventStore.connect(url, max_connections=1)
    try:
        snapshots = Snapshots(store)
        floor: tuple[int, str] | None = None
        for machine in CODECS:
            found = await snapshots.latest_usable(machine)
            if found is None:
                return 0, f"no usable snapshot of {machine}: its restore folds from position 1"
            if floor is None or found.snapshot.position < floor[0]:
                floor = (found.snapshot.position, f"the newest usable snapshot of {machine}")
        assert floor is not None
        return floor
    finally:
        await store.close()


async def _ledger_identity(conn: asyncpg.Connection) -> str:
    first = await conn.fetchval(
        "SELECT first_hash FROM ledger.archived WHERE first_position = 1"
    ) or await conn.fetchval("SELECT hash FROM ledger.events WHERE position = 1")
    return (first or GENESIS).hex()


@dataclass(frozen=True)
class ArchiveReport:
    """What one ``claire archive`` run did."""

    archived: list[Manifest]
    floor: int
    floor_reason: str
    stopped: str  # why no further partition was archived


def _check_writable(directory: Path) -> None:
    if not directory.is_dir():
        raise ArchiveError(f"archive directory {directory} does not exist", file=str(directory))
    try:  # a real probe: permissions, read-only mounts and ACLs all answer it
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise ArchiveError(
            f"archive directory {directory} is not writable: {error.strerror}",
            file=str(directory),
        ) from None


async def archive(url: str, before: datetime, directory: Path) -> ArchiveReport:
    """Archive, oldest first, every whole partition recorded before ``before`` and under the
    retention floor; see the module docstring. Raises :class:`ArchiveError` (nothing dropped
    for the partition at fault; partitions archived before it stay archived and consistent)."""
    await asyncio.to_thread(_check_writable, directory)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        floor, reason = await retention_floor(conn, url)
        identity = await _ledger_identity(conn)
        done: list[Manifest] = []
        while True:
            stopped = await _archive_next(conn, before, directory, floor, identity, done)
            if stopped is not None:
                return ArchiveReport(done, floor, reason, stopped)
    finally:
        await conn.close()


async def _archive_next(
    conn: asyncpg.Connection,
    before: datetime,
    directory: Path,
    floor: int,
    identity: str,
    done: list[Manifest],
) -> str | None:
    head = await conn.fetchval("SELECT position FROM ledger.head")
    partitions = sorted((row[1][0], row[1][1], row[0]) for row in await conn.fetch(_PARTITIONS))
    if not partitions:
        return "no partition left"
    low, high, name = partitions[0]
    archived = await conn.fetch(_ARCHIVED)
    previous_last = archived[-1]["last_position"] if archived else 0
    previous = archived[-1]["last_hash"] if archived else GENESIS
    first = await conn.fetchval(f"SELECT min(position) FROM ledger.{name}")
    last = high - 1
    if last > head:
        return f"the oldest partition {name} is not full yet (ends at {last}, head {head})"
    if last > floor:
        return f"partition {name} ends at {last}, after the retention floor {floor}"
    recorded = await conn.fetchval(
        f"SELECT recorded_at FROM ledger.{name} ORDER BY position DESC LIMIT 1"
    )
    if recorded is None or first != previous_last + 1 or first != max(low, 1):
        raise ArchiveError(
            f"partition {name} does not continue the archive at {previous_last + 1}",
            position=previous_last + 1,
        )
    if recorded >= before:
        return f"partition {name} holds events recorded at or after {before.isoformat()}"
    export = _FileExport(name, directory, previous, identity)
    try:
        await asyncio.to_thread(export.start)
        async with conn.transaction():
            chunk: list[asyncpg.Record] = []
            async for record in conn.cursor(
                f"SELECT position, stream, stream_version, event_id, event_type, schema_version,"
                f" occurred_at, recorded_at, causation_id, causation_position, correlation_id,"
                f" payload::text, hash FROM ledger.{name} ORDER BY position",
                prefetch=10_000,
            ):
                chunk.append(record)
                if len(chunk) >= _EXPORT_CHUNK:
                    await asyncio.to_thread(export.write, chunk)
                    chunk = []
            if chunk:
                await asyncio.to_thread(export.write, chunk)
        manifest = await asyncio.to_thread(export.finish)
    except OSError as error:
        await asyncio.to_thread(export.abort)
        raise ArchiveError(
            f"cannot write archive file {export.file} in {directory}: {error}; nothing was dropped",
            file=export.file,
        ) from None
    except BaseException:
        await asyncio.to_thread(export.abort)
        raise
    await _drop(conn, name, manifest)
    done.append(manifest)
    return None


#: Rows per Parquet write during an export (memory stays bounded whatever the partition size).
_EXPORT_CHUNK = 100_000


class _FileExport:
    """One partition's archive file in the making; each step runs in a worker thread.

    Read-back needs no copy of the rows: the file's rows are re-hashed from the hash before
    the partition, and the chain ending at the ledger's own last hash (with the same first
    hash, positions and count) proves every row rebuilt exactly (SHA-256 chain).
    """

    def __init__(self, name: str, directory: Path, previous: bytes, identity: str) -> None:
        self.name, self.directory, self.previous, self.identity = (
            name,
            directory,
            previous,
            identity,
        )
        self.file = f"{name}.parquet"
        self.path = directory / self.file
        self.manifest_path = directory / f"{name}.manifest.json"
        self.temporary = directory / f".{self.file}.partial"
        self.temporary_manifest = directory / f".{name}.manifest.json.partial"
        self.writer: Any = None
        self.first: tuple[int, bytes] | None = None
        self.last: tuple[int, bytes] | None = None
        self.count = 0

    def start(self) -> None:
        import pyarrow.parquet as pq

        if self.path.exists() or self.manifest_path.exists():
            raise ArchiveError(
                f"archive file {self.file} already exists: the archive is append-only",
                file=self.file,
            )
        self.writer = pq.ParquetWriter(self.temporary, _schema(), **_PARQUET_OPTIONS)

    def write(self, rows: list[asyncpg.Record]) -> None:
        self.writer.write_table(_table(rows))
        self.first = self.first or (rows[0][0], rows[0][12])
        self.last = (rows[-1][0], rows[-1][12])
        self.count += len(rows)

    def finish(self) -> Manifest:
        self.writer.close()
        self.writer = None
        with self.temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        if self.first is None or self.last is None:
            raise ArchiveError(f"partition {self.name} is empty", file=self.file)
        manifest = Manifest(
            format=FORMAT,
            ledger=self.identity if self.first[0] != 1 else self.first[1].hex(),
            partition=self.name,
            file=self.file,
            first_position=self.first[0],
            last_position=self.last[0],
            previous_hash=self.previous.hex(),
            first_hash=self.first[1].hex(),
            last_hash=self.last[1].hex(),
            row_count=self.count,
            sha256=_sha256(self.temporary),
        )
        staged = Manifest(**{**msgspec.structs.asdict(manifest), "file": self.temporary.name})
        try:
            check_file(self.directory, staged, self.previous)
        except ArchiveError as error:
            raise ArchiveError(
                f"archive file {self.file} does not read back to the ledger's chain "
                f"({error}); nothing was dropped",
                file=self.file,
                position=error.position,
            ) from None
        self.temporary_manifest.write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
        with self.temporary_manifest.open("rb+") as handle:
            os.fsync(handle.fileno())
        self.temporary.rename(self.path)
        self.temporary_manifest.rename(self.manifest_path)
        _fsync_dir(self.directory)
        return manifest

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self.writer is not None:
                self.writer.close()
        for path in (self.temporary, self.temporary_manifest):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


async def _drop(conn: asyncpg.Connection, name: str, manifest: Manifest) -> None:
    """Record the file, prune the side tables, detach and drop the partition: one transaction."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO ledger.archived (partition, first_position, last_position, first_hash,"
            " last_hash, row_count, file, file_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            name, manifest.first_position, manifest.last_position,
            bytes.fromhex(manifest.first_hash), bytes.fromhex(manifest.last_hash),
            manifest.row_count, manifest.file, manifest.sha256,
        )  # fmt: skip
        await conn.execute(
            f"DELETE FROM ledger.event_ids i USING ledger.{name} e WHERE i.event_id = e.event_id"
        )
        # Each stream keeps its last version: a stream never starts again at version 1.
        await conn.execute(
            f"""
            DELETE FROM ledger.stream_versions v USING ledger.{name} e
            WHERE v.stream = e.stream AND v.stream_version = e.stream_version
              AND v.stream_version < (SELECT max(m.stream_version) FROM ledger.stream_versions m
                                      WHERE m.stream = v.stream)
            """
        )
        await conn.execute(f"ALTER TABLE ledger.events DETACH PARTITION ledger.{name}")
        await conn.execute(f"DROP TABLE ledger.{name}")


# --------------------------------------------------------------------------- verify --archive


@dataclass(frozen=True)
class ArchiveVerifyResult:
    """``claire verify --archive``: archive files and live table, one chain."""

    ok: bool
    files: int
    archived_events: int
    live_events: int
    problem: str | None = None
    file: str | None = None
    first_bad_position: int | None = None


async def verify_archive(url: str, directory: Path) -> ArchiveVerifyResult:
    """Check the chain from position 1 through every archive file, then the live table.

    Every file the ledger recorded as archived must be present, match its recorded SHA-256
    and manifest, belong to this ledger and continue the chain; no file may be left out or
    added; the live table must continue from the last file (``EventStore.verify``).
    """
    from eventstore.postgres import EventStore

    conn = await asyncpg.connect(url)
    try:
        recorded = await conn.fetch(_ARCHIVED)
        identity = await _ledger_identity(conn)
    finally:
        await conn.close()
    files = events = 0

    def bad(problem: str, file: str | None = None, position: int | None = None):  # type: ignore[no-untyped-def]
        return ArchiveVerifyResult(False, files, events, 0, problem, file, position)

    try:
        listed = await asyncio.to_thread(manifests, directory)
    except ArchiveError as error:
        return bad(str(error), error.file)
    found = {m.partition: m for m in listed}
    previous = GENESIS
    for entry in recorded:
        name = entry["partition"]
        manifest = found.pop(name, None)
        if manifest is None:
            return bad(
                f"archive file {entry['file']} (positions {entry['first_position']}.."
                f"{entry['last_position']}) is missing from {directory}",
                entry["file"],
                entry["first_position"],
            )
        if manifest.ledger != identity:
            return bad(f"archive file {manifest.file} is from another ledger", manifest.file)
        if (
            manifest.sha256 != entry["file_sha256"]
            or manifest.first_position != entry["first_position"]
            or manifest.last_position != entry["last_position"]
            or manifest.last_hash != entry["last_hash"].hex()
        ):
            return bad(
                f"manifest of {manifest.file} does not match what the ledger recorded when it "
                "was archived",
                manifest.file,
                entry["first_position"],
            )
        try:
            previous, count = await asyncio.to_thread(check_file, directory, manifest, previous)
        except ArchiveError as error:
            return bad(str(error), error.file, error.position)
        files, events = files + 1, events + count
    if found:
        manifest = min(found.values(), key=lambda m: m.first_position)
        other = " from another ledger" if manifest.ledger != identity else ""
        return bad(
            f"archive file {manifest.file}{other} is not one this ledger archived",
            manifest.file,
        )
    strays = await asyncio.to_thread(uncovered_files, directory, listed)
    if strays:
        return bad(
            f"archive directory {directory} holds files no manifest describes: "
            f"{', '.join(strays)} (a query over *.parquet would read them as archived events)",
            strays[0],
        )
    store = await EventStore.connect(url, max_connections=1)
    try:
        live = await store.verify()
    finally:
        await store.close()
    if not live.ok:
        return ArchiveVerifyResult(
            False, files, events, live.events_checked, live.problem, None, live.first_bad_position
        )
    return ArchiveVerifyResult(True, files, events, live.events_checked)


def read_archived(directory: Path, after: int = 0) -> Iterator[tuple[ArchivedRow, bytes]]:
    """The archived events with position > ``after`` and their chain hashes, in order, from
    the files alone, one Parquet batch at a time: first every file to be read is checked
    against its manifest (SHA-256) and the files must follow one another; then each file's
    rows must rebuild the chain to its manifest's last hash. :class:`ArchiveError` names a bad
    file."""
    needed = _files_after(directory, manifests(directory), after)
    for manifest, previous in needed:
        for part in _batches(directory / manifest.file):
            for row in rows_of(part):
                previous = chain(previous, row.canonical())
                if row.position > after:
                    yield row, previous
        if previous.hex() != manifest.last_hash:
            raise ArchiveError(
                f"archive file {manifest.file} does not rebuild to its manifest's last hash",
                file=manifest.file,
            )


def _files_after(
    directory: Path, found: list[Manifest], after: int
) -> list[tuple[Manifest, bytes]]:
    """The manifests of the files holding positions after ``after``, each with the chain hash
    before it; the files follow one another from position 1 and match their SHA-256."""
    previous, expected = GENESIS, 1
    needed: list[tuple[Manifest, bytes]] = []
    for manifest in found:
        if manifest.first_position != expected:
            raise ArchiveError(
                f"archive in {directory} lacks positions {expected}..{manifest.first_position - 1}"
                f" (before {manifest.file})",
                file=manifest.file,
                position=expected,
            )
        expected = manifest.last_position + 1
        if manifest.last_position > after:
            if bytes.fromhex(manifest.previous_hash) != previous:
                raise ArchiveError(
                    f"archive file {manifest.file} does not continue the chain",
                    file=manifest.file,
                )
            path = directory / manifest.file
            if not path.is_file() or _sha256(path) != manifest.sha256:
                raise ArchiveError(
                    f"archive file {manifest.file} is missing or corrupted", file=manifest.file
                )
            needed.append((manifest, previous))
        previous = bytes.fromhex(manifest.last_hash)
    return needed


_FIRST_LIVE = sql.READ_FOR_VERIFY


def _live_text(row: Any) -> str:
    names = (
        "position", "stream", "stream_version", "event_id", "event_type", "schema_version",
        "occurred_at", "recorded_at", "causation_id", "causation_position", "correlation_id",
        "payload_text",
    )  # fmt: skip
    return canonical_text(**dict(zip(names, row[:12], strict=True)))


def _archived_batches(directory: Path, after: int, size: int) -> Iterator[list[Any]]:
    """:func:`read_archived` as lists of at most ``size`` recorded events."""
    from aggregates.envelope import RecordedEvent
    from eventstore.codec import decode_payload

    batch: list[RecordedEvent] = []
    for row, digest in read_archived(directory, after):
        batch.append(
            RecordedEvent(
                position=row.position,
                stream=row.stream,
                stream_version=row.stream_version,
                event_id=row.event_id,
                event_type=row.event_type,
                schema_version=row.schema_version,
                occurred_at=row.occurred_at,
                recorded_at=row.recorded_at,
                causation_id=row.causation_id,
                causation_position=row.causation_position,
                correlation_id=row.correlation_id,
                event=decode_payload(
                    row.position, row.event_type, row.schema_version, row.payload_text
                ),
                hash=digest,
            )
        )
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class ArchivedLog:
    """An :class:`eventstore.EventStore` whose reads start in the archive, then the table.

    For ``replay --archive DIR`` and projection rebuilds: ``read_all``/``read_all_batches``
    serve archived positions from the files (checked as :func:`read_archived` does, streamed
    one Parquet batch at a time) and continue from the table at the first live position;
    ``position_at`` searches both. Before any read, the archive must join this ledger's table:
    the table's first row follows the archive's last position and hashes from its last chain
    hash (an archive of another ledger is refused). Everything else (appends, ``head``,
    ``verify``) is the store's.
    """

    def __init__(self, store: Any, directory: Path) -> None:
        self._store = store
        self._directory = directory
        self._joined = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _check_join(self) -> list[Manifest]:
        """The archive's manifests, once the archive is known to end where the table begins."""
        found = await asyncio.to_thread(manifests, self._directory)
        if self._joined:
            return found
        last = found[-1] if found else None
        end = last.last_position if last is not None else 0
        end_hash = bytes.fromhex(last.last_hash) if last is not None else GENESIS
        named = last.file if last is not None else str(self._directory)
        rows = await self._store._fetch(_FIRST_LIVE, 0, 1)
        if rows:
            first, stored = rows[0][0], rows[0][12]
            try:
                follows = chain(end_hash, _live_text(rows[0])) == stored
            except (ValueError, TypeError, OverflowError, ArithmeticError):
                follows = False
        else:
            first, head_hash = await self._store.head()
            first, follows = first + 1, head_hash == end_hash
        if first != end + 1:
            raise ArchiveError(
                f"the archive in {self._directory} ends at position {end} ({named}) but this "
                f"ledger's table continues from {first}: not this ledger's archive, or not all "
                "of it",
                file=named,
                position=end + 1,
            )
        if not follows:
            raise ArchiveError(
                f"archive file {named} is not this ledger's: the table's position {first} does "
                "not follow its last chain hash (an archive of another ledger?)",
                file=named,
                position=first,
            )
        self._joined = True
        return found

    async def read_all_batches(
        self, after: int = 0, *, batch_size: int = 2000, chunks: Any = None
    ) -> Any:
        await self._check_join()
        batches = _archived_batches(self._directory, after, batch_size)
        last = after
        try:
            while (batch := await asyncio.to_thread(next, batches, None)) is not None:
                last = batch[-1].position
                yield batch
        finally:
            with contextlib.suppress(ValueError):  # still running in its thread: cancelled
                batches.close()
        async with contextlib.aclosing(
            self._store.read_all_batches(after=last, batch_size=batch_size, chunks=chunks)
        ) as live:
            async for live_batch in live:
                if live_batch and live_batch[0].position != last + 1:
                    raise ArchiveError(
                        f"the table starts at {live_batch[0].position}, the archive in "
                        f"{self._directory} ends at {last}",
                        position=last + 1,
                    )
                last = live_batch[-1].position
                yield live_batch

    async def read_all(self, after: int = 0, *, batch_size: int = 2000, chunks: Any = None) -> Any:
        async with contextlib.aclosing(
            self.read_all_batches(after, batch_size=batch_size, chunks=chunks)
        ) as batches:
            async for batch in batches:
                for fact in batch:
                    yield fact

    async def position_at(self, moment: datetime) -> int | None:
        await self._check_join()
        found = await asyncio.to_thread(self._archived_position_at, moment)
        return found if found is not None else await self._store.position_at(moment)

    def _archived_position_at(self, moment: datetime) -> int | None:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        best: int | None = None
        for manifest in manifests(self._directory):
            try:
                table = pq.read_table(
                    self._directory / manifest.file, columns=["position", "occurred_at"]
                )
            except Exception as error:  # pyarrow raises many types for a broken file
                raise ArchiveError(
                    f"archive file {manifest.file} is unreadable: {error}", file=manifest.file
                ) from None
            hits = table.filter(pc.greater_equal(table["occurred_at"], moment))
            if hits.num_rows:
                first = pc.min(hits["position"]).as_py()
                best = first if best is None else min(best, first)
        return best


__all__ = [
    "ArchiveError",
    "ArchiveReport",
    "ArchiveVerifyResult",
    "ArchivedLog",
    "ArchivedRow",
    "Manifest",
    "archive",
    "read_archived",
    "retention_floor",
    "verify_archive",
]
