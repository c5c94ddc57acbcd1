"""docs/SWEEPS.md "The grid": "Every combination is checked against every recorded
ConfigActivated before any work starts, exactly as --what-if checks its values", and each
combination is applied to every recorded configuration (a ledger reconfigured mid-session)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.blackbox_attack.sweeps.sweep_helpers import FROM, TO, replay, replay_in_process

pytestmark = pytest.mark.db


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


@pytest.mark.parametrize(
    ("fixture", "grid", "named"),
    [
        # MAX_POSITION_PCT must not exceed MAX_EXPOSURE_PCT: only the combination (60, 50) breaks it
        ("ledger", ("MAX_POSITION_PCT=20,60", "MAX_EXPOSURE_PCT=120,50"), "MAX_POSITION_PCT"),
        # 60 is fine for the first configuration (exposure 120), refused by the second (50)
        ("reconfigured_ledger", ("MAX_POSITION_PCT=20,60",), "MAX_POSITION_PCT"),
        # 30 is refused by the first configuration (position 40) and fine for none
        ("reconfigured_ledger", ("MAX_EXPOSURE_PCT=120,30",), "MAX_EXPOSURE_PCT"),
    ],
    ids=["one_combination_of_two_keys", "refused_by_the_second_config", "refused_by_the_first"],
)
def test_sweep_when_one_combination_is_refused_by_a_recorded_config_then_exit_2_before_work(
    request: pytest.FixtureRequest,
    fixture: str,
    grid: tuple[str, ...],
    named: str,
    tmp_path: Path,
    head_of: Callable[[str], int],
) -> None:
    url = request.getfixturevalue(fixture)
    before = head_of(url)
    report = tmp_path / "r.html"
    result = replay(
        "--from", FROM, "--to", TO, "--database-url", url, "--json", "--jobs", "1",
        "--report", str(report), "--sweep", *grid,
    )  # fmt: skip
    assert "Traceback" not in result.err
    assert result.code == 2, result.err[-800:]
    assert named in result.err and "must not exceed" in result.err
    assert not result.of("sweep_result") and not report.exists()
    assert head_of(url) == before


def test_what_if_when_a_value_is_refused_by_the_second_config_then_it_exits_2_like_the_sweep(
    reconfigured_ledger: str,
) -> None:
    result = replay(
        "--from", FROM, "--to", TO, "--database-url", reconfigured_ledger, "-q",
        "--what-if", "MAX_POSITION_PCT=60",
    )  # fmt: skip
    assert result.code == 2 and "must not exceed" in result.err


def test_sweep_when_the_session_was_reconfigured_then_each_combination_equals_what_if_alone(
    reconfigured_ledger: str,
) -> None:
    swept = replay(
        "--from", FROM, "--to", TO, "--database-url", reconfigured_ledger, "--json",
        "--jobs", "1", "--sweep", "MAX_POSITION_PCT=10,45", "STOP_LOSS_PCT=1,5",
    )  # fmt: skip
    assert swept.code == 0, swept.err[-800:]
    results = swept.of("sweep_result")
    assert len(results) == 4
    for result in results:
        overrides = [f"{k}={v}" for k, v in result["parameters"].items()]
        alone = replay_in_process(
            "--from", FROM, "--to", TO, "--database-url", reconfigured_ledger, "-q", "--json",
            "--what-if", *overrides,
        )  # fmt: skip
        (line,) = alone.of("what_if")
        assert canonical(result["figures"]) == canonical(line["counterfactual"])
