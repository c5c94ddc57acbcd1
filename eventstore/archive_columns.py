"""The archive's columns: ledger rows <-> Arrow tables, and the canonical text of each row.

Part of :mod:`eventstore.archive` (see there). A market trade is stored as typed columns and
its payload text and content-derived id are rebuilt from them; any row the typed form would not
reproduce byte for byte keeps its payload text and id. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import pairwise
from typing import Any

import asyncpg
import msgspec

from aggregates.envelope import CLAIRE_NAMESPACE
from eventstore.archive_arrow import RAW_COLUMNS, _derived_ids, _uuid_texts, binary_slices
from eventstore.canonical import (
    canonical_line,
    chain_links,
    jsonb_key_order,
    render_object,
)
from eventstore.errors import ArchiveError

_TRADE_KEYS = (
    "type", "symbol", "price", "contracts", "taker_side", "position_effect", "self_trade",
    "trade_id", "at_ms",
)  # fmt: skip
_TRADE_ORDER = jsonb_key_order(_TRADE_KEYS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        return canonical_line(
            self.position, self.stream, self.stream_version, self.event_id, self.event_type,
            self.schema_version, self.occurred_us, self.recorded_us, self.causation_id,
            self.causation_position, self.correlation_id, self.payload_text,
        )  # fmt: skip


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


#: jsonb's text of a market trade whose strings need no escaping (what the typed columns
#: rebuild); a payload of any other shape keeps its text.
_TRADE_TEXT = (
    r'^\{"type": "market\.trade", "at_ms": (?P<at_ms>-?[0-9]{1,18}), '
    r'"price": "(?P<price>(?:0|[1-9][0-9]*)(?:\.[0-9]+)?)", "symbol": "(?P<symbol>[^"\\]*)", '
    r'"trade_id": (?P<tid>null|"(?P<trade_id>[^"\\]*)"), '
    r'"contracts": "(?P<contracts>(?:0|[1-9][0-9]*)(?:\.[0-9]+)?)", '
    r'"self_trade": (?P<self_trade>true|false), "taker_side": "(?P<taker_side>[^"\\]*)", '
    r'"position_effect": "(?P<position_effect>[^"\\]*)"\}$'
)


def _raw_table(rows: list[asyncpg.Record] | list[tuple[Any, ...]]) -> Any:
    """Rows of ``ledger.events`` (payload as text, ids as UUIDs) as an Arrow table of
    :data:`RAW_COLUMNS` (what :func:`_table` takes)."""
    import pyarrow as pa

    columns = [list(column) for column in zip(*(row[:12] for row in rows), strict=True)]
    if not columns:
        columns = [[] for _ in RAW_COLUMNS]
    (position, stream, version, eids, etype, sversion, occurred, recorded, cause, cause_pos,
     corr, payload) = columns  # fmt: skip
    stamp = pa.timestamp("us", tz="UTC")
    uid = pa.binary(16)
    return pa.Table.from_arrays(
        [
            pa.array(position, pa.int64()), pa.array(stream, pa.string()),
            pa.array(version, pa.int64()), pa.array([e.bytes for e in eids], uid),
            pa.array(etype, pa.string()), pa.array(sversion, pa.int32()),
            pa.array(occurred, stamp), pa.array(recorded, stamp),
            pa.array([None if c is None else c.bytes for c in cause], uid),
            pa.array(cause_pos, pa.int64()),
            pa.array([None if c is None else c.bytes for c in corr], uid),
            pa.array(payload, pa.string()),
        ],
        names=list(RAW_COLUMNS),
    )  # fmt: skip


def _table(rows: Any) -> Any:
    """Rows of ``ledger.events`` -> an Arrow table in the archive's schema.

    ``rows``: a table of :data:`RAW_COLUMNS` (as the export reads them) or a list of rows.
    Column-wise: each trade payload is matched against jsonb's text of a trade in one regex
    pass, its typed columns built, and the payload text and content-derived id they imply
    compared with the stored ones; a row whose typed form would not rebuild its text (or
    id) exactly keeps the text (or id).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = rows if isinstance(rows, pa.Table) else _raw_table(rows)
    raw = raw.combine_chunks()
    schema = _schema()
    n = raw.num_rows
    payload = raw.column("payload").combine_chunks()
    is_trade = pc.fill_null(pc.equal(raw.column("event_type"), "market.trade"), False)
    fields = pc.extract_regex(pc.if_else(is_trade, payload, None), _TRADE_TEXT)
    field = partial(pc.struct_field, fields)

    def decimal(name: str) -> tuple[Any, Any]:
        text = field(name)
        digits = pc.replace_substring(text, ".", "")
        fits = pc.less_equal(pc.utf8_length(digits), 18)
        dot = pc.find_substring(text, ".")
        scale = pc.if_else(pc.less(dot, 0), 0, pc.subtract(pc.utf8_length(text), dot))
        scale = pc.subtract(scale, pc.if_else(pc.less(dot, 0), 0, 1))
        units = pc.cast(pc.if_else(fits, digits, None), pa.int64())
        return units, pc.cast(pc.if_else(fits, scale, None), pa.int8())

    p_units, p_scale = decimal("price")
    c_units, c_scale = decimal("contracts")
    trade_id = pc.if_else(pc.equal(field("tid"), "null"), None, field("trade_id"))
    typed = [
        field("symbol"), p_units, p_scale, c_units, c_scale, field("taker_side"),
        field("position_effect"), pc.equal(field("self_trade"), "true"), trade_id,
        pc.cast(field("at_ms"), pa.int64()),
    ]  # fmt: skip
    ids = raw.column("event_id").combine_chunks()
    base = [
        raw.column("position"), raw.column("stream").dictionary_encode(),
        raw.column("stream_version"), raw.column("event_type").dictionary_encode(),
        raw.column("schema_version"), raw.column("occurred_at"), raw.column("recorded_at"),
        raw.column("causation_id"), raw.column("causation_position"),
        raw.column("correlation_id"),
    ]  # fmt: skip
    trade_arrays = [
        pc.cast(values, field_.type)
        if not pa.types.is_dictionary(field_.type)
        else pc.cast(values, pa.string()).dictionary_encode()
        for values, field_ in zip(typed, list(schema)[12:], strict=True)
    ]
    names = schema.names
    candidate = pa.Table.from_arrays(
        [*base, pa.nulls(n, pa.binary(16)), pa.nulls(n, pa.string()), *trade_arrays],
        names=names,
    )
    if n and candidate.column("symbol").null_count < n:
        built, bodies = _trade_texts(candidate)
        same = pc.fill_null(pc.equal(built, payload), False)
        derived = _derived_ids(pc.if_else(same, bodies, pa.scalar(None, pa.string())))
        keep_id = pc.invert(pc.fill_null(pc.equal(derived, ids), False))
        keep_text = pc.invert(same)
    else:
        keep_id = keep_text = pa.array([True] * n, pa.bool_())
    null_id = pa.scalar(None, pa.binary(16))
    arrays = [
        *base,
        pc.if_else(keep_id, ids, null_id),
        pc.if_else(keep_text, payload, pa.scalar(None, pa.string())),
    ]
    for values in trade_arrays:
        empty = pa.scalar(None, values.type)
        arrays.append(pc.if_else(keep_text, empty, values) if values.null_count < n else values)
    return pa.Table.from_arrays(
        [pc.cast(c, f.type) for c, f in zip(arrays, schema, strict=True)], schema=schema
    )


