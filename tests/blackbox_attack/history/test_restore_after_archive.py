"""A restore never folds a log whose beginning was archived as if it were the whole log.

The retention floor keeps every position a known restore needs; a service with no usable
snapshot that starts after an archive (one that never ran here before) is refused in one line
instead of building a state that silently lacks the archived history (docs/ARCHIVE.md).
"""

from __future__ import annotations

import pytest

from eventstore import EventStore
from eventstore.snapshots import Snapshots
from pipeline.decider import DecisionService
from pipeline.startup import StartRefused
from tests.blackbox_attack.history.conftest import archived
from tests.integration.replay.replay_helpers import machines

SIGNAL = next(machine for machine in machines() if machine.name == "signal")


def _no_feed(position: int):  # restore() never reads the live feed
    raise AssertionError("restore must not follow the feed")


async def test_restore_when_the_prefix_is_archived_and_no_snapshot_then_refused_naming_it(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path / "archive")
    store = await EventStore.connect(ledger.url)
    try:
        service = DecisionService(SIGNAL, store, _no_feed, snapshots=None)
        with pytest.raises(StartRefused, match=r"signal: its restore needs position 1, but"):
            await service.restore()
    finally:
        await store.close()


async def test_restore_when_the_prefix_is_archived_then_the_snapshot_restores_the_tail(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path / "archive")
    store = await EventStore.connect(ledger.url)
    try:
        service = DecisionService(SIGNAL, store, _no_feed, snapshots=Snapshots(store))
        await service.restore()
        assert service.progress.snapshot_position == 35
        assert service.progress.last_position == ledger.events
    finally:
        await store.close()
