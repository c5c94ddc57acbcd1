"""Black-box attack: PostgreSQL stopped and started while a live order rests and trades.

docs/LIVE.md "Database outages": nothing is sent that is not in the ledger; when the database is
back live execution restores its state from the ledger, reconciles, and records the fills that
happened meanwhile exactly once. The test owns its PostgreSQL (an embedded one) so it can stop it.
Oracle: the local exchange's book (orders, positions) and the contracts traded there.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

from adapters.embedded import start_postgres
from aggregates import events as ev
from eventstore import EventStore
from eventstore.admin import create_database
from eventstore.migrations import upgrade
from pipeline.live_execution import LiveExecution
from pipeline.source import LedgerFeed
from tests.integration.live.live_helpers import (
    AT_MS,
    KEY,
    SECRET,
    append_request,
    request,
    until,
    venue,
)
from tests.support.mexc_rest import LocalMexcRest


async def test_postgres_outage_with_order_resting_then_fills_recorded_once_and_nothing_resent() -> (
    None
):
    base = Path(tempfile.mkdtemp(prefix="a19pg-"))
    pg = start_postgres(base / "pgdata")
    try:
        url = await create_database(pg.url("postgres"), "a19outage")
        await asyncio.to_thread(upgrade, url)
        async with (
            LocalMexcRest(accounts={KEY: SECRET}) as server,
            await EventStore.connect(url) as store,
        ):
            await append_request(store, request("a19out1", contracts=10, limit="64000.0"))

            def fresh() -> asyncio.Task[None]:
                """What the supervisor does: a new live execution, state from the ledger only."""
                live = LiveExecution(
                    venue(server),
                    store,
                    lambda after: LedgerFeed(store, None, after=after),
                    now_ms=lambda: AT_MS + 1000,
                    poll_seconds=0.05,
                    equity_every_seconds=3600,
                )
                return asyncio.create_task(live.run())

            task = fresh()
            crashes: list[BaseException | None] = []
            try:
                await until(store, lambda r: "order.accepted" in [x.event_type for x in r])
                pg.stop()
                # while the database is away the order trades at the exchange, twice
                server.fill("a19out1", Decimal(3))
                await asyncio.sleep(0.5)
                server.fill("a19out1", Decimal(7))
                await asyncio.sleep(1.0)
                pg = start_postgres(base / "pgdata")
                async with await EventStore.connect(url) as reader:
                    recorded: list = []
                    for _ in range(300):  # bounded wait, not a timing assertion
                        if task.done() and len(crashes) < 5:
                            crashes.append(task.exception())
                            task = fresh()
                        recorded = [x async for x in reader.read_all()]
                        if any(isinstance(x.event, ev.OrderFilled) for x in recorded):
                            break
                        await asyncio.sleep(0.1)
                    await asyncio.sleep(1.0)  # a few more polls: a duplicate would show now
                    recorded = [x async for x in reader.read_all()]
            finally:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        fills = [
            x.event
            for x in recorded
            if isinstance(x.event, ev.OrderPartiallyFilled | ev.OrderFilled)
        ]
        assert sum(f.contracts for f in fills) == Decimal(10), fills
        assert len({f.fill_id for f in fills}) == len(fills)
        assert list(server.orders) == ["a19out1"]  # sent once
        assert server.positions[("BTC_USDT", 1)][0] == 10
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
