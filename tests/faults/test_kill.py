"""kill -9 in the middle of a run, then restart: nothing committed is lost, nothing is doubled.

``claire run`` is a real subprocess fed by a real MEXC-protocol server subprocess; it is killed
with SIGKILL while market batches are being appended and decisions made. After a restart (a
fresh server plays the whole tape again, as a reconnecting exchange would resend), the ledger
holds every trade of the tape exactly once, its chain verifies, no order was requested twice,
every machine's recorded decisions equal a replay of the log, and the read models equal a
rebuild from scratch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from projections.projector import rebuild
from tests.faults.fault_helpers import (
    CLAIRE,
    Proc,
    check_ledger,
    claire_env,
    count_where,
    machines,
    momentum_tape,
    read_ledger,
    readmodel_rows,
    replay_mismatches,
    spawn,
    start_mexc_server,
    wait_for,
    wall_ms,
    write_jsonl,
)

pytestmark = [pytest.mark.db, pytest.mark.redis, pytest.mark.timeout(240)]

TRADES = "SELECT count(*) FROM ledger.events WHERE event_type = 'market.trade'"
VERDICTS = "SELECT count(*) FROM ledger.events WHERE event_type = 'risk.verdict'"
SIGNALS = "SELECT count(*) FROM ledger.events WHERE event_type = 'signal.generated'"


def _tape(workdir: Path) -> tuple[Path, int]:
    lines = momentum_tape(wall_ms() - 90_000)
    return write_jsonl(workdir / "tape.jsonl", lines), len(lines)


async def _sound_after_restart(url: str, tape_trades: int, workdir: Path, env: dict) -> None:
    recorded = await read_ledger(url)
    counts = check_ledger(recorded)
    assert counts["market.trade"] == tape_trades  # none lost, none doubled
    assert counts["config.activated"] == 1
    assert counts["signal.generated"] >= 1 and counts["order.requested"] >= 1
    verify = spawn([*CLAIRE, "verify"], {"DATABASE_URL": url}, workdir / "verify.log", workdir)
    assert verify.wait(60) == 0, verify.output()
    live = await readmodel_rows(url)
    await rebuild(url)
    assert await readmodel_rows(url) == live
    del env


async def test_claire_run_when_killed_mid_batch_then_restart_loses_and_doubles_nothing(
    fresh_database_url, redis_url: str, redis_namespace: str, workdir: Path, processes: list[Proc]
) -> None:
    url = await fresh_database_url()
    tape, trades = _tape(workdir)
    server, ws = start_mexc_server(tape, workdir, "mexc-1", autoplay_after=3, speed=8)
    processes.append(server)
    env = claire_env(url, redis_url, redis_namespace, ws)
    first = spawn([*CLAIRE, "run", "--duration", "120"], env, workdir / "run-1.log", workdir)
    processes.append(first)

    async def midway() -> bool:
        return await count_where(url, TRADES) >= trades // 2

    await wait_for(midway, 90, "half the tape in the ledger")
    first.kill9()  # SIGKILL: no drain, no flush, no goodbye
    server.kill9()
    assert 0 < await count_where(url, TRADES) < trades

    server, ws = start_mexc_server(tape, workdir, "mexc-2", autoplay_after=3)
    processes.append(server)
    env = claire_env(url, redis_url, redis_namespace, ws)
    second = spawn([*CLAIRE, "run", "--duration", "12"], env, workdir / "run-2.log", workdir)
    processes.append(second)
    assert second.wait(120) == 0, second.output()
    await _sound_after_restart(url, trades, workdir, env)


async def test_risk_service_when_killed_alone_then_restart_resumes_without_gaps_or_doubles(
    fresh_database_url, redis_url: str, redis_namespace: str, workdir: Path, processes: list[Proc]
) -> None:
    url = await fresh_database_url()
    tape, trades = _tape(workdir)
    server, ws = start_mexc_server(tape, workdir, "mexc", autoplay_after=3, speed=3)
    processes.append(server)
    env = claire_env(url, redis_url, redis_namespace, ws)
    feed = spawn([*CLAIRE, "run", "--service=feed"], env, workdir / "feed.log", workdir)
    others = ["signal", "execution", "projector", "relay", "alerts"]
    rest = spawn(
        [*CLAIRE, "run", *(f"--service={s}" for s in others)], env, workdir / "others.log", workdir
    )
    risk = spawn([*CLAIRE, "run", "--service=risk"], env, workdir / "risk-1.log", workdir)
    processes.extend([feed, rest, risk])

    async def signalled() -> bool:
        return await count_where(url, SIGNALS) >= 1

    await wait_for(signalled, 90, "the first signal", interval=0.05)
    risk.kill9()  # with signals to judge still ahead of it
    killed_at = await count_where(url, "SELECT position FROM ledger.head")
    assert await count_where(url, TRADES) < trades  # it misses the rest of the tape
    # The restarted risk service alone has to catch up on what it missed: no other process
    # re-derives its decisions.
    risk = spawn([*CLAIRE, "run", "--service=risk"], env, workdir / "risk-2.log", workdir)
    processes.append(risk)

    async def tape_in() -> bool:
        return await count_where(url, TRADES) == trades

    await wait_for(tape_in, 120, "the whole tape in the ledger", interval=0.5)
    feed.kill9()  # no more clock ticks: the head stops moving

    async def caught_up() -> bool:
        for proc in (rest, risk):
            assert proc.popen.poll() is None, proc.output()
        recorded = await read_ledger(url)
        return not any(replay_mismatches(recorded, machine) for machine in machines())

    await wait_for(caught_up, 120, "the restarted risk service (and the others) at the head", 1)
    # ... and it was the restarted service that judged what the first one never saw
    later = f"{VERDICTS} AND causation_position > {killed_at}"
    assert await count_where(url, later) >= 1
    risk.kill9()
    rest.kill9()
    await _sound_after_restart(url, trades, workdir, env)
