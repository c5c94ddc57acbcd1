"""Shared pieces of the differential attack: events at the edges, outcomes, comparable views.

Everything here is built from docs/LEDGER.md and the public types; the hash of an in-memory
event is recomputed from the documented canonical form, with PostgreSQL's own ``payload::text``
(what "its head() and verify() are what PostgreSQL would answer" has to mean).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import asyncpg

from aggregates import events as ev
from aggregates.envelope import ENVELOPE_FIELDS, NewEvent, RecordedEvent
from eventstore import EventLog

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LAST_INSTANT = datetime(3000, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
MAX_MS = 32503680000000  # the events' own at_ms bound (year 3000)

#: occurred_at values: valid ones first, then the ones the docs refuse.
GOOD_MOMENTS = [
    EPOCH,
    LAST_INSTANT,
    datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 1, 1, 17, 0, 0, 123456, tzinfo=timezone(timedelta(hours=5))),
]
BAD_MOMENTS: list[Any] = [
    EPOCH - timedelta(microseconds=1),
    LAST_INSTANT + timedelta(microseconds=1),
    datetime(2026, 1, 1, 12, 0, tzinfo=UTC).replace(tzinfo=None),  # naive
    "2026-01-01T00:00:00Z",
]

GOOD_DECIMALS = [
    Decimal("0"),
    Decimal("-0"),
    Decimal("-1.50"),
    Decimal("1E+400"),
    Decimal("1E-400"),
    Decimal("123456789012345678901234567890.123456789012345678901234567890"),
]
#: Keys whose order differs between "by characters" and "by UTF-8 bytes" (jsonb: length, bytes).
TRICKY_KEYS = {"é": "1", "ab": "2", "b": "3", "aa": "", "€": "x", "zzz": "y", "": "empty"}
TRICKY_TEXT = [
    "plain",
    'quote" back\\slash /',
    "\x01\x1f\x7f",
    "line\u2028sep",
    "é€😀",
    "tab\tnl\n",
]
BAD_TEXT = ["nul\u0000", "lone\ud800"]


def funding(at_ms: int, rate: Decimal, amount: Decimal) -> ev.FundingSettled:
    return ev.FundingSettled(at_ms=at_ms, symbol="BTC_USDT", rate=rate, amount=amount)


def config(at_ms: int, parameters: dict[str, Any]) -> ev.ConfigActivated:
    return ev.ConfigActivated(at_ms=at_ms, parameters=parameters, config_hash="a" * 64)


def command(at_ms: int, note: Any) -> ev.OperatorCommandIssued:
    return ev.OperatorCommandIssued(at_ms=at_ms, command="halt", operator="op", note=note)


def new(event: ev.Event, event_id: uuid.UUID, **envelope: Any) -> NewEvent:
    envelope.setdefault("occurred_at", datetime(2026, 1, 1, tzinfo=UTC))
    return NewEvent(event=event, event_id=event_id, **envelope)


async def outcome(awaitable: Awaitable[Any]) -> tuple[str, Any]:
    """("ok", value) or ("raise", type name, message): what a caller can observe."""
    try:
        return ("ok", await awaitable)
    except Exception as error:
        return ("raise", f"{type(error).__name__}: {error}")


async def collect(iterator: AsyncIterator[RecordedEvent]) -> list[RecordedEvent]:
    return [recorded async for recorded in iterator]


async def read_outcome(iterator_factory: Any) -> tuple[str, Any]:
    async def run() -> list[dict[str, Any]]:
        return [view(recorded) for recorded in await collect(iterator_factory())]

    return await outcome(run())


def view(recorded: RecordedEvent) -> dict[str, Any]:
    """Every field but recorded_at and hash (the store's own clock), with the UTC offsets."""
    fields = {name: getattr(recorded, name) for name in ENVELOPE_FIELDS if name != "recorded_at"}
    fields["occurred_at_offset"] = recorded.occurred_at.utcoffset()
    fields["recorded_at_offset"] = recorded.recorded_at.utcoffset()
    fields["event"] = recorded.event
    return fields


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def canonical(recorded: RecordedEvent, payload_text: str) -> bytes:
    """docs/LEDGER.md's canonical line: the audit query's concat_ws('|', ...)."""
    parts = [
        str(recorded.position),
        recorded.stream,
        str(recorded.stream_version),
        str(recorded.event_id),
        recorded.event_type,
        str(recorded.schema_version),
        str(_micros(recorded.occurred_at)),
        str(_micros(recorded.recorded_at)),
        "" if recorded.causation_id is None else str(recorded.causation_id),
        "" if recorded.causation_position is None else str(recorded.causation_position),
        "" if recorded.correlation_id is None else str(recorded.correlation_id),
        payload_text,
    ]
    return "|".join(parts).encode()


async def payload_texts(url: str) -> dict[uuid.UUID, str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT event_id, payload::text AS p FROM ledger.events")
    finally:
        await connection.close()
    return {row["event_id"]: row["p"] for row in rows}


def chain_mismatches(events: list[RecordedEvent], texts: dict[uuid.UUID, str]) -> list[int]:
    """Positions whose hash is not sha256(previous || canonical) with PostgreSQL's payload text."""
    previous, bad = bytes(32), []
    for recorded in events:
        link = hashlib.sha256(previous + canonical(recorded, texts[recorded.event_id])).digest()
        if link != recorded.hash:
            bad.append(recorded.position)
        previous = recorded.hash
    return bad


def verify_view(result: Any) -> tuple[Any, ...]:
    """A VerifyResult without its head hash (which includes recorded_at)."""
    return (
        result.ok,
        result.events_checked,
        result.head_position,
        result.first_bad_position,
        result.problem,
    )


async def both(pg: EventLog, mem: EventLog, call: Any) -> tuple[Any, Any]:
    return await outcome(call(pg)), await outcome(call(mem))
