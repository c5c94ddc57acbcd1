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

from aggregates.config import parse_config
from aggregates.events import ConfigActivated
from aggregates.simulation import Simulation, with_parameters
from eventstore import EventStore
from replay.verify import verification_machines
from replay.walk import Summary, Tally
from replay.window import UsageError, Window


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


async def check_overrides(store: EventStore, overrides: Mapping[str, str]) -> None:
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
    overrides: dict[str, str]
    actual: Summary
    counterfactual: Summary

    def rows(self) -> list[tuple[str, Any, Any]]:
        actual = self.actual.figures()
        counter = self.counterfactual.figures()
        names = list(actual) + [name for name in counter if name not in actual]
        return [(name, actual.get(name, 0), counter.get(name, 0)) for name in names]

    @property
    def identical(self) -> bool:
        return self.actual.figures() == self.counterfactual.figures()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "what_if",
            "overrides": self.overrides,
            "identical": self.identical,
            "actual": self.actual.figures(),
            "counterfactual": self.counterfactual.figures(),
        }

    def render(self) -> str:
        changed = ", ".join(f"{k}={v}" for k, v in self.overrides.items()) or "none"
        lines = [f"what-if ({changed}): actual vs counterfactual, nothing written"]
        lines.append(f"  {'':<36} {'actual':>16} {'counterfactual':>16}")
        for name, actual, counter in self.rows():
            mark = "" if str(actual) == str(counter) else "  *"
            lines.append(f"  {name:<36} {actual!s:>16} {counter!s:>16}{mark}")
        return "\n".join(lines)


async def what_if(
    store: EventStore,
    window: Window,
    overrides: Mapping[str, str],
    *,
    symbol: str | None = None,
    batch_size: int = 5000,
) -> Comparison:
    """Measure the recorded window and the counterfactual one over the same recorded market."""
    actual = Tally(symbol=symbol)
    counter = Tally(symbol=symbol)
    simulation = Simulation(verification_machines())
    owned = simulation.owned
    first, last = window.first, window.last
    async for fact in store.read_all(after=0, batch_size=batch_size):  # type: ignore[call-arg]
        position = fact.position
        if position > last:
            break
        inside = position >= first
        if inside:
            actual.add(fact)
        else:
            actual.prime(fact)
        if owned(fact.event):
            continue  # a recorded decision: the machines derive their own
        if overrides and isinstance(fact.event, ConfigActivated):
            fact = next(with_parameters([fact], overrides))  # ConfigError: checked up front
        fold = counter.add if inside else counter.prime
        for simulated in simulation.feed((fact,)):
            fold(simulated)
    actual.finish()
    counter.finish()
    return Comparison(dict(overrides), actual.summary, counter.summary)