def _column(table: Any, name: str) -> list[Any]:
    import pyarrow as pa

    column = table.column(name)
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    elif pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    values: list[Any] = column.to_pylist()
    return values


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


def _derived_id_bytes(body: str) -> bytes:
    digest = bytearray(hashlib.sha1(_NAMESPACE + body.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return bytes(digest)


#: A character a JSON string must escape (or that the fast path leaves to the slow one).
_NOT_PLAIN = r"[^ !#-\[\]-~]"


def _trade_texts(table: Any) -> tuple[Any, Any]:
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
    )  # fmt: skip
    return payload, bodies


def _as_text(table: Any, name: str) -> Any:
    """One column of an archive table as Arrow strings, as the canonical text writes it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(name)
    if pa.types.is_dictionary(column.type):
        return column.cast(pa.string())
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return pc.cast(column, pa.string())


def _plain(table: Any) -> bool:
    """Whether every typed trade string is one the column-wise texts write as is (a
    dictionary column is judged by its dictionaries: a few values, not a row each)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in ("symbol", "taker_side", "position_effect", "trade_id"):
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            values = [chunk.dictionary for chunk in column.chunks]
        else:
            values = [pc.cast(column, pa.string())]
        if any(pc.any(pc.match_substring_regex(v, _NOT_PLAIN)).as_py() for v in values):
            return False
    return True


def canonical_texts(table: Any) -> list[str]:
    """The canonical text of every row of an archive table, built column-wise with Arrow.

    The same text :meth:`ArchivedRow.canonical` gives (the tests hold both to the ledger's
    hashes), many times faster: for verify and the export's read-back.
    """
    if not _plain(table):
        return [row.canonical() for row in rows_of(table)]
    return _canonical_column(table).to_pylist()  # type: ignore[no-any-return]


def _canonical_column(table: Any) -> Any:
    """:func:`canonical_texts` as an Arrow string array: no Python object per row but the
    SHA-1 of each content-derived id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    built, bodies = _trade_texts(table)
    payload = pc.coalesce(table.column("payload"), built)
    ids = table.column("event_id").combine_chunks()
    if ids.null_count:
        missing = pc.is_null(ids)
        if pc.any(pc.and_(missing, pc.is_null(bodies))).as_py():
            _text(None)
        derived = _derived_ids(pc.if_else(missing, bodies, pa.scalar(None, pa.string())))
        ids = pc.coalesce(ids, derived)
    text = partial(_as_text, table)
    return pc.binary_join_element_wise(
        text("position"), text("stream"), text("stream_version"), _uuid_texts(ids),
        text("event_type"), text("schema_version"), text("occurred_at"), text("recorded_at"),
        _uuid_texts(table.column("causation_id")), text("causation_position"),
        _uuid_texts(table.column("correlation_id")), payload, "|",
        null_handling="replace", null_replacement="",
    )  # fmt: skip


def chain_hashes(table: Any, previous: bytes) -> list[bytes]:
    """Every row's chain hash, from the hash before the table's first row: the ledger's one
    link (:func:`eventstore.canonical.chain_links`) over slices of the canonical texts' Arrow
    buffer, no Python string per row."""
    if not _plain(table):
        return chain_links(previous, [row.canonical().encode() for row in rows_of(table)])
    data, offsets = binary_slices(_canonical_column(table))
    return chain_links(previous, (data[start:end] for start, end in pairwise(offsets)))


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


def _text(body: str | None) -> str:
    """A derived id's payload text; an archived row with no stored id always has one."""
    if body is None:
        raise ArchiveError("an archived row has neither an event id nor a payload to derive it")
    return body
