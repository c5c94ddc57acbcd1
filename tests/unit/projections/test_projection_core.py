"""The pure side of projections: one fold, any batching, the same rows; rows keyed as declared."""

from __future__ import annotations

import asyncio
import itertools
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.events import ClockTicked
from aggregates.machine import record_all
from projections import ALL_PROJECTIONS, fold
from projections.core import Fanout, Lazy, Pending, Runner, Table
from projections.projector import read_ahead
from projections.status import PositionLine, ProjectionLine, StatusReport
from tests.integration.projections.projection_helpers import with_acceptances
from tests.unit.strategies import drive, market_sequences


def _rows_after(facts, cuts: list[int], *, one_by_one: bool = True) -> dict[str, list[tuple]]:
    """Fold with a flush (rows collected, pending cleared) at every cut; last row per key wins."""
    runners = [Runner(p, 0) for p in ALL_PROJECTIONS]
    fanout = Fanout(runners)
    tables: dict[str, dict] = {}
    bounds = sorted({0, len(facts), *(c for c in cuts if c < len(facts))})
    for start, end in itertools.pairwise(bounds):
        if one_by_one:
            for fact in facts[start:end]:
                fanout.apply(fact)
        else:
            fanout.apply_all(facts[start:end])
        fanout.sync()
        for runner in runners:
            for table, rows in runner.pending.batches():
                target = tables.setdefault(table.name, {})
                for row in rows:
                    target[
                        (table.key_of(row), len(target)) if table.append_only else table.key_of(row)
                    ] = row
            runner.flushed()
    return {name: sorted(rows.values(), key=repr) for name, rows in tables.items()}


@settings(max_examples=40, deadline=None)
@given(items=market_sequences(min_size=10, max_size=150), cuts=st.lists(st.integers(1, 300)))
def test_fold_when_split_into_any_batches_then_rows_and_state_equal_one_pass(items, cuts) -> None:
    facts = with_acceptances(drive(items).facts)
    facts = record_all([f.event for f in facts])
    assert _rows_after(facts, cuts) == _rows_after(facts, [], one_by_one=False)
    for projection in ALL_PROJECTIONS:
        if projection.name == "portfolio":
            half = len(facts) // 2
            resumed = fold(projection, facts[half:], fold(projection, facts[:half]))
            assert resumed == fold(projection, facts)


class _Log:
    """A stand-in event log: ``read_all`` over a list of facts, failing after ``fail_after``."""

    def __init__(self, facts, fail_after: int | None = None) -> None:
        self.facts = facts
        self.fail_after = fail_after

    async def read_all(self, after: int = 0, *, batch_size: int = 2000):
        for count, fact in enumerate(f for f in self.facts if f.position > after):
            if count == self.fail_after:
                raise ConnectionError("lost the ledger")
            if count % batch_size == 0:
                await asyncio.sleep(0)  # a fetch
            yield fact


@given(size=st.integers(1, 40), after=st.integers(0, 60))
async def test_read_ahead_when_reading_in_batches_then_every_fact_once_in_order(
    size, after
) -> None:
    facts = record_all([ClockTicked(at_ms=1_767_225_600_000 + i) for i in range(50)])
    got = [batch async for batch in read_ahead(_Log(facts), after, size)]
    assert all(0 < len(batch) <= size for batch in got)
    assert [f.position for batch in got for f in batch] == [
        f.position for f in facts if f.position > after
    ]


async def test_read_ahead_when_the_log_fails_then_the_reader_sees_the_failure() -> None:
    facts = record_all([ClockTicked(at_ms=1_767_225_600_000 + i) for i in range(50)])
    got = []
    with pytest.raises(ConnectionError, match="lost the ledger"):
        async for batch in read_ahead(_Log(facts, fail_after=23), 0, 10):
            got.extend(batch)
    assert [f.position for f in got] == [f.position for f in facts[:20]]


def test_table_when_key_is_not_a_column_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="key columns"):
        Table(name="t", columns=("a",), key=("b",), append_only=False)


def test_pending_when_lazy_row_makes_another_key_then_flush_refuses() -> None:
    table = Table(name="t", columns=("k", "v"), key=("k",), append_only=False)
    pending = Pending([table])
    pending.add("t", Lazy(("a",), lambda: ("b", 1)))
    with pytest.raises(ValueError, match="lazy row"):
        list(pending.batches())


def test_pending_when_a_key_is_written_twice_then_only_the_last_row_remains() -> None:
    table = Table(name="t", columns=("k", "v"), key=("k",), append_only=False)
    pending = Pending([table])
    pending.add("t", ("a", 1))
    pending.add("t", Lazy(("a",), lambda: ("a", 2)))
    pending.add("t", ("b", 3))
    assert [rows for _, rows in pending.batches()] == [[("a", 2), ("b", 3)]]


def test_status_render_when_positions_are_open_then_it_shows_them_and_the_drawdown() -> None:
    report = StatusReport(
        positions=(
            PositionLine(
                "BTC_USDT",
                "long",
                Decimal(10),
                Decimal(50000),
                Decimal(50100),
                Decimal("50.1"),
                Decimal("0.1"),
                Decimal(0),
            ),
        ),
        equity=Decimal("10000.1"),
        cash=Decimal(10000),
        gross_notional=Decimal("50.1"),
        exposure_ratio=Decimal("0.00501"),
        day=date(2026, 1, 1),
        day_start_equity=Decimal(10000),
        day_peak_equity=Decimal(10010),
        drawdown=Decimal("0.000989"),
        max_drawdown=Decimal("0.001"),
        trading_state="HALTED",
        trading_state_reason="daily_drawdown",
        trading_state_since=None,
        halts=1,
        projections=(ProjectionLine("portfolio", 7, 1, 0, None),),
    )
    text = report.render()
    assert "trading state: HALTED (daily_drawdown" in text
    assert "BTC_USDT" in text and "exposure: 0.50% of equity" in text
    assert "drawdown 0.10%" in text
