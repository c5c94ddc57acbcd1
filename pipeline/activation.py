"""Record the configuration, and fallback contract specs, before the first decision.

DESIGN.md: "Configuration ... is itself appended as an event (with its hash) before the first
decision, so every verdict is tied to the exact parameters in force." Appends only when the
parameters differ from the last recorded ones; the expected stream version makes two services
starting together record it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec

from aggregates import events as ev
from aggregates.config import TradingConfig
from aggregates.envelope import CLAIRE_NAMESPACE, NewEvent, utc_from_ms
from aggregates.streams import stream_for
from eventstore import ConcurrencyConflict, EventIdConflict, EventStore


async def _last(store: EventStore, stream: str) -> tuple[int, ev.Event | None]:
    version, last = 0, None
    async for recorded in store.read_stream(stream):
        version, last = recorded.stream_version, recorded.event
    return version, last


async def activate_config(store: EventStore, config: TradingConfig, at_ms: int) -> bool:
    """Append ``ConfigActivated`` unless it is already the configuration in force."""
    event = config.activated(at_ms)
    for _ in range(3):
        version, last = await _last(store, "config")
        if isinstance(last, ev.ConfigActivated) and last.config_hash == event.config_hash:
            return False
        new = NewEvent(
            event=event,
            event_id=uuid.uuid5(CLAIRE_NAMESPACE, f"config/{version}/{event.config_hash}"),
            occurred_at=utc_from_ms(at_ms),
        )
        try:
            await store.append("config", [new], expected_version=version)
            return True
        except (ConcurrencyConflict, EventIdConflict):
            # Another service recorded a configuration meanwhile (the same one, at its own start
            # time, carries this id with another time: EventIdConflict): look again.
            continue
    raise RuntimeError("could not record the configuration: the config stream keeps moving")


async def record_contract_specs(store: EventStore, specs: Sequence[ev.ContractSpecified]) -> int:
    """Append contract specifications that differ from the last recorded one per symbol."""
    appended = 0
    for spec in specs:
        stream = stream_for(spec)
        known = None
        async for recorded in store.read_stream(stream):
            if isinstance(recorded.event, ev.ContractSpecified):
                known = recorded.event
        if known is not None and _same_contract(known, spec):
            continue
        body = ev.encode(spec).decode()
        new = NewEvent(
            event=spec,
            event_id=uuid.uuid5(CLAIRE_NAMESPACE, f"contract/{body}"),
            occurred_at=utc_from_ms(spec.at_ms),
        )
        await store.append(stream, [new])
        appended += 1
    return appended


def _same_contract(a: ev.ContractSpecified, b: ev.ContractSpecified) -> bool:
    return ev.encode(msgspec.structs.replace(a, at_ms=0)) == ev.encode(
        msgspec.structs.replace(b, at_ms=0)
    )
