"""The envelope's field list is written once (aggregates.envelope.Envelope); every other
spelling (the JSON rows the reads decode by place, the wire form, SQL, the canonical text) is
held to it here."""

from __future__ import annotations

import inspect
import re

from adapters.bus import _WireEvent
from aggregates.envelope import ENVELOPE_FIELDS, RecordedEvent
from eventstore import sql
from eventstore.canonical import CANONICAL_SQL, canonical_line, canonical_text
from eventstore.chain import _Link
from eventstore.reader import _Envelope, _RawRow, _Row


def test_reader_rows_when_decoded_by_place_then_fields_follow_the_sql_columns() -> None:
    assert _Envelope.__struct_fields__ == sql.ROW_COLUMNS
    assert _Row.__struct_fields__ == (*sql.ROW_COLUMNS, "current", "event")
    assert _RawRow.__struct_fields__ == (*sql.ROW_COLUMNS, "current", "event")


def test_chain_links_when_decoded_by_place_then_fields_follow_the_sql_columns() -> None:
    assert _Link.__struct_fields__ == (*sql.ROW_COLUMNS, "current", "payload", "event_id")


def test_read_queries_when_rendered_then_name_the_columns_in_that_order() -> None:
    columns = ", ".join(sql.ROW_COLUMNS)
    for query in (sql.READ_ALL_JSON, sql.READ_ALL_JSON_WITH_IDS, sql.READ_STREAM_JSON):
        assert f"json_build_array({columns}, coalesce(" in query
    assert "payload, event_id)::text" in sql.READ_ALL_JSON_WITH_IDS
    assert "payload)::text" in sql.READ_ALL_JSON


def test_envelope_spellings_when_compared_then_all_follow_the_one_field_list() -> None:
    """Every second spelling of the envelope (a wire format, a signature, SQL) against
    ENVELOPE_FIELDS: a field added to, renamed in or moved within Envelope fails here."""
    assert RecordedEvent.__struct_fields__ == (*ENVELOPE_FIELDS, "event", "hash")
    assert _WireEvent.__struct_fields__ == RecordedEvent.__struct_fields__
    assert tuple(name for name in ENVELOPE_FIELDS if name != "event_id") == sql.ROW_COLUMNS
    assert sql.COLUMNS.split(", ") == [*ENVELOPE_FIELDS, "payload", "hash"]
    assert set(sql.COPY_COLUMNS) == {*ENVELOPE_FIELDS, "payload", "hash"}
    keywords = tuple(inspect.signature(canonical_text).parameters)
    assert keywords == (*ENVELOPE_FIELDS, "payload_text")
    positional = tuple(inspect.signature(canonical_line).parameters)
    assert [name.replace("_us", "_at") for name in positional] == list(keywords)
    # The auditor's SQL names the same columns in the same order.
    named = re.findall(r"\b(" + "|".join(ENVELOPE_FIELDS) + r")\b", CANONICAL_SQL)
    assert tuple(dict.fromkeys(named)) == ENVELOPE_FIELDS
