"""Live execution restarted from its snapshot decides as one restarted from position 1.

The same session is played twice against the local MEXC REST server, each on a ledger of its
own: orders filled and resting, a partial fill, an exchange-resident stop that follows the
position, snapshots taken. While the service is down the exchange fills more of the resting
order, an order reaches the exchange but its answer is lost, and one is requested but never
sent. One restart restores from its latest usable snapshot (a newer, edited one is skipped with a
WARNING), the other folds the log from position 1: both record the same events, send nothing
twice and reconcile alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from aggregates import events as ev
from aggregates.live_book import LiveBookState
from aggregates.snapshot import CODECS, digest
from eventstore import EventStore
from eventstore.snapshots import Snapshot, Snapshots, snapshot_of
from pipeline.live_execution import PRODUCER, LiveExecution
from pipeline.snapshot_status import snapshot_lines
from pipeline.source import LedgerFeed
from tests.integration.live.live_helpers import (
    AT_MS,
    KEY,
    SECRET,
    append_request,
    events,
    request,
    running,
    types,
    until,
    venue,
)
from tests.support.mexc_rest import LocalMexcRest

pytestmark = pytest.mark.db

CODEC = CODECS[PRODUCER]
DAY = 86_400_000


def _fold(log: list[Any]) -> LiveBookState:
    state = LiveBookState()
    for recorded in log:
        state.fold(recorded)
    return state


def _bot(
    store: EventStore, server: LocalMexcRest, snapshots: Snapshots | None, every: int = 1
) -> LiveExecution:
    return LiveExecution(
        venue(server),
        store,
        lambda after: LedgerFeed(store, None, after=after),
        now_ms=lambda: AT_MS + 1000,
        poll_seconds=0.05,
        stop_loss_pct=Decimal(6),
        snapshots=snapshots,
        snapshot_every=every if snapshots is not None else 0,
    )


def _stop_for(contracts: int) -> Callable[[list[Any]], bool]:
    def placed(recorded: list[Any]) -> bool:
        asked = {
            r.event.stop_id: r.event.contracts
            for r in recorded
            if isinstance(r.event, ev.ExecutionStopRequested)
        }
        return any(
            isinstance(r.event, ev.ExecutionStopPlaced)
            and asked.get(r.event.stop_id) == Decimal(contracts)
            for r in recorded
        )

    return placed


def _filled(coid: str) -> Callable[[list[Any]], bool]:
    return lambda recorded: any(
        isinstance(r.event, ev.OrderFilled) and r.event.client_order_id == coid for r in recorded
    )


def _comparable(event: ev.Event) -> bytes:
    """An event without what differs between two runs: ids drawn at random (stop ids) or
    assigned by the server, and the server's wall-clock times."""
    fields = msgspec.to_builtins(event)
    for name in ("stop_id", "exchange_stop_id", "at_ms"):
        fields.pop(name, None)
    return msgspec.json.encode([ev.event_type(event), fields])


