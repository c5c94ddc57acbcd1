"""``--verify``: re-decide every step of the window and compare with what the ledger recorded.

Each machine (signal, risk and, when the recorded execution results are the paper venue's,
paper) folds the whole log from position 1 exactly as ``pipeline/decider.py`` restores a service:
events it owns are skipped, every other event is stepped (except types outside the machine's
``consumes``, on which its ``step`` is a tested no-op). For each step at a position ``p`` in
the window, the outputs wrapped by :func:`aggregates.envelope.derived` must equal the recorded
events the machine owns whose ``causation_position == p``: same ids (ids derive from the cause
and the output index, so equal ids also mean the same order by index), same types, same encoded
payloads, same causation, correlation and time. A recorded owned event with no recomputed
counterpart is a divergence too, and so is a recomputed one never recorded.

Recorded outputs come after their cause in the log but not necessarily right after (services
run concurrently), so recomputed outputs wait in a map keyed by event id until their recorded
twin arrives: memory is bounded by the decisions in flight, not by the log.

The first divergence is the one with the smallest cause position (then output index); once one
is found, later steps are no longer compared, and past the window the scan stops as soon as no
expectation from before the divergence (or the window's end) is left open.
"""

from __future__ import annotations

import contextlib
import gc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from aggregates import events as ev
from aggregates.envelope import NewEvent, RecordedEvent, derive_event_id, derived
from aggregates.machine import Machine, reacts_to, step_for
from aggregates.paper import PaperExchange
from aggregates.portfolio import Portfolio
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine

#: The payload comparison: ``aggregates.events.encode`` with map keys sorted, because payloads
#: come back from jsonb with their object keys in jsonb's order, not the order they were built in.
_canonical = msgspec.json.Encoder(decimal_format="string", order="deterministic")

#: How many output indexes to try when telling paper-derived execution results from a venue's.
_PAPER_PROBE = 64


def verification_machines() -> list[Machine[Any]]:
    """The machines ``--verify`` re-runs, in pipeline order."""
    return [SignalMachine(), RiskMachine(), PaperExchange()]


@dataclass(frozen=True, slots=True)
class Expected:
    """A recomputed output waiting for its recorded twin."""

    cause: int
    index: int
    new: NewEvent
    event_type: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first place where recorded and recomputed decisions differ."""

    machine: str
    cause_position: int
    index: int
    problem: str
    recorded_position: int | None
    recorded: dict[str, Any] | None
    recomputed: dict[str, Any] | None

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.cause_position, self.index, self.recorded_position or 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "position": self.recorded_position or self.cause_position,
            "cause_position": self.cause_position,
            "index": self.index,
            "problem": self.problem,
            "recorded": self.recorded,
            "recomputed": self.recomputed,
        }

    def render(self) -> str:
        where = (
            f"position {self.recorded_position} (caused by position {self.cause_position})"
            if self.recorded_position is not None
            else f"the outputs of position {self.cause_position}"
        )
        lines = [f"first divergence at {where}, machine {self.machine}: {self.problem}"]
        lines.append(f"  recorded:   {_dump(self.recorded)}")
        lines.append(f"  recomputed: {_dump(self.recomputed)}")
        return "\n".join(lines)


def _dump(envelope: dict[str, Any] | None) -> str:
    if envelope is None:
        return "(none)"
    return ev._encoder.encode(envelope).decode()  # same codec as the events themselves


def _envelope(
    event: ev.Event,
    event_id: uuid.UUID,
    occurred_at: datetime,
    causation_id: uuid.UUID | None,
    causation_position: int | None,
    correlation_id: uuid.UUID | None,
    position: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if position is not None:
        out["position"] = position
    out.update(
        event_id=str(event_id),
        event_type=ev.event_type(event),
        occurred_at=occurred_at.isoformat(),
        causation_id=str(causation_id) if causation_id else None,
        causation_position=causation_position,
        correlation_id=str(correlation_id) if correlation_id else None,
        payload=_canonical.encode(event).decode(),
    )
    return out


def recorded_envelope(fact: RecordedEvent) -> dict[str, Any]:
    return _envelope(
        fact.event,
        fact.event_id,
        fact.occurred_at,
        fact.causation_id,
        fact.causation_position,
        fact.correlation_id,
        fact.position,
    )


def recomputed_envelope(new: NewEvent) -> dict[str, Any]:
    return _envelope(
        new.event,
        new.event_id,
        new.occurred_at,
        new.causation_id,
        new.causation_position,
        new.correlation_id,
    )


@dataclass(slots=True)
class MachineCheck:
    """One machine's fold and its outstanding expectations."""

    machine: Machine[Any]
    state: Any
    #: None: not known yet whether the ledger's results for this machine are its own (paper).
    enabled: bool | None = True
    expected: dict[uuid.UUID, Expected] = field(default_factory=dict)
    owned: dict[type, bool] = field(default_factory=dict)
    decisions: int = 0

    @property
    def name(self) -> str:
        return self.machine.name

    def owns(self, event: ev.Event) -> bool:
        kind = type(event)
        known = self.owned.get(kind)
        if known is None:
            known = self.owned[kind] = self.machine.owns(event)
        return known


