"""A validated sweep plan run over a window: one sweep, or walk-forward folds; the results.

The plan comes from ``replay --sweep`` (:mod:`cli.sweep` parses and checks the options); the
combinations run as in :mod:`replay.sweep`. This module batches them over windows, ranks them,
and renders the results as text, JSON lines and report sections.

Walk-forward (``--train DAYS --test DAYS``) splits ``--from .. --to`` into folds: the grid is
swept over a training span, the best combination by ``--sort-by`` is chosen there, and that
combination alone is measured over the following test span, which it was not chosen on. Folds
move forward by the test span; the last test span ends at ``--to`` (or where the recorded data
does). Each span is measured as ``--what-if`` over it alone. The out-of-sample totals (the
test spans only) are the honest figure; in-sample bests are shown beside them to see how much
was luck of the fit.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from adapters.process import UsageError
from replay.render import render
from replay.sweep import (
    METRICS,
    Grid,
    Source,
    Task,
    check_grid,
    cluster_executor,
    describe,
    local_executor,
    metric_value,
    ranked,
    run_tasks,
)
from replay.window import Window


@dataclass(slots=True)
class Plan:
    """The validated sweep options."""

    grid: Grid
    sort_by: str
    jobs: int
    cluster: str | None
    cluster_timeout: float
    train_ms: int | None = None
    test_ms: int | None = None


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class SweepResult:
    """One sweep over one window: every combination with its result (figures or error)."""

    window: Window
    sort_by: str
    grid: Grid
    rows: list[tuple[dict[str, str], dict[str, Any]]]

    @property
    def failed(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [(combo, result) for combo, result in self.rows if "figures" not in result]

    def best_first(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return ranked(self.rows, self.sort_by)

    def to_json(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for rank, (combo, result) in enumerate(self.best_first(), start=1):
            lines.append(
                {
                    "type": "sweep_result",
                    "rank": rank,
                    "parameters": combo,
                    "figures": result["figures"],
                }
            )
        for combo, result in self.failed:
            lines.append({"type": "sweep_failed", "parameters": combo, "error": result["error"]})
        best = self.best_first()
        lines.append(
            {
                "type": "sweep",
                "from_position": self.window.first,
                "to_position": self.window.last,
                "combinations": len(self.rows),
                "failed": len(self.failed),
                "sort_by": self.sort_by,
                "best": best[0][0] if best else None,
            }
        )
        return lines

    def render(self) -> str:
        keys = self.grid.keys
        best = self.best_first()
        lines = [
            f"sweep: {len(self.rows)} combinations over positions {self.window.first}.."
            f"{self.window.last}, sorted by {self.sort_by} "
            f"({'highest' if METRICS[self.sort_by] else 'lowest'} first); "
            f"{len(self.failed)} failed"
        ]
        widths = [max(len(k), *(len(c[k]) for c, _ in self.rows)) for k in keys]
        head = "  ".join(f"{k:<{w}}" for k, w in zip(keys, widths, strict=True))
        lines.append(
            f"  {'rank':>4}  {head}  {'pnl':>12} {'fees':>10} {'max_dd_%':>8} {'trades':>6} "
            f"{'halts':>5}  verdicts"
        )
        for rank, (combo, result) in enumerate(best, start=1):
            f = result["figures"]
            cells = "  ".join(f"{combo[k]:<{w}}" for k, w in zip(keys, widths, strict=True))
            verdicts = ", ".join(
                f"{name[len('verdicts ') :]} {count}"
                for name, count in f.items()
                if name.startswith("verdicts ")
            )
            lines.append(
                f"  {rank:>4}  {cells}  {f['pnl']:>12} {f['fees']:>10} "
                f"{f['max_drawdown_pct']:>8} {f['trades']:>6} {f['halts']:>5}  {verdicts or '-'}"
            )
        for combo, result in self.failed:
            lines.append(f"  FAILED {describe(combo)}: {result['error']}")
        return "\n".join(lines)


@dataclass(slots=True)
class Fold:
    train: Window
    test: Window
    sweep: SweepResult | None = None
    chosen: dict[str, str] | None = None
    out_of_sample: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        best = self.sweep.best_first() if self.sweep is not None else []
        return {
            "type": "walk_forward_fold",
            "train": _span(self.train),
            "test": _span(self.test),
            "chosen": self.chosen,
            "in_sample": best[0][1]["figures"] if best else None,
            "out_of_sample": self.out_of_sample,
            "error": self.error,
        }


@dataclass(slots=True)
class WalkForward:
    sort_by: str
    folds: list[Fold] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        """Out-of-sample totals over the test spans: sums, and the worst drawdown."""
        measured = [f.out_of_sample for f in self.folds if f.out_of_sample is not None]
        total: dict[str, Any] = {"folds": len(self.folds), "measured": len(measured)}
        for name in ("pnl", "realised_pnl", "fees"):
            total[name] = str(sum((Decimal(m[name]) for m in measured), Decimal(0)))
        for name in ("trades", "halts"):
            total[name] = sum(int(m[name]) for m in measured)
        total["max_drawdown_pct"] = str(
            max((Decimal(m["max_drawdown_pct"]) for m in measured), default=Decimal(0))
        )
        return total

    def to_json(self) -> list[dict[str, Any]]:
        lines = [fold.to_json() for fold in self.folds]
        lines.append({"type": "walk_forward", "sort_by": self.sort_by, **self.totals()})
        return lines

    def render(self) -> str:
        lines = [f"walk-forward: {len(self.folds)} folds, chosen by {self.sort_by} in-sample"]
        for number, fold in enumerate(self.folds, start=1):
            lines.append(f"  fold {number}: train {_when(fold.train)}, test {_when(fold.test)}")
            if fold.error is not None:
                lines.append(f"    FAILED: {fold.error}")
                continue
            best = fold.sweep.best_first() if fold.sweep is not None else []
            inside = best[0][1]["figures"] if best else {}
            out = fold.out_of_sample or {}
            lines.append(f"    chosen {describe(fold.chosen or {})}")
            lines.append(
                f"    in-sample pnl {inside.get('pnl')}, out-of-sample pnl {out.get('pnl')} "
                f"(fees {out.get('fees')}, max drawdown {out.get('max_drawdown_pct')} %, "
                f"trades {out.get('trades')}, halts {out.get('halts')})"
            )
        t = self.totals()
        lines.append(
            f"  out-of-sample total: pnl {t['pnl']}, fees {t['fees']}, worst drawdown "
            f"{t['max_drawdown_pct']} %, trades {t['trades']}, halts {t['halts']} "
            f"({t['measured']} of {t['folds']} folds measured)"
        )
        return "\n".join(lines)


def _span(window: Window) -> dict[str, Any]:
    return {
        "from": window.start.isoformat(),
        "to": window.end.isoformat() if window.end else None,
        "first_position": window.first,
        "last_position": window.last,
    }


def _when(window: Window) -> str:
    until = window.end.isoformat() if window.end else "end"
    return f"{window.start.isoformat()} .. {until} (positions {window.first}..{window.last})"


# --------------------------------------------------------------------------- running


async def _configurations(store: Any, last: int) -> list[dict[str, str]]:
    from aggregates.events import ConfigActivated

    found = []
    async for fact in store.read_stream("config"):
        if fact.position > last:
            break
        if isinstance(fact.event, ConfigActivated):
            found.append(dict(fact.event.parameters))
    return found


def _executor_factory(plan: Plan) -> Any:
    if plan.cluster is not None:
        address, timeout = plan.cluster, plan.cluster_timeout
        return lambda: cluster_executor(address, timeout=timeout)
    jobs = plan.jobs
    return lambda: local_executor(jobs)


async def sweep_windows(
    plan: Plan,
    source: Source,
    windows: Sequence[Window],
    symbol: str | None,
    *,
    executor: Any = None,
) -> list[SweepResult]:
    """Sweep the whole grid over each window in one batch of tasks."""
    combinations = plan.grid.combinations()
    tasks: list[Task] = []
    for window in windows:
        for combo in combinations:
            tasks.append(Task(len(tasks), tuple(combo.items()), window.first, window.last, symbol))
    factory = executor if executor is not None else _executor_factory(plan)
    results = await asyncio.to_thread(run_tasks, factory, source, tasks)
    out = []
    for number, window in enumerate(windows):
        base = number * len(combinations)
        rows = [(combo, results[base + i]) for i, combo in enumerate(combinations)]
        out.append(SweepResult(window, plan.sort_by, plan.grid, rows))
    return out


async def _folds(store: Any, window: Window, plan: Plan) -> list[Fold]:
    """Folds of ``--train`` then ``--test``, moving on by ``--test``, until the window's end.

    The last test span ends at the window's end (shorter than ``--test`` when the window is not
    a whole number of them), so the test spans cover the window after the first training span.
    A test span that would hold no event of the window (``--to`` past the recorded data) is not
    made: the folds stop where the data does.
    """
    from replay.window import resolve_window

    assert plan.train_ms is not None and plan.test_ms is not None and window.end is not None
    train, test = timedelta(milliseconds=plan.train_ms), timedelta(milliseconds=plan.test_ms)
    folds = []
    start: datetime = window.start
    while start + train < window.end:
        middle, stop = start + train, min(start + train + test, window.end)
        first = await store.position_at(middle)
        if first is None or first > window.last:
            break  # nothing recorded from here to the window's end
        spans = []
        for a, b, name in ((start, middle, "train"), (middle, stop, "test")):
            try:
                spans.append(await resolve_window(store, a, b))
            except UsageError as error:
                raise UsageError(f"walk-forward {name} span: {error}") from error
        folds.append(Fold(train=spans[0], test=spans[1]))
        start += test
    if not folds:
        raise UsageError(
            f"walk-forward: the window {window.start.isoformat()} .. {window.end.isoformat()} "
            "is shorter than one --train followed by recorded events to test on"
        )
    return folds


async def run_plan(
    plan: Plan, store: Any, window: Window, url: str, symbol: str | None
) -> SweepResult | WalkForward:
    """The plan over ``window``: one sweep, or (``--train``/``--test``) walk-forward folds.

    The grid is first checked against every configuration recorded up to the window's end.
    """
    check_grid(plan.grid, await _configurations(store, window.last))
    source = Source(url, window.last)
    if plan.train_ms is None:
        [result] = await sweep_windows(plan, source, [window], symbol)
        return result
    folds = await _folds(store, window, plan)
    return await walk_forward(plan, source, folds, symbol)


async def walk_forward(
    plan: Plan, source: Source, folds: list[Fold], symbol: str | None, *, executor: Any = None
) -> WalkForward:
    """Sweep every training span, then measure each fold's best over its test span."""
    sweeps = await sweep_windows(
        plan, source, [fold.train for fold in folds], symbol, executor=executor
    )
    tasks: list[Task] = []
    for fold, sweep in zip(folds, sweeps, strict=True):
        fold.sweep = sweep
        best = sweep.best_first()
        if not best:
            fold.error = "every combination failed on the training span"
            continue
        fold.chosen = best[0][0]
        tasks.append(
            Task(len(tasks), tuple(fold.chosen.items()), fold.test.first, fold.test.last, symbol)
        )
    if tasks:
        factory = executor if executor is not None else _executor_factory(plan)
        results = await asyncio.to_thread(run_tasks, factory, source, tasks)
        measured = iter(sorted(results.items()))
        for fold in folds:
            if fold.chosen is None:
                continue
            _, result = next(measured)
            if "figures" in result:
                fold.out_of_sample = result["figures"]
            else:
                fold.error = f"the test span failed: {result['error']}"
    return WalkForward(plan.sort_by, folds)


