"""The decimal context of decisions is pinned in one place (aggregates/numeric.py)."""

from __future__ import annotations

import decimal
import threading
from decimal import Decimal

import pytest

import aggregates  # noqa: F401  (importing the core pins the context)
from aggregates.numeric import PRECISION, decision_context, is_pinned, pin


def test_importing_the_core_pins_the_context_of_this_thread() -> None:
    pin()  # another test may have changed this thread's context since the import
    assert is_pinned()
    assert decimal.getcontext().prec == PRECISION == 28


def test_a_thread_started_after_the_import_computes_in_the_pinned_context() -> None:
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(is_pinned()))
    thread.start()
    thread.join()
    assert seen == [True]


def test_a_changed_context_is_not_the_pinned_one_and_pin_restores_it() -> None:
    with decimal.localcontext() as ctx:
        ctx.prec = 6
        ctx.rounding = decimal.ROUND_DOWN
        assert not is_pinned()
        pin()
        assert is_pinned()
        assert Decimal(2) / Decimal(3) == Decimal("0.6666666666666666666666666667")


def test_in_the_pinned_context_invalid_arithmetic_raises_instead_of_giving_nan() -> None:
    ctx = decision_context()
    with pytest.raises(decimal.DivisionByZero):
        ctx.divide(Decimal(1), Decimal(0))
    with pytest.raises(decimal.InvalidOperation):
        ctx.divide(Decimal(0), Decimal(0))
    assert decision_context() is not decision_context()
