"""The archive's column-wise helpers: ids to and from text, and the export's CSV read.

Part of :mod:`eventstore.archive` (see there). Whole columns at a time with Arrow and
strided byte copies: no Python object per row but the SHA-1 of each content-derived id.
Pure functions, no I/O.
"""

from __future__ import annotations

import contextlib
import hashlib
from array import array as c_array
from typing import Any

from aggregates.envelope import CLAIRE_NAMESPACE
from eventstore.errors import ArchiveError

_NAMESPACE = CLAIRE_NAMESPACE.bytes

#: The columns of ``ledger.events`` an export reads, in the canonical text's order.
RAW_COLUMNS = (
    "position", "stream", "stream_version", "event_id", "event_type", "schema_version",
    "occurred_at", "recorded_at", "causation_id", "causation_position", "correlation_id",
    "payload",
)  # fmt: skip

#: uuid5's version and variant bits, applied to a whole column of digests at once.
_VERSION = bytes((b & 0x0F) | 0x50 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


def _derived_ids(bodies: Any) -> Any:
    """The content-derived id of every non-null body (uuid5 bytes, as
    ``eventstore.archive_columns._derived_id_bytes``) as an Arrow ``binary(16)`` array, null
    where the body is: the namespace put before every body by one Arrow join, one tight SHA-1
    loop over slices of that buffer; the digests cut to 16 bytes and given uuid5's bits by
    strided copies over all of them at once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(bodies, pa.ChunkedArray):
        bodies = bodies.combine_chunks()
    valid = pc.is_valid(bodies)
    present = bodies.filter(valid).cast(pa.binary())
    keyed = pc.binary_join_element_wise(pa.scalar(_NAMESPACE, pa.binary()), present, b"")
    data, offsets = binary_slices(keyed)
    sha1 = hashlib.sha1
    start = offsets[0]
    digests = []
    for end in offsets[1:]:
        digests.append(sha1(data[start:end]).digest())
        start = end
    count = len(digests)
    joined = b"".join(digests)
    ids = bytearray(16 * count)
    for k in range(16):
        ids[k::16] = joined[k::20]
    ids[6::16] = bytes(ids[6::16]).translate(_VERSION)
    ids[8::16] = bytes(ids[8::16]).translate(_VARIANT)
    array = pa.Array.from_buffers(pa.binary(16), count, [None, pa.py_buffer(ids)])
    return pc.replace_with_mask(pa.nulls(len(bodies), pa.binary(16)), valid, array)


def binary_slices(values: Any) -> tuple[bytes, Any]:
    """A string or binary Arrow array (no nulls) as its data bytes and its ``n + 1`` offsets
    into them: element ``i`` is ``data[offsets[i]:offsets[i + 1]]``, sliced in a loop with no
    Arrow scalar or Python object per element but the slice itself."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    n, first = len(values), values.offset
    if n == 0:
        return b"", c_array("i", [0])
    offsets = c_array("q" if pa.types.is_large_binary(values.type)
                      or pa.types.is_large_string(values.type) else "i")  # fmt: skip
    size = offsets.itemsize
    buffers = values.buffers()
    offsets.frombytes(buffers[1].to_pybytes()[size * first : size * (first + n + 1)])
    data = buffers[2].to_pybytes() if buffers[2] is not None else b""
    return data, offsets


#: Where each hex digit of a uuid's 32 lands in its 36-character text, and the dashes.
_UUID_DIGITS = [j for j in range(36) if j not in (8, 13, 18, 23)]


def _uuid_texts(ids: Any) -> Any:
    """A ``binary(16)`` column as uuid texts (``str(uuid.UUID(bytes=...))``), nulls kept:
    one hex conversion of the whole column, the dashes put in by strided copies."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    n = len(ids)
    if ids.null_count == n:
        return pa.nulls(n, pa.string())
    filled = pc.fill_null(ids, pa.scalar(bytes(16), pa.binary(16)))
    raw = filled.buffers()[1].to_pybytes()[filled.offset * 16 : (filled.offset + n) * 16]
    digits = raw.hex().encode()
    text = bytearray(b"-" * (36 * n))
    for k, j in enumerate(_UUID_DIGITS):
        text[j::36] = digits[k::32]
    offsets = pa.py_buffer(c_array("i", range(0, 36 * n + 1, 36)).tobytes())
    texts = pa.Array.from_buffers(pa.string(), n, [None, offsets, pa.py_buffer(text)])
    if ids.null_count:
        texts = pc.if_else(pc.is_valid(ids), texts, pa.scalar(None, pa.string()))
    return texts


#: The ``SELECT`` list an export reads with ``COPY .. (FORMAT csv)``: :data:`RAW_COLUMNS`,
#: ids as hex, times as microseconds since the epoch (what :func:`csv_table` parses).
EXPORT_SELECT = (
    "position, stream, stream_version, encode(uuid_send(event_id), 'hex'), event_type,"
    " schema_version, (extract(epoch FROM occurred_at) * 1000000)::bigint,"
    " (extract(epoch FROM recorded_at) * 1000000)::bigint,"
    " encode(uuid_send(causation_id), 'hex'), causation_position,"
    " encode(uuid_send(correlation_id), 'hex'), payload::text"
)


def _ids_from_hex(column: Any) -> Any:
    """A column of 32-digit hex texts (nulls kept) as ``binary(16)``: one ``bytes.fromhex``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(column)
    if column.null_count == n:
        return pa.nulls(n, pa.binary(16))
    filled = pc.fill_null(column, "0" * 32) if column.null_count else column
    lengths = pc.min_max(pc.utf8_length(filled)).as_py()
    if (lengths["min"], lengths["max"]) != (32, 32):
        raise ArchiveError("an id read from the ledger is not 32 hex digits")
    offsets = c_array("i")
    offsets.frombytes(filled.buffers()[1].to_pybytes()[4 * filled.offset :][: 4 * (n + 1)])
    start, end = offsets[0], offsets[-1]
    digits = filled.buffers()[2].to_pybytes()[start:end]
    ids = pa.Array.from_buffers(
        pa.binary(16), n, [None, pa.py_buffer(bytes.fromhex(digits.decode()))]
    )
    if column.null_count:
        ids = pc.if_else(pc.is_valid(column), ids, pa.scalar(None, pa.binary(16)))
    return ids


def csv_table(data: bytes) -> Any:
    """``COPY (SELECT`` :data:`EXPORT_SELECT` ``..) TO STDOUT (FORMAT csv, FORCE_QUOTE *)``
    output as a table of :data:`RAW_COLUMNS`; parsed column-wise by Arrow, no object per row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    names = list(RAW_COLUMNS)
    types = {
        "position": pa.int64(), "stream": pa.string(), "stream_version": pa.int64(),
        "event_id": pa.string(), "event_type": pa.string(), "schema_version": pa.int32(),
        "occurred_at": pa.int64(), "recorded_at": pa.int64(), "causation_id": pa.string(),
        "causation_position": pa.int64(), "correlation_id": pa.string(), "payload": pa.string(),
    }  # fmt: skip

    def parse(block_size: int, newlines_in_values: bool) -> Any:
        return csv.read_csv(
            pa.py_buffer(data),
            read_options=csv.ReadOptions(column_names=names, block_size=block_size),
            parse_options=csv.ParseOptions(newlines_in_values=newlines_in_values),
            convert_options=csv.ConvertOptions(
                column_types=types, null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )  # fmt: skip

    # Blocks of 1 MiB are parsed by Arrow's threads at once, which needs every newline to end
    # a row: true when the rows parsed are as many as the newlines (jsonb's text has none;
    # any other column might). If not, one block parsed in order, newlines allowed in values.
    table = None
    with contextlib.suppress(pa.ArrowInvalid):
        table = parse(1 << 20, False)
    if table is None or table.num_rows != data.count(b"\n"):
        table = parse(1 << 26, True)
    stamp = pa.timestamp("us", tz="UTC")
    columns = {name: table.column(name) for name in names}
    for name in ("event_id", "causation_id", "correlation_id"):
        columns[name] = _ids_from_hex(columns[name])
    for name in ("occurred_at", "recorded_at"):
        columns[name] = pc.cast(columns[name], stamp)
    return pa.Table.from_arrays([columns[name] for name in names], names=names)
