"""Attack on the ``health`` topic (docs/OPERATIONS.md "Heartbeats on `health`").

A real ``claire run --service alerts`` (1 s heartbeat interval) on a fresh ledger and a Redis
namespace of its own; the test publishes heartbeats on ``<namespace>:health`` like any service
would (the documented wire form: ``service``, ``at``, ``payload`` of strings) and judges from the
ledger: a service silent for 3 of its intervals gets one WARNING, heard again one INFO; malformed
heartbeats are counted and skipped, never crash the service and never reach the log.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.blackbox_attack.ops.ops_helpers import (
    Service,
    beat,
    example_env,
    free_port,
    ledger_rows,
    metric,
    service_alerts,
    undecodable,
    wait_for,
)


@dataclass
class Alerts:
    service: Service
    database: str
    channel: str
    client: aioredis.Redis
    env: dict[str, str]
    workdir: Path

    async def restart(self) -> None:
        """Stop the alerts service (SIGTERM) and start it again with the same settings."""
        self.service.stop()
        self.service = Service(["run", "--service", "alerts"], self.env, self.workdir, "alerts2")
        await wait_for(self._listening, "the restarted alerts service to listen", patience=40)

    async def _listening(self) -> bool:
        assert self.service.alive(), self.service.output[-3000:]
        await self.publish(b"readiness probe")
        try:
            return self.malformed() > 0
        except OSError:
            return False

    async def publish(self, data: bytes) -> None:
        await self.client.publish(self.channel, data)

    def malformed(self) -> float:
        status, text = self.service.get("/metrics")
        assert status == 200, text
        return metric(text, "claire_malformed_messages_total", source="health")

    async def alive_and_watching(self, canary: str) -> None:
        """The service still hears beats and still records a silence: a canary's WARNING."""
        await self.publish(beat(canary, interval_s="1", instance="canary:1"))

        async def warned() -> bool:
            assert self.service.alive(), "the alerts service died:\n" + self.service.output[-2000:]
            return await _has(self.database, ("WARNING", canary))

        await wait_for(warned, f"the WARNING for {canary}")


async def _has(database: str, wanted: tuple[str, str]) -> bool:
    return wanted in await service_alerts(database)


@pytest.fixture
async def alerts(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str
) -> AsyncIterator[Alerts]:
    database = await fresh_database_url(migrate=True)
    namespace = f"a20hb{secrets.token_hex(4)}"
    env = {
        **example_env(),
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "CLAIRE_BUS_NAMESPACE": namespace,
        "METRICS_PORT": str(free_port()),
        "HEARTBEAT_INTERVAL_SECONDS": "1",
        "MEXC_WS_URL": "ws://127.0.0.1:9/ws",
        "MEXC_REST_URL": "http://127.0.0.1:9",
        "SYMBOLS": "BTC_USDT",
    }
    workdir = Path(tempfile.mkdtemp(prefix="a20hb-"))
    service = Service(["run", "--service", "alerts"], env, workdir, "alerts")
    client = aioredis.from_url(redis_url)
    harness = Alerts(service, database, f"{namespace}:health", client, env, workdir)
    try:
        await wait_for(harness._listening, "the alerts service to listen on health", patience=40)
        yield harness
    finally:
        harness.service.stop()
        await client.aclose()


def _now(offset: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=offset)


MALFORMED = {
    "not_json": b"not json at all",
    "empty": b"",
    "binary": bytes(range(256)),
    "json_array": b"[1, 2, 3]",
    "unknown_field": b'{"service": "x", "at": "2026-01-01T00:00:00Z", "evil": 1}',
    "no_service": b'{"at": "2026-01-01T00:00:00Z", "payload": {}}',
    "service_not_a_string": b'{"service": 7, "at": "2026-01-01T00:00:00Z"}',
    "at_not_a_time": b'{"service": "x", "at": "yesterday"}',
    "payload_numbers": b'{"service": "x", "at": "2026-01-01T00:00:00Z", "payload": {"lag": 5}}',
    "a_recorded_event": b'{"position": 1, "event": {"type": "clock.ticked"}}',
    "huge_garbage": b"{" * 1_000_000,
}