# --------------------------------------------------------------------------- report


def sweep_section(result: SweepResult) -> str:
    """The report's sweep section: the table, and a heatmap when exactly two parameters vary."""
    maps = heatmap(result) if len(result.grid.varying) == 2 else None
    return render("section.html.j2", title="Parameter sweep", text=result.render(), heatmap=maps)


def walk_section(walk: WalkForward) -> str:
    return render("section.html.j2", title="Walk-forward", text=walk.render(), heatmap=None)


def heatmap(result: SweepResult) -> Markup:
    """A table coloured from worst (red) to best (green) by the sort metric."""
    metric = result.sort_by
    row_key, col_key = result.grid.varying
    values = dict(zip(result.grid.keys, result.grid.values, strict=True))
    cells: dict[tuple[str, str], Decimal | None] = {}
    for combo, res in result.rows:
        key = (combo[row_key], combo[col_key])
        if "figures" in res:
            cells[key] = metric_value(res["figures"], metric)
        else:
            cells[key] = None
    known = [v for v in cells.values() if v is not None]
    low, high = (min(known), max(known)) if known else (Decimal(0), Decimal(0))
    better_high = METRICS[metric]

    def colour(value: Decimal | None) -> str:
        if value is None:
            return "#ccc"
        share = float((value - low) / (high - low)) if high > low else 1.0
        if not better_high:
            share = 1.0 - share
        red, green = int(220 * (1 - share)) + 35, int(180 * share) + 60
        return f"rgb({red},{green},80)"

    def cell(r: str, c: str) -> dict[str, str]:
        value = cells.get((r, c))
        return {"colour": colour(value), "text": "failed" if value is None else str(value)}

    rows = [{"label": r, "cells": [cell(r, c) for c in values[col_key]]} for r in values[row_key]]
    return render(
        "heatmap.html.j2",
        metric=metric,
        row_key=row_key,
        col_key=col_key,
        columns=values[col_key],
        rows=rows,
    )


async def sweep_report(
    store: Any, window: Window, url: str, section: str, *, symbol: str | None
) -> str:
    """The audit report's HTML: the window replayed (quietly), with the sweep ``section``."""
    from replay.report import ReportBuilder
    from replay.session import Output, replay_pass

    report = ReportBuilder()
    result = await replay_pass(
        store,
        window,
        Output(io.StringIO(), json=False),
        symbol=symbol,
        verify=False,
        database_url=url,
        quiet=True,
        sinks=(report.add,),
    )
    return report.render(window, result, None, sections=(section,))
