"""Big appends stream, stay atomic and never deadlock with concurrent writers (issue 15.7).

README: an append of many events is validated and chained in chunks while PostgreSQL ingests
the previous chunk; every append is atomic, positions are gapless. Here big appends of each size
class (streamed under the lock, staged in a temporary table) run while other stores (their own
connections) append small batches with and without expected versions, and a subscriber follows:
every append succeeds, each big one lands on consecutive positions and reads back equal, the
follower sees every position once, and ``claire verify`` passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import ConcurrencyConflict, EventIdConflict, EventStore, InvalidEvent
from tests.blackbox.ledger_writer.writer_helpers import (
    assert_gapless,
    claire_verify_async,
    ledger_rows,
    trade,
)

pytestmark = [pytest.mark.db, pytest.mark.timeout(280)]


async def _small_writer(url: str, name: str, stop: asyncio.Event, expected: bool) -> int:
    """Appends 1..3 events at a time until ``stop``; every append must succeed."""
    written = 0
    async with await EventStore.connect(url) as store:
        while not stop.is_set():
            size = 1 + written % 3
            batch = [trade(written + k, label=name) for k in range(size)]
            version = written if expected else None
            await store.append(f"small-{name}", batch, expected_version=version)
            written += size
    return written


async def _follow(store: EventStore, into: list[int]) -> None:
    async for event in store.subscribe(poll_interval=0.05):
        into.append(event.position)


async def _caught_up(store: EventStore, followed: list[int], follower: asyncio.Task) -> None:
    """Wait until the follower has seen the head, then stop it."""
    head = (await store.head())[0]
    for _ in range(6000):
        if (followed and followed[-1] >= head) or follower.done():
            break
        await asyncio.sleep(0.01)
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower


@pytest.mark.parametrize("sizes", [(250, 1999, 250), (12_000, 300, 10_000)])
async def test_big_appends_when_other_writers_run_then_all_succeed_consecutive_and_verified(
    ledger_url: str, store: EventStore, sizes: tuple[int, ...]
) -> None:
    stop = asyncio.Event()
    followed: list[int] = []
    follower = asyncio.create_task(_follow(store, followed))
    writers = [
        asyncio.create_task(_small_writer(ledger_url, f"w{i}", stop, expected=i % 2 == 0))
        for i in range(3)
    ]
    try:
        await asyncio.sleep(0.05)
        appended = []
        async with await EventStore.connect(ledger_url) as big:
            for round_, size in enumerate(sizes):
                events = [trade(n, label=f"big{round_}") for n in range(size)]
                expected = 0 if round_ % 2 == 0 else None
                stream = f"big-{round_}"
                positions = await big.append(stream, events, expected_version=expected)
                assert positions == list(range(positions[0], positions[0] + size))
                appended.append((stream, events, positions))
                await asyncio.sleep(0.02)
    finally:
        stop.set()
    written = await asyncio.gather(*writers)
    assert all(w > 0 for w in written)
    await _caught_up(store, followed, follower)
    rows = await ledger_rows(ledger_url)
    assert_gapless(rows)
    assert followed == [row[0] for row in rows]
    for stream, events, positions in appended:
        back = [e async for e in store.read_stream(stream)]
        assert [e.position for e in back] == positions
        assert [e.event_id for e in back] == [n.event_id for n in events]
        assert [e.event for e in back] == [n.event for n in events]
    verify = await claire_verify_async(ledger_url)
    assert verify.code == 0, verify.text


_CLASSES = st.sampled_from([200, 999, 10_000])


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    size=_CLASSES,
    flaw=st.sampled_from(["invalid", "conflict", "stored-id", "duplicate-id", "retry"]),
    where=st.floats(0, 1),
)
async def test_big_append_when_it_must_fail_or_is_retried_then_all_or_nothing(
    ledger_url: str, size: int, flaw: str, where: float
) -> None:
    """Whatever is wrong with a big append, wherever in it: it raises and nothing of it is
    written; a retry of an identical one returns the original positions and writes nothing."""
    label = str(uuid.uuid4())
    stream = f"flawed-{label[:8]}"
    events = [trade(n, label=label) for n in range(size)]
    at = min(int(where * size), size - 1)
    async with await EventStore.connect(ledger_url) as store:
        if flaw == "retry":
            positions = await store.append(stream, events)
            before = await ledger_rows(ledger_url)
            assert await store.append(stream, events) == positions
            async with await EventStore.connect(ledger_url) as other:
                assert await other.append(stream, events, expected_version=0) == positions
            assert await ledger_rows(ledger_url) == before
            return
        error: type[Exception] = EventIdConflict
        if flaw == "invalid":
            events[at] = "not an event"  # type: ignore[call-overload]
            error = InvalidEvent
        elif flaw == "conflict":
            await store.append(stream, [trade(-1, label=label)])
            error = ConcurrencyConflict
        elif flaw == "stored-id":  # stored in another stream: not the same event
            await store.append("elsewhere", [events[at]])
        else:  # the same id twice, different content
            other = trade(at + size, label=label)
            events[(at + 1) % size] = msgspec.structs.replace(other, event_id=events[at].event_id)
        before = await ledger_rows(ledger_url)
        with pytest.raises(error):
            await store.append(stream, events, expected_version=0)
        after = await ledger_rows(ledger_url)
        assert after == before
