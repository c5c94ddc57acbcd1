"""``replay --sweep``: its options, their checks before any I/O, and the results printed.

A sweep runs every combination of a parameter grid through the what-if simulation
(:mod:`replay.sweep`); with ``--train DAYS --test DAYS`` it walks forward over folds
(:mod:`replay.sweep_run`). Exit 1 when a combination or a fold failed (docs/SWEEPS.md).
"""

from __future__ import annotations

import argparse
import os
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.process import CHECK_FAILED, OK, UsageError
from replay.sweep import MAX_COMBINATIONS, METRICS, check_cluster, parse_grid
from replay.sweep_run import (
    Plan,
    SweepResult,
    WalkForward,
    run_plan,
    sweep_section,
    walk_section,
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


async def run_sweep(
    plan: Plan, store: Any, window: Window, url: str, out: Any, symbol: str | None
) -> tuple[int, str]:
    """``replay --sweep`` after the window is resolved: the exit code and the report section."""
    outcome: SweepResult | WalkForward = await run_plan(plan, store, window, url, symbol)
    for line in outcome.to_json() if out.json else ():
        out.emit(line, "")
    out.text(outcome.render())
    if isinstance(outcome, SweepResult):
        failed = len(outcome.failed)
        section = sweep_section(outcome)
    else:
        failed = sum(1 for fold in outcome.folds if fold.error is not None)
        section = walk_section(outcome)
    return (CHECK_FAILED if failed else OK), section
