"""Services starting together record the configuration in force once, whatever their clocks say."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from eventstore import EventStore
from pipeline.activation import activate_config
from tests.unit.strategies import trading_config

pytestmark = [pytest.mark.db]


async def test_activate_config_when_services_start_together_at_other_times_then_recorded_once(
    fresh_database_url: Callable[..., Awaitable[str]],
) -> None:
    url = await fresh_database_url(migrate=True)
    config = trading_config()
    stores = [await EventStore.connect(url) for _ in range(4)]
    try:
        # Each service records the same parameters at its own start time: same event id (the
        # stream version and the hash), different time. None may fail; one records it.
        starts = [1_750_000_000_000 + n for n in range(len(stores))]
        recorded = await asyncio.gather(
            *(activate_config(store, config, at) for store, at in zip(stores, starts, strict=True))
        )
        assert recorded.count(True) == 1
        again = await activate_config(stores[0], config, 1_750_000_999_000)
        assert again is False
        events = [fact async for fact in stores[0].read_stream("config")]
        assert len(events) == 1
    finally:
        for store in stores:
            await store.close()
