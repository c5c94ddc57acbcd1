"""Same id, different event: refused by name; the identical re-append stays a no-op (issue 15.5).

From the README: "An event whose id is already stored is not written again: its original
position is returned." That holds for the *same* event only; any difference in stream, type,
envelope or payload under a stored id raises ``EventIdConflict`` naming the id and its stored
position, and writes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates import events as ev
from aggregates.envelope import NewEvent
from eventstore import EventIdConflict, EventStore, EventStoreError
from tests.blackbox.ledger_writer.writer_helpers import claire_verify_async, ledger_rows, trade

pytestmark = [pytest.mark.db]

_ORIGINAL = trade(7, label="conflict")


def _changed(kind: str, salt: int) -> tuple[str, NewEvent]:
    """The stored event's id on something that differs from it in one respect: (stream, event)."""
    stream, new = "market-BTC_USDT", _ORIGINAL
    event = new.event
    assert isinstance(event, ev.TradeTicked)
    if kind == "stream":
        stream = f"market-OTHER{salt}"
    elif kind == "payload":
        new = msgspec.structs.replace(
            new, event=msgspec.structs.replace(event, price=event.price + Decimal(salt + 1))
        )
    elif kind == "type":
        other = ev.AlertRaised(at_ms=event.at_ms, severity="INFO", code="x.y", message=str(salt))
        new = msgspec.structs.replace(new, event=other)
    elif kind == "occurred_at":
        new = msgspec.structs.replace(
            new, occurred_at=new.occurred_at + timedelta(microseconds=salt + 1)
        )
    elif kind == "causation":
        new = msgspec.structs.replace(
            new, causation_id=uuid.UUID(int=salt + 1), causation_position=salt + 1
        )
    else:
        new = msgspec.structs.replace(new, correlation_id=uuid.UUID(int=salt + 1))
    return stream, new


_KINDS = st.sampled_from(["stream", "payload", "type", "occurred_at", "causation", "correlation"])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(kind=_KINDS, salt=st.integers(0, 10**6), alone=st.booleans())
async def test_reused_id_when_content_differs_then_event_id_conflict_names_id_and_position(
    store: EventStore, ledger_url: str, kind: str, salt: int, alone: bool
) -> None:
    """Whatever differs, the append fails with the id and its stored position, writes nothing;
    a neighbour in the same group commit is not affected; an identical re-append still returns
    the original position."""
    [original] = await store.append("market-BTC_USDT", [_ORIGINAL])
    before = await ledger_rows(ledger_url)
    stream, changed = _changed(kind, salt)
    neighbour = trade(salt, label=f"neighbour-{uuid.uuid4()}")
    attempts = [store.append(stream, [changed])]
    if not alone:  # one group commit with an unrelated good append
        attempts.append(store.append("market-ETH_USDT", [neighbour]))
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    refused = outcomes[0]
    assert isinstance(refused, EventIdConflict), refused
    assert isinstance(refused, EventStoreError)
    assert refused.event_id == _ORIGINAL.event_id and refused.position == original
    assert str(_ORIGINAL.event_id) in str(refused) and str(original) in str(refused)
    after = await ledger_rows(ledger_url)
    assert after[: len(before)] == before
    assert len(after) == len(before) + (0 if alone else 1)
    assert await store.append("market-BTC_USDT", [_ORIGINAL]) == [original]
    assert len(await ledger_rows(ledger_url)) == len(after)


async def test_reused_id_when_given_twice_in_one_append_with_different_content_then_refused(
    store: EventStore, ledger_url: str
) -> None:
    _, changed = _changed("payload", 1)
    with pytest.raises(EventIdConflict) as refused:
        await store.append("market-BTC_USDT", [_ORIGINAL, changed])
    assert refused.value.event_id == _ORIGINAL.event_id
    assert await ledger_rows(ledger_url) == []
    # The identical duplicate in one append is still stored once.
    positions = await store.append("market-BTC_USDT", [_ORIGINAL, _ORIGINAL])
    assert positions == [1, 1]


async def test_reused_id_when_sent_by_another_process_store_then_refused_and_verify_passes(
    store: EventStore, ledger_url: str
) -> None:
    """A second store (as another process has) has no cache of the first one's ids: the
    database decides. The refused appends leave a ledger that ``claire verify`` accepts."""
    [original] = await store.append("market-BTC_USDT", [_ORIGINAL])
    async with await EventStore.connect(ledger_url) as other:
        for kind in ("stream", "payload", "type"):
            stream, changed = _changed(kind, 3)
            with pytest.raises(EventIdConflict) as refused:
                await other.append(stream, [changed])
            assert refused.value.position == original
        assert await other.append("market-BTC_USDT", [_ORIGINAL]) == [original]
    # A big append (streamed path) carrying a conflicting id fails whole.
    big = [trade(n, label="big") for n in range(500)]
    _, changed = _changed("payload", 9)
    with pytest.raises(EventIdConflict):
        await store.append("market-BTC_USDT", [*big, changed])
    assert len(await ledger_rows(ledger_url)) == 1
    verify = await claire_verify_async(ledger_url)
    assert verify.code == 0, verify.text
