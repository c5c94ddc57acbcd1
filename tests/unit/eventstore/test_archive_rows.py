"""Property: any ledger row survives the archive's columnar form exactly (issue 18 item 2).

The Parquet form stores market trades as typed columns and recomputes their content-derived
ids and every hash; whatever the row (odd decimals, strings that need escaping, foreign ids,
payloads that are not trades), the file must give back the very canonical text the ledger
hashed, by both readers (row by row, and column-wise for verify).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates import events as ev
from eventstore.archive import _PARQUET_OPTIONS, _schema, _table, canonical_texts, rows_of
from eventstore.canonical import canonical_text, render_jsonb
from pipeline.ingest import market_event_ids

_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
_DECIMAL = st.one_of(
    st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e12"), places=8),
    st.integers(1, 10**15).map(Decimal),
    st.sampled_from([Decimal("1.50"), Decimal("0.001"), Decimal("1E+2"), Decimal("120")]),
)


@st.composite
def _trade_payload(draw: st.DrawFn) -> dict[str, object]:
    return {
        "type": "market.trade",
        "symbol": draw(st.sampled_from(["BTC_USDT", "ETH_USDT"]) | _TEXT),
        "price": str(draw(_DECIMAL)),
        "contracts": str(draw(_DECIMAL)),
        "taker_side": draw(st.sampled_from(["buy", "sell"]) | _TEXT),
        "position_effect": draw(st.sampled_from(["open", "close", "unchanged"])),
        "self_trade": draw(st.booleans()),
        "trade_id": draw(st.none() | _TEXT),
        "at_ms": draw(st.integers(0, 2**40)),
    }


@st.composite
def _rows(draw: st.DrawFn) -> list[tuple[object, ...]]:
    rows = []
    for position in range(1, draw(st.integers(1, 25)) + 1):
        kind = draw(st.sampled_from(["trade", "trade", "odd trade", "other"]))
        payload: dict[str, object]
        if kind == "other":
            payload = {"type": "alert.raised", "message": draw(_TEXT), "n": draw(st.integers())}
            event_type, event_id = "alert.raised", draw(st.uuids())
        else:
            payload = draw(_trade_payload())
            if kind == "odd trade":
                payload.pop(draw(st.sampled_from(sorted(payload))))
            event_type = "market.trade"
            derived = draw(st.booleans()) and kind == "trade"
            event_id = draw(st.uuids())
            if derived:
                try:
                    event = ev.decode(render_jsonb(payload))
                    event_id = market_event_ids([event])[0]
                except Exception:
                    pass
        cause = draw(st.none() | st.uuids())
        occurred = _EPOCH + timedelta(microseconds=draw(st.integers(0, 10**15)))
        rows.append(
            (
                position, f"s-{position % 3}", position, event_id, event_type, 1, occurred,
                occurred + timedelta(seconds=1), cause, None if cause is None else position - 1,
                draw(st.none() | st.uuids()), render_jsonb(payload), bytes(32),
            )
        )  # fmt: skip
    return rows


def _canonical(row: tuple[object, ...]) -> str:
    return canonical_text(
        position=row[0], stream=row[1], stream_version=row[2], event_id=row[3],
        event_type=row[4], schema_version=row[5], occurred_at=row[6], recorded_at=row[7],
        causation_id=row[8], causation_position=row[9], correlation_id=row[10],
        payload_text=row[11],
    )  # type: ignore[arg-type]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(rows=_rows())
def test_any_row_when_archived_and_read_back_then_canonical_text_is_identical(
    rows: list[tuple[object, ...]],
) -> None:
    buffer = io.BytesIO()
    pq.write_table(_table(rows), buffer, **_PARQUET_OPTIONS)  # type: ignore[arg-type]
    table = pq.read_table(io.BytesIO(buffer.getvalue()), schema=_schema())
    expected = [_canonical(row) for row in rows]
    assert [row.canonical() for row in rows_of(table)] == expected
    assert canonical_texts(table) == expected


def test_ingested_trades_when_archived_then_typed_with_ids_recomputed() -> None:
    trades = [
        ev.TradeTicked(at_ms=1_767_225_600_000 + n, symbol="BTC_USDT", price=Decimal("65000.5"),
                       contracts=Decimal(n + 1), taker_side="buy", position_effect="open")
        for n in range(5)
    ]  # fmt: skip
    rows = [
        (n + 1, "m", n + 1, event_id, "market.trade", 1, _EPOCH, _EPOCH, None, None, None,
         render_jsonb(msgspec.json.decode(ev.encode(trade))), bytes(32))
        for n, (trade, event_id) in enumerate(zip(trades, market_event_ids(trades), strict=True))
    ]  # fmt: skip
    table = _table(rows)
    assert table.column("payload").null_count == 5
    assert table.column("event_id").null_count == 5
