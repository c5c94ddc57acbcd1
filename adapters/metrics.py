"""Prometheus metrics: the names and labels of docs/ARCHITECTURE.md ("Metrics"), nothing else.

Each process (and each test) builds its own :class:`Metrics` on its own registry rather than
the global default, so several services or tests can live in one interpreter without clashing.
Metrics are observation, not the ledger: floats are fine here, decisions never read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

Kind = Literal["counter", "gauge", "histogram"]

#: Latency buckets (seconds) from sub-millisecond to seconds: local hops are fast.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")
DEPENDENCIES = ("postgres", "redis", "mexc_ws")
CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str


#: The contract; ``tests/integration/test_metrics_http.py`` checks it against docs/ARCHITECTURE.md.
SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("claire_events_appended_total", "counter", ("event_type",), "Events committed"),
    MetricSpec("claire_append_batch_size", "histogram", (), "Events per append transaction"),
    MetricSpec("claire_append_seconds", "histogram", (), "Time to commit one append batch"),
    MetricSpec("claire_tick_to_verdict_seconds", "histogram", (), "Tick seen to verdict committed"),
    MetricSpec("claire_verdict_to_fill_seconds", "histogram", (), "Verdict to fill committed"),
    MetricSpec("claire_verdicts_total", "counter", ("layer", "decision"), "Risk verdicts issued"),
    MetricSpec(
        "claire_malformed_messages_total",
        "counter",
        ("source", "reason"),
        "Inputs rejected at a boundary",
    ),
    MetricSpec("claire_ws_reconnects_total", "counter", (), "MEXC WebSocket reconnects"),
    MetricSpec("claire_trading_state", "gauge", ("state",), "1 for the current trading state"),
    MetricSpec("claire_equity_usdt", "gauge", (), "Account equity in USDT"),
    MetricSpec("claire_exposure_ratio", "gauge", (), "Gross exposure / equity"),
    MetricSpec("claire_drawdown_ratio", "gauge", (), "Today's drawdown from the day's peak"),
    MetricSpec("claire_market_data_age_seconds", "gauge", (), "Age of the newest market event"),
    MetricSpec(
        "claire_projection_lag_events", "gauge", ("projection",), "Events behind the log head"
    ),
    MetricSpec("claire_dependency_up", "gauge", ("dependency",), "1 when the dependency answers"),
    MetricSpec(
        "claire_service_heartbeat_timestamp_seconds",
        "gauge",
        ("service",),
        "Unix time of the service's last heartbeat",
    ),
)


_SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


class Metrics:
    """All of one process's metrics on a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.events_appended_total = self._counter("claire_events_appended_total")
        self.append_batch_size = self._histogram("claire_append_batch_size", BATCH_BUCKETS)
        self.append_seconds = self._histogram("claire_append_seconds")
        self.tick_to_verdict_seconds = self._histogram("claire_tick_to_verdict_seconds")
        self.verdict_to_fill_seconds = self._histogram("claire_verdict_to_fill_seconds")
        self.verdicts_total = self._counter("claire_verdicts_total")
        self.malformed_messages_total = self._counter("claire_malformed_messages_total")
        self.ws_reconnects_total = self._counter("claire_ws_reconnects_total")
        self.trading_state = self._gauge("claire_trading_state")
        self.equity_usdt = self._gauge("claire_equity_usdt")
        self.exposure_ratio = self._gauge("claire_exposure_ratio")
        self.drawdown_ratio = self._gauge("claire_drawdown_ratio")
        self.market_data_age_seconds = self._gauge("claire_market_data_age_seconds")
        self.projection_lag_events = self._gauge("claire_projection_lag_events")
        self.dependency_up = self._gauge("claire_dependency_up")
        self.service_heartbeat_timestamp_seconds = self._gauge(
            "claire_service_heartbeat_timestamp_seconds"
        )
        for state in TRADING_STATES:  # every state visible from the start, 0 until known
            self.trading_state.labels(state=state).set(0)

    def _spec(self, name: str, kind: Kind) -> MetricSpec:
        spec = _SPEC_BY_NAME[name]
        if spec.kind != kind:
            raise TypeError(f"{name} is a {spec.kind}, not a {kind}")
        return spec

    def _counter(self, name: str) -> Counter:
        spec = self._spec(name, "counter")
        return Counter(spec.name, spec.help, spec.labels, registry=self.registry)

    def _gauge(self, name: str) -> Gauge:
        spec = self._spec(name, "gauge")
        return Gauge(spec.name, spec.help, spec.labels, registry=self.registry)

    def _histogram(self, name: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        spec = self._spec(name, "histogram")
        return Histogram(
            spec.name, spec.help, spec.labels, registry=self.registry, buckets=tuple(buckets)
        )

    # ---- helpers for the common updates

    def count_appended(self, event_types: Iterable[str], seconds: float) -> None:
        """One committed append batch: its size, its duration and the events by type."""
        types = list(event_types)
        for name in types:
            self.events_appended_total.labels(event_type=name).inc()
        self.append_batch_size.observe(len(types))
        self.append_seconds.observe(seconds)

    def count_malformed(self, source: str, reason: str) -> None:
        """Matches ``adapters.bus.MalformedCallback``: pass ``metrics.count_malformed``."""
        self.malformed_messages_total.labels(source=source, reason=reason).inc()

    def count_verdict(self, layer: str, decision: str) -> None:
        self.verdicts_total.labels(layer=layer, decision=decision).inc()

    def set_trading_state(self, state: str) -> None:
        """1 for ``state``, 0 for every other state."""
        if state not in TRADING_STATES:
            raise ValueError(f"unknown trading state {state!r}")
        for each in TRADING_STATES:
            self.trading_state.labels(state=each).set(1 if each == state else 0)

    def set_portfolio(self, equity_usdt: Decimal, exposure: Decimal, drawdown: Decimal) -> None:
        self.equity_usdt.set(float(equity_usdt))
        self.exposure_ratio.set(float(exposure))
        self.drawdown_ratio.set(float(drawdown))

    def set_dependency(self, dependency: str, up: bool) -> None:
        self.dependency_up.labels(dependency=dependency).set(1 if up else 0)

    def set_heartbeat(self, service: str, unix_seconds: float) -> None:
        self.service_heartbeat_timestamp_seconds.labels(service=service).set(unix_seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
