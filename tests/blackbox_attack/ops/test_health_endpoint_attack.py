"""Attack on /health and /metrics (README: "Every service serves /health and /metrics";
docs/PROMISES.md: a dependency down -> ``claire_dependency_up`` 0 and /health 503; back -> 200).

A real ``claire run --service alerts`` against a Redis of the test's own, which the test kills
(by its process id) and starts again on the same port.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.blackbox_attack.ops.ops_helpers import Service, example_env, free_port, metric, wait_for


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        self.popen = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


@pytest.fixture
async def redis_and_alerts(
    fresh_database_url: Callable[..., Awaitable[str]],
) -> AsyncIterator[tuple[PrivateRedis, Service]]:
    database = await fresh_database_url(migrate=True)
    workdir = Path(tempfile.mkdtemp(prefix="a20health-"))
    redis = PrivateRedis(workdir)
    redis.start()
    env = {
        **example_env(),
        "DATABASE_URL": database,
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "CLAIRE_BUS_NAMESPACE": f"a20h{secrets.token_hex(4)}",
        "METRICS_PORT": str(free_port()),
        "HEARTBEAT_INTERVAL_SECONDS": "1",
        "MEXC_WS_URL": "ws://127.0.0.1:9/ws",
        "MEXC_REST_URL": "http://127.0.0.1:9",
        "SYMBOLS": "BTC_USDT",
    }
    service = Service(["run", "--service", "alerts"], env, workdir, "alerts")
    try:
        yield redis, service
    finally:
        service.stop()
        redis.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def _probe(service: Service, code: int, redis_up: float) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        assert service.alive(), service.output[-2000:]
        try:
            status, _ = service.get("/health")
            _, text = service.get("/metrics")
        except OSError:
            return False
        return (
            status == code and metric(text, "claire_dependency_up", dependency="redis") == redis_up
        )

    return probe


async def test_health_when_redis_goes_down_and_comes_back_then_503_then_200(
    redis_and_alerts: tuple[PrivateRedis, Service],
) -> None:
    redis, service = redis_and_alerts
    await wait_for(_probe(service, 200, 1.0), "/health 200 with redis up", patience=40)
    for _ in range(2):
        redis.kill()
        await wait_for(_probe(service, 503, 0.0), "/health 503 and redis 0", patience=30)
        redis.start()
        await wait_for(_probe(service, 200, 1.0), "/health 200 and redis 1 again", patience=40)
    status, _body = service.get("/health")
    assert status == 200
    assert "Traceback" not in service.output


async def test_metrics_when_an_unknown_path_or_method_is_asked_then_no_crash(
    redis_and_alerts: tuple[PrivateRedis, Service],
) -> None:
    _, service = redis_and_alerts
    await wait_for(_probe(service, 200, 1.0), "/health 200", patience=40)
    for path in ["/nope", "/health?x=1", "/metrics/../health", "/" + "a" * 8000, "/%00"]:
        with contextlib.suppress(OSError):
            service.get(path)
    await wait_for(_probe(service, 200, 1.0), "/health still 200", patience=10)
