"""Heartbeats on ``health``: every service is heard, a silent one is alerted, its return too.

Real processes (``claire run --service ...``), real PostgreSQL and Redis: ``claire status
--listen`` lists the services it hears; the risk service is killed with SIGKILL and the alerts
service records a WARNING in the ledger; started again, an INFO.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.fault_helpers import CLAIRE, Proc, claire_env, connection, spawn, wait_for

pytestmark = [pytest.mark.db, pytest.mark.redis, pytest.mark.timeout(180)]

ALERTS = (
    "SELECT payload->>'severity', payload->>'service' FROM ledger.events"
    " WHERE event_type = 'service.alert_raised' ORDER BY position"
)


async def _alerts(url: str) -> list[tuple[str, str]]:
    async with connection(url) as conn:
        return [(row[0], row[1]) for row in await conn.fetch(ALERTS)]


async def test_heartbeats_when_a_service_dies_and_returns_then_heard_warned_and_cleared(
    fresh_database_url, redis_url: str, redis_namespace: str, workdir: Path, processes: list[Proc]
) -> None:
    url = await fresh_database_url()
    env = claire_env(
        url, redis_url, redis_namespace, "ws://127.0.0.1:9", HEARTBEAT_INTERVAL_SECONDS="0.3"
    )
    alerts = spawn([*CLAIRE, "run", "--service=alerts"], env, workdir / "alerts.log", workdir)
    risk = spawn([*CLAIRE, "run", "--service=risk"], env, workdir / "risk-1.log", workdir)
    processes += [alerts, risk]

    async def both_heard() -> bool:
        status = spawn([*CLAIRE, "status", "--listen", "1.5"], env, workdir / "st.log", workdir)
        assert await asyncio.to_thread(status.wait, 60) == 0, status.output()
        lines = status.output().split("services heard on health:", 1)[-1].splitlines()
        heard = {line.split()[0] for line in lines if line.strip()}
        return {"risk", "alerts"} <= heard

    await wait_for(both_heard, 60, "risk and alerts heard on health", interval=0.5)
    assert await _alerts(url) == []  # all alive: nothing to say

    risk.kill9()

    async def warned() -> bool:
        return ("WARNING", "risk") in await _alerts(url)

    await wait_for(warned, 60, "a WARNING for the silent risk service")
    risk = spawn([*CLAIRE, "run", "--service=risk"], env, workdir / "risk-2.log", workdir)
    processes.append(risk)

    async def cleared() -> bool:
        return ("INFO", "risk") in await _alerts(url)

    await wait_for(cleared, 60, "an INFO when risk is heard again")
    assert await _alerts(url) == [("WARNING", "risk"), ("INFO", "risk")], alerts.output()

    async def told() -> bool:  # the alerts service told a human, from the ledger
        return "WARNING service risk" in alerts.output() and "INFO service risk" in alerts.output()

    await wait_for(told, 60, "the alerts service's log of both")
