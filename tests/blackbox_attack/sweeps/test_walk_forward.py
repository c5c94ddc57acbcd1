"""docs/SWEEPS.md "Walk-forward": each fold chooses on its training span only (the best of the
same sweep run over that span alone), measures the choice over the next span exactly as
``--what-if`` alone would, the test spans follow one another and cover the window after the
first training span, and the ``walk_forward`` line totals them."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tests.blackbox_attack.sweeps.sweep_helpers import FROM, TO, replay, replay_in_process

pytestmark = pytest.mark.db

GRID = ("MAX_POSITION_PCT=5,30", "SIGNAL_THRESHOLD_PCT=0.2,0.3,0.5")
TRAIN, TEST = "0.02", "0.01"  # 28.8 and 14.4 minutes of a 70-minute session


def walk(ledger: str, *extra: str, jobs: str = "1") -> list[dict]:
    result = replay(
        "--from", FROM, "--to", TO, "--database-url", ledger, "--json", "--jobs", jobs,
        "--sweep", *GRID, "--train", TRAIN, "--test", TEST, *extra,
    )  # fmt: skip
    assert result.code == 0, result.err[-1500:]
    assert "Traceback" not in result.err
    return result.lines()


def of(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["type"] == kind]


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def folds(ledger: str) -> list[dict]:
    return walk(ledger, jobs="2")  # the one walk-forward over two worker processes


def test_walk_forward_when_run_then_test_spans_follow_one_another_from_the_first_training_end(
    folds: list[dict],
) -> None:
    spans = of(folds, "walk_forward_fold")
    assert len(spans) >= 2
    train, test = timedelta(days=float(TRAIN)), timedelta(days=float(TEST))
    assert at(spans[0]["train"]["from"]) == at(FROM)
    for i, fold in enumerate(spans):
        assert at(fold["train"]["to"]) - at(fold["train"]["from"]) == train
        assert at(fold["test"]["from"]) == at(fold["train"]["to"])
        assert at(fold["test"]["from"]) == at(FROM) + train + i * test
        assert fold["test"]["first_position"] == fold["train"]["last_position"] + 1
        assert fold["error"] is None
    for before, after in itertools.pairwise(spans):
        assert at(after["test"]["from"]) == at(before["test"]["to"])
        assert after["test"]["first_position"] == before["test"]["last_position"] + 1


def test_walk_forward_when_the_window_is_not_a_whole_number_of_tests_then_the_tail_is_covered(
    folds: list[dict],
) -> None:
    spans = of(folds, "walk_forward_fold")
    assert at(spans[-1]["test"]["to"]) == at(TO)


def test_walk_forward_when_run_then_each_choice_is_the_best_of_the_sweep_over_its_training_span(
    ledger: str, folds: list[dict]
) -> None:
    for fold in of(folds, "walk_forward_fold"):
        span = fold["train"]
        alone = replay_in_process(
            "--from", span["from"], "--to", span["to"], "--database-url", ledger, "--json",
            "--jobs", "1", "--sweep", *GRID,
        )  # fmt: skip
        assert alone.code == 0, alone.err[-800:]
        (summary,) = alone.of("sweep")
        assert fold["chosen"] == summary["best"]
        best = alone.of("sweep_result")[0]
        assert canonical(fold["in_sample"]) == canonical(best["figures"])


def test_walk_forward_when_run_then_out_of_sample_figures_are_the_what_if_of_the_test_span(
    ledger: str, folds: list[dict]
) -> None:
    for fold in of(folds, "walk_forward_fold"):
        span = fold["test"]
        overrides = [f"{k}={v}" for k, v in fold["chosen"].items()]
        alone = replay_in_process(
            "--from", span["from"], "--to", span["to"], "--database-url", ledger, "-q", "--json",
            "--what-if", *overrides,
        )  # fmt: skip
        assert alone.code == 0, alone.err[-800:]
        (line,) = alone.of("what_if")
        assert canonical(fold["out_of_sample"]) == canonical(line["counterfactual"])


def test_walk_forward_when_run_then_the_total_sums_the_out_of_sample_spans(
    folds: list[dict],
) -> None:
    spans = of(folds, "walk_forward_fold")
    (total,) = of(folds, "walk_forward")
    assert total["folds"] == len(spans) and total["measured"] == len(spans)
    oos = [fold["out_of_sample"] for fold in spans]
    for key in ("pnl", "realised_pnl", "fees"):
        assert Decimal(total[key]) == sum(Decimal(o[key]) for o in oos), key
    for key in ("trades", "halts"):
        assert total[key] == sum(o[key] for o in oos), key
    assert Decimal(total["max_drawdown_pct"]) == max(Decimal(o["max_drawdown_pct"]) for o in oos)


def test_walk_forward_when_a_test_span_starts_then_it_starts_from_the_what_ifs_own_state(
    ledger: str, folds: list[dict]
) -> None:
    # docs/SWEEPS.md: a span starts from the state the counterfactual run (the chosen parameters
    # from position 1) had reached there, as --what-if over that span alone does; not the log's
    for fold in of(folds, "walk_forward_fold"):
        oos = fold["out_of_sample"]
        overrides = [f"{k}={v}" for k, v in fold["chosen"].items()]
        before = replay_in_process(
            "--from", FROM, "--to", fold["test"]["from"], "--database-url", ledger, "-q",
            "--json", "--what-if", *overrides,
        )  # fmt: skip
        (line,) = before.of("what_if")
        start = Decimal(oos["end_equity"]) - Decimal(oos["pnl"])
        assert start == Decimal(line["counterfactual"]["end_equity"])


def test_walk_forward_when_the_test_span_data_changes_then_the_first_choice_does_not(
    ledger: str, mirrored_ledger: str, folds: list[dict]
) -> None:
    original = of(folds, "walk_forward_fold")[0]
    changed = of(walk(mirrored_ledger), "walk_forward_fold")[0]
    # the data after the first training span really differs...
    assert canonical(changed["out_of_sample"]) != canonical(original["out_of_sample"])
    # ...and nothing of it reached the choice made on the training span
    assert changed["train"] == original["train"]
    assert changed["chosen"] == original["chosen"]
    assert canonical(changed["in_sample"]) == canonical(original["in_sample"])


def test_walk_forward_when_to_is_a_date_past_the_logs_last_event_then_folds_over_the_data_run(
    ledger: str,
) -> None:
    result = replay(
        "--from", FROM, "--to", "2025-06-02", "--database-url", ledger, "--json", "--jobs", "1",
        "--sweep", "STOP_LOSS_PCT=1,2", "--train", TRAIN, "--test", TEST,
    )  # fmt: skip
    assert "Traceback" not in result.err
    assert result.code == 0, result.err[-500:]
    assert len(result.of("walk_forward_fold")) >= 2


def test_walk_forward_when_sorted_by_fees_then_each_choice_has_the_lowest_training_fees(
    ledger: str,
) -> None:
    lines = walk(ledger, "--sort-by", "fees")
    for fold in of(lines, "walk_forward_fold"):
        span = fold["train"]
        alone = replay_in_process(
            "--from", span["from"], "--to", span["to"], "--database-url", ledger, "--json",
            "--jobs", "1", "--sweep", *GRID, "--sort-by", "fees",
        )  # fmt: skip
        fees = [Decimal(r["figures"]["fees"]) for r in alone.of("sweep_result")]
        assert Decimal(fold["in_sample"]["fees"]) == min(fees)
        assert fold["chosen"] == alone.of("sweep")[0]["best"]
