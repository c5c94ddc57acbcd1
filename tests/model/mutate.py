"""Mutation check: inject known bugs into a scratch copy of the core, see which test catches each.

Run by hand (a few minutes)::

    .venv/bin/python tests/model/mutate.py            # every mutant
    .venv/bin/python tests/model/mutate.py clock      # the mutants whose name contains "clock"

For each mutant the repository is copied to a temporary directory (without .git and .venv), one
source edit is applied there, and each test module of :data:`SUITES` is run against the copy
(``PYTHONPATH`` puts the copy first; Hypothesis runs the ``mutation`` profile). A mutant that no
module catches is a missing test. The results table is printed; docs/DECISIONS.md keeps the last.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = (
    "tests/unit/aggregates/test_risk_layers.py",
    "tests/unit/aggregates/test_risk_exits_and_clock.py",
    "tests/model/test_model.py",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    edit: Callable[[str], str]


def replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert text.count(old) == 1, f"mutation anchor not found once: {old!r}"
        return text.replace(old, new)

    return edit


def swap_blocks(first_start: str, second_start: str, second_end: str) -> Callable[[str], str]:
    """Swap two adjacent blocks: [first_start, second_start) and [second_start, second_end)."""

    def edit(text: str) -> str:
        a = text.index(first_start)
        b = text.index(second_start, a)
        c = text.index(second_end, b)
        return text[:a] + text[b:c] + text[a:b] + text[c:]

    return edit


MUTANTS = (
    Mutant(
        "off-by-one in the order-rate limit (> instead of >=)",
        "aggregates/risk/entry.py",
        replace(
            "if len(times) >= limits.max_orders_per_minute:",
            "if len(times) > limits.max_orders_per_minute:",
        ),
    ),
    Mutant(
        "off-by-one in the stop-loss limit (> instead of >=)",
        "aggregates/risk/protect.py",
        replace(
            "return _adverse_move(position) * HUNDRED >= limits.stop_loss_pct",
            "return _adverse_move(position) * HUNDRED > limits.stop_loss_pct",
        ),
    ),
    Mutant(
        "two layers swapped (data silence checked before abnormal market)",
        "aggregates/risk/entry.py",
        swap_blocks(
            "    until = state.abnormal_until.get(symbol)\n",
            "    if state.silence_tripped:\n",
            "    # guards: loss streak",
        ),
    ),
    Mutant(
        "clock not advanced by non-trade inputs (funding, commands, fills, clock)",
        "aggregates/risk/machine.py",
        replace(
            "if event.at_ms > state.now_ms:  # every input that carries a time moves the clock",
            "if False:  # mutant",
        ),
    ),
    Mutant(
        "UTC day rolled after the input is applied, not before",
        "aggregates/risk/machine.py",
        replace(
            "        if state.now_ms // DAY_MS > state.day:\n"
            "            new_day(d)  # before the input is applied: its effect belongs to the "
            "new day\n"
            "        handler(state, d, event)\n",
            "        handler(state, d, event)\n"
            "        if state.now_ms // DAY_MS > state.day:\n"
            "            new_day(d)\n",
        ),
    ),
    Mutant(
        "exit not reduce-only",
        "aggregates/risk/protect.py",
        replace(
            "d.order(symbol, side, size, intent, True, price)",
            "d.order(symbol, side, size, intent, False, price)",
        ),
    ),
    Mutant(
        "drawdown halt lifted early (by an operator resume)",
        "aggregates/risk/machine.py",
        replace(
            '        state.operator_state = "ACTIVE"\n',
            '        state.operator_state = "ACTIVE"\n        state.drawdown_halted = False\n',
        ),
    ),
    Mutant(
        "exit not split by the contract maximum",
        "aggregates/risk/protect.py",
        replace("if largest <= 0:", "if True:"),
    ),
    Mutant(
        "exit split largest first (a last order under the minimum)",
        "aggregates/risk/protect.py",
        replace("if n * int(smallest / step) > units:", "if True:"),
    ),
    Mutant(
        "stop-loss fires again while an exit of the position is in progress",
        "aggregates/risk/protect.py",
        replace(
            "    if symbol in state.exit_goal:\n        return  # already leaving",
            "    if False:\n        return  # already leaving",
        ),
    ),
    Mutant(
        "two exit verdicts for one symbol on one input",
        "aggregates/risk/protect.py",
        replace("    if symbol in d.exited:\n        return\n", ""),
    ),
    Mutant(
        "late refusal of an order sent together raises a second alert",
        "aggregates/risk/protect.py",
        replace("now < backoff.until_ms or order.refusal_said)", "now < backoff.until_ms)"),
    ),
    Mutant(
        "refused exit re-issued without back-off",
        "aggregates/risk/protect.py",
        replace(
            "delay = FIRST_BACKOFF_MS if backoff is None",
            "delay = 0 if backoff is None or True",
        ),
    ),
    Mutant(
        "exposure cap taken from the position limit",
        "aggregates/risk/entry.py",
        replace(
            "exposure_cap = equity * limits.max_exposure_fraction",
            "exposure_cap = equity * limits.max_position_fraction",
        ),
    ),
)


def scratch_copy() -> Path:
    target = Path(tempfile.mkdtemp(prefix="claire-mutant-"))
    ignore = shutil.ignore_patterns(".git", ".venv", ".data", "__pycache__", ".hypothesis")
    for name in ("aggregates", "tests", "pyproject.toml", ".env.example"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, target / name)
    return target


def run_suite(copy: Path, suite: str) -> bool:
    """Whether the suite fails (catches the mutant) against the copy."""
    env = dict(os.environ, PYTHONPATH=str(copy), CLAIRE_HYPOTHESIS_PROFILE="mutation")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            suite,
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "--timeout",
            "300",
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode != 0


def main(argv: list[str]) -> int:
    chosen = [m for m in MUTANTS if not argv or any(a in m.name for a in argv)]
    missed = 0
    print("| mutant | " + " | ".join(Path(s).name for s in SUITES) + " |")
    print("|---" * (len(SUITES) + 1) + "|")
    for mutant in chosen:
        copy = scratch_copy()
        try:
            path = copy / mutant.path
            path.write_text(mutant.edit(path.read_text()))
            caught = [run_suite(copy, suite) for suite in SUITES]
        finally:
            shutil.rmtree(copy, ignore_errors=True)
        missed += not any(caught)
        cells = ["caught" if c else "-" for c in caught]
        print(f"| {mutant.name} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{len(chosen) - missed}/{len(chosen)} mutants caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
