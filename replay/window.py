"""The replay window: ``--from``/``--to`` as moments, resolved to ledger positions.

A date alone means midnight UTC at its start for ``--from`` and the end of that day for ``--to``
(so ``--from 2025-06-02 --to 2025-06-02`` is that whole day); a timestamp without an offset is
UTC. Positions come from :meth:`EventLog.position_at` (the first position at or after a
moment, by ``occurred_at``, the events' source time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from adapters.process import UsageError
from eventstore import EventLog

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_moment(text: str, *, option: str, end: bool = False) -> datetime:
    """``YYYY-MM-DD`` or an ISO-8601 timestamp (``Z`` or an offset; none means UTC)."""
    raw = text.strip()
    try:
        if _DATE.match(raw):
            day = date.fromisoformat(raw)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a date: use YYYY-MM-DD or an ISO-8601 timestamp "
            "like 2025-06-02T13:45:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """Positions ``first..last`` (inclusive) of a ledger whose head is ``head``."""

    first: int
    last: int
    head: int
    start: datetime
    end: datetime | None

    def describe(self) -> str:
        until = self.end.isoformat() if self.end is not None else "the end of the ledger"
        return (
            f"window {self.start.isoformat()} .. {until}: positions {self.first}..{self.last} "
            f"of {self.head}"
        )


async def resolve_window(store: EventLog, start: datetime, end: datetime | None) -> Window:
    """The positions of ``[start, end)``; :class:`UsageError` if that holds nothing."""
    if end is not None and end <= start:
        raise UsageError(
            f"--to must be after --from: the window {start.isoformat()} .. {end.isoformat()} "
            "is empty (a date alone is a whole day: --from starts at its first moment, --to "
            "ends after its last)"
        )
    head, _ = await store.head()
    if head == 0:
        raise UsageError("the ledger is empty: nothing to replay")
    first = await store.position_at(start)
    if first is None:
        raise UsageError(
            f"the window starts past the end of the ledger: no event at or after "
            f"{start.isoformat()} (the ledger holds positions 1..{head})"
        )
    last = head
    if end is not None:
        after = await store.position_at(end)
        if after is not None:
            last = after - 1
    if last < first:
        until = end.isoformat() if end is not None else "the end"
        raise UsageError(f"the window {start.isoformat()} .. {until} holds no events")
    return Window(first=first, last=last, head=head, start=start, end=end)
