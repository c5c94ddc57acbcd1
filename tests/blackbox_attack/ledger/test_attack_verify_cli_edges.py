"""`claire verify` options at their edges: anchors at position 0, unwritable anchor files."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import EventStore
from tests.blackbox_attack.ledger.attack_ledger_helpers import claire_async, new


@pytest.fixture
async def url(fresh_database_url):  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    store = await EventStore.connect(url)
    try:
        await store.append("s", [new() for _ in range(4)])
    finally:
        await store.close()
    return url


@pytest.mark.parametrize(
    "target", ["missing-dir/anchor", "."], ids=["parent-missing", "is-a-directory"]
)
async def test_verify_anchor_when_file_cannot_be_written_then_nonzero_exit_without_traceback(
    url: str, tmp_path: Path, target: str
) -> None:
    done = await claire_async(url, "verify", "--anchor", str(tmp_path / target))
    out = done.text
    assert done.code in (1, 2) and "Traceback" not in out, (done.code, out)


async def test_verify_since_when_anchor_is_genesis_then_checks_whole_chain_exit_0(
    url: str, tmp_path: Path
) -> None:
    anchor = tmp_path / "a"
    anchor.write_text("0:" + "00" * 32)
    done = await claire_async(url, "verify", "--since", str(anchor))
    assert done.code == 0, done.text


async def test_verify_since_when_anchor_position_zero_with_wrong_hash_then_exit_1(
    url: str, tmp_path: Path
) -> None:
    anchor = tmp_path / "a"
    anchor.write_text("0:" + "11" * 32)
    done = await claire_async(url, "verify", "--since", str(anchor))
    assert done.code == 1, done.text


async def test_verify_when_anchor_then_expect_from_file_after_more_appends_then_exit_0(
    url: str, tmp_path: Path
) -> None:
    anchor = tmp_path / "a"
    assert (await claire_async(url, "verify", "--anchor", str(anchor))).code == 0
    store = await EventStore.connect(url)
    try:
        await store.append("s", [new() for _ in range(250)])
    finally:
        await store.close()
    done = await claire_async(url, "verify", "--expect", anchor.read_text().strip())
    assert done.code == 0, done.text
    done = await claire_async(url, "verify", "--since", str(anchor), "--anchor", str(anchor))
    assert done.code == 0, done.text
    assert anchor.read_text().strip().startswith("254:")
