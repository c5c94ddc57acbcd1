"""The reference model of the signal engine's momentum rule (a test oracle, like ``reference``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from aggregates.events import ConfigActivated, Event, SignalGenerated, TradeTicked
from tests.model.reference_state import MINUTE, ZERO, D, Said


@dataclass
class SignalModel:
    """The momentum rule (README, .env.example): per symbol, the trades of the last
    LOOKBACK_MINUTES (strictly after now − look-back); nothing until the symbol's history covers
    a whole look-back; flat when fewer than SIGNAL_MIN_TRADES trades or SIGNAL_MIN_CONTRACTS
    contracts; else momentum = (last − first) / first in percent, long at ≥ the threshold, short
    at ≤ −threshold; strength = min(1, |momentum| / (2 × threshold)) to 4 places, 0 when flat; a
    signal only when the direction changes (from flat)."""

    cfg: dict[str, str] | None = None
    seen_since: dict[str, int] = field(default_factory=dict)
    trades: dict[str, list[tuple[int, Decimal, Decimal]]] = field(default_factory=dict)
    direction: dict[str, str] = field(default_factory=dict)

    def step(self, event: Event) -> list[Said]:
        if isinstance(event, ConfigActivated):
            self.cfg = dict(event.parameters)
            return []
        if not isinstance(event, TradeTicked) or self.cfg is None:
            return []
        symbol, now = event.symbol, event.at_ms
        lookback = int(self.cfg["LOOKBACK_MINUTES"]) * MINUTE
        self.seen_since.setdefault(symbol, now)
        window = [t for t in self.trades.get(symbol, []) if t[0] > now - lookback]
        window.append((now, event.price, event.contracts))
        self.trades[symbol] = window
        if self.seen_since[symbol] > now - lookback:
            return []
        threshold = D(self.cfg["SIGNAL_THRESHOLD_PCT"])
        first = window[0][1]
        momentum = (event.price - first) * 100 / first
        direction = "flat"
        thin = len(window) < int(self.cfg["SIGNAL_MIN_TRADES"]) or sum(
            (t[2] for t in window), ZERO
        ) < D(self.cfg["SIGNAL_MIN_CONTRACTS"])
        if not thin and momentum >= threshold:
            direction = "long"
        elif not thin and momentum <= -threshold:
            direction = "short"
        if direction == self.direction.get(symbol, "flat"):
            return []
        self.direction[symbol] = direction
        strength = ZERO
        if direction != "flat":
            strength = min(D(1), abs(momentum) / (2 * threshold)).quantize(D("0.0001"))
        return [("signal", now, symbol, direction, strength, event.price)]


def said_signal(event: Event) -> Said:
    assert isinstance(event, SignalGenerated)
    return (
        "signal",
        event.at_ms,
        event.symbol,
        event.direction,
        event.strength,
        event.reference_price,
    )
