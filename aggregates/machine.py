"""The decision-machine protocol and a pure runner (docs/ARCHITECTURE.md, "Decision machines").

A machine consumes every committed event it does not own, in global order, and returns its new
state plus the events it decides. Its own events coming back through the log are skipped.

State ownership: for speed (a tick-to-verdict decision well under 20 µs) a machine's state may
hold mutable containers (deques, dicts) that ``step`` updates in place and returns. ``step``
therefore *consumes* its state argument: treat the state you passed in as gone and continue
with the returned one. Determinism is unaffected — the state is still a fold of the log prefix
only — and a copy (``copy.deepcopy``) is a valid snapshot to resume from.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TypeVar

from aggregates.envelope import RecordedEvent, utc_from_ms
from aggregates.events import Event, event_type
from aggregates.streams import stream_for

S = TypeVar("S")

Step = tuple[RecordedEvent, tuple[Event, ...]]


class Machine(Protocol[S]):
    """A deterministic state machine over the log; ``name`` is its producer name."""

    name: str

    def initial(self) -> S: ...

    def owns(self, event: Event) -> bool: ...

    def step(self, state: S, fact: RecordedEvent) -> tuple[S, tuple[Event, ...]]: ...


def reacts_to(machine: Machine[S], kind: type) -> bool:
    """Whether ``machine.step`` may react to events of type ``kind``.

    A machine may declare ``consumes``, a frozenset of event types, when its ``step`` is a no-op
    (same state back, no output) for every other type; a fold may then skip those steps. Without
    the declaration every type counts as consumed.
    """
    declared: frozenset[type] | None = getattr(machine, "consumes", None)
    return declared is None or kind in declared


StepFunction = Callable[[S, RecordedEvent], tuple[S, tuple[Event, ...]]]


def step_for(machine: Machine[S], kind: type) -> StepFunction[S]:
    """The function to step ``machine`` with on events of type ``kind``.

    A machine may declare ``steps``, a mapping from event types to functions each equal to
    ``step`` for its type, so that a fold skips the type dispatch on its hot types (trades);
    ``tests/unit/aggregates/test_machine_steps.py`` pins the equality. Otherwise ``step`` itself.
    """
    declared: Mapping[type, StepFunction[S]] | None = getattr(machine, "steps", None)
    found = declared.get(kind) if declared is not None else None
    return found if found is not None else machine.step


def run(
    machine: Machine[S], facts: Iterable[RecordedEvent], state: S | None = None
) -> tuple[S, list[Step]]:
    """Fold ``facts`` through ``machine`` from ``state`` (or its initial state).

    Returns the final state and, for every fact the machine consumed, the fact with the
    events decided on it. Facts the machine owns are skipped, as in the live pipeline.
    """
    current = machine.initial() if state is None else state
    steps: list[Step] = []
    for fact in facts:
        if machine.owns(fact.event):
            continue
        current, outputs = machine.step(current, fact)
        steps.append((fact, outputs))
    return current, steps


_NAMESPACE = uuid.UUID("0b7c7cd4-5c2d-5a8e-9d47-7f3a3a4f9e10")


def record(event: Event, position: int, *, stream_version: int = 0) -> RecordedEvent:
    """Wrap an event as if the ledger had committed it at ``position`` (tests, benchmarks, what-if).

    The id derives from the position, so the same sequence always gets the same ids.
    """
    occurred = utc_from_ms(event.at_ms)
    return RecordedEvent(
        position=position,
        stream=stream_for(event),
        stream_version=stream_version,
        event_id=uuid.uuid5(_NAMESPACE, str(position)),
        event_type=event_type(event),
        schema_version=type(event).schema_version,
        occurred_at=occurred,
        recorded_at=occurred,
        causation_id=None,
        causation_position=None,
        correlation_id=None,
        event=event,
        hash=b"",
    )


def record_all(events: Iterable[Event], start: int = 1) -> list[RecordedEvent]:
    """Wrap a sequence of events with consecutive positions from ``start``."""
    return [record(event, position) for position, event in enumerate(events, start)]
