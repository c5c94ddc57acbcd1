"""An in-memory, deterministic event log that runs decision machines together.

Used by ``replay --what-if``, the demo and the benchmarks. Its semantics are the live pipeline's:
each service folds the committed log in global order and appends what it decides. Here the log is
a generator instead of PostgreSQL:

* every input (market data, clock, configuration, operator commands) gets the next position;
* every machine steps over every event it does not own, in position order, machines in the order
  given (``signal, risk, paper`` mirrors the pipeline);
* a machine's outputs are wrapped by :func:`aggregates.envelope.derived` (ids, time, causation and
  correlation from the cause) and appended right after, with their stream and stream version from
  :func:`aggregates.streams.stream_for`; they are themselves stepped over by the other machines;
* all events derived, directly or not, from one input are appended before the next input: the
  idealised pipeline that always keeps up (what a recorded session approximates when it is not
  overloaded).

Inputs that one of the machines owns (e.g. the recorded signals, verdicts and fills of a session
being replayed) are dropped: the machines re-derive them. So the whole recorded log can be passed
in. Differences from the ledger, on purpose: ``hash`` is ``b""`` (no chain is kept in memory;
nothing here is tamper evidence), positions start after ``start_position`` rather than at the
ledger's, and a derived event's ``recorded_at`` is its cause's (there is no clock to read).

Bounded memory: :func:`simulate` streams; it keeps the machines' states, a queue of the events
derived from the current input and one version counter per stream. :class:`Simulation` can be
fed in several parts and rebuilt from a log it produced (:meth:`Simulation.resume`), like a
restarted service folding the log before carrying on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import msgspec

from aggregates.config import VARIABLES, ConfigError, parse_config
from aggregates.envelope import NewEvent, RecordedEvent, derived
from aggregates.events import ConfigActivated, Event, event_type
from aggregates.machine import Machine
from aggregates.streams import stream_for


class Simulation:
    """Machines, their states and the tail of the simulated log; feed it inputs in order."""

    def __init__(self, machines: Sequence[Machine[Any]], *, start_position: int = 0) -> None:
        names = [machine.name for machine in machines]
        if len(set(names)) != len(names):
            raise ValueError(f"machine names must be unique (they are producers): {names}")
        self.machines: tuple[Machine[Any], ...] = tuple(machines)
        self.states: list[Any] = [machine.initial() for machine in machines]
        self.position = start_position
        self.stream_versions: dict[str, int] = {}
        self._routes: dict[type[Event], tuple[tuple[int, Machine[Any]], ...]] = {}

    # ------------------------------------------------------------------ appending

    def _next(self, stream: str) -> tuple[int, int]:
        self.position += 1
        version = self.stream_versions.get(stream, 0) + 1
        self.stream_versions[stream] = version
        return self.position, version

    def _append_input(self, fact: RecordedEvent) -> RecordedEvent:
        stream = stream_for(fact.event)
        position, version = self._next(stream)
        return msgspec.structs.replace(
            fact, position=position, stream=stream, stream_version=version, hash=b""
        )

    def _append_derived(self, new: NewEvent, cause: RecordedEvent) -> RecordedEvent:
        event = new.event
        stream = stream_for(event)
        position, version = self._next(stream)
        return RecordedEvent(
            position=position,
            stream=stream,
            stream_version=version,
            event_id=new.event_id,
            event_type=event_type(event),
            schema_version=type(event).schema_version,
            occurred_at=new.occurred_at,
            recorded_at=cause.recorded_at,
            causation_id=new.causation_id,
            causation_position=new.causation_position,
            correlation_id=new.correlation_id,
            event=event,
            hash=b"",
        )

    def _route(self, event: Event) -> tuple[tuple[int, Machine[Any]], ...]:
        """The machines that step over this event type (those not owning it), cached per type.

        ``owns`` is a function of the event type (the types a machine produces), so it is asked
        once per type rather than once per event and machine: the hot loop's biggest saving.
        """
        kind = type(event)
        route = self._routes.get(kind)
        if route is None:
            route = tuple(
                (index, machine)
                for index, machine in enumerate(self.machines)
                if not machine.owns(event)
            )
            self._routes[kind] = route
        return route

    def owned(self, event: Event) -> bool:
        """Whether one of the machines produces this event type (inputs of it are dropped)."""
        return len(self._route(event)) < len(self.machines)

    # ------------------------------------------------------------------ running

    def feed(self, inputs: Iterable[RecordedEvent]) -> Iterator[RecordedEvent]:
        """Append ``inputs`` and everything the machines derive from them; yield in log order."""
        states = self.states
        everyone = len(self.machines)
        route_of = self._route
        pending: deque[RecordedEvent] = deque()
        for fact in inputs:
            route = route_of(fact.event)
            if len(route) < everyone:
                continue  # one of the machines derives events of this type itself
            record = self._append_input(fact)
            yield record
            pending.append(record)
            while pending:
                current = pending.popleft()
                for index, machine in route_of(current.event):
                    states[index], outputs = machine.step(states[index], current)
                    if not outputs:
                        continue
                    for new in derived(machine.name, current, outputs):
                        record = self._append_derived(new, current)
                        yield record
                        pending.append(record)

    def resume(self, log: Iterable[RecordedEvent]) -> Simulation:
        """Rebuild the machines' states and the log tail from a log this simulation type produced.

        Each machine steps over the events it does not own and its outputs are discarded: they
        are already in the log (exactly what a restarted service does). Continuing with
        :meth:`feed` then gives the log a single uninterrupted run would have given.
        """
        states = self.states
        for fact in log:
            if fact.position != self.position + 1:
                raise ValueError(f"log position {fact.position} after {self.position}: a gap")
            self.position = fact.position
            self.stream_versions[fact.stream] = fact.stream_version
            for index, machine in self._route(fact.event):
                states[index], _ = machine.step(states[index], fact)
        return self


def simulate(
    machines: Sequence[Machine[Any]], inputs: Iterable[RecordedEvent]
) -> Iterator[RecordedEvent]:
    """Run ``machines`` over ``inputs`` as one in-memory log; a generator, in position order."""
    return Simulation(machines).feed(inputs)


def with_parameters(
    inputs: Iterable[RecordedEvent], overrides: Mapping[str, str]
) -> Iterator[RecordedEvent]:
    """The same inputs with ``overrides`` applied to every ``ConfigActivated`` (what-if).

    Unknown variable names fail at once; a bad value fails (``ConfigError``) when the first
    configuration is rewritten, since its validity can depend on the other recorded values.
    With no overrides the inputs pass through untouched, so a what-if with the recorded
    parameters is the recorded session.
    """
    unknown = sorted(set(overrides) - set(VARIABLES))
    if unknown:
        raise ConfigError(
            [(name, overrides[name], "is not a trading parameter") for name in unknown]
        )
    if not overrides:
        return iter(inputs)
    return _rewrite_config(inputs, dict(overrides))


def _rewrite_config(
    inputs: Iterable[RecordedEvent], overrides: dict[str, str]
) -> Iterator[RecordedEvent]:
    changed = ", ".join(sorted(overrides))
    for fact in inputs:
        event = fact.event
        if isinstance(event, ConfigActivated):
            config = parse_config({**event.parameters, **overrides})
            source = f"what-if ({changed}) over {event.source}"[:2000]
            yield msgspec.structs.replace(fact, event=config.activated(event.at_ms, source))
        else:
            yield fact
