"""``Machine.steps`` is honest: each declared function steps exactly as ``step`` does."""

from __future__ import annotations

from typing import Any

import pytest

from aggregates.events import ClockTicked
from aggregates.machine import Machine, step_for
from aggregates.paper import PaperExchange
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from tests.unit.replay.test_replay_verify import recorded

MACHINES: list[Machine[Any]] = [SignalMachine(), RiskMachine(), PaperExchange()]


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_steps_when_declared_then_each_equals_step_over_a_recorded_session(
    machine: Machine[Any],
) -> None:
    declared = machine.steps  # type: ignore[attr-defined]
    assert declared and set(declared) <= machine.consumes  # type: ignore[attr-defined]
    by_step, by_shortcut = machine.initial(), machine.initial()
    shortcuts = 0
    for fact in recorded():
        if machine.owns(fact.event):
            continue
        by_step, expected = machine.step(by_step, fact)
        shortcut = step_for(machine, type(fact.event))
        shortcuts += shortcut is not machine.step
        by_shortcut, outputs = shortcut(by_shortcut, fact)
        assert outputs == expected, fact.position
        assert by_shortcut == by_step, fact.position
    assert shortcuts > 100


def test_step_for_when_type_not_declared_then_the_machine_step() -> None:
    machine = SignalMachine()
    assert step_for(machine, ClockTicked) == machine.step
