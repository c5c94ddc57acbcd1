"""Extremes past the obvious: decimal exponents beyond the context, >4300 digits, odd tzinfo."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from decimal import Decimal

import msgspec
import pytest

from aggregates.events import SignalGenerated
from eventstore import EventIdConflict, EventStore, InvalidEvent
from tests.blackbox_attack.ledger.attack_ledger_helpers import (
    T0,
    all_recorded,
    assert_intact,
    count_events,
    new,
    trade,
)


@pytest.fixture
async def store_url(fresh_database_url):  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    store = await EventStore.connect(url)
    try:
        yield store, url
    finally:
        await store.close()


def _signal(momentum: Decimal) -> SignalGenerated:
    return SignalGenerated(
        at_ms=0,
        symbol="BTC_USDT",
        direction="flat",
        strength=Decimal("0"),
        momentum=momentum,
        reference_price=Decimal("1"),
        window_start_ms=0,
        trades_in_window=0,
        contracts_in_window=Decimal("0"),
    )


EXTREME = [
    Decimal("1E+999999999999"),
    Decimal("1E-999999999999"),
    Decimal("9" * 5000),
    Decimal("0." + "1" * 5000),
    Decimal((0, (1,) * 20000, -10000)),
]


@pytest.mark.parametrize("value", EXTREME, ids=lambda v: str(v)[:20])
async def test_append_when_decimal_beyond_context_or_int_digit_limit_then_stored_exactly_or_refused(
    store_url, value: Decimal
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    for event in (_signal(value), trade(price=value, contracts=value)):
        before = await count_events(url)
        try:
            await store.append("x", [new(event)])
        except InvalidEvent:
            assert await count_events(url) == before
            continue
        back = (await all_recorded(store))[-1].event
        assert back == event
        assert str(back.momentum if hasattr(back, "momentum") else back.price) == str(value)
    await assert_intact(store, url)


class _NoOffset(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str:
        return "none"


class _Shifty(tzinfo):
    """A tzinfo whose offset changes on every call: no stable instant."""

    calls = 0

    def utcoffset(self, dt: datetime | None) -> timedelta:
        _Shifty.calls += 1
        return timedelta(hours=_Shifty.calls % 5)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


async def test_append_when_tzinfo_gives_no_offset_then_naive_refused(store_url) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    when = datetime(2025, 6, 2, 9, 0, tzinfo=_NoOffset())
    with pytest.raises(InvalidEvent):
        await store.append("tz", [new(), new(occurred_at=when)])
    assert await count_events(url) == 0


async def test_append_when_tzinfo_offset_unstable_then_stored_instant_reads_back_or_refused(
    store_url,
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    _Shifty.calls = 0
    when = datetime(2025, 6, 2, 9, 0, tzinfo=_Shifty())
    try:
        await store.append("tz", [new(occurred_at=when)])
    except InvalidEvent:
        assert await count_events(url) == 0
        return
    await assert_intact(store, url)


@pytest.mark.parametrize(
    "fields",
    [{"trades_in_window": True}, {"window_start_ms": False}, {"trades_in_window": 1.0}],
    ids=repr,
)
async def test_append_when_int_field_is_bool_or_float_then_invalid_event(
    store_url, fields: dict[str, object]
) -> None:  # type: ignore[no-untyped-def]
    store, url = store_url
    event = _signal(Decimal("0"))
    for name, value in fields.items():
        msgspec.structs.force_setattr(event, name, value)
    with pytest.raises(InvalidEvent):
        await store.append("i", [new(), new(event)])
    assert await count_events(url) == 0


_ = T0


async def test_append_when_wall_time_ambiguous_fold_then_each_fold_its_own_instant(
    store_url,
) -> None:  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    store, url = store_url
    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2025, 10, 26, 2, 30, tzinfo=berlin, fold=0)
    second = datetime(2025, 10, 26, 2, 30, tzinfo=berlin, fold=1)
    assert first.utcoffset() != second.utcoffset()
    one, two = new(occurred_at=first), new(occurred_at=second)
    await store.append("fold", [one, two])
    back = await all_recorded(store)
    # PEP 495: an ambiguous time never compares equal across zones; compare timestamps.
    assert back[0].occurred_at.timestamp() == first.timestamp()
    assert back[1].occurred_at.timestamp() == second.timestamp()
    assert back[1].occurred_at - back[0].occurred_at == timedelta(hours=1)
    same_id_other_fold = msgspec.structs.replace(one, occurred_at=second)
    with pytest.raises(EventIdConflict):
        await store.append("fold", [same_id_other_fold])
    assert await count_events(url) == 2
    await assert_intact(store, url)
