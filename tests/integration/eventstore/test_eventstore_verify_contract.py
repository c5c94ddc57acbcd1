"""verify() and head() through the port: the same answers from every implementation.

Runs on PostgreSQL and in memory (conftest). Tampering with stored rows is each implementation's
own matter (test_eventstore_tamper.py for PostgreSQL, tests/unit/eventstore/test_memory.py).
"""

from __future__ import annotations

import pytest

from eventstore import EventLog
from eventstore.canonical import GENESIS
from tests.integration.eventstore.eventstore_helpers import fill_mixed

pytestmark = [pytest.mark.db]


async def test_verify_when_log_is_empty_then_ok_at_the_genesis_head(store: EventLog) -> None:
    result = await store.verify()
    assert (result.ok, result.events_checked, result.head_position) == (True, 0, 0)
    assert result.head_hash == GENESIS == (await store.head())[1]
    assert (await store.verify(expect=(0, GENESIS))).ok


async def test_verify_when_chain_intact_then_ok_and_head_is_the_last_link(store: EventLog) -> None:
    await fill_mixed(store)
    records = [record async for record in store.read_all()]
    result = await store.verify()
    assert (result.ok, result.events_checked, result.first_bad_position) == (True, 10, None)
    assert (result.head_position, result.head_hash) == await store.head()
    assert await store.head() == (10, records[-1].hash)
    assert result.anchor == f"10:{records[-1].hash.hex()}"


async def test_verify_when_anchor_given_then_holds_only_for_the_stored_hash(
    store: EventLog,
) -> None:
    await fill_mixed(store)
    records = [record async for record in store.read_all()]
    assert (await store.verify(expect=(5, records[4].hash))).ok
    wrong = await store.verify(expect=(5, records[3].hash))
    assert (wrong.ok, wrong.first_bad_position) == (False, 5)
    assert wrong.problem == "position 5 no longer has the anchored hash"
    beyond = await store.verify(expect=(20, records[4].hash))
    assert (beyond.ok, beyond.first_bad_position) == (False, 11)
    assert beyond.problem == "the anchor names position 20, the log ends at 10"
    zero = await store.verify(expect=(0, records[0].hash))
    assert (zero.ok, zero.first_bad_position) == (False, None)
