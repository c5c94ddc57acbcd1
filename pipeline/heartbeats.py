"""Heartbeats on the ``health`` topic, and the watch that notices when a service falls silent.

Every service process publishes, at a fixed interval, who it is (service, instance, code
version), how far it got (last ledger position processed, lag behind the head) and whether its
dependencies are up. ``/health`` answers only whoever asks one container; the topic lets the
alerts service and ``claire status`` hear every service at once. Heartbeats are wall-clock
signs of life and never enter the ledger; what the watch concludes from them (a service silent
for ``MISSED`` intervals: WARNING; back: INFO) is recorded as ``ServiceAlertRaised``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import Literal

from adapters.bus import BusUnavailable, Heartbeat, RedisBus
from aggregates import events as ev
from aggregates.envelope import CLAIRE_NAMESPACE, NewEvent, utc_from_ms
from eventstore import EventStore

_log = logging.getLogger("claire.heartbeats")

#: Heartbeats missed in a row before a service counts as silent.
MISSED = 3


def code_version() -> str:
    """The installed package's version (what the heartbeat says is running)."""
    try:
        return metadata.version("claire-de-binaire")
    except metadata.PackageNotFoundError:
        return "unknown"


def instance_name() -> str:
    """This process among its service's instances: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat_payload(
    *,
    instance: str,
    version: str,
    interval: float,
    position: int | None,
    head: int | None,
    dependencies: Mapping[str, bool],
) -> dict[str, str]:
    """The heartbeat's meta-information, as the strings the ``health`` wire format carries."""
    payload = {"instance": instance, "version": version, "interval_s": f"{interval:g}"}
    if position is not None:
        payload["position"] = str(position)
        if head is not None:
            payload["lag"] = str(max(head - position, 0))
    for name, up in sorted(dependencies.items()):
        payload[f"dependency.{name}"] = "up" if up else "down"
    return payload


def interval_of(beat: Heartbeat, default: float) -> float:
    try:
        value = float(beat.payload.get("interval_s", default))
    except ValueError:
        return default
    return value if 0 < value < 3600 else default


async def publish_beat(
    connect: Callable[[], Awaitable[RedisBus]], service: str, payload: Mapping[str, str]
) -> bool:
    """Publish one heartbeat; False (and nothing else) if Redis is away: it is for speed only."""
    try:
        bus = await connect()
        await bus.publish_heartbeat(service, payload)
    except BusUnavailable:
        return False
    return True


@dataclass
class _Heard:
    beat: Heartbeat
    seen: float  # the watcher's clock, seconds
    interval: float
    silent: bool = False


@dataclass(frozen=True)
class Change:
    """A service fell silent (WARNING) or was heard again (INFO)."""

    severity: Literal["WARNING", "INFO"]
    service: str
    message: str


class HeartbeatWatch:
    """Remembers when each service was last heard; says when one falls silent or returns.

    Pure bookkeeping on a clock it is given (seconds), so it is tested without waiting.
    """

    def __init__(self, *, default_interval: float, missed: int = MISSED) -> None:
        self.default_interval = default_interval
        self.missed = missed
        self.heard: dict[str, _Heard] = {}
        #: Services recorded silent (by an earlier run) and not heard since this one started.
        self.silent_before: set[str] = set()

    def recall(self, alerts: Iterable[ev.ServiceAlertRaised]) -> None:
        """Take over what the ledger says: the services whose last alert was a WARNING are
        silent, so their first beat is an INFO (``alerts`` in ledger order)."""
        last: dict[str, str] = {}
        for alert in alerts:
            last[alert.service] = alert.severity
        self.silent_before = {
            service for service, severity in last.items() if severity == "WARNING"
        }

    def saw(self, beat: Heartbeat, now: float) -> list[Change]:
        previous = self.heard.get(beat.service)
        self.heard[beat.service] = _Heard(beat, now, interval_of(beat, self.default_interval))
        if beat.service in self.silent_before:
            self.silent_before.discard(beat.service)
            if previous is None:
                instance = beat.payload.get("instance", "?")
                return [Change("INFO", beat.service, f"{beat.service} heard again ({instance})")]
        if previous is not None and previous.silent:
            instance = beat.payload.get("instance", "?")
            return [Change("INFO", beat.service, f"{beat.service} heard again ({instance})")]
        return []

    def check(self, now: float) -> list[Change]:
        changes = []
        for service, heard in sorted(self.heard.items()):
            if not heard.silent and now - heard.seen > self.missed * heard.interval:
                heard.silent = True
                last = heard.beat.payload.get("instance", "?")
                changes.append(
                    Change(
                        "WARNING",
                        service,
                        f"{service}: no heartbeat for {self.missed} intervals of "
                        f"{heard.interval:g}s (last from {last})",
                    )
                )
        return changes


