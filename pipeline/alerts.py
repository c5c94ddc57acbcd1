"""The alerts service: tells a human what the risk manager and the services flagged.

It reads ``AlertRaised`` and ``ServiceAlertRaised`` events (and live execution's
``ExecutionVenueInputRejected``: input from the exchange it could not take) from the ledger (via
the topics) and writes them to the log at the matching level; it keeps the most recent ones for
``/health`` and the demo's summary.
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
        if isinstance(alert, ev.ExecutionVenueInputRejected):
            alert = _venue_alert(alert)  # recorded by live execution, told like any alert
        if isinstance(alert, ev.ExecutionVenueEquity) and not alert.within_tolerance:
            alert = ev.AlertRaised(
                at_ms=alert.at_ms,
                severity="WARNING",
                code="capital_mismatch",
                message=(
                    f"the futures account holds {alert.equity} {alert.currency}, the configured"
                    f" capital is {alert.configured_capital} ({alert.difference_pct:+} %)"
                ),
            )
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


def _venue_alert(rejected: ev.ExecutionVenueInputRejected) -> ev.AlertRaised:
    """A venue-input event as the alert a human reads (not recorded: it is in the ledger)."""
    return ev.AlertRaised(
        at_ms=rejected.at_ms,
        severity=rejected.severity,
        code=f"venue_input_rejected.{rejected.kind}"[:64],
        message=(
            f"{rejected.venue}: {rejected.detail}"
            + (f" (order {rejected.client_order_id})" if rejected.client_order_id else "")
        )[:2000],
        symbol=rejected.symbol,
    )
