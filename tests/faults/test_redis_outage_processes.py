"""Redis killed under services that each run in their own process: they really depend on it.

In one process the services share a feed of their own commits and barely need Redis; here
each service is a separate ``claire run --service NAME`` process (as in compose), so every
consumer reads the topics through Redis. Redis is killed with SIGKILL mid-run: each process
reports it down, and decisions still flow from the log; Redis comes back, each reports it up;
at the end the ledger holds every trade once and every decision equals a replay.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.faults.fault_helpers import (
    CLAIRE,
    PrivateRedis,
    Proc,
    check_ledger,
    claire_env,
    count_where,
    free_port,
    machines,
    momentum_tape,
    read_ledger,
    replay_mismatches,
    spawn,
    start_mexc_server,
    wait_for,
    wall_ms,
    write_jsonl,
)

pytestmark = [pytest.mark.db, pytest.mark.timeout(300)]

SERVICES = ("feed", "signal", "risk", "execution", "projector", "relay", "alerts")
TRADES = "SELECT count(*) FROM ledger.events WHERE event_type = 'market.trade'"
DECISIONS = (
    "SELECT count(*) FROM ledger.events"
    " WHERE event_type IN ('signal.generated', 'risk.verdict', 'order.requested')"
)


async def _redis_up(port: int) -> float | None:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            text = await response.text()
    except aiohttp.ClientError:
        return None
    for line in text.splitlines():
        if line.startswith('claire_dependency_up{dependency="redis"}'):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_redis_when_killed_under_separate_service_processes_then_they_fall_back_and_resume(
    fresh_database_url,
    private_redis: PrivateRedis,
    redis_namespace: str,
    workdir: Path,
    processes: list[Proc],
) -> None:
    url = await fresh_database_url()
    lines = momentum_tape(wall_ms() - 90_000)
    server, ws = start_mexc_server(
        write_jsonl(workdir / "tape.jsonl", lines), workdir, "mexc", autoplay_after=3, speed=3
    )
    processes.append(server)
    ports = {name: free_port() for name in SERVICES}
    running = {}
    for name in SERVICES:
        env = claire_env(url, private_redis.url, redis_namespace, ws, METRICS_PORT=str(ports[name]))
        running[name] = spawn(
            [*CLAIRE, "run", f"--service={name}"], env, workdir / f"{name}.log", workdir
        )
        processes.append(running[name])

    def alive() -> None:
        for name, proc in running.items():
            assert proc.popen.poll() is None, f"{name} died:\n{proc.output()}"

    consumers = ("signal", "risk", "execution", "alerts")

    async def every(value: float) -> bool:
        alive()
        return all([await _redis_up(ports[name]) == value for name in consumers])

    await wait_for(lambda: every(1.0), 90, "every consumer reading from Redis")

    async def deciding() -> bool:
        alive()
        return await count_where(url, DECISIONS) >= 1

    await wait_for(deciding, 120, "the first decisions", interval=0.5)
    private_redis.kill()  # SIGKILL: every subscription of every process breaks at once
    await wait_for(lambda: every(0.0), 60, "every consumer reporting Redis down")
    before = await count_where(url, DECISIONS)

    async def decided_without_redis() -> bool:
        alive()
        return await count_where(url, DECISIONS) > before

    await wait_for(decided_without_redis, 90, "decisions from the log while Redis is down", 0.5)
    private_redis.start()
    await wait_for(lambda: every(1.0), 90, "every consumer back on Redis")

    async def tape_in() -> bool:
        alive()
        return await count_where(url, TRADES) == len(lines)

    await wait_for(tape_in, 150, "the whole tape in the ledger", interval=1)
    running["feed"].kill9()  # no more clock ticks: the deciders can reach the head

    async def settled() -> bool:
        alive_others = [p for n, p in running.items() if n != "feed"]
        for proc in alive_others:
            assert proc.popen.poll() is None, proc.output()
        recorded = await read_ledger(url)
        return not any(replay_mismatches(recorded, machine) for machine in machines())

    await wait_for(settled, 120, "every decider at the head", interval=1)
    counts = check_ledger(await read_ledger(url))
    assert counts["market.trade"] == len(lines)
    assert counts["order.requested"] >= 1
