"""docs/SWEEPS.md "Output" (--report's heatmap) and the per-combination figures judged against an
independent computation: the recorded parameters swept alone must reproduce the log's own walk
(its summary and its per-day lines), since the session was recorded while keeping up."""

from __future__ import annotations

import html
import re
from decimal import Decimal
from pathlib import Path

import pytest

from tests.blackbox_attack.sweeps.sweep_helpers import FROM, TO, replay, replay_in_process

pytestmark = pytest.mark.db

CENT = Decimal("0.01")


def sweep_report(ledger: str, tmp_path: Path, *grid: str) -> tuple[list[dict], str]:
    path = tmp_path / "sweep.html"
    result = replay(
        "--from", FROM, "--to", TO, "--database-url", ledger, "--json", "--jobs", "1",
        "--report", str(path), "--sweep", *grid,
    )  # fmt: skip
    assert result.code == 0, result.err[-1500:]
    text = path.read_text()
    assert "<script" not in text
    return result.lines(), text


def heatmap(text: str) -> dict[tuple[str, str], str] | None:
    found = re.search(r'<table class="heatmap">(.*?)</table>', text, re.S)
    if found is None:
        return None
    rows = re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)
    columns = [html.unescape(c) for c in re.findall(r"<th>(.*?)</th>", rows[0])[1:]]
    cells = {}
    for row in rows[1:]:
        (name,) = re.findall(r"<th>(.*?)</th>", row)
        values = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert len(values) == len(columns)
        for column, value in zip(columns, values, strict=True):
            cells[(html.unescape(name), column)] = html.unescape(value)
    return cells


@pytest.mark.parametrize(
    "grid",
    [
        ("STOP_LOSS_PCT=1,3", "MAX_POSITION_PCT=5,20,40"),
        ("LOOKBACK_MINUTES=3", "STOP_LOSS_PCT=1,3", "MAX_POSITION_PCT=5,20,40"),
    ],
    ids=["two_vary", "two_vary_one_fixed"],
)
def test_report_when_exactly_two_parameters_vary_then_its_heatmap_holds_each_combinations_pnl(
    ledger: str, tmp_path: Path, grid: tuple[str, ...]
) -> None:
    lines, text = sweep_report(ledger, tmp_path, *grid)
    assert "Parameter sweep" in text
    cells = heatmap(text)
    assert cells is not None
    results = [line for line in lines if line["type"] == "sweep_result"]
    assert len(cells) == len(results) == 6
    for result in results:
        p = result["parameters"]
        key = (p["STOP_LOSS_PCT"], p["MAX_POSITION_PCT"])
        assert Decimal(cells[key]) == Decimal(result["figures"]["pnl"])


@pytest.mark.parametrize(
    "grid",
    [
        ("STOP_LOSS_PCT=1,3",),
        ("STOP_LOSS_PCT=1,3", "MAX_POSITION_PCT=5,40", "LOOKBACK_MINUTES=3,5"),
    ],
    ids=["one_varies", "three_vary"],
)
def test_report_when_not_exactly_two_parameters_vary_then_it_has_the_table_but_no_heatmap(
    ledger: str, tmp_path: Path, grid: tuple[str, ...]
) -> None:
    _, text = sweep_report(ledger, tmp_path, *grid)
    assert "Parameter sweep" in text
    assert heatmap(text) is None


def test_sweep_when_given_the_recorded_parameters_then_figures_equal_the_logs_own_walk(
    ledger: str,
) -> None:
    # the session was recorded with STOP_LOSS_PCT=6 and MAX_POSITION_PCT=40
    swept = replay(
        "--from", FROM, "--to", TO, "--database-url", ledger, "--json", "--jobs", "1",
        "--sweep", "STOP_LOSS_PCT=6", "MAX_POSITION_PCT=40",
    )  # fmt: skip
    walked = replay_in_process("--from", FROM, "--to", TO, "--database-url", ledger, "--json", "-q")
    assert swept.code == 0 and walked.code == 0
    (figures,) = [line["figures"] for line in swept.of("sweep_result")]
    (summary,) = walked.of("summary")
    days = walked.of("day")
    assert len(days) == 2  # the session crosses UTC midnight
    assert Decimal(figures["pnl"]) == Decimal(summary["pnl"]).quantize(CENT)
    assert Decimal(figures["end_equity"]) == Decimal(summary["end_equity"]).quantize(CENT)
    fees = sum(Decimal(d["fees"]) for d in days)
    assert Decimal(figures["fees"]) == fees.quantize(CENT)
    realised = sum(Decimal(d["realised_pnl"]) for d in days)
    assert Decimal(figures["realised_pnl"]) == realised.quantize(CENT)
    worst = max(Decimal(d["max_drawdown_pct"]) for d in days)
    assert Decimal(figures["max_drawdown_pct"]) == worst
    assert figures["fills"] == sum(d["fills"] for d in days)
    assert figures["orders"] == sum(d["orders"] for d in days)
    assert figures["trades"] == summary["trades"]
    assert figures["signals"] == sum(d["signals"] for d in days)
    assert figures["halts"] == sum(d["halts"] for d in days)
    verdicts = {k.removeprefix("verdicts "): v for k, v in figures.items() if "verdicts " in k}
    assert verdicts == summary["verdicts_by_layer"]
