"""``claire verify --since FILE``: check the chain from a trusted anchor to the head.

A daily audit should cost a day, not the whole history. The anchor (``POSITION:HASH``, written
by an earlier ``claire verify --anchor FILE`` whose check passed) is trusted: the links from the
anchor on are recomputed starting from the *anchored* hash, so an anchored prefix rewritten since
(which would change the stored hash at the anchor, and so every link after it) fails at the
anchor or the first link after it. The full check stays the default.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eventstore import EventStore, VerifyResult


class BadAnchorFile(ValueError):
    """The anchor file is missing, unreadable or not ``POSITION:HASH``."""


def read_anchor(path: str, parse: Callable[[str], tuple[int, bytes]]) -> tuple[int, bytes]:
    """The anchor in ``path``; ``parse`` is the CLI's ``POSITION:HASH`` parser."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadAnchorFile(f"cannot read the anchor file {path}: {error}") from error
    return parse(text)


async def verify_since(url: str, anchor: tuple[int, bytes]) -> VerifyResult:
    """Verify the links after ``anchor`` and the head; positions up to it count as checked."""
    position, anchored = anchor
    store = await EventStore.connect(url, max_connections=1)
    try:
        if position == 0:  # the chain's start: its hash is 32 zero bytes, checked by verify
            return await store.verify(expect=(0, anchored))
        head, head_hash = await store.head()
        stored = await store._fetch("SELECT hash FROM ledger.events WHERE position = $1", position)
        if not stored:
            return VerifyResult(
                ok=False,
                events_checked=0,
                head_position=head,
                head_hash=head_hash,
                first_bad_position=head + 1,
                problem=f"the anchor names position {position}, the log ends at {head}",
            )
        if bytes(stored[0][0]) != anchored:
            return VerifyResult(
                ok=False,
                events_checked=0,
                head_position=head,
                head_hash=head_hash,
                first_bad_position=position,
                problem=f"position {position} no longer has the anchored hash",
            )
        return await store.verify(resume=(position, anchored))
    finally:
        await store.close()
