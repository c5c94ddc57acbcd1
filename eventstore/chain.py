"""The hash chain checked over the reader's own chunks, so a verifying pass reads the log once.

Why: ``replay --verify`` used to check the chain with :meth:`EventStore.verify` in a worker,
which read the whole log a second time (asyncpg building typed rows, then the canonical text
built field by field): about as much CPU as the fold it ran beside. The reader's chunks
(:data:`eventstore.sql.READ_ALL_JSON_WITH_IDS`) hold every field of the canonical text, the
payload as ``payload::text`` verbatim (``json_build_array`` embeds a jsonb value as its text
output), so a worker given those bytes checks the same links without touching the database.

Each row must follow its predecessor's position by one and its stored hash must equal
``sha256(previous stored hash || utf8(canonical text))`` (:mod:`eventstore.canonical`); the
problems are named exactly as :meth:`EventStore.verify` names them. A chunk these types cannot
decode stops the check where it is (``stalled``): the caller checks the rest from the database.
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import msgspec

from eventstore.canonical import GENESIS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _Link(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A row of the reader's JSON chunk as the canonical text needs it: ``sql.ROW_COLUMNS``,
    then whether it is current, the payload and the event id."""

    position: int
    stream: str
    stream_version: int
    event_type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    causation_id: str | None  # PostgreSQL's uuid text is the canonical one
    causation_position: int | None
    correlation_id: str | None
    current: bool | None
    payload: msgspec.Raw  # payload::text, byte for byte
    event_id: str  # last (sql.READ_ALL_JSON_WITH_IDS); PostgreSQL's uuid text is canonical


_links = msgspec.json.Decoder(list[_Link])


class ChainCheck:
    """Follows the chain from position 1 over consecutive chunks; stops at the first bad link."""

    def __init__(self) -> None:
        self.previous = GENESIS
        self.expected = 1
        self.checked = 0
        self.first_bad: int | None = None
        self.problem: str | None = None
        self.stalled = False

    @property
    def ok(self) -> bool:
        return self.problem is None

    def feed(self, body: bytes, hashes: bytes) -> None:
        """One chunk: its JSON rows and its hashes (32 bytes each), both in position order."""
        if self.problem is not None or self.stalled:
            return
        try:
            rows = _links.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            self.stalled = True
            return
        previous, expected = self.previous, self.expected
        digests = [hashes[at : at + 32] for at in range(0, len(hashes), 32)]
        sha256 = hashlib.sha256
        epoch, micro = _EPOCH, _MICROSECOND
        recorded, recorded_text = None, ""
        for row, digest in zip(rows, digests, strict=True):
            position = row.position
            if position != expected:
                self._stop(
                    previous, expected, f"position {expected} is missing (next is {position})"
                )
                return
            if row.recorded_at != recorded:  # one per append: usually shared by many rows
                recorded = row.recorded_at
                recorded_text = str((recorded - epoch) // micro)
            causation = row.causation_position
            text = (
                f"{position}|{row.stream}|{row.stream_version}|"
                f"{row.event_id}|{row.event_type}|"
                f"{row.schema_version}|{(row.occurred_at - epoch) // micro}|{recorded_text}|"
                f"{row.causation_id or ''}|{'' if causation is None else causation}|"
                f"{row.correlation_id or ''}|"
            )
            if sha256(previous + text.encode() + row.payload).digest() != digest:
                self._stop(
                    previous, expected, f"position {position}: hash does not match its content"
                )
                return
            previous = digest
            expected += 1
        self._stop(previous, expected, None)

    def _stop(self, previous: bytes, expected: int, problem: str | None) -> None:
        """Where the chunk left the chain: links checked up to ``expected``, the first bad one."""
        self.checked += expected - self.expected
        self.previous, self.expected = previous, expected
        if problem is not None:
            self.first_bad, self.problem = expected, problem
