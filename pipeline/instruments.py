"""Metrics hooks for the services: what was appended, decided, and how long it took.

Latencies are measured between ``recorded_at`` timestamps (commit-side, same machine) and the
moment a decision's outputs are committed: tick -> verdict follows the correlation id (the tick
that started the chain), verdict -> fill follows the client order id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from adapters.http import HealthState
from adapters.metrics import Metrics
from aggregates import events as ev
from aggregates.envelope import NewEvent, RecordedEvent
from eventstore import EventStore, EventStoreError

_log = logging.getLogger(__name__)
_REMEMBER = 50_000


class _Recent(OrderedDict[object, float]):
    """A bounded map from key to time (oldest dropped first)."""

    def remember(self, key: object, at: float) -> None:
        self[key] = at
        if len(self) > _REMEMBER:
            self.popitem(last=False)


class Instruments:
    """Turns service callbacks into Prometheus observations."""

    def __init__(self, metrics: Metrics, now: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self._now = now
        self._ticks = _Recent()
        self._orders = _Recent()
        self.last_market_ms: int | None = None
        self.tick_to_verdict: deque[float] = deque(maxlen=_REMEMBER)

    def appended(self, count: int) -> None:
        self.metrics.events_appended_total.labels(event_type="market").inc(count)
        self.metrics.append_batch_size.observe(count)

    def observed(self, service: str) -> Callable[[RecordedEvent], None]:
        def on_input(recorded: RecordedEvent) -> None:
            event = recorded.event
            if isinstance(event, ev.TradeTicked):
                self.last_market_ms = event.at_ms
                if service == "risk":
                    self._ticks.remember(recorded.event_id, recorded.recorded_at.timestamp())
            elif isinstance(event, ev.OrderRequested) and service == "execution":
                self._orders.remember(event.client_order_id, recorded.recorded_at.timestamp())

        return on_input

    def decided(
        self, service: str
    ) -> Callable[[RecordedEvent, Sequence[NewEvent], Sequence[int]], None]:
        def on_decided(
            cause: RecordedEvent, outputs: Sequence[NewEvent], positions: Sequence[int]
        ) -> None:
            now = self._now()
            for new in outputs:
                event = new.event
                self.metrics.events_appended_total.labels(event_type=ev.event_type(event)).inc()
                if isinstance(event, ev.RiskVerdictIssued):
                    self.metrics.count_verdict(event.layer, event.decision)
                    started = self._ticks.get(new.correlation_id)
                    if started is not None:
                        self.metrics.tick_to_verdict_seconds.observe(now - started)
                        self.tick_to_verdict.append(now - started)
                elif isinstance(event, ev.TradingStateChanged):
                    self.metrics.set_trading_state(event.state)
                elif isinstance(event, ev.OrderFilled | ev.OrderPartiallyFilled):
                    started = self._orders.get(event.client_order_id)
                    if started is not None:
                        self.metrics.verdict_to_fill_seconds.observe(now - started)
            self.metrics.append_batch_size.observe(len(outputs))

        return on_decided


async def probe_ledger(store: EventStore, health: HealthState, patience: float = 2.0) -> bool:
    """Is PostgreSQL answering? Mirrors the answer into ``claire_dependency_up{postgres}`` and
    ``/health`` and logs each change, so an outage alerts instead of passing in silence."""
    before = health.report()[1]["dependencies"]
    was_up = before.get("postgres", {}).get("up", True)  # type: ignore[attr-defined]
    # Not wait_for: cancelling a query on a dying connection can itself hang; leave it behind.
    query = asyncio.ensure_future(store.head())
    done, _ = await asyncio.wait({query}, timeout=patience)
    try:
        if not done:
            query.cancel()
            raise TimeoutError(f"no answer within {patience}s")
        query.result()
    except (EventStoreError, OSError, TimeoutError) as error:
        if was_up:
            _log.error("ledger database unreachable; decisions pause: %s", error)
        health.set_dependency("postgres", False, type(error).__name__)
        return False
    if not was_up:
        _log.warning("ledger database reachable again")
    health.set_dependency("postgres", True)
    return True
