"""MEXC misbehaves while the whole pipeline runs: storms, stalls, silent pongs, refusals.

The local server injects the faults real exchanges produce while it plays a market into every
service. The feed must reconnect (with backoff) and keep going; a stall long enough to be data
silence must pause trading through the risk manager (``CircuitBreakerTripped`` data_silence) and
the pause must lift when data resumes (``CircuitBreakerCleared``) — decided from the log, so a
replay finds the same.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.mexc.feed import FeedConfig
from adapters.mexc.local_server import Faults, LocalMexcServer
from adapters.mexc.tape import TapeEntry
from adapters.secrets import Secret
from adapters.settings import RuntimeSettings
from aggregates import events as ev
from aggregates.config import parse_config
from pipeline.app import Pipeline, RunOptions, run_pipeline
from pipeline.demo import TapeClock
from tests.faults.fault_helpers import (
    SYMBOLS,
    TRADING_ENV,
    check_ledger,
    momentum_tape,
    read_ledger,
)

pytestmark = [pytest.mark.db, pytest.mark.redis, pytest.mark.timeout(120)]

START_MS = 1_767_225_600_000
SPEED = 10.0


def _tape() -> list[TapeEntry]:
    import msgspec

    encoder = msgspec.json.Encoder(decimal_format="number")
    return [
        TapeEntry(at_ms=line["at_ms"], msg=msgspec.Raw(encoder.encode(line["msg"])))
        for line in momentum_tape(START_MS, per_second=20)
    ]


async def _misbehave(server: LocalMexcServer, total: int) -> list[str]:
    """Walk the server through the faults as the tape advances; returns what was done."""
    done = []

    async def at(fraction: float) -> None:
        while server.stats.tape_position < total * fraction:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.01)

    await at(0.10)
    server.faults.disconnect_after, server.faults.disconnects = 40, 3  # a storm of 3 cuts
    server.faults.abort = True
    done.append("storm")
    await at(0.25)
    server.faults.answer_pings = False  # the socket lives, pongs stop: a ping timeout
    done.append("no pongs")
    await at(0.32)
    server.faults.answer_pings = True
    server.faults.stall = True  # nothing at all, socket open: data silence
    done.append("stall")
    await at(0.55)
    server.faults.stall = False
    done.append("resumed")
    return done


async def test_exchange_faults_when_the_pipeline_runs_then_it_reconnects_pauses_and_resumes(
    fresh_database_url, redis_url: str, redis_namespace: str
) -> None:
    url = await fresh_database_url()
    tape = _tape()
    env = {**TRADING_ENV, "DATA_SILENCE_SECONDS": "5"}
    started: asyncio.Future[Pipeline] = asyncio.get_running_loop().create_future()
    async with LocalMexcServer(tape=tape, speed=SPEED, autoplay_after=2, faults=Faults()) as server:
        settings = RuntimeSettings(
            database_url=Secret(url),
            redis_url=Secret(redis_url),
            mexc_ws_url=server.url,
            mexc_rest_url="http://127.0.0.1:9",
            metrics_port=0,
            clock_interval_seconds=0.1,
            symbols=(*SYMBOLS, "XRP_USDT"),  # the server refuses this one: rs.error
            bus_namespace=redis_namespace,
        )
        feed_config = FeedConfig(
            url=server.url,
            ping_interval=0.2,
            pong_timeout=0.3,
            backoff_initial=0.05,
            backoff_max=0.2,
            tickers=False,
        )
        faults = asyncio.create_task(_misbehave(server, len(tape)))
        pipeline = await run_pipeline(
            settings,
            parse_config(env),
            RunOptions(
                until=server.played,
                duration=90,
                now_ms=TapeClock(server, START_MS, SPEED),
                feed_config=feed_config,
                on_started=started.set_result,
            ),
        )
        assert await faults == ["storm", "no pongs", "stall", "resumed"]
    feed = pipeline.feed
    assert feed is not None
    assert feed.stats.reconnects >= 4  # three cuts and a dead connection, each followed back
    assert server.stats.disconnects_injected == 3
    assert feed.stats.subscription_errors >= 1 and server.stats.refused >= 1
    assert "pong" in feed.stats.last_disconnect_reason or feed.stats.reconnects >= 5
    metrics = pipeline.metrics.render().decode()
    reconnects = next(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("claire_ws_reconnects_total ")
    )
    assert reconnects == feed.stats.reconnects

    recorded = await read_ledger(url)
    counts = check_ledger(recorded)  # sound, and the decisions equal a replay
    assert counts["market.trade"] > 0
    trips = [
        r
        for r in recorded
        if isinstance(r.event, ev.CircuitBreakerTripped) and r.event.layer == "data_silence"
    ]
    clears = [
        r
        for r in recorded
        if isinstance(r.event, ev.CircuitBreakerCleared) and r.event.layer == "data_silence"
    ]
    assert trips and clears and clears[0].position > trips[0].position
    paused = [
        r
        for r in recorded
        if trips[0].position < r.position < clears[0].position
        and isinstance(r.event, ev.OrderRequested)
        and r.event.intent == "entry"
    ]
    assert paused == []  # no entry while trading blind
