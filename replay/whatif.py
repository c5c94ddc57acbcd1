"""``--what-if KEY=VALUE ...``: the recorded market again, under other parameters.

The recorded inputs (trades, candles, clock, contract specs, configuration, operator commands —
everything no machine decides) are fed in log order to signal + risk + paper in an in-memory
:class:`aggregates.simulation.Simulation`; the recorded decisions are dropped and re-derived.
Every ``ConfigActivated`` gets the overrides (:func:`aggregates.simulation.with_parameters`). The
same :class:`replay.walk.Tally` measures the recorded log and the counterfactual one, both folded
from position 1 so the window starts from each run's own state. Nothing is written anywhere.

With no override the inputs pass through untouched, so the counterfactual is what the machines
decide on the recorded market: equal to the actual session when it was recorded by these
machines keeping up with the market (as a simulated session always does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.process import UsageError
from aggregates.config import parse_config
from aggregates.envelope import RecordedEvent
from aggregates.events import ConfigActivated
from aggregates.simulation import Simulation, with_parameters
from eventstore import EventLog
from replay.verify import verification_machines
from replay.walk import Summary, Tally
from replay.window import Window


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings -> mapping; :class:`UsageError` for a malformed item."""
    overrides: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--what-if {item!r}: expected KEY=VALUE, e.g. MAX_POSITION_PCT=5")
        if key in overrides:
            raise UsageError(f"--what-if: {key} is given twice")
        overrides[key] = value.strip()
    return overrides


async def check_overrides(store: EventLog, overrides: Mapping[str, str]) -> None:
    """Fail before any work if a key is unknown or a value invalid against a recorded config.

    Raises :class:`ConfigError` (every problem named) or :class:`UsageError` when the ledger holds
    no configuration to apply them to.
    """
    with_parameters([], overrides)  # unknown names fail here
    found = False
    async for fact in store.read_stream("config"):
        event = fact.event
        if isinstance(event, ConfigActivated):
            found = True
            parse_config({**event.parameters, **overrides})
    if not found:
        raise UsageError("the ledger holds no recorded configuration (ConfigActivated)")


@dataclass(slots=True)
class Comparison:
    """Actual (recorded) vs counterfactual, with the baseline: the machines re-run on the
    recorded market with the recorded parameters.

    The baseline equals the actual when the session was recorded by these machines keeping up
    with the market. In a live session the services lag (a fill lands on a later tick than in
    the idealised re-run), so actual and baseline can differ: the parameters' own effect is then
    counterfactual vs baseline.
    """

    overrides: dict[str, str]
    actual: Summary
    baseline: Summary
    counterfactual: Summary

    def rows(self) -> list[tuple[str, Any, Any, Any]]:
        columns = [s.figures() for s in (self.actual, self.baseline, self.counterfactual)]
        names = list(dict.fromkeys(name for figures in columns for name in figures))
        return [(name, *(figures.get(name, 0) for figures in columns)) for name in names]

    @property
    def identical(self) -> bool:
        """Whether the counterfactual equals the actual session, figure for figure."""
        return self.actual.figures() == self.counterfactual.figures()

    @property
    def reproduced(self) -> bool:
        """Whether re-running the recorded parameters reproduces the actual session."""
        return self.actual.figures() == self.baseline.figures()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "what_if",
            "overrides": self.overrides,
            "identical": self.identical,
            "reproduced": self.reproduced,
            "actual": self.actual.figures(),
            "baseline": self.baseline.figures(),
            "counterfactual": self.counterfactual.figures(),
        }

    def render(self) -> str:
        changed = ", ".join(f"{k}={v}" for k, v in self.overrides.items()) or "none"
        lines = [f"what-if ({changed}): actual vs counterfactual, nothing written"]
        lines.append(f"  {'':<34} {'actual':>14} {'counterfactual':>15} {'baseline':>14}")
        for name, actual, baseline, counter in self.rows():
            mark = "" if str(actual) == str(counter) else "  *"
            lines.append(f"  {name:<34} {actual!s:>14} {counter!s:>15} {baseline!s:>14}{mark}")
        if not self.reproduced:
            lines.append(
                "  note: the recorded session differs from the machines' idealised re-run with "
                "its own parameters (baseline), e.g. fills on later ticks while services lagged; "
                "the parameters' own effect is counterfactual vs baseline"
            )
        return "\n".join(lines)


class Counterfactual:
    """One re-run of the machines over recorded inputs with ``overrides``, measured by a Tally.

    The single code path of ``--what-if`` and ``--sweep`` (each combination of a sweep is one of
    these), so a sweep's figures for a combination are those of the same ``--what-if`` alone.
    Feed it every recorded fact in log order from position 1 with whether it is inside the
    window; recorded decisions are dropped (the machines derive their own).
    """

    __slots__ = ("changes", "fold_add", "fold_prime", "simulation", "tally")

    def __init__(self, overrides: Mapping[str, str], *, symbol: str | None = None) -> None:
        self.simulation = Simulation(verification_machines())
        self.tally = Tally(symbol=symbol)
        self.changes = dict(overrides)
        self.fold_add = self.tally.add
        self.fold_prime = self.tally.prime

    def owned(self, fact: RecordedEvent) -> bool:
        """Whether ``fact`` is a recorded decision (dropped: the machines derive their own)."""
        return self.simulation.owned(fact.event)

    def feed(self, fact: RecordedEvent, inside: bool) -> None:
        """Feed one recorded input (not a decision: see :meth:`owned`)."""
        given = fact
        if self.changes and isinstance(fact.event, ConfigActivated):
            given = next(with_parameters([fact], self.changes))  # ConfigError: checked up front
        fold = self.fold_add if inside else self.fold_prime
        for simulated in self.simulation.feed((given,)):
            fold(simulated)

    def finish(self) -> Summary:
        self.tally.finish()
        return self.tally.summary


async def what_if(
    store: EventLog,
    window: Window,
    overrides: Mapping[str, str],
    *,
    symbol: str | None = None,
    batch_size: int = 5000,
) -> Comparison:
    """Measure the recorded window, the baseline and the counterfactual over the same market."""
    actual = Tally(symbol=symbol)
    baseline = Counterfactual({}, symbol=symbol)
    counterfactual = Counterfactual(overrides, symbol=symbol)
    runs = (baseline, counterfactual)
    first, last = window.first, window.last
    async for fact in store.read_all(after=0, batch_size=batch_size):
        position = fact.position
        if position > last:
            break
        inside = position >= first
        if inside:
            actual.add(fact)
        else:
            actual.prime(fact)
        if baseline.owned(fact):
            continue  # a recorded decision: the machines derive their own
        for run in runs:
            run.feed(fact, inside)
    actual.finish()
    return Comparison(dict(overrides), actual.summary, baseline.finish(), counterfactual.finish())