async def test_alerts_when_malformed_heartbeats_arrive_then_counted_skipped_and_never_logged(
    alerts: Alerts,
) -> None:
    for name, data in MALFORMED.items():
        before = alerts.malformed()
        await alerts.publish(data)

        async def counted(before: float = before) -> bool:
            return alerts.malformed() > before

        try:
            await wait_for(counted, f"the malformed heartbeat {name} to be counted", patience=5)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{alerts.service.output[-1500:]}") from None
    await alerts.alive_and_watching("canary")
    rows = await ledger_rows(alerts.database)
    assert {row["event_type"] for row in rows} == {"service.alert_raised"}
    assert await service_alerts(alerts.database) == [("WARNING", "canary")]


async def _async(value: object) -> object:
    return value


# Well-formed on the wire (every field a string) but odd in content. The documented outcome for
# any of them: the service keeps running and the ledger holds only valid events.
ODD_BEATS = {
    "service_upper_case": lambda: beat("Ghost", interval_s="1"),
    "service_with_space": lambda: beat("ghost service", interval_s="1"),
    "service_empty": lambda: beat("", interval_s="1"),
    "service_65_chars": lambda: beat("g" * 65, interval_s="1"),
    "instance_3000_chars": lambda: beat("ghost", interval_s="1", instance="i" * 3000),
    "interval_zero": lambda: beat("ghost", interval_s="0"),
    "interval_negative": lambda: beat("ghost", interval_s="-1"),
    "interval_nan": lambda: beat("ghost", interval_s="nan"),
    "interval_inf": lambda: beat("ghost", interval_s="inf"),
    "interval_words": lambda: beat("ghost", interval_s="five"),
    "interval_huge": lambda: beat("ghost", interval_s="1e400"),
    "at_year_9999": lambda: beat("ghost", at=datetime(9999, 12, 31, tzinfo=UTC), interval_s="1"),
    "payload_one_megabyte": lambda: beat("ghost", interval_s="1", k="v" * 1_000_000),
    "at_year_1": lambda: beat("ghost", at=datetime(1, 1, 1, tzinfo=UTC), interval_s="1"),
}


@pytest.mark.parametrize("odd", list(ODD_BEATS), ids=list(ODD_BEATS))
async def test_alerts_when_an_odd_heartbeat_arrives_then_it_survives_and_the_ledger_stays_valid(
    alerts: Alerts, odd: str
) -> None:
    await alerts.publish(ODD_BEATS[odd]())
    await asyncio.sleep(4)  # past 3 intervals of the odd beat's service, if it took one
    await alerts.alive_and_watching("canary")
    rows = await ledger_rows(alerts.database)
    assert undecodable(rows) == []


async def alerts_of(alerts: Alerts, service: str) -> list[tuple[str, str]]:
    return [a for a in await service_alerts(alerts.database) if a[1] == service]


async def beat_for(alerts: Alerts, seconds: float, *beats: tuple[str, str]) -> None:
    """Publish a beat of each (service, instance) every 0.3 s for ``seconds``."""
    for _ in range(int(seconds / 0.3)):
        for service, instance in beats:
            await alerts.publish(beat(service, interval_s="1", instance=instance))
        await asyncio.sleep(0.3)


async def test_alerts_when_a_service_stops_and_returns_twice_then_one_warning_and_one_info_each(
    alerts: Alerts,
) -> None:
    for _ in range(2):
        await beat_for(alerts, 2, ("flaky", "h:1"))
        await asyncio.sleep(6)  # six intervals: silent for three, then checked again and again
        await beat_for(alerts, 2, ("flaky", "h:1"))
    # flaky keeps beating while the canary proves the watch is still checking.
    await asyncio.gather(beat_for(alerts, 6, ("flaky", "h:1")), alerts.alive_and_watching("canary"))
    flaky = await alerts_of(alerts, "flaky")
    assert flaky == [("WARNING", "flaky"), ("INFO", "flaky")] * 2


