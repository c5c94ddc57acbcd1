"""The ``--sweep`` grid, from its documented grammar (docs/SWEEPS.md): properties."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.process import UsageError
from replay.sweep import parse_grid, ranked

decimals = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False)
steps = st.decimals(min_value=Decimal("0.05"), max_value=20, places=2, allow_nan=False)


@given(start=decimals, span=decimals, step=steps)
def test_range_when_parsed_then_values_step_exactly_from_start_and_stop_is_included_when_reached(
    start: Decimal, span: Decimal, step: Decimal
) -> None:
    stop = start + span
    grid = parse_grid([f"STOP_LOSS_PCT={start}:{stop}:{step}"])
    values = [Decimal(v) for v in grid.values[0]]
    assert values[0] == start
    assert all(b - a == step for a, b in itertools.pairwise(values))
    assert values[-1] <= stop < values[-1] + step  # nothing past STOP, nothing short of it
    assert (values[-1] == stop) == ((stop - start) % step == 0)


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=4),
)
def test_grid_when_lists_given_then_combinations_are_the_full_product_each_once(
    sizes: list[int],
) -> None:
    keys = ["STOP_LOSS_PCT", "MAX_POSITION_PCT", "LOOKBACK_MINUTES", "SIGNAL_THRESHOLD_PCT"]
    items = [
        f"{key}={','.join(str(i + 1) for i in range(n))}"
        for key, n in zip(keys, sizes, strict=False)
    ]
    grid = parse_grid(items)
    combinations = grid.combinations()
    assert len(combinations) == grid.size == math.prod(sizes)
    assert len({tuple(c.items()) for c in combinations}) == len(combinations)
    assert all(list(c) == keys[: len(sizes)] for c in combinations)


@given(limit=st.integers(min_value=1, max_value=30), n=st.integers(min_value=1, max_value=8))
def test_grid_when_larger_than_the_maximum_then_refused_naming_the_count(
    limit: int, n: int
) -> None:
    items = [f"STOP_LOSS_PCT=1:{n}:1", f"MAX_POSITION_PCT=1:{n}:1"]
    if n * n > limit:
        with pytest.raises(UsageError, match=f"{n * n} combinations|{n} values"):
            parse_grid(items, max_combinations=limit)
    else:
        assert parse_grid(items, max_combinations=limit).size == n * n


@given(st.lists(st.decimals(min_value=-50, max_value=50, places=2), min_size=1, max_size=12))
def test_ranking_when_sorted_by_pnl_then_best_first_and_failures_left_out(
    pnls: list[Decimal],
) -> None:
    rows = [({"STOP_LOSS_PCT": str(i)}, {"figures": {"pnl": str(p)}}) for i, p in enumerate(pnls)]
    rows.append(({"STOP_LOSS_PCT": "x"}, {"error": "boom"}))
    best = ranked(rows, "pnl")
    assert [Decimal(r["figures"]["pnl"]) for _, r in best] == sorted(pnls, reverse=True)
    worst_drawdown_first = ranked(
        [(c, {"figures": {"max_drawdown_pct": r["figures"]["pnl"]}}) for c, r in best],
        "max_drawdown_pct",
    )
    assert [Decimal(r["figures"]["max_drawdown_pct"]) for _, r in worst_drawdown_first] == sorted(
        pnls
    )


@given(
    value=st.decimals(min_value=Decimal("0.01"), max_value=100, places=2), zeros=st.integers(1, 4)
)
def test_grid_when_one_decimal_is_spelt_twice_then_refused_as_given_twice(
    value: Decimal, zeros: int
) -> None:
    spelt = f"{value:f}" + ("" if "." in f"{value:f}" else ".") + "0" * zeros
    with pytest.raises(UsageError, match="given twice"):
        parse_grid([f"STOP_LOSS_PCT={value},{spelt}"])


@pytest.mark.parametrize(
    "stop", ["1e9999", "1e999999999", "9" * 5000], ids=["e9999", "e999999999", "nines"]
)
def test_range_when_its_count_is_beyond_any_integer_limit_then_refused_as_too_many(
    stop: str,
) -> None:
    with pytest.raises(UsageError, match="--max-combinations"):
        parse_grid([f"STOP_LOSS_PCT=1:{stop}:0.5"])
