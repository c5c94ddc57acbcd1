"""The one HTTP surface of a service: ``/metrics`` for Prometheus and ``/health`` for probes.

Services never talk to each other over HTTP (they use the topics); this is for operators,
Prometheus and container health checks only. ``/health`` answers 200 when the service has beaten
its heart recently and every dependency it declared is up, 503 otherwise, with the reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from adapters.metrics import CONTENT_TYPE, Metrics


@dataclass(frozen=True)
class DependencyState:
    up: bool
    detail: str = ""


class HealthState:
    """What ``/health`` reports; updated by the service, mirrored into the metrics.

    ``max_heartbeat_age_s``: a heartbeat older than this (or none yet) makes the service
    unhealthy: a wedged main loop stops beating even though the HTTP server still answers.
    """

    def __init__(
        self,
        service: str,
        metrics: Metrics | None = None,
        *,
        dependencies: tuple[str, ...] = (),
        max_heartbeat_age_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_heartbeat_age_s <= 0:
            raise ValueError(f"max_heartbeat_age_s must be > 0, got {max_heartbeat_age_s}")
        self.service = service
        self.metrics = metrics
        self.max_heartbeat_age_s = max_heartbeat_age_s
        self._clock = clock
        self._last_heartbeat: float | None = None
        self._dependencies: dict[str, DependencyState] = {}
        for name in dependencies:  # declared but not yet checked counts as down
            self.set_dependency(name, False, "not checked yet")

    def heartbeat(self, at: float | None = None) -> None:
        """The service's main loop is alive (``at`` in unix seconds, default now)."""
        self._last_heartbeat = self._clock() if at is None else at
        if self.metrics is not None:
            self.metrics.set_heartbeat(self.service, self._last_heartbeat)

    def set_dependency(self, name: str, up: bool, detail: str = "") -> None:
        self._dependencies[name] = DependencyState(up=up, detail=detail)
        if self.metrics is not None:
            self.metrics.set_dependency(name, up)

    def dependencies_up(self) -> dict[str, bool]:
        """Each dependency and whether it is up (for the heartbeat on ``health``)."""
        return {name: state.up for name, state in sorted(self._dependencies.items())}

    def report(self) -> tuple[bool, dict[str, object]]:
        """(healthy, the JSON body of ``/health``)."""
        problems: list[str] = []
        now = self._clock()
        if self._last_heartbeat is None:
            problems.append("no heartbeat yet")
            age = None
        else:
            age = max(0.0, now - self._last_heartbeat)
            if age > self.max_heartbeat_age_s:
                problems.append(
                    f"last heartbeat {age:.1f}s ago (limit {self.max_heartbeat_age_s}s)"
                )
        for name, state in sorted(self._dependencies.items()):
            if not state.up:
                problems.append(f"{name} is down" + (f": {state.detail}" if state.detail else ""))
        healthy = not problems
        body: dict[str, object] = {
            "service": self.service,
            "status": "ok" if healthy else "unhealthy",
            "last_heartbeat": _iso(self._last_heartbeat),
            "heartbeat_age_seconds": None if age is None else round(age, 3),
            "dependencies": {
                name: {"up": state.up, "detail": state.detail}
                for name, state in sorted(self._dependencies.items())
            },
            "problems": problems,
        }
        return healthy, body


def _iso(unix_seconds: float | None) -> str | None:
    if unix_seconds is None:
        return None
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat().replace("+00:00", "Z")


def make_app(metrics: Metrics, health: HealthState) -> web.Application:
    """The aiohttp application serving ``GET /metrics`` and ``GET /health``."""

    async def get_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def get_health(request: web.Request) -> web.Response:
        healthy, body = health.report()
        return web.json_response(body, status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/health", get_health)
    return app


class HttpServer:
    """Runs :func:`make_app` on ``host:port`` (port 0 picks a free one; see ``port``)."""

    def __init__(self, metrics: Metrics, health: HealthState) -> None:
        self._runner = web.AppRunner(make_app(metrics, health), access_log=None)
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> HttpServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
