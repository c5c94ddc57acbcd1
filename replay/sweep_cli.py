"""The ``replay --sweep`` command: options, the plain sweep, walk-forward, output and report.

Walk-forward (``--train DAYS --test DAYS``) splits ``--from .. --to`` into folds: the grid is
swept over a training span, the best combination by ``--sort-by`` is chosen there, and that
combination alone is measured over the following test span, which it was not chosen on. Folds
move forward by the test span; the last test span ends at ``--to`` (or where the recorded data
does). Each span is measured as ``--what-if`` over it alone. The out-of-sample totals (the
test spans only) are the honest figure; in-sample bests are shown beside them to see how much
was luck of the fit.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from markupsafe import Markup

from adapters.process import CHECK_FAILED, OK, UsageError
from replay.render import render
from replay.sweep import (
    MAX_COMBINATIONS,
    METRICS,
    Grid,
    Source,
    Task,
    check_cluster,
    check_grid,
    cluster_executor,
    describe,
    local_executor,
    metric_value,
    parse_grid,
    ranked,
    run_tasks,
)
from replay.window import Window

_DAY_MS = 86_400_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sweep's options, in one block of ``replay``'s parser.

    ``--jobs`` is generic (worker processes for any parallel mode of ``replay``).
    """
    group = parser.add_argument_group("parameter sweeps")
    group.add_argument(
        "--sweep", nargs="+", metavar="KEY=VALUES",
        help="every combination of KEY=V1,V2,... and KEY=START:STOP:STEP (STOP included) "
        "through the what-if simulation, in parallel; a table sorted by --sort-by",
    )  # fmt: skip
    group.add_argument(
        "--sort-by", default="pnl", choices=sorted(METRICS),
        help="the metric that ranks combinations (default pnl; fees, drawdown, halts: lowest)",
    )  # fmt: skip
    group.add_argument(
        "--train", metavar="DAYS", help="walk-forward: choose on DAYS (may be fractional)..."
    )
    group.add_argument("--test", metavar="DAYS", help="...then measure on the next DAYS")
    group.add_argument(
        "--max-combinations", type=int, default=MAX_COMBINATIONS, metavar="N",
        help=f"refuse a grid of more combinations (default {MAX_COMBINATIONS})",
    )  # fmt: skip
    group.add_argument(
        "--jobs", type=int, metavar="N", help="worker processes (default: the number of CPUs)"
    )
    group.add_argument(
        "--cluster", metavar="ADDRESS", help="run on this Dask cluster, e.g. tcp://host:8786"
    )
    group.add_argument(
        "--cluster-timeout", type=float, default=10.0, metavar="SECONDS",
        help="how long to try reaching --cluster (default 10)",
    )  # fmt: skip


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


def _days(text: str, option: str) -> int:
    try:
        days = Decimal(text)
    except InvalidOperation:
        days = Decimal("NaN")
    if not days.is_finite() or days <= 0:
        raise UsageError(f"{option} {text!r}: expected a positive number of days, e.g. 7 or 0.5")
    ms = int(days * _DAY_MS)
    if ms < 1:
        raise UsageError(f"{option} {text!r}: shorter than a millisecond")
    return ms


def parse_plan(args: argparse.Namespace) -> Plan | None:
    """Validate the sweep options before any I/O; None when there is no ``--sweep``."""
    walk = (args.train, args.test)
    if args.sweep is None:
        if any(value is not None for value in walk) or args.cluster is not None:
            raise UsageError("--train, --test and --cluster need --sweep")
        return None
    if args.what_if is not None:
        raise UsageError("--sweep and --what-if cannot be combined (a sweep is many what-ifs)")
    if args.verify:
        raise UsageError("--sweep and --verify cannot be combined: run them separately")
    if (args.train is None) != (args.test is None):
        raise UsageError("walk-forward needs both --train DAYS and --test DAYS")
    if args.train is not None and args.end is None:
        raise UsageError("walk-forward needs --to: the folds are cut from --from .. --to")
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    check_cluster(args.cluster, args.cluster_timeout)
    plan = Plan(
        grid=parse_grid(args.sweep, max_combinations=args.max_combinations),
        sort_by=args.sort_by,
        jobs=jobs,
        cluster=args.cluster,
        cluster_timeout=args.cluster_timeout,
    )
    if args.train is not None:
        plan.train_ms = _days(args.train, "--train")
        plan.test_ms = _days(args.test, "--test")
    return plan


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


async def run_sweep(
    args: argparse.Namespace, store: Any, window: Window, url: str, out: Any
) -> int:
    """``replay --sweep`` after the window is resolved; returns the exit code."""
    plan: Plan = args.sweep_plan
    check_grid(plan.grid, await _configurations(store, window.last))
    source = Source(url, window.last)
    walk: WalkForward | None = None
    if plan.train_ms is None:
        [result] = await sweep_windows(plan, source, [window], args.symbol)
        for line in result.to_json() if out.json else ():
            out.emit(line, "")
        out.text(result.render())
        failed = len(result.failed)
        section = sweep_section(result)
    else:
        folds = await _folds(store, window, plan)
        walk = await walk_forward(plan, source, folds, args.symbol)
        for line in walk.to_json() if out.json else ():
            out.emit(line, "")
        out.text(walk.render())
        failed = sum(1 for fold in walk.folds if fold.error is not None)
        section = walk_section(walk)
    if args.report:
        await _write_report(args, store, window, url, section, out)
    return CHECK_FAILED if failed else OK


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


async def _write_report(
    args: argparse.Namespace, store: Any, window: Window, url: str, section: str, out: Any
) -> None:
    from pathlib import Path

    from replay.report import ReportBuilder
    from replay.session import Output, replay_pass

    report = ReportBuilder()
    result = await replay_pass(
        store,
        window,
        Output(io.StringIO(), json=False),
        symbol=args.symbol,
        verify=False,
        database_url=url,
        quiet=True,
        sinks=(report.add,),
    )
    html = report.render(window, result, None, sections=(section,))
    path = Path(args.report)
    try:
        await asyncio.to_thread(path.write_text, html, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--report {path}: cannot write: {error}") from error
    out.emit({"type": "report", "path": str(path)}, f"report written to {path}")