@dataclass(slots=True)
class Route:
    """What one event type means to the active machines: who records it, who must step on it."""

    kind: type
    owners: tuple[MachineCheck, ...]
    #: (check, its machine's step) for the machines that do not own the type and react to it;
    #: machines that provably ignore it (:func:`aggregates.machine.reacts_to`) are not stepped.
    steppers: tuple[tuple[MachineCheck, Callable[..., Any]], ...]
    #: Events of this type compared since the route was made (counted here: no dict per event).
    compared: int = 0


@dataclass(slots=True)
class VerifyResult:
    """What ``--verify`` found over the window."""

    first_position: int
    last_position: int
    steps: dict[str, int]
    decisions: dict[str, int]
    skipped: dict[str, str]
    divergence: Divergence | None
    chain_ok: bool = True
    chain_problem: str | None = None
    chain_first_bad: int | None = None
    chain_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.divergence is None and self.chain_ok

    @property
    def decisions_checked(self) -> int:
        return sum(self.decisions.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "verify",
            "ok": self.ok,
            "first_position": self.first_position,
            "last_position": self.last_position,
            "decisions_checked": self.decisions_checked,
            "steps": self.steps,
            "decisions": self.decisions,
            "not_verified": self.skipped,
            "divergence": None if self.divergence is None else self.divergence.to_json(),
            "chain": {
                "ok": self.chain_ok,
                "events_checked": self.chain_checked,
                "first_bad_position": self.chain_first_bad,
                "problem": self.chain_problem,
            },
        }

    def render(self) -> str:
        lines = []
        if self.chain_ok:
            lines.append(f"hash chain intact ({self.chain_checked} events checked)")
        else:
            where = f" at position {self.chain_first_bad}" if self.chain_first_bad else ""
            lines.append(f"hash chain BROKEN{where}: {self.chain_problem}")
        per = ", ".join(
            f"{name} {self.decisions[name]} decisions over {self.steps[name]} steps"
            for name in self.steps
        )
        for name, why in self.skipped.items():
            lines.append(f"{name}: not verified ({why})")
        if self.divergence is not None:
            lines.append(self.divergence.render())
            lines.append(f"verify FAILED (checked so far: {per})")
        elif self.chain_ok:
            lines.append(
                f"verify ok: {self.decisions_checked} decisions checked, zero divergences "
                f"(positions {self.first_position}..{self.last_position}; {per})"
            )
        else:
            lines.append("verify FAILED: the hash chain is broken")
        return "\n".join(lines)


