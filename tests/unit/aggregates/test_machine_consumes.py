"""``Machine.consumes`` is honest: stepping any other event type is a no-op, so folds skip it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates.events import EVENT_TYPES
from aggregates.machine import Machine, reacts_to, record
from aggregates.paper import PaperExchange
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from tests.unit.aggregates.test_event_catalogue import SAMPLES
from tests.unit.replay.test_replay_verify import recorded

MACHINES: list[Machine[Any]] = [SignalMachine(), RiskMachine(), PaperExchange()]


def _state_after(machine: Machine[Any], cut: int) -> Any:
    state = machine.initial()
    for fact in recorded()[:cut]:
        if not machine.owns(fact.event):
            state, _ = machine.step(state, fact)
    return state


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_consumes_when_declared_then_it_names_only_catalogue_types(machine: Machine[Any]) -> None:
    declared = machine.consumes  # type: ignore[attr-defined]
    assert declared <= set(EVENT_TYPES.values())
    assert not any(machine.owns(SAMPLES[tag]) for tag in SAMPLES if type(SAMPLES[tag]) in declared)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fraction=st.floats(0, 1))
def test_step_when_event_type_not_consumed_then_state_unchanged_and_nothing_decided(
    machine: Machine[Any], fraction: float
) -> None:
    log = recorded()
    state = _state_after(machine, int(fraction * len(log)))
    position = log[-1].position + 1
    for tag, event in SAMPLES.items():
        if machine.owns(event) or reacts_to(machine, type(event)):
            continue
        before = copy.deepcopy(state)
        after, outputs = machine.step(state, record(event, position))
        assert outputs == (), tag
        assert after == before, tag
        state = after
