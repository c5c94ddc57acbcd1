"""A real Prometheus scrapes a real /metrics endpoint, and we read the metrics back through its API.

The Prometheus configuration is deploy/prometheus/prometheus.yml itself, with the compose
targets swapped for the live endpoint and the intervals shortened, and it loads the real
alerts.yml: so the scrape, the label names the rules expect and the rules themselves are
exercised together. The binary comes from Debian's `prometheus` package (.ci/check-deploy
installs it). Ports are chosen by the OS; everything lives in a temporary directory; the
process is always stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml

from adapters.http import HealthState, HttpServer
from adapters.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
#: Generous bounds for waiting, never assertions on speed: a 1 s scrape usually lands in ~2 s.
WAIT_S = 60.0
POLL_S = 0.25
_LISTENING = re.compile(r'msg="Listening on" address=(\S+)')

T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="the `prometheus` binary (Debian package `prometheus`) is not installed; "
    ".ci/check-deploy installs it",
)


def scrape_config_for(target: str, service: str) -> dict[str, Any]:
    """The deployed configuration, scraping ``target`` as ``service`` every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "claire"]
    job["static_configs"] = [{"targets": [target], "labels": {"service": service}}]
    config["scrape_configs"] = [job]
    return config


@contextlib.asynccontextmanager
async def running_prometheus(config: dict[str, Any]) -> AsyncIterator[str]:
    """Start ``prometheus`` on an OS-assigned port; yield its base URL; always stop it."""
    with tempfile.TemporaryDirectory(prefix="claire-prometheus-") as tmp:
        workdir = Path(tmp)
        config_file = workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
        log_file = workdir / "prometheus.log"
        with log_file.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                "prometheus",
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--web.listen-address=127.0.0.1:0",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:

            async def listening() -> str | None:
                if process.returncode is not None:
                    raise AssertionError(f"prometheus exited:\n{_read(log_file)[-4000:]}")
                match = _LISTENING.search(_read(log_file))
                return match.group(1) if match else None

            address = await eventually(listening, what="prometheus to listen", log=log_file)
            base = f"http://{address}"
            async with aiohttp.ClientSession() as session:

                async def ready() -> bool | None:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{base}/-/ready") as response:
                            return response.status == 200 or None
                    return None

                await eventually(ready, what="prometheus to be ready", log=log_file)
            yield base
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), timeout=20)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, what: str, log: Path | None = None
) -> T:
    """Poll ``probe`` until it returns something other than None (or fail after WAIT_S)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        result = await probe()
        if result is not None:
            return result
        if loop.time() > deadline:
            detail = _read(log)[-4000:] if log else ""
            raise AssertionError(f"gave up waiting for {what}\n{detail}")
        await asyncio.sleep(POLL_S)


def _read(log: Path) -> str:
    """Prometheus's log (small; read synchronously): the port it listens on, and errors."""
    return log.read_text(errors="replace") if log.exists() else ""


async def query(session: aiohttp.ClientSession, base: str, promql: str) -> list[dict[str, Any]]:
    """An instant query through the HTTP API; the result vector."""
    async with session.get(f"{base}/api/v1/query", params={"query": promql}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    assert body["data"]["resultType"] == "vector", body
    return body["data"]["result"]


async def alerts(session: aiohttp.ClientSession, base: str) -> dict[str, str]:
    """Active alerts by name, with their state (pending or firing)."""
    async with session.get(f"{base}/api/v1/alerts") as response:
        body = await response.json()
    assert body["status"] == "success", body
    return {alert["labels"]["alertname"]: alert["state"] for alert in body["data"]["alerts"]}


@contextlib.asynccontextmanager
async def scraped_service(service: str) -> AsyncIterator[tuple[Metrics, HealthState, str]]:
    """A service's /metrics and /health on 127.0.0.1 (OS port), scraped by a real Prometheus."""
    metrics = Metrics()
    health = HealthState(service, metrics, dependencies=("postgres", "redis"))
    health.heartbeat()
    async with HttpServer(metrics, health) as server:
        port = await server.start("127.0.0.1", 0)
        async with running_prometheus(scrape_config_for(f"127.0.0.1:{port}", service)) as base:
            yield metrics, health, base


async def test_scrape_when_service_serves_metrics_then_prometheus_answers_queries_for_them() -> (
    None
):
    async with scraped_service("risk") as (metrics, _health, base):
        metrics.set_portfolio(Decimal("12345.5"), Decimal("0.25"), Decimal("0.0125"))
        metrics.set_trading_state("ACTIVE")
        metrics.count_verdict("position_size", "trimmed")
        metrics.tick_to_verdict_seconds.observe(0.004)
        async with aiohttp.ClientSession() as session:

            async def equity() -> list[dict[str, Any]] | None:
                return await query(session, base, "claire_equity_usdt") or None

            (sample,) = await eventually(equity, what="claire_equity_usdt to be scraped")
            assert sample["metric"] == {
                "__name__": "claire_equity_usdt",
                "job": "claire",
                "service": "risk",
                "instance": sample["metric"]["instance"],
            }
            assert sample["metric"]["instance"].startswith("127.0.0.1:")
            assert float(sample["value"][1]) == 12345.5

            # The same scrape carried everything else, with the labels the rules rely on.
            (up,) = await query(session, base, 'up{job="claire", service="risk"}')
            assert up["value"][1] == "1"
            (state,) = await query(session, base, "claire_trading_state == 1")
            assert state["metric"]["state"] == "ACTIVE"
            (verdicts,) = await query(session, base, "claire_verdicts_total")
            assert (verdicts["metric"]["layer"], verdicts["metric"]["decision"]) == (
                "position_size",
                "trimmed",
            )
            assert verdicts["value"][1] == "1"
            (count,) = await query(session, base, "claire_tick_to_verdict_seconds_count")
            assert count["value"][1] == "1"
            # honor_labels keeps the service's own `service` label on its heartbeat.
            (beat,) = await query(session, base, "claire_service_heartbeat_timestamp_seconds")
            assert beat["metric"]["service"] == "risk"
            assert "exported_service" not in beat["metric"]


async def test_alert_rules_when_scraped_state_is_halted_and_redis_down_then_they_activate() -> None:
    async with scraped_service("risk") as (metrics, health, base):
        metrics.set_trading_state("HALTED")
        health.set_dependency("postgres", True)
        health.set_dependency("redis", False, "connection refused")
        async with aiohttp.ClientSession() as session:

            async def active() -> dict[str, str] | None:
                found = await alerts(session, base)
                wanted = {"ClaireTradingHalted", "ClaireRedisUnreachable"}
                return found if wanted <= found.keys() else None

            found = await eventually(active, what="the halt and Redis alerts")
            assert found["ClaireTradingHalted"] == "firing"  # no `for`: at once
            assert found["ClaireRedisUnreachable"] == "pending"  # `for: 1m`
            assert "ClairePostgresUnreachable" not in found
            assert "ClaireTradingReducing" not in found

            # Resuming clears the halt alert on a later evaluation.
            metrics.set_trading_state("ACTIVE")

            async def cleared() -> dict[str, str] | None:
                found = await alerts(session, base)
                return found if "ClaireTradingHalted" not in found else None

            found = await eventually(cleared, what="the halt alert to clear")
            assert found["ClaireRedisUnreachable"] == "pending"
