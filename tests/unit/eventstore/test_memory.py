"""MemoryEventLog's own checks: verify() finds an edited event like the PostgreSQL verify does.

The port's contract (append, reads, verify, subscribe) is tested against both implementations
in tests/integration/eventstore; here, what only the in-memory log can be made to do.
"""

from __future__ import annotations

import msgspec

from eventstore import MemoryEventLog
from tests.integration.eventstore.eventstore_helpers import fill_mixed


async def test_verify_when_an_event_is_edited_in_memory_then_names_its_position() -> None:
    log = MemoryEventLog()
    await fill_mixed(log)
    edited = msgspec.structs.replace(log._events[3], stream="market-ETH_USDT")
    log._events[3] = edited
    result = await log.verify()
    assert (result.ok, result.events_checked, result.first_bad_position) == (False, 3, 4)
    assert result.problem == "position 4: hash does not match its content"


async def test_verify_when_the_head_is_moved_back_then_names_the_first_unclaimed_link() -> None:
    log = MemoryEventLog()
    await fill_mixed(log)
    log._head = (9, log._events[8].hash)
    result = await log.verify()
    assert (result.ok, result.first_bad_position) == (False, 11)
    assert result.problem == "the head says 9 but the chain ends at 10"
