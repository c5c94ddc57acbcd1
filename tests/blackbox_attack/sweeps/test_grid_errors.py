"""docs/SWEEPS.md "Errors and exit codes": bad grids and options exit 2 naming the problem,
before any work, with no traceback, and nothing written (no report file, the ledger unchanged).

Every case runs through ``replay``'s ``main(argv)`` in this process (an exception escaping it
fails the test: a real process would print a traceback); one case of each kind of failure (a bad
grid, a refused value, a clash of options, a window too short, a cluster) also runs as a real
process, so the exit status and output the shell sees are proven too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.blackbox_attack.sweeps.sweep_helpers import FROM, TO, replay, replay_in_process
from tests.support.cli_run import CliRun

pytestmark = pytest.mark.db

BAD = [
    # (id, extra argv, a word the message must name)
    ("unknown_parameter", ["--sweep", "FOO=1,2"], "FOO"),
    ("runtime_setting_is_not_a_parameter", ["--sweep", "DATABASE_URL=a,b"], "DATABASE_URL"),
    ("malformed_item", ["--sweep", "STOP_LOSS_PCT"], "STOP_LOSS_PCT"),
    ("range_of_two_parts", ["--sweep", "STOP_LOSS_PCT=1:2"], "STOP_LOSS_PCT"),
    ("range_of_four_parts", ["--sweep", "STOP_LOSS_PCT=1:2:3:4"], "STOP_LOSS_PCT"),
    ("empty_list", ["--sweep", "STOP_LOSS_PCT="], "empty"),
    ("empty_list_item", ["--sweep", "STOP_LOSS_PCT=1,,2"], "empty"),
    ("zero_step", ["--sweep", "STOP_LOSS_PCT=1:2:0"], "step"),
    ("negative_step", ["--sweep", "STOP_LOSS_PCT=2:1:-1"], "step"),
    ("stop_below_start", ["--sweep", "STOP_LOSS_PCT=2:1:1"], "empty"),
    ("key_twice", ["--sweep", "STOP_LOSS_PCT=1", "STOP_LOSS_PCT=2"], "twice"),
    ("value_twice", ["--sweep", "STOP_LOSS_PCT=1,1"], "twice"),
    ("refused_negative", ["--sweep", "STOP_LOSS_PCT=2,-1"], "must be > 0"),
    ("refused_text", ["--sweep", "STOP_LOSS_PCT=abc"], "abc"),
    ("refused_nan", ["--sweep", "STOP_LOSS_PCT=NaN"], "NaN"),
    ("refused_by_range_start", ["--sweep", "STOP_LOSS_PCT=0:1:1"], "must be > 0"),
    ("nan_in_range", ["--sweep", "STOP_LOSS_PCT=1:NaN:1"], "NaN"),
    ("infinite_step", ["--sweep", "STOP_LOSS_PCT=1:2:Infinity"], "Infinity"),
    ("refused_equity", ["--sweep", "INITIAL_EQUITY_USDT=0,100"], "INITIAL_EQUITY_USDT"),
    ("refused_specs", ["--sweep", "CONTRACT_SPECS=1"], "CONTRACT_SPECS"),
    (
        "huge_range_counted_not_enumerated",
        ["--sweep", "STOP_LOSS_PCT=1:1000000000:0.000000001"],
        "--max-combinations",
    ),
    (
        "product_over_max",
        ["--sweep", "STOP_LOSS_PCT=1,2", "MAX_POSITION_PCT=5,10", "--max-combinations", "3"],
        "4 combinations",
    ),
    ("max_combinations_zero", ["--sweep", "STOP_LOSS_PCT=1", "--max-combinations", "0"], "1"),
    ("jobs_zero", ["--sweep", "STOP_LOSS_PCT=1", "--jobs", "0"], "--jobs"),
    ("with_what_if", ["--sweep", "STOP_LOSS_PCT=1,2", "--what-if", "STOP_LOSS_PCT=3"], "what-if"),
    ("with_verify", ["--sweep", "STOP_LOSS_PCT=1,2", "--verify"], "verify"),
    ("train_without_test", ["--sweep", "STOP_LOSS_PCT=1,2", "--train", "0.01"], "--test"),
    ("test_without_train", ["--sweep", "STOP_LOSS_PCT=1,2", "--test", "0.01"], "--train"),
    ("train_zero", ["--sweep", "STOP_LOSS_PCT=1", "--train", "0", "--test", "0.01"], "--train"),
    ("train_nan", ["--sweep", "STOP_LOSS_PCT=1", "--train", "nan", "--test", "0.01"], "--train"),
    (
        "window_shorter_than_a_fold",
        ["--sweep", "STOP_LOSS_PCT=1,2", "--train", "1", "--test", "1"],
        "shorter",
    ),
    (
        "cluster_timeout_negative",
        ["--sweep", "STOP_LOSS_PCT=1", "--cluster", "tcp://127.0.0.1:1", "--cluster-timeout", "-1"],
        "--cluster-timeout",
    ),
    (
        "cluster_address_over_tls",  # no TLS setup is passed: a tls:// Client half-fails
        ["--sweep", "STOP_LOSS_PCT=1", "--cluster", "tls://127.0.0.1:1", "--cluster-timeout", "2"],
        "tls://127.0.0.1:1",
    ),
]

FINDINGS = [
    pytest.param(
        ["--sweep", "STOP_LOSS_PCT=1:1e9999:1"],
        "STOP_LOSS_PCT",
        id="range_with_a_huge_exponent",
    ),
    pytest.param(
        [
            "--sweep",
            "STOP_LOSS_PCT=1",
            "--cluster",
            "tcp://127.0.0.1:1",
            "--cluster-timeout",
            "nan",
        ],
        "--cluster-timeout",
        id="cluster_timeout_nan",
    ),
    pytest.param(
        ["--sweep", "STOP_LOSS_PCT=1", "--cluster", "notanaddress", "--cluster-timeout", "2"],
        "notanaddress",
        id="cluster_address_without_port",
    ),
    pytest.param(
        ["--sweep", "STOP_LOSS_PCT=1,1.0"],
        "twice",
        id="same_value_spelt_twice",
    ),
]


#: one case of each kind, run again as a real process
REAL_PROCESS = {
    "unknown_parameter",
    "refused_negative",
    "with_what_if",
    "window_shorter_than_a_fold",
    "cluster_timeout_negative",
}


def _check(
    argv: list[str], word: str, tmp_path: Path, ledger: str, head_of, *, real: bool = False
) -> None:
    before = head_of(ledger)
    report = tmp_path / "sweep.html"
    args = (
        "--from", FROM, "--to", TO, "--database-url", ledger, "--jobs", "1", "-q",
        "--report", str(report), *argv,
    )  # fmt: skip
    result: CliRun = replay(*args, timeout=60) if real else replay_in_process(*args)
    assert "Traceback" not in result.err + result.out
    assert result.code == 2, (result.code, result.err[-800:])
    assert word in result.err
    assert "sweep_result" not in result.out and "rank" not in result.out
    assert not report.exists()
    assert head_of(ledger) == before


@pytest.mark.parametrize(("name", "argv", "word"), BAD, ids=[b[0] for b in BAD])
def test_sweep_when_the_grid_or_an_option_is_bad_then_exit_2_naming_it_and_nothing_written(
    name: str,
    argv: list[str],
    word: str,
    tmp_path: Path,
    ledger: str,
    head_of: Callable[[str], int],
) -> None:
    _check(argv, word, tmp_path, ledger, head_of)


@pytest.mark.parametrize(
    ("name", "argv", "word"),
    [b for b in BAD if b[0] in REAL_PROCESS],
    ids=[b[0] for b in BAD if b[0] in REAL_PROCESS],
)
def test_sweep_when_run_as_a_process_with_a_bad_grid_or_option_then_it_exits_2_naming_it(
    name: str,
    argv: list[str],
    word: str,
    tmp_path: Path,
    ledger: str,
    head_of: Callable[[str], int],
) -> None:
    _check(argv, word, tmp_path, ledger, head_of, real=True)


@pytest.mark.parametrize(("argv", "word"), FINDINGS)
def test_sweep_when_an_edge_argument_is_given_then_exit_2_without_a_traceback(
    argv: list[str], word: str, tmp_path: Path, ledger: str, head_of: Callable[[str], int]
) -> None:
    _check(argv, word, tmp_path, ledger, head_of)


def test_sweep_when_the_cluster_is_unreachable_then_exit_2_naming_its_address(
    ledger: str,
) -> None:
    result = replay(
        "--from", FROM, "--to", TO, "--database-url", ledger, "-q",
        "--sweep", "STOP_LOSS_PCT=1,2", "--cluster", "tcp://127.0.0.1:9", "--cluster-timeout", "2",
        timeout=60,
    )  # fmt: skip
    assert result.code == 2
    assert "tcp://127.0.0.1:9" in result.err
    assert "Traceback" not in result.err
    assert "sweep_result" not in result.out