class Verifier:
    """Feed it every recorded event from position 1, in order; then call :meth:`finish`."""

    def __init__(self, first: int, last: int, machines: list[Machine[Any]] | None = None) -> None:
        self.first = first
        self.last = last
        self.checks = [
            MachineCheck(machine, machine.initial(), None if machine.name == "paper" else True)
            for machine in (machines if machines is not None else verification_machines())
        ]
        self.divergence: Divergence | None = None
        self.skipped: dict[str, str] = {}
        self._active = list(self.checks)
        self._routes: dict[type, Route] = {}
        #: Events compared, by type: a machine's steps are those of the types it does not own.
        self._compared: dict[type, int] = {}
        #: Decisions are compared at positions below this: the window's end, then the divergence.
        self._compare_below = last + 1
        self._risk = next((c for c in self.checks if isinstance(c.machine, RiskMachine)), None)

    # ------------------------------------------------------------------ feeding

    def done(self, position: int) -> bool:
        """Whether reading further can change the result (past the window, nothing open)."""
        if position < self.last and self.divergence is None:
            return False
        horizon = self.divergence.cause_position if self.divergence else self.last + 1
        return not any(
            e.cause < horizon
            for check in self._active
            if check.enabled is not False
            for e in check.expected.values()
        )

    def feed(self, fact: RecordedEvent) -> None:
        route = self._routes.get(type(fact.event))
        if route is None:
            route = self._route(fact.event)
        position = fact.position
        # Machines keep stepping after a divergence (the walk reads the risk portfolio), but
        # decisions after the first divergence are no longer compared. Decided before matching
        # this event's own records, so a divergence they reveal does not change its steps.
        comparing = self.first <= position < self._compare_below  # never past the window
        if comparing:  # counted first: matching records may replace the routes
            route.compared += 1
        for check in route.owners:
            self._recorded(check, fact)
        if position > self.last:  # past the window only recorded outputs still matter
            return
        if comparing:
            for check, step in route.steppers:
                check.state, outputs = step(check.state, fact)
                if outputs:
                    self._expect(check, fact, outputs)
        else:
            for check, step in route.steppers:
                check.state, _ = step(check.state, fact)

    def _route(self, event: ev.Event) -> Route:
        kind = type(event)
        owners = tuple(check for check in self._active if check.owns(event))
        steppers = tuple(
            (check, step_for(check.machine, kind))
            for check in self._active
            if not check.owns(event) and reacts_to(check.machine, kind)
        )
        route = self._routes[kind] = Route(kind, owners, steppers)
        return route

    def _forget_routes(self) -> None:
        """Drop the routes (the active machines changed), keeping their counts."""
        compared = self._compared
        for route in self._routes.values():
            compared[route.kind] = compared.get(route.kind, 0) + route.compared
        self._routes.clear()

    def _expect(
        self, check: MachineCheck, fact: RecordedEvent, outputs: tuple[ev.Event, ...]
    ) -> None:
        """Recomputed outputs wait, keyed by their derived id, for their recorded twins."""
        position = fact.position
        expected = check.expected
        for index, new in enumerate(derived(check.machine.name, fact, outputs)):
            expected[new.event_id] = Expected(
                position, index, new, ev.event_type(new.event), _canonical.encode(new.event)
            )

    def portfolio(self) -> Portfolio | None:
        """The risk machine's portfolio after the last event fed (the one portfolio fold over the
        recorded fills and ticks), so the walk need not fold it a second time."""
        return self._risk.state.portfolio if self._risk is not None else None

    def _recorded(self, check: MachineCheck, fact: RecordedEvent) -> None:
        cause = fact.causation_position
        if check.enabled is None:
            self._decide_venue(check, fact)
        if check.enabled is False:
            return
        expected = check.expected.pop(fact.event_id, None)
        if expected is None:
            if cause is None:
                cause = fact.position  # no cause at all: nothing can have decided it
            if not (self.first <= cause <= self.last):
                return  # decided outside the window
            twin = self._twin(check, cause, fact.event_type)
            self._diverged(
                check,
                cause,
                twin.index if twin else 1 << 30,
                "a recorded event the machine did not decide",
                fact,
                twin.new if twin else None,
            )
            return
        problem = _difference(expected, fact)
        if problem is None:
            check.decisions += 1
        else:
            self._diverged(check, expected.cause, expected.index, problem, fact, expected.new)

    def _twin(self, check: MachineCheck, cause: int, event_type: str) -> Expected | None:
        """A recomputed output of the same cause, preferably of the same type (for the report)."""
        same = [e for e in check.expected.values() if e.cause == cause]
        same.sort(key=lambda e: (e.event_type != event_type, e.index))
        return same[0] if same else None

    def _decide_venue(self, check: MachineCheck, fact: RecordedEvent) -> None:
        """Paper is verified only if the recorded execution results are paper-derived ids."""
        cause_id = fact.causation_id
        ours = cause_id is not None and any(
            derive_event_id(check.name, cause_id, index) == fact.event_id
            for index in range(_PAPER_PROBE)
        )
        check.enabled = ours
        if not ours:
            check.expected.clear()
            # A new list: feed() may be iterating over the old one.
            self._active = [c for c in self._active if c is not check]
            self._forget_routes()
            self.skipped[check.name] = (
                f"the execution results (first at position {fact.position}) were not "
                "derived by the paper venue"
            )

    def _diverged(
        self,
        check: MachineCheck,
        cause: int,
        index: int,
        problem: str,
        fact: RecordedEvent | None,
        new: NewEvent | None,
    ) -> None:
        found = Divergence(
            machine=check.name,
            cause_position=cause,
            index=index,
            problem=problem,
            recorded_position=fact.position if fact is not None else None,
            recorded=recorded_envelope(fact) if fact is not None else None,
            recomputed=recomputed_envelope(new) if new is not None else None,
        )
        if self.divergence is None or found.key < self.divergence.key:
            self.divergence = found
            self._compare_below = min(self.last + 1, found.cause_position)

    # ------------------------------------------------------------------ result

    def steps(self, check: MachineCheck) -> int:
        """Events compared that the machine does not own (stepped, or provably ignored)."""
        self._forget_routes()
        return sum(
            count for kind, count in self._compared.items() if not check.owned.get(kind, False)
        )

    def finish(self) -> VerifyResult:
        """Expectations never matched are divergences ("decided but not recorded")."""
        for check in self.checks:
            if check.enabled is None:
                if check.expected:
                    self.skipped[check.name] = "the ledger holds no execution results"
                check.expected.clear()
                continue
            for expected in sorted(check.expected.values(), key=lambda e: (e.cause, e.index)):
                if self.divergence is not None and expected.cause >= self.divergence.cause_position:
                    break
                self._diverged(
                    check,
                    expected.cause,
                    expected.index,
                    "the machine decided an event the ledger does not hold",
                    None,
                    expected.new,
                )
                break
        verified = [c for c in self.checks if c.enabled]
        return VerifyResult(
            first_position=self.first,
            last_position=self.last,
            steps={c.name: self.steps(c) for c in verified},
            decisions={c.name: c.decisions for c in verified},
            skipped=dict(self.skipped),
            divergence=self.divergence,
        )


