"""Odd arguments: bigint-overflowing anchors, unparsable URLs, position_at at datetime's edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventstore import EventStore
from tests.blackbox_attack.ledger.attack_ledger_helpers import claire, claire_async, new


@pytest.fixture
async def url(fresh_database_url):  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    store = await EventStore.connect(url)
    try:
        await store.append("s", [new(occurred_at=datetime(2025, 1, 1, tzinfo=UTC))])
        await store.append("s", [new(occurred_at=datetime(2026, 1, 1, tzinfo=UTC))])
    finally:
        await store.close()
    return url


@pytest.mark.parametrize(
    "expect",
    ["99999999999999999999:" + "00" * 32, "9223372036854775808:" + "00" * 32, "2:" + "00" * 33],
    ids=["beyond-bigint", "bigint-plus-one", "hash-too-long"],
)
async def test_verify_expect_when_position_overflows_or_hash_too_long_then_fails_cleanly(
    url: str, expect: str
) -> None:
    done = await claire_async(url, "verify", "--expect", expect)
    out = done.text
    assert done.code in (1, 2) and "Traceback" not in out, (done.code, out)


@pytest.mark.parametrize("content", ["99999999999999999999:" + "00" * 32, "-1:" + "00" * 32])
async def test_verify_since_when_anchor_position_overflows_then_fails_cleanly(
    url: str, tmp_path: Path, content: str
) -> None:
    anchor = tmp_path / "a"
    anchor.write_text(content)
    done = await claire_async(url, "verify", "--since", str(anchor))
    out = done.text
    assert done.code in (1, 2) and "Traceback" not in out, (done.code, out)


@pytest.mark.parametrize(
    "bad",
    [
        "notaurl",
        "postgresql://[::1",
        "mysql://x@y/z",
    ],
)
def test_verify_when_database_url_malformed_then_exit_2_without_traceback(bad: str) -> None:
    done = claire(bad, "verify")
    out = done.text
    assert done.code == 2 and "Traceback" not in out, (done.code, out)


async def test_position_at_when_timestamp_at_datetime_edges_then_first_or_none(url: str) -> None:
    store = await EventStore.connect(url)
    try:
        assert await store.position_at(datetime.min.replace(tzinfo=UTC)) == 1
        assert await store.position_at(datetime.max.replace(tzinfo=UTC)) is None
        assert await store.position_at(datetime(2025, 1, 1, tzinfo=UTC)) == 1
        one_after = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(microseconds=1)
        assert await store.position_at(one_after) == 2
    finally:
        await store.close()
