"""Black-box attack: the real `claire run --service execution` (live) through a PostgreSQL outage.

The test owns an embedded PostgreSQL, stops it while the live order rests at the local exchange
and trades there, starts it again, and judges from the exchange's book and the ledger.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

from adapters.embedded import start_postgres
from aggregates import events as ev
from eventstore import EventStore
from eventstore.admin import create_database
from eventstore.migrations import upgrade
from pipeline.preflight import code_version
from tests.blackbox_attack.live.cli_helpers import (
    CLAIRE,
    KEY,
    SECRET,
    append_preflight,
    live_env,
    preflight,
)
from tests.integration.live.live_helpers import append_request, request, until
from tests.support.mexc_rest import LocalMexcRest


async def outage_run(redis_url: str, tmp_path: Path) -> tuple[list, list[str], str]:  # type: ignore[type-arg]
    """Run the scenario; answer the ledger's fills, the exchange's orders and the process log."""
    base = Path(tempfile.mkdtemp(prefix="a19pgp-"))
    pg = start_postgres(base / "pgdata")
    process = None
    log = tmp_path / "claire.log"
    try:
        url = await create_database(pg.url("postgres"), "a19proc")
        await asyncio.to_thread(upgrade, url)
        await append_preflight(url, preflight(code_version()))
        async with LocalMexcRest(accounts={KEY: SECRET}) as server:
            env = live_env(url, redis_url, server.url)
            with log.open("w") as sink:
                process = await asyncio.create_subprocess_exec(
                    CLAIRE,
                    "run",
                    "--service",
                    "execution",
                    "--duration",
                    "40",
                    env=env,
                    cwd=tmp_path,
                    stdout=sink,
                    stderr=sink,
                )
            async with await EventStore.connect(url, max_connections=1) as store:
                await append_request(store, request("a19proc1", contracts=10, limit="64000.0"))
                await until(store, lambda r: "order.accepted" in [x.event_type for x in r], 20)
            pg.stop()
            server.fill("a19proc1", Decimal(3))
            await asyncio.sleep(1.0)
            server.fill("a19proc1", Decimal(7))
            await asyncio.sleep(2.0)
            pg = start_postgres(base / "pgdata")
            async with await EventStore.connect(url, max_connections=1) as reader:
                recorded: list = []
                for _ in range(200):  # bounded wait, not a timing assertion
                    recorded = [x async for x in reader.read_all()]
                    if process.returncode is not None or any(
                        isinstance(x.event, ev.OrderFilled) for x in recorded
                    ):
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2.0)
                recorded = [x async for x in reader.read_all()]
            fills = [
                x.event
                for x in recorded
                if isinstance(x.event, ev.OrderPartiallyFilled | ev.OrderFilled)
            ]
            return fills, list(server.orders), log.read_text()
    finally:
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


async def test_execution_process_when_postgres_stops_and_returns_then_fills_once_nothing_resent(
    redis_url: str, tmp_path: Path
) -> None:
    fills, orders, text = await outage_run(redis_url, tmp_path)
    assert sum(f.contracts for f in fills) == Decimal(10), (fills, text[-3000:])
    assert len({f.fill_id for f in fills}) == len(fills)
    assert orders == ["a19proc1"]  # the exchange saw the order once
    assert SECRET not in text and KEY not in text


async def test_execution_process_when_postgres_stops_then_log_has_no_traceback(
    redis_url: str, tmp_path: Path
) -> None:
    _, _, text = await outage_run(redis_url, tmp_path)
    assert "Traceback" not in text, text[-3000:]
