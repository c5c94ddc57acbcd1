"""The chain checked over the reader's own chunks finds what ``verify()`` finds, named alike."""

from __future__ import annotations

import pytest

from eventstore import EventStore, EventStoreError
from eventstore.canonical import GENESIS
from eventstore.chain import ChainCheck
from tests.integration.eventstore.eventstore_helpers import (
    as_superuser_without_triggers,
    fill_mixed,
)

pytestmark = [pytest.mark.db, pytest.mark.postgres_only]  # chunk sinks, resume: EventStore's

Outcome = tuple[bool, int, int | None, str | None]


async def _verify(store: EventStore) -> Outcome:
    result = await store.verify()
    return result.ok, result.events_checked, result.first_bad_position, result.problem


async def _over_chunks(store: EventStore, *, stop_after: int | None = None) -> Outcome:
    """What replay does: check the chunks read, then verify the rest resumed from there."""
    check = ChainCheck()

    def sink(body: bytes, hashes: list[bytes]) -> None:
        check.feed(body, b"".join(hashes))

    read = 0
    async for _ in store.read_all(batch_size=3, chunks=sink):
        read += 1
        if stop_after is not None and read >= stop_after:
            break
    if not check.ok:
        return False, check.checked, check.first_bad, check.problem
    result = await store.verify(resume=(check.expected - 1, check.previous))
    return result.ok, result.events_checked, result.first_bad_position, result.problem


async def test_chain_check_when_chain_intact_then_every_link_checked_from_the_chunks(
    store: EventStore,
) -> None:
    await fill_mixed(store)
    check = ChainCheck()
    chunks = 0

    def sink(body: bytes, hashes: list[bytes]) -> None:
        nonlocal chunks
        chunks += 1
        check.feed(body, b"".join(hashes))

    async for _ in store.read_all(batch_size=3, chunks=sink):
        pass
    assert chunks == 4 and check.ok and check.checked == 10 and check.expected == 11
    assert check.previous == (await store.head())[1]
    assert await _over_chunks(store) == (True, 10, None, None) == await _verify(store)


async def test_chain_check_when_read_stops_early_then_the_rest_is_verified_from_the_database(
    store: EventStore, ledger_url: str
) -> None:
    await fill_mixed(store)
    await as_superuser_without_triggers(
        ledger_url, "UPDATE ledger.events SET stream = 'x' WHERE position = 9"
    )
    found = await _over_chunks(store, stop_after=4)  # chunks 1..3 and 4..6 only
    assert found == await _verify(store)
    assert found[:3] == (False, 8, 9)


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        (["UPDATE ledger.events SET payload = jsonb_set(payload, '{price}', '\"1\"') "
          "WHERE position = 4"], 4),
        (["UPDATE ledger.events SET occurred_at = occurred_at + interval '1 ms' "
          "WHERE position = 8"], 8),
        (["UPDATE ledger.events SET recorded_at = recorded_at + interval '1 us' "
          "WHERE position = 2"], 2),
        (["UPDATE ledger.events SET causation_position = 99 WHERE position = 9"], 9),
        (["UPDATE ledger.events SET correlation_id = NULL WHERE position = 10"], 10),
        (["DELETE FROM ledger.events WHERE position = 5"], 5),
        (
            [
                "UPDATE ledger.events SET position = 1000003 WHERE position = 3",
                "UPDATE ledger.events SET position = 3 WHERE position = 6",
                "UPDATE ledger.events SET position = 6 WHERE position = 1000003",
            ],
            3,
        ),
        (["DELETE FROM ledger.events WHERE position = 10"], 10),
        (["DELETE FROM ledger.events WHERE position = 1"], 1),
    ],
    ids=["edit-payload", "edit-time", "edit-recorded", "edit-cause", "edit-correlation",
         "delete", "reorder", "delete-last", "delete-first"],
)  # fmt: skip
async def test_chain_check_when_tampered_then_same_first_bad_position_and_problem_as_verify(
    store: EventStore, ledger_url: str, tamper: list[str], first_bad: int
) -> None:
    await fill_mixed(store)
    await as_superuser_without_triggers(ledger_url, *tamper)
    found = await _over_chunks(store)
    assert found == await _verify(store)
    assert not found[0] and found[2] == first_bad


async def test_chain_check_when_a_chunk_cannot_be_decoded_then_it_stalls_and_resume_covers_it(
    store: EventStore,
) -> None:
    await fill_mixed(store)
    check = ChainCheck()
    check.feed(b"[[1, 2", b"")
    assert check.stalled and check.ok and check.expected == 1 and check.previous == GENESIS
    result = await store.verify(resume=(check.expected - 1, check.previous))
    assert result.ok and result.events_checked == 10


async def test_verify_when_resume_and_expect_given_together_then_refused(
    store: EventStore,
) -> None:
    await fill_mixed(store)
    with pytest.raises(EventStoreError, match="cannot be combined"):
        await store.verify(expect=(1, GENESIS), resume=(0, GENESIS))
