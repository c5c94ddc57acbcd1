"""``replay --sweep`` over a real recorded ledger: locally, on a real Dask cluster, walk-forward.

Written from the issue and docs/SWEEPS.md: a combination's figures are those of the same
``--what-if`` alone; bad input exits 2 naming the problem; a lost worker's combinations are
retried once and then reported, never missing; workers read the ledger once each.
"""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import json
import os
import secrets
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from aggregates.envelope import RecordedEvent
from cli.replay import main
from replay.sweep import Source, Task, cluster_executor, local_executor, run_task, run_tasks
from tests.integration.replay.replay_helpers import append_log, market, session

pytestmark = pytest.mark.db

FROM, TO = "2025-06-01T23:30:00Z", "2025-06-02T00:40:00Z"
GRID = ("MAX_POSITION_PCT=5,40", "STOP_LOSS_PCT=1:2:1")


async def run(*argv: str) -> tuple[int, str, list[dict]]:
    """``replay`` in a thread (it runs its own event loop); exit code, stdout, JSON lines."""
    out = io.StringIO()
    code = await asyncio.to_thread(main, list(argv), stdout=out)
    text = out.getvalue()
    lines = []
    if "--json" in argv:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return code, text, lines


def of(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["type"] == kind]


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


@pytest.fixture(scope="module")
def recorded_log() -> list[RecordedEvent]:
    return session(market(seed=11, minutes=70))


@pytest.fixture(scope="module")
async def ledger(recorded_log: list[RecordedEvent], postgres_server_url: str):
    from eventstore.admin import create_database, drop_database
    from eventstore.migrations import upgrade_async

    name = f"claire_test_sweep_{os.getpid()}_{secrets.token_hex(4)}"
    url = await create_database(postgres_server_url, name)
    try:
        await upgrade_async(url)
        await append_log(url, recorded_log)
        yield url
    finally:
        await drop_database(postgres_server_url, name)


