"""docs/SWEEPS.md "The grid", "What a combination computes" and "Output", judged against
``replay --what-if`` run alone per combination and against orderings computed here."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest

from tests.blackbox_attack.sweeps.sweep_helpers import FROM, TO, replay_in_process

pytestmark = pytest.mark.db

LOWEST_FIRST = {"fees", "max_drawdown_pct", "halts"}


def sweep(ledger: str, *argv: str, window: tuple[str, str] = (FROM, TO)) -> list[dict]:
    """A sweep through ``replay``'s ``main`` in this process (its combinations still run in
    worker processes); the real ``replay`` process is run by the other sweep attacks."""
    result = replay_in_process(
        "--from", window[0], "--to", window[1], "--database-url", ledger, "--json", *argv
    )  # fmt: skip
    assert result.code == 0, result.err[-1500:]
    assert "Traceback" not in result.err
    return result.lines()


def what_if(ledger: str, parameters: dict, window: tuple[str, str] = (FROM, TO)) -> dict:
    overrides = [f"{k}={v}" for k, v in parameters.items()]
    result = replay_in_process(
        "--from", window[0], "--to", window[1], "--database-url", ledger, "-q", "--json",
        "--what-if", *overrides,
    )  # fmt: skip
    assert result.code == 0, result.err[-1500:]
    (line,) = result.of("what_if")
    return line


def of(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["type"] == kind]


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def test_sweep_when_a_range_has_a_step_that_lands_on_stop_then_stop_is_included_exactly(
    ledger: str,
) -> None:
    lines = sweep(ledger, "--sweep", "STOP_LOSS_PCT=1:2:0.25", "--jobs", "1", "--sort-by", "halts")
    values = [Decimal(r["parameters"]["STOP_LOSS_PCT"]) for r in of(lines, "sweep_result")]
    assert sorted(values) == [Decimal(v) for v in ("1", "1.25", "1.5", "1.75", "2")]


def test_sweep_when_a_range_step_overshoots_stop_then_the_last_value_below_stop_ends_it(
    ledger: str,
) -> None:
    lines = sweep(ledger, "--sweep", "STOP_LOSS_PCT=1:2:0.3", "--jobs", "1")
    values = [Decimal(r["parameters"]["STOP_LOSS_PCT"]) for r in of(lines, "sweep_result")]
    assert sorted(values) == [Decimal(v) for v in ("1", "1.3", "1.6", "1.9")]


def test_sweep_when_a_range_needs_more_than_28_digits_then_each_value_is_exact_and_distinct(
    ledger: str,
) -> None:
    tiny = "0." + "0" * 30 + "1"
    lines = sweep(ledger, "--sweep", f"STOP_LOSS_PCT=1:1.{'0' * 30}3:{tiny}", "--jobs", "1")
    values = sorted(Decimal(r["parameters"]["STOP_LOSS_PCT"]) for r in of(lines, "sweep_result"))
    assert values == [Decimal(1) + i * Decimal(tiny) for i in range(4)]


def test_sweep_when_combinations_equal_the_maximum_then_it_runs_all_of_them(ledger: str) -> None:
    lines = sweep(
        ledger, "--sweep", "STOP_LOSS_PCT=1,2", "MAX_POSITION_PCT=5,10", "--max-combinations", "4",
        "--jobs", "1",
    )  # fmt: skip
    assert len(of(lines, "sweep_result")) == 4
    assert of(lines, "sweep")[0]["combinations"] == 4


def test_sweep_when_every_figure_ties_then_ranks_follow_the_grid_with_the_last_key_fastest(
    ledger: str,
) -> None:
    # STOP_LOSS_PCT and LOOKBACK_MINUTES that never trigger a halt: halts tie everywhere
    lines = sweep(
        ledger, "--sweep", "STOP_LOSS_PCT=3,1,2", "LOOKBACK_MINUTES=5,3", "--sort-by", "halts",
        "--jobs", "1",
    )  # fmt: skip
    results = of(lines, "sweep_result")
    assert {r["figures"]["halts"] for r in results} == {0}
    expected = [
        {"STOP_LOSS_PCT": s, "LOOKBACK_MINUTES": m}
        for s, m in itertools.product(("3", "1", "2"), ("5", "3"))
    ]
    assert [r["parameters"] for r in results] == expected
    assert [r["rank"] for r in results] == list(range(1, 7))


@pytest.mark.parametrize("metric", ["pnl", "fees", "max_drawdown_pct", "trades", "end_equity"])
def test_sweep_when_sorted_by_a_metric_then_ranks_follow_it_with_ties_in_grid_order(
    ledger: str, metric: str
) -> None:
    grid = ("MAX_POSITION_PCT=5,40,20", "STOP_LOSS_PCT=2,1")
    lines = sweep(ledger, "--sweep", *grid, "--sort-by", metric, "--jobs", "1")
    results = of(lines, "sweep_result")
    order = [
        {"MAX_POSITION_PCT": p, "STOP_LOSS_PCT": s}
        for p, s in itertools.product(("5", "40", "20"), ("2", "1"))
    ]
    by_params = {canonical(r["parameters"]): r for r in results}
    assert set(by_params) == {canonical(o) for o in order}
    sign = 1 if metric in LOWEST_FIRST else -1
    expected = sorted(
        order,
        key=lambda o: (
            sign * Decimal(str(by_params[canonical(o)]["figures"][metric])),
            order.index(o),
        ),
    )
    assert [r["parameters"] for r in results] == expected
    assert [r["rank"] for r in results] == list(range(1, len(order) + 1))
    (summary,) = of(lines, "sweep")
    assert summary["combinations"] == 6 and summary["failed"] == 0
    assert summary["sort_by"] == metric
    assert summary["best"] == results[0]["parameters"]


@pytest.mark.parametrize(
    ("window", "grid"),
    [
        ((FROM, TO), ("STOP_LOSS_PCT=0.5:1.5:0.5", "SIGNAL_THRESHOLD_PCT=0.2,0.35")),
        (("2025-06-02", "2025-06-02"), ("MAX_POSITION_PCT=10:30:10", "LOOKBACK_MINUTES=3")),
    ],
    ids=["whole_session", "window_starting_at_midnight"],
)
def test_sweep_when_run_then_each_combination_is_byte_identical_to_what_if_run_alone(
    ledger: str, window: tuple[str, str], grid: tuple[str, ...]
) -> None:
    results = of(sweep(ledger, "--sweep", *grid, "--jobs", "1", window=window), "sweep_result")
    assert len(results) == (6 if "SIGNAL" in grid[1] else 3)
    for result in results:
        alone = what_if(ledger, result["parameters"], window)
        assert canonical(result["figures"]) == canonical(alone["counterfactual"])


def test_sweep_when_initial_equity_varies_then_pnl_excludes_the_deposit(ledger: str) -> None:
    # README/REPLAY.md: "The first configuration's initial equity is a deposit, not PnL";
    # SWEEPS.md: pnl is the equity change. Oracle: pnl == end_equity - the deposit.
    results = of(
        sweep(ledger, "--sweep", "INITIAL_EQUITY_USDT=10000,20000", "--jobs", "1"), "sweep_result"
    )
    for result in results:
        deposit = Decimal(result["parameters"]["INITIAL_EQUITY_USDT"])
        figures = result["figures"]
        assert Decimal(figures["pnl"]) == Decimal(figures["end_equity"]) - deposit
        assert abs(Decimal(figures["pnl"])) < deposit / 10


def test_sweep_when_the_window_starts_at_position_1_then_pnl_is_end_equity_minus_the_deposit(
    ledger: str,
) -> None:
    results = of(sweep(ledger, "--sweep", "MAX_POSITION_PCT=5,40", "--jobs", "1"), "sweep_result")
    for result in results:
        figures = result["figures"]
        assert Decimal(figures["pnl"]) == Decimal(figures["end_equity"]) - 10000
        assert figures["orders"] >= 1 and figures["fills"] >= figures["orders"]
        verdicts = sum(v for k, v in figures.items() if k.startswith("verdicts "))
        assert verdicts >= figures["orders"]


def test_sweep_when_list_values_are_spelt_unusually_then_they_are_reported_as_written(
    ledger: str,
) -> None:
    lines = sweep(ledger, "--sweep", "STOP_LOSS_PCT=1.50,02", "--jobs", "1", "--sort-by", "halts")
    assert [r["parameters"]["STOP_LOSS_PCT"] for r in of(lines, "sweep_result")] == ["1.50", "02"]
