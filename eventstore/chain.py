"""The hash chain checked over the reader's own chunks, so a verifying pass reads the log once.

Why: ``replay --verify`` used to check the chain with :meth:`EventStore.verify` in a worker,
which read the whole log a second time (asyncpg building typed rows, then the canonical text
built field by field): about as much CPU as the fold it ran beside. The reader's chunks
(:data:`eventstore.sql.READ_ALL_JSON_WITH_IDS`) hold every field of the canonical text, the
payload as ``payload::text`` verbatim (``json_build_array`` embeds a jsonb value as its text
output), so a worker given those bytes checks the same links without touching the database.

Each row must follow its predecessor's position by one and its stored hash must equal
``sha256(previous stored hash || utf8(canonical text))``, computed by the functions every other
check uses (:func:`eventstore.canonical.canonical_line`, :func:`~eventstore.canonical.next_link`);
the problems are named exactly as :meth:`EventStore.verify` names them. A chunk these types cannot
decode stops the check where it is (``stalled``): the caller checks the rest from the database.
Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from eventstore.canonical import EPOCH, GENESIS, MICROSECOND, canonical_line, chain_links


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
        line, epoch, micro = canonical_line, EPOCH, MICROSECOND
        recorded, recorded_us = None, 0
        texts: list[bytes] = []
        gap = None
        for row in rows:
            position = row.position
            if position != expected + len(texts):
                gap = position
                break
            if row.recorded_at != recorded:  # one per append: usually shared by many rows
                recorded = row.recorded_at
                recorded_us = (recorded - epoch) // micro
            # The text up to the payload, then the payload's bytes as the server rendered them.
            text = line(
                position,
                row.stream,
                row.stream_version,
                row.event_id,
                row.event_type,
                row.schema_version,
                (row.occurred_at - epoch) // micro,
                recorded_us,
                row.causation_id,
                row.causation_position,
                row.correlation_id,
                "",
            )
            texts.append(text.encode() + row.payload)
        if len(hashes) != 32 * len(rows):
            raise ValueError(f"{len(rows)} rows but {len(hashes)} bytes of hashes")
        digests = [hashes[at : at + 32] for at in range(0, 32 * len(texts), 32)]
        # Up to the first bad link, the recomputed links are the stored ones.
        links = chain_links(previous, texts)
        if links != digests:
            bad = next(i for i, (a, b) in enumerate(zip(links, digests, strict=True)) if a != b)
            previous = digests[bad - 1] if bad else previous
            position = expected + bad
            self._stop(previous, position, f"position {position}: hash does not match its content")
            return
        if digests:
            previous = digests[-1]
        expected += len(texts)
        if gap is not None:
            self._stop(previous, expected, f"position {expected} is missing (next is {gap})")
            return
        self._stop(previous, expected, None)

    def _stop(self, previous: bytes, expected: int, problem: str | None) -> None:
        """Where the chunk left the chain: links checked up to ``expected``, the first bad one."""
        self.checked += expected - self.expected
        self.previous, self.expected = previous, expected
        if problem is not None:
            self.first_bad, self.problem = expected, problem


def anchor_problem(
    expect: tuple[int, bytes], last: int, anchor_hash: bytes | None
) -> tuple[int | None, str] | None:
    """Whether an intact chain ending at ``last`` still holds the anchor ``expect`` (position,
    hash); ``anchor_hash`` is the stored hash found at that position. The first bad position and
    the problem, else None. Every ``verify`` (PostgreSQL, in memory) names it this way."""
    position, digest = expect
    if position > last:
        return last + 1, f"the anchor names position {position}, the log ends at {last}"
    if position == 0 and digest != GENESIS:  # before position 1 the chain is zeros
        return None, "the anchor names position 0 with a hash other than 32 zero bytes"
    if position > 0 and anchor_hash != digest:
        return position, f"position {position} no longer has the anchored hash"
    return None