@pytest.fixture(scope="module")
def cluster():
    """A real Dask cluster of two worker processes on this machine."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
async def local_sweep(ledger: str) -> list[dict]:
    code, _, lines = await run(
        "--from", FROM, "--to", TO, "--sweep", *GRID, "--jobs", "2", "--json",
        "--database-url", ledger,
    )  # fmt: skip
    assert code == 0
    return lines


# --------------------------------------------------------------------------- results


async def test_sweep_when_run_then_each_combination_is_byte_identical_to_the_same_what_if_alone(
    ledger: str, local_sweep: list[dict]
) -> None:
    results = of(local_sweep, "sweep_result")
    assert len(results) == 4
    assert {canonical(r["parameters"]) for r in results} == {
        canonical({"MAX_POSITION_PCT": p, "STOP_LOSS_PCT": s})
        for p in ("5", "40")
        for s in ("1", "2")
    }
    for result in results:
        overrides = [f"{k}={v}" for k, v in result["parameters"].items()]
        code, _, lines = await run(
            "--from", FROM, "--to", TO, "-q", "--json", "--what-if", *overrides,
            "--database-url", ledger,
        )  # fmt: skip
        assert code == 0
        [what_if] = of(lines, "what_if")
        assert canonical(result["figures"]) == canonical(what_if["counterfactual"])
    # The grid changes something: not every combination gives the same figures.
    assert len({canonical(r["figures"]) for r in results}) > 1


async def test_sweep_when_sorted_by_a_metric_then_ranks_follow_it_best_first(
    ledger: str, local_sweep: list[dict]
) -> None:
    pnl = [Decimal(r["figures"]["pnl"]) for r in of(local_sweep, "sweep_result")]
    assert pnl == sorted(pnl, reverse=True)
    [summary] = of(local_sweep, "sweep")
    assert summary["combinations"] == 4 and summary["failed"] == 0
    code, _, lines = await run(
        "--from", FROM, "--to", TO, "--sweep", *GRID, "--jobs", "1", "--json",
        "--sort-by", "max_drawdown_pct", "--database-url", ledger,
    )  # fmt: skip
    assert code == 0
    drawdowns = [Decimal(r["figures"]["max_drawdown_pct"]) for r in of(lines, "sweep_result")]
    assert drawdowns == sorted(drawdowns)

    def unranked(lines: list[dict]) -> set[bytes]:
        return {canonical({k: v for k, v in r.items() if k != "rank"}) for r in lines}

    # --jobs 1 and --jobs 2 give the same results
    assert unranked(of(lines, "sweep_result")) == unranked(of(local_sweep, "sweep_result"))


async def test_sweep_when_text_output_then_a_table_names_every_combination_and_its_figures(
    ledger: str,
) -> None:
    code, text, _ = await run(
        "--from", FROM, "--to", TO, "--sweep", *GRID, "--jobs", "2", "--database-url", ledger
    )
    assert code == 0
    assert "sweep: 4 combinations" in text and "0 failed" in text
    for column in ("MAX_POSITION_PCT", "STOP_LOSS_PCT", "pnl", "fees", "max_dd_%", "trades"):
        assert column in text


async def test_sweep_when_two_parameters_vary_then_the_report_has_the_table_and_a_heatmap(
    ledger: str, tmp_path: Path
) -> None:
    path = tmp_path / "sweep.html"
    code, _, _ = await run(
        "--from", FROM, "--to", TO, "--sweep", *GRID, "--jobs", "2", "--report", str(path),
        "--database-url", ledger,
    )  # fmt: skip
    assert code == 0
    html = path.read_text(encoding="utf-8")
    assert "Parameter sweep" in html and 'class="heatmap"' in html
    assert html.count("<td style=") == 4


# --------------------------------------------------------------------------- cluster


async def test_sweep_when_on_a_dask_cluster_then_results_equal_the_local_ones(
    ledger: str, cluster: str, local_sweep: list[dict]
) -> None:
    code, _, lines = await run(
        "--from", FROM, "--to", TO, "--sweep", *GRID, "--cluster", cluster, "--json",
        "--database-url", ledger,
    )  # fmt: skip
    assert code == 0
    assert canonical(of(lines, "sweep_result")) == canonical(of(local_sweep, "sweep_result"))


async def test_workers_when_running_many_combinations_then_each_reads_the_ledger_once(
    ledger: str, cluster: str, recorded_log: list[RecordedEvent]
) -> None:
    last = recorded_log[-1].position
    tasks = [Task(i, (("MAX_POSITION_PCT", str(5 + i)),), 1, last) for i in range(8)]
    for executor in (lambda: cluster_executor(cluster), lambda: local_executor(2)):
        results = await asyncio.to_thread(run_tasks, executor, Source(ledger, last), tasks)
        assert sorted(results) == list(range(8))
        reads: dict[str, set[int]] = {}
        for result in results.values():  # how many ledgers the worker process has read so far
            reads.setdefault(result["worker"], set()).add(result["loads"])
        assert all(len(counts) == 1 for counts in reads.values()), reads  # one read each
        assert 1 <= len({r["worker"] for r in results.values()}) <= 2


# --------------------------------------------------------------------------- failures


def _dies_once(marker: str, doomed: int, source: Source, task: Task) -> dict:
    """A worker that dies the first time it meets task ``doomed`` (test fault injection)."""
    if task.index == doomed and not Path(marker).exists():
        Path(marker).write_text("died", encoding="utf-8")
        os._exit(3)
    return run_task(source, task)


def _always_dies(doomed: int, source: Source, task: Task) -> dict:
    if task.index == doomed:
        os._exit(3)
    return run_task(source, task)


async def test_worker_when_it_dies_once_then_its_combinations_are_retried_and_succeed(
    ledger: str, recorded_log: list[RecordedEvent], tmp_path: Path
) -> None:
    last = recorded_log[-1].position
    source = Source(ledger, last)
    tasks = [Task(i, (("STOP_LOSS_PCT", str(1 + i)),), 1, last) for i in range(4)]
    work = functools.partial(_dies_once, str(tmp_path / "marker"), 2)
    results = await asyncio.to_thread(
        run_tasks, lambda: local_executor(2), source, tasks, work=work
    )
    assert (tmp_path / "marker").exists()  # it did die
    assert sorted(results) == [0, 1, 2, 3]
    assert all("figures" in r for r in results.values()), results
    expected = await asyncio.to_thread(run_tasks, lambda: local_executor(1), source, tasks[2:3])
    assert canonical(results[2]["figures"]) == canonical(expected[2]["figures"])


async def test_worker_when_it_dies_every_time_then_the_combination_is_reported_failed(
    ledger: str, recorded_log: list[RecordedEvent]
) -> None:
    last = recorded_log[-1].position
    tasks = [Task(i, (("STOP_LOSS_PCT", str(1 + i)),), 1, last) for i in range(3)]
    work = functools.partial(_always_dies, 1)
    results = await asyncio.to_thread(
        run_tasks, lambda: local_executor(2), Source(ledger, last), tasks, work=work
    )
    assert sorted(results) == [0, 1, 2]  # never silently missing
    assert "worker lost twice" in results[1]["error"]
    assert "figures" not in results[1]


@pytest.mark.parametrize(
    ("grid", "extra", "named"),
    [
        (["NOT_A_PARAMETER=1,2"], [], "NOT_A_PARAMETER"),
        (["MAX_POSITION_PCT=5,-3"], [], "MAX_POSITION_PCT"),
        (["STOP_LOSS_PCT=3:1:1"], [], "empty"),
        (["STOP_LOSS_PCT="], [], "empty"),
        (["STOP_LOSS_PCT=1:5:0"], [], "step"),
        (["STOP_LOSS_PCT=1,1"], [], "twice"),
        (["STOP_LOSS_PCT"], [], "KEY=V1,V2"),
        ([*GRID], ["--max-combinations", "3"], "4 combinations"),
        (["STOP_LOSS_PCT=1:100000:1"], [], "10000"),
        ([*GRID], ["--what-if", "STOP_LOSS_PCT=2"], "--what-if"),
        ([*GRID], ["--train", "0.01"], "--test"),
        ([*GRID], ["--train", "1", "--test", "1"], "shorter than one"),
        ([*GRID], ["--train", "x", "--test", "1"], "--train"),
        ([*GRID], ["--jobs", "0"], "--jobs"),
        ([*GRID], ["--cluster", "tcp://127.0.0.1:9", "--cluster-timeout", "1"], "127.0.0.1:9"),
    ],
)
async def test_sweep_when_input_is_bad_then_exit_2_naming_the_problem(
    ledger: str, grid: list[str], extra: list[str], named: str, capfd
) -> None:
    code, out, _ = await run(
        "--from", FROM, "--to", TO, "--sweep", *grid, *extra, "--database-url", ledger
    )  # fmt: skip
    captured = capfd.readouterr()
    assert code == 2, out
    assert named in captured.err
    assert "Traceback" not in captured.err
    assert "sweep_result" not in out and "rank" not in out


# --------------------------------------------------------------------------- walk-forward


async def test_walk_forward_when_run_then_each_fold_reports_out_of_sample_figures_of_its_choice(
    ledger: str,
) -> None:
    code, _, lines = await run(
        "--from", FROM, "--to", TO, "--sweep", *GRID, "--train", "0.01", "--test", "0.01",
        "--jobs", "2", "--json", "--database-url", ledger,
    )  # fmt: skip
    assert code == 0
    folds = of(lines, "walk_forward_fold")
    # 70 minutes: folds of 14.4 + 14.4 minutes, 14.4 apart; the 4th tests the last 12.4 minutes
    assert len(folds) == 4
    for before, after in itertools.pairwise(folds):  # test spans follow one another
        assert before["test"]["to"] == after["test"]["from"] == after["train"]["to"]
    assert datetime.fromisoformat(folds[-1]["test"]["to"]) == datetime.fromisoformat(
        TO.replace("Z", "+00:00")
    )  # ...up to --to
    [total] = of(lines, "walk_forward")
    assert total["measured"] == 4
    assert Decimal(total["pnl"]) == sum(Decimal(f["out_of_sample"]["pnl"]) for f in folds)
    # The first fold, checked from the outside: its choice is the best of a sweep over its
    # training span, and its out-of-sample figures are that choice's what-if on the test span.
    fold = folds[0]
    train, test = fold["train"], fold["test"]
    code, _, swept = await run(
        "--from", train["from"], "--to", train["to"], "--sweep", *GRID, "--jobs", "2",
        "--json", "--database-url", ledger,
    )  # fmt: skip
    assert code == 0
    assert of(swept, "sweep")[0]["best"] == fold["chosen"]
    overrides = [f"{k}={v}" for k, v in fold["chosen"].items()]
    code, _, measured = await run(
        "--from", test["from"], "--to", test["to"], "-q", "--json", "--what-if", *overrides,
        "--database-url", ledger,
    )  # fmt: skip
    assert code == 0
    assert canonical(of(measured, "what_if")[0]["counterfactual"]) == canonical(
        fold["out_of_sample"]
    )


async def test_walk_forward_when_text_and_report_then_both_show_folds_and_out_of_sample_total(
    ledger: str, tmp_path: Path
) -> None:
    path = tmp_path / "walk.html"
    code, text, _ = await run(
        "--from", FROM, "--to", TO, "--sweep", *GRID, "--train", "0.01", "--test", "0.01",
        "--jobs", "2", "--report", str(path), "--database-url", ledger,
    )  # fmt: skip
    assert code == 0
    assert "walk-forward: 4 folds" in text and "fold 4:" in text
    assert "out-of-sample total: pnl" in text and "(4 of 4 folds measured)" in text
    html = path.read_text(encoding="utf-8")
    assert "<h2>Walk-forward</h2>" in html and "out-of-sample total" in html