async def _session(url: str, *, from_snapshot: bool, caplog: pytest.LogCaptureFixture) -> dict:
    async with (
        LocalMexcRest(accounts={KEY: SECRET}) as server,
        await EventStore.connect(url) as store,
    ):
        server.mark_prices["BTC_USDT"] = Decimal("65010.0")
        server.contracts["BTC_USDT"].maker_fee_rate = Decimal("0.00011")  # a fill's fee: its share
        snapshots = Snapshots(store)
        first = _bot(store, server, snapshots)
        async with running(first):
            await until(store, lambda r: "execution.reconciled" in types(r))
            await append_request(store, request("a1"))
            await until(store, _stop_for(3))
            await append_request(store, request("a2", contracts=5, limit="64990.0"))
            await until(store, lambda r: types(r).count("order.accepted") == 2)
            server.fill("a2", Decimal(2))
            await until(store, _stop_for(5))
            for _ in range(200):  # once the feed has handed back what the bot recorded
                await first.wait_snapshots()
                if first.snapshot_now():  # the state is the fold of the log up to here
                    break
                await asyncio.sleep(0.05)
            await first.wait_snapshots()
        assert first.snapshots_taken >= 2
        good = await snapshots.latest_usable(PRODUCER)
        assert good is not None and good.snapshot.position == first.last_position
        assert good.state.stops and good.state.fees and good.state.requests  # not a bare state

        # while it is down: a fill, a lost answer, a request never sent
        server.fill("a2", Decimal(1))
        await append_request(store, request("a3"))
        async with venue(server) as crashed:
            await crashed.start()
            await crashed.submit(request("a3"))
        await append_request(store, request("a4"))
        head, _ = await store.head()
        if from_snapshot:  # a newer snapshot, edited after it was digested: skipped
            edited = snapshot_of(
                PRODUCER,
                good.snapshot.state,
                head,
                await snapshots.chain_hash_at(head) or b"",
                await snapshots.config_hash_at(head),
            )
            await snapshots.save(
                Snapshot(**{**msgspec.structs.asdict(edited), "state": edited.state[:-1]})
            )

        restarted = _bot(store, server, snapshots if from_snapshot else None)
        with caplog.at_level(logging.WARNING, logger="eventstore.snapshots"):
            async with running(restarted):
                await until(
                    store,
                    lambda r: (
                        types(r).count("execution.reconciled") == 2
                        and _filled("a3")(r)
                        and _filled("a4")(r)
                        and _stop_for(12)(r)
                    ),
                )
                await until(store, lambda r: types(r).count("order.partially_filled") == 2)
                await restarted.wait_snapshots()
        recorded = await events(store)
        taken = [s for s in await snapshots.all() if s.machine == PRODUCER]
    # every snapshot taken on the way is the fold of the log up to its position, exactly
    for snapshot in taken:
        if digest(snapshot.state) != snapshot.state_digest:
            continue  # the edited one
        upto = [r for r in recorded if r.position <= snapshot.position]
        assert CODEC.encode(_fold(upto)) == snapshot.state, snapshot.position
    status = await snapshot_lines(url)  # claire status: what a restart would restore from
    assert any(line.split()[:2] == [PRODUCER, "position"] for line in status), status
    after = [r for r in recorded if r.position > head]
    (reconciled,) = [r.event for r in after if isinstance(r.event, ev.ExecutionReconciled)]
    return {
        "taken": len(taken),
        "restored_from": restarted.snapshot_position,
        "snapshot": good.snapshot.position,
        "sent": server.count("order/create"),
        "stops placed": server.count("planorder/place"),
        "stops cancelled": server.count("planorder/cancel"),
        "recorded": sorted(_comparable(r.event) for r in after),
        "reconciled": reconciled,
    }


async def test_restart_when_restored_from_snapshot_then_same_decisions_as_from_position_one(
    fresh_database_url: Callable[..., Awaitable[str]], caplog: pytest.LogCaptureFixture
) -> None:
    from_one = await _session(await fresh_database_url(), from_snapshot=False, caplog=caplog)
    assert from_one["restored_from"] == 0
    assert not any("skipped" in m for m in caplog.messages)
    from_snapshot = await _session(await fresh_database_url(), from_snapshot=True, caplog=caplog)
    assert from_snapshot["restored_from"] == from_snapshot["snapshot"] > 0
    assert from_snapshot["taken"] >= 5 and from_one["taken"] >= 3  # each checked above
    assert any("truncated or edited" in m for m in caplog.messages)  # the newer one, skipped

    assert from_snapshot["sent"] == from_one["sent"] == 4  # a1, a2, a3 (answer lost), a4: once
    for key in ("stops placed", "stops cancelled", "recorded", "reconciled"):
        assert from_snapshot[key] == from_one[key], key
    corrections = from_snapshot["reconciled"].corrections
    assert any("a3 was accepted (answer had been lost)" in c for c in corrections)
    assert any("a4 had not reached the exchange; sent" in c for c in corrections)


async def test_first_event_of_a_utc_day_when_live_then_snapshot_of_the_day_before_taken(
    fresh_database_url: Callable[..., Awaitable[str]],
) -> None:
    async with (
        LocalMexcRest(accounts={KEY: SECRET}) as server,
        await EventStore.connect(await fresh_database_url()) as store,
    ):
        server.mark_prices["BTC_USDT"] = Decimal("65010.0")
        snapshots = Snapshots(store)
        bot = _bot(store, server, snapshots, every=10**9)  # only the day's end triggers one
        async with running(bot):
            await until(store, lambda r: "execution.reconciled" in types(r))
            await append_request(store, request("d1"))
            await until(store, _filled("d1"))
            for _ in range(600):  # until the feed has handed back what the bot recorded
                if bot.last_position == (await store.head())[0]:
                    break
                await asyncio.sleep(0.05)
            evening, _ = await store.head()
            assert await snapshots.all() == []
            day = max(r.event.at_ms for r in await events(store)) // DAY
            tomorrow = msgspec.structs.replace(request("d2"), at_ms=(day + 1) * DAY)
            await append_request(store, tomorrow)
            await until(store, _filled("d2"))
            await bot.wait_snapshots()
        recorded = await events(store)
        (taken,) = [s for s in await snapshots.all() if s.machine == PRODUCER]
    assert taken.position == evening
    assert taken.state == CODEC.encode(_fold([r for r in recorded if r.position <= evening]))
