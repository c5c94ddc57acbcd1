"""The alerts service: tells a human what the risk manager and the services flagged.

It reads ``AlertRaised`` and ``ServiceAlertRaised`` events from the ledger (via the topics) and
writes them to the log at the matching level; it keeps the most recent ones for ``/health`` and
the demo's summary.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from aggregates import events as ev
from aggregates.envelope import RecordedEvent
from pipeline.source import LedgerFeed

_log = logging.getLogger("claire.alerts")

_LEVEL = {"CRITICAL": logging.CRITICAL, "WARNING": logging.WARNING, "INFO": logging.INFO}


class AlertsService:
    """Follows the ledger from a position (the head at start) and reports every alert after it."""

    def __init__(self, feed: Callable[[int], LedgerFeed], *, after: int, keep: int = 100) -> None:
        self._feed = feed
        self.last = after
        self.recent: deque[RecordedEvent] = deque(maxlen=keep)
        self.counts: dict[str, int] = {"CRITICAL": 0, "WARNING": 0, "INFO": 0}

    def handle(self, recorded: RecordedEvent) -> None:
        alert = recorded.event
        if isinstance(alert, ev.ServiceAlertRaised):
            self.recent.append(recorded)
            self.counts[alert.severity] += 1
            _log.log(
                _LEVEL[alert.severity],
                "%s service %s at position %d: %s",
                alert.severity,
                alert.service,
                recorded.position,
                alert.message,
            )
            return
        if not isinstance(alert, ev.AlertRaised):
            return
        self.recent.append(recorded)
        self.counts[alert.severity] += 1
        _log.log(
            _LEVEL[alert.severity],
            "%s %s%s at position %d: %s",
            alert.severity,
            alert.code,
            f" [{alert.symbol}]" if alert.symbol else "",
            recorded.position,
            alert.message,
        )

    async def run(self) -> None:
        """Report alerts after ``last``; a restart goes on from the last one seen."""
        async for recorded in self._feed(self.last).events():
            self.handle(recorded)
            self.last = recorded.position
