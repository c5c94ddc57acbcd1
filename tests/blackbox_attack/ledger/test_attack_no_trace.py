"""A refused append leaves no trace: stream versions and positions continue as if never sent."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from eventstore import ConcurrencyConflict, EventIdConflict, EventStore, InvalidEvent
from tests.blackbox_attack.ledger.attack_ledger_helpers import assert_intact, new, trade


async def test_refusals_of_every_kind_and_size_then_versions_and_positions_stay_contiguous(
    fresh_database_url,
) -> None:  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    store = await EventStore.connect(url)
    try:
        stored = new()
        await store.append("s", [stored])
        bad = trade()
        msgspec.structs.force_setattr(bad, "price", 0.1)
        changed = msgspec.structs.replace(stored, event=trade(price=Decimal("5")))
        for size in (1, 250, 10_000):
            with pytest.raises(InvalidEvent):
                await store.append("s", [*[new() for _ in range(size)], new(bad)])
            with pytest.raises(ConcurrencyConflict):
                await store.append("s", [new() for _ in range(size)], expected_version=0)
            with pytest.raises(EventIdConflict):
                await store.append("s", [*[new() for _ in range(size)], changed])
            got = await store.append("s", [new()])
            back = [r async for r in store.read_stream("s")]
            assert [r.stream_version for r in back] == list(range(1, len(back) + 1))
            assert got == [back[-1].position] and got == [len(back)]
        await assert_intact(store, url)
    finally:
        await store.close()