async def test_alerts_when_one_of_two_instances_stops_then_the_service_is_still_heard(
    alerts: Alerts,
) -> None:
    await beat_for(alerts, 1, ("twin", "h:1"), ("twin", "h:2"))
    await beat_for(alerts, 5, ("twin", "h:1"))  # h:2 silent for 5 intervals, h:1 beating
    assert await alerts_of(alerts, "twin") == []
    await wait_for(lambda: _has(alerts.database, ("WARNING", "twin")), "twin's WARNING")
    await alerts.alive_and_watching("canary")
    assert await alerts_of(alerts, "twin") == [("WARNING", "twin")]


@pytest.mark.parametrize(
    "skew_s", [-3600.0, 3600.0, -86400.0 * 365], ids=["hour_behind", "hour_ahead", "year_behind"]
)
async def test_alerts_when_a_beating_service_has_a_skewed_clock_then_no_false_warning(
    alerts: Alerts, skew_s: float
) -> None:
    for _ in range(20):  # 6 s of beats, each stamped by a clock that is off by skew_s
        await alerts.publish(beat("skewed", at=_now(skew_s), interval_s="1", instance="h:9"))
        await asyncio.sleep(0.3)
    await wait_for(lambda: _has(alerts.database, ("WARNING", "skewed")), "the real silence")
    await alerts.alive_and_watching("canary")
    assert await alerts_of(alerts, "skewed") == [("WARNING", "skewed")]


async def test_heartbeat_when_a_service_runs_then_it_says_who_what_version_and_dependencies(
    alerts: Alerts,
) -> None:
    import importlib.metadata
    import json
    import socket

    pubsub = alerts.client.pubsub()
    await pubsub.subscribe(alerts.channel)
    mine: list[dict[str, object]] = []
    try:
        for _ in range(100):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is None:
                continue
            try:
                data = json.loads(message["data"])
            except ValueError:
                continue
            if isinstance(data, dict) and data.get("service") == "alerts":
                mine.append(data)
                if len(mine) >= 2:
                    break
    finally:
        await pubsub.aclose()
    assert mine, "no heartbeat of the alerts service heard on health"
    payload = mine[-1]["payload"]
    assert isinstance(payload, dict)
    assert payload["instance"] == f"{socket.gethostname()}:{alerts.service.popen.pid}"
    assert payload["version"] == importlib.metadata.version("claire-de-binaire")
    assert float(payload["interval_s"]) == 1.0
    position, lag = int(payload["position"]), int(payload["lag"])
    assert position >= 0 and lag >= 0
    assert payload["dependency.postgres"] == "up"
    assert payload["dependency.redis"] == "up"
    assert all(v in ("up", "down") for k, v in payload.items() if k.startswith("dependency."))


async def test_alerts_when_a_slow_service_beats_at_its_own_interval_then_not_warned_early(
    alerts: Alerts,
) -> None:
    await alerts.publish(beat("slow", interval_s="20", instance="h:20"))
    await alerts.alive_and_watching("canary")  # > 3 s later: three default intervals passed
    await alerts.alive_and_watching("canary2")
    assert await alerts_of(alerts, "slow") == []


async def test_alerts_when_the_alerts_service_restarts_during_a_silence_then_the_return_is_info(
    alerts: Alerts,
) -> None:
    await beat_for(alerts, 1.5, ("phoenix", "h:7"))
    await wait_for(lambda: _has(alerts.database, ("WARNING", "phoenix")), "phoenix's WARNING")
    await alerts.restart()
    await beat_for(alerts, 3, ("phoenix", "h:8"))
    await asyncio.gather(
        beat_for(alerts, 6, ("phoenix", "h:8")), alerts.alive_and_watching("canary")
    )
    assert await alerts_of(alerts, "phoenix") == [("WARNING", "phoenix"), ("INFO", "phoenix")]
