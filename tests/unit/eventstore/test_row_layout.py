"""The JSON rows the reads render are decoded by place, all by the one column list."""

from __future__ import annotations

from eventstore import sql
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