#: The envelope fields a recomputed output must share with its record, in the order reported.
_ENVELOPE_FIELDS = ("causation_id", "causation_position", "correlation_id", "occurred_at")


def _difference(expected: Expected, fact: RecordedEvent) -> str | None:
    """What differs between a recomputed output and its recorded twin (same id), or None."""
    new = expected.new
    if fact.event_type != expected.event_type:
        return f"type {fact.event_type} recorded, {expected.event_type} recomputed"
    if _canonical.encode(fact.event) != expected.payload:
        return f"payload differs in {', '.join(_fields(fact.event, new.event))}"
    for name in _ENVELOPE_FIELDS:
        if getattr(fact, name) != getattr(new, name):
            return f"{name} differs"
    return None


def _fields(recorded: ev.Event, recomputed: ev.Event) -> list[str]:
    """The payload fields that differ (map fields compared as maps: key order is no difference)."""
    a = msgspec.to_builtins(recorded)
    b = msgspec.to_builtins(recomputed)
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key)) or ["encoding"]


@contextlib.contextmanager
def rare_collections() -> Iterator[None]:
    """Collect reference cycles rarely while streaming the log.

    A pass allocates a few objects per event and reference counting frees them at once, so the
    default frequent collections mostly re-scan what is alive (measured: ~10% of the replay
    process's CPU). Objects alive at the start (modules, code) are frozen out of the scans.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