def service_alert(change: Change, at_ms: int) -> NewEvent:
    """The ledger's record of a change (its id from content and time: recorded once)."""
    event = ev.ServiceAlertRaised(
        at_ms=at_ms, severity=change.severity, service=change.service, message=change.message
    )
    key = f"service-alert/{change.service}/{change.severity}/{at_ms}"
    return NewEvent(
        event=event, event_id=uuid.uuid5(CLAIRE_NAMESPACE, key), occurred_at=utc_from_ms(at_ms)
    )


async def recorded_alerts(store: EventStore) -> list[ev.ServiceAlertRaised]:
    """The ``ServiceAlertRaised`` events of the ledger's ``alerts`` stream, in order."""
    return [
        recorded.event
        async for recorded in store.read_stream("alerts")
        if isinstance(recorded.event, ev.ServiceAlertRaised)
    ]


async def watch_heartbeats(
    connect: Callable[[], Awaitable[RedisBus]],
    store: EventStore,
    watch: HeartbeatWatch,
    *,
    now: Callable[[], float],
    now_ms: Callable[[], int],
) -> None:
    """Listen on ``health``, and record each service that falls silent or comes back.

    A lost Redis ends this run (the supervisor of the alerts service starts it again); what the
    watch remembers survives, so a service silent through the outage is still reported once.
    """
    bus = await connect()
    async with await bus.subscribe_health() as beats:
        iterator = aiter(beats)
        while True:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives as the beat
            # does, and this loop then runs on forever (a refused start never ended).
            try:
                async with asyncio.timeout(watch.default_interval):
                    beat = await anext(iterator)
            except TimeoutError:
                beat = None
            changes = watch.check(now()) if beat is None else watch.saw(beat, now())
            if beat is not None:
                changes += watch.check(now())
            for change in changes:  # told to a human by the alerts service, from the ledger
                await store.append("alerts", [service_alert(change, now_ms())])


async def listen(
    connect: Callable[[], Awaitable[RedisBus]], seconds: float
) -> dict[str, Heartbeat]:
    """The newest heartbeat of each service heard on ``health`` within ``seconds``."""
    heard: dict[str, Heartbeat] = {}
    bus = await connect()
    async with await bus.subscribe_health() as beats:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for beat in beats:
                    heard[beat.service] = beat
    return heard


def render_heard(beats: Mapping[str, Heartbeat], now: datetime) -> str:
    """``claire status --listen``: one line per service heard, most recent beat."""
    if not beats:
        return "services heard on health: none"
    lines = ["services heard on health:"]
    for service, beat in sorted(beats.items()):
        age = (now - beat.at).total_seconds()
        payload = beat.payload
        dependencies = ", ".join(
            f"{key.removeprefix('dependency.')} {value}"
            for key, value in sorted(payload.items())
            if key.startswith("dependency.")
        )
        lines.append(
            f"  {service:<10} {payload.get('instance', '?')}  version {payload.get('version', '?')}"
            f"  position {payload.get('position', '-')}  lag {payload.get('lag', '-')}"
            f"  {age:.1f}s ago  [{dependencies or 'no dependencies'}]"
        )
    return "\n".join(lines)
