"""Metrics and health over real HTTP: the documented names, and honest health answers."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.http import HealthState, HttpServer
from adapters.metrics import SPECS, Metrics

ARCHITECTURE = Path(__file__).resolve().parents[3] / "docs" / "ARCHITECTURE.md"


def documented_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (type, labels) from the "Metrics" table of docs/ARCHITECTURE.md."""
    section = ARCHITECTURE.read_text().split("## Metrics", 1)[1]
    table: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`claire_"):
            continue
        names = re.findall(r"`(claire_[a-z_]+)`", cells[0])
        labels = tuple(re.findall(r"`([a-z_]+)`", cells[2].split("(")[0]))
        for name in names:
            table[name] = (cells[1], labels)
    return table


def test_specs_when_compared_with_architecture_doc_then_names_types_and_labels_match() -> None:
    documented = documented_metrics()
    assert len(documented) >= 16
    assert {spec.name: (spec.kind, spec.labels) for spec in SPECS} == documented


def test_metrics_when_two_instances_then_registries_are_independent() -> None:
    first, second = Metrics(), Metrics()
    first.count_malformed("market_data", "json")
    assert first.registry.get_sample_value(
        "claire_malformed_messages_total", {"source": "market_data", "reason": "json"}
    ) == pytest.approx(1)
    assert (
        second.registry.get_sample_value(
            "claire_malformed_messages_total", {"source": "market_data", "reason": "json"}
        )
        is None
    )


def test_set_trading_state_when_changed_then_only_the_current_state_is_one() -> None:
    metrics = Metrics()
    metrics.set_trading_state("REDUCING")
    metrics.set_trading_state("HALTED")
    values = {
        state: metrics.registry.get_sample_value("claire_trading_state", {"state": state})
        for state in ("ACTIVE", "REDUCING", "HALTED")
    }
    assert values == {"ACTIVE": 0, "REDUCING": 0, "HALTED": 1}
    with pytest.raises(ValueError):
        metrics.set_trading_state("PANIC")


class FakeClock:
    """Time for the heartbeat-age rule, moved by hand so no test depends on real time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Metrics, HealthState, FakeClock]]:
    clock = FakeClock(1_767_225_600.0)
    metrics = Metrics()
    health = HealthState(
        "risk", metrics, dependencies=("postgres", "redis"), max_heartbeat_age_s=30, clock=clock
    )
    async with HttpServer(metrics, health) as server:
        port = await server.start("127.0.0.1", 0)
        yield f"http://127.0.0.1:{port}", metrics, health, clock


async def fetch(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_get_metrics_when_values_recorded_then_every_documented_metric_is_exposed(
    served,
) -> None:
    base, metrics, health, _ = served
    metrics.count_appended(["market.trade", "market.trade", "clock.tick"], seconds=0.004)
    metrics.count_verdict("position_size", "trimmed")
    metrics.count_malformed("mexc_ws", "schema")
    metrics.ws_reconnects_total.inc()
    metrics.set_trading_state("ACTIVE")
    metrics.set_portfolio(Decimal("10000.5"), Decimal("0.25"), Decimal("0.01"))
    metrics.market_data_age_seconds.set(1.5)
    metrics.projection_lag_events.labels(projection="positions").set(3)
    metrics.tick_to_verdict_seconds.observe(0.002)
    metrics.verdict_to_fill_seconds.observe(0.02)
    health.heartbeat()
    health.set_dependency("postgres", True)

    status, content_type, text = await fetch(f"{base}/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for spec in SPECS:
        family_name = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
        assert family_name in families, spec.name
        assert families[family_name].type == spec.kind
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families.values()
        for sample in family.samples
    }
    assert samples[("claire_events_appended_total", (("event_type", "market.trade"),))] == 2
    assert samples[("claire_append_batch_size_count", ())] == 1
    assert samples[("claire_append_batch_size_sum", ())] == 3
    assert samples[("claire_verdicts_total", (("decision", "trimmed"), ("layer", "position_size")))]
    assert samples[("claire_equity_usdt", ())] == pytest.approx(10000.5)
    assert samples[("claire_dependency_up", (("dependency", "postgres"),))] == 1
    assert samples[("claire_dependency_up", (("dependency", "redis"),))] == 0
    assert samples[
        ("claire_service_heartbeat_timestamp_seconds", (("service", "risk"),))
    ] == pytest.approx(1_767_225_600.0)


async def test_get_health_when_beating_and_dependencies_up_then_200_with_details(served) -> None:
    base, _, health, clock = served
    health.set_dependency("postgres", True)
    health.set_dependency("redis", True)
    health.heartbeat()
    clock.now += 10

    status, content_type, text = await fetch(f"{base}/health")

    assert status == 200
    assert content_type.startswith("application/json")
    body = json.loads(text)
    assert body["service"] == "risk"
    assert body["status"] == "ok"
    assert body["last_heartbeat"] == "2026-01-01T00:00:00Z"
    assert body["heartbeat_age_seconds"] == 10
    assert body["dependencies"] == {
        "postgres": {"up": True, "detail": ""},
        "redis": {"up": True, "detail": ""},
    }
    assert body["problems"] == []


async def test_get_health_when_a_dependency_is_down_then_503_naming_it(served) -> None:
    base, _, health, _ = served
    health.set_dependency("postgres", True)
    health.set_dependency("redis", False, "connection refused")
    health.heartbeat()

    status, _, text = await fetch(f"{base}/health")

    assert status == 503
    body = json.loads(text)
    assert body["status"] == "unhealthy"
    assert body["problems"] == ["redis is down: connection refused"]


async def test_get_health_when_heartbeat_is_stale_or_missing_then_503(served) -> None:
    base, _, health, clock = served
    health.set_dependency("postgres", True)
    health.set_dependency("redis", True)

    status, _, text = await fetch(f"{base}/health")
    assert status == 503
    assert "no heartbeat yet" in text

    health.heartbeat()
    clock.now += 31
    status, _, text = await fetch(f"{base}/health")
    assert status == 503
    assert "last heartbeat 31.0s ago" in text


async def test_get_unknown_path_when_served_then_404(served) -> None:
    base, *_ = served
    status, _, _ = await fetch(f"{base}/nothing")
    assert status == 404
